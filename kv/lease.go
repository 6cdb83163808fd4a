package kv

import (
	"cmp"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"
)

// A lease (etcd's, with kvs's names) is a time to live that keys can be
// attached to: granted with a TTL, kept alive by keep-alives, and ended by
// a revocation or by its expiry, which deletes all its keys at once, at one
// revision, with a Reason on each delete. Expiry runs on the store's
// monotonic clock, never the wall clock.
//
// With the memory and file logs a grant and a lease's end are logged, in
// order with the changes, but take no revision: the revisions stay those
// of changes, consecutive, and the feed has no gap. The end of a lease
// that has keys is one revision holding the deletes of all of them. A
// keep-alive is not logged: a store that starts from a log renews every
// lease it recovers (its TTL starts again), as etcd does.
//
// With a Replicated log every lease operation is a record: grants, ends
// and keep-alives. Each store counts a lease's time from when it applied
// the lease's last grant or keep-alive; when it sees a lease expire, it
// proposes the lease's end, conditional on the renewal it saw, so that a
// keep-alive that lands first cancels it and two stores proposing it end
// the lease once. See Store.Grant, Store.KeepAlive, Store.Revoke.

var (
	// ErrLeaseNotFound is returned for a lease that does not exist: never
	// granted, revoked, or expired (its TTL has passed since its last
	// keep-alive, even if its keys are not deleted yet).
	ErrLeaseNotFound = errors.New("kv: lease not found")
	// ErrLeaseExists is returned by Grant for an ID that a lease has.
	ErrLeaseExists = errors.New("kv: lease exists")
	// ErrInvalidLease is returned (wrapped, with the reason) for a TTL or
	// lease ID out of range.
	ErrInvalidLease = errors.New("kv: invalid lease")
)

// MaxLeaseID is the largest lease ID: IDs fit in a float64 exactly, so
// that a JavaScript client reads them right.
const MaxLeaseID = 1<<53 - 1

// The kinds of change of a lease, in Change.Op. They take no revision of
// their own: Change.Revision is the revision they follow (with a
// Replicated log, their record's).
const (
	// OpGrant grants lease Change.Lease with TTL Change.TTL.
	OpGrant Op = 4
	// OpLeaseEnd ends lease Change.Lease, for Change.Reason. The deletes of
	// its keys follow it, at the next revision, each with the same Lease
	// and Reason.
	OpLeaseEnd Op = 5
)

// Reason says why a change happened when a client did not ask for it
// directly: the delete of a lease's key. The zero value is an ordinary
// change.
type Reason uint8

// The reasons of a change.
const (
	ReasonNone    Reason = iota
	ReasonExpired        // the key's lease expired
	ReasonRevoked        // the key's lease was revoked
)

func (r Reason) String() string {
	switch r {
	case ReasonNone:
		return ""
	case ReasonExpired:
		return "expired"
	case ReasonRevoked:
		return "revoked"
	}
	return fmt.Sprintf("Reason(%d)", uint8(r))
}

// Lease describes a lease.
type Lease struct {
	ID int64
	// TTL is the time to live the lease was granted with: each keep-alive
	// renews it to that.
	TTL time.Duration
	// Remaining is the time left, at the call, until the lease expires
	// (with a Replicated log, as this store counts it).
	Remaining time.Duration
	// Keys are the keys attached to the lease, sorted, when asked for.
	Keys []string
}

// LeaseOp is a lease operation as a Replicated log carries it (see
// Record.LeaseOp).
type LeaseOp struct {
	Kind LeaseKind
	// ID is the lease of every kind but LeaseKeepAlive.
	ID int64
	// IDs are the leases a LeaseKeepAlive renews.
	IDs []int64
	// TTL is the TTL of a grant, or of the lease a LeaseRestore restores
	// (0: the lease does not exist).
	TTL time.Duration
	// Renewed is the condition of a LeaseExpire: it ends the lease only
	// if the lease's last renewal (its grant or a keep-alive) is the
	// record of this revision.
	Renewed int64
}

// LeaseKind is the kind of a LeaseOp.
type LeaseKind uint8

// The kinds of LeaseOp.
const (
	// LeaseGrant grants lease ID with TTL if no lease has that ID.
	LeaseGrant LeaseKind = iota + 1
	// LeaseKeepAlive renews each lease of IDs that exists.
	LeaseKeepAlive
	// LeaseRevoke ends lease ID, if it exists, for ReasonRevoked.
	LeaseRevoke
	// LeaseExpire ends lease ID, if its last renewal is at revision
	// Renewed, for ReasonExpired.
	LeaseExpire
	// LeaseRestore holds lease ID's real state (TTL, or absent) after a
	// record whose claim did not hold (see Record).
	LeaseRestore
)

func (k LeaseKind) String() string {
	switch k {
	case LeaseGrant:
		return "grant"
	case LeaseKeepAlive:
		return "keepalive"
	case LeaseRevoke:
		return "revoke"
	case LeaseExpire:
		return "expire"
	case LeaseRestore:
		return "restore"
	}
	return fmt.Sprintf("LeaseKind(%d)", uint8(k))
}

// CheckTTL returns nil if ttl is a TTL a lease may have: a whole number
// of milliseconds from 1ms to max (no bound when max is 0), else an error
// wrapping ErrInvalidLease.
func CheckTTL(ttl, max time.Duration) error {
	switch {
	case ttl <= 0:
		return fmt.Errorf("%w: TTL %v: must be positive", ErrInvalidLease, ttl)
	case ttl%time.Millisecond != 0:
		return fmt.Errorf("%w: TTL %v: must be a whole number of milliseconds", ErrInvalidLease, ttl)
	case max > 0 && ttl > max:
		return fmt.Errorf("%w: TTL %v: over the limit of %v", ErrInvalidLease, ttl, max)
	}
	return nil
}

// checkLeaseID returns an error wrapping ErrInvalidLease for an ID out of
// range.
func checkLeaseID(id int64) error {
	if id < 1 || id > MaxLeaseID {
		return fmt.Errorf("%w: ID %d: must be from 1 to %d", ErrInvalidLease, id, int64(MaxLeaseID))
	}
	return nil
}

// lessor holds a store's leases: each one's TTL and deadline, the keys
// attached to each lease ID, and the expiry loop's heap.
type lessor struct {
	base     time.Time // the clock's origin, with its monotonic reading
	takeover time.Duration

	// mu guards the fields below. It is taken after the store's commitMu
	// and recMu, and never held while taking another lock (the lock
	// order is above Store).
	mu     sync.Mutex
	leases map[int64]*lease
	// keys are the keys whose entry names each lease ID, whether or not
	// the lease exists (a replica that replays a compacted log may see a
	// key before its lease).
	keys map[int64]map[string]struct{}
	due  leaseHeap // every lease, at or before its expiry (see lease.due)

	wake   chan struct{} // a lease may expire earlier than the loop waits for
	stop   chan struct{}
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// lease is one lease. Its deadline only grows while it lives.
type lease struct {
	id       int64
	ttl      time.Duration
	deadline time.Duration // on the lessor's clock: when it expires
	// With a Replicated log: the revision of its last renewal record, and
	// whether this store wrote that record (it is then the first to
	// propose the lease's end).
	renewRev int64
	holder   bool
	// due is its key in the heap: a deadline it had (or sooner), so that
	// renewals need not move it; index is its place there.
	due   time.Duration
	index int
}

func newLessor(takeover time.Duration) *lessor {
	return &lessor{
		base:     time.Now(),
		takeover: takeover,
		leases:   make(map[int64]*lease),
		keys:     make(map[int64]map[string]struct{}),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
}

// now reads the lessor's clock: the monotonic time since it was made.
func (ls *lessor) now() time.Duration { return time.Since(ls.base) }

// liveLocked returns lease id if it exists and has not expired at now.
func (ls *lessor) liveLocked(id int64, now time.Duration) *lease {
	l := ls.leases[id]
	if l == nil || l.deadline <= now {
		return nil
	}
	return l
}

// grantLocked makes lease id with ttl, expiring ttl from now, unless it
// exists (then it changes nothing: a grant replayed from a log that a
// snapshot covers already).
func (ls *lessor) grantLocked(id int64, ttl time.Duration, rev int64, holder bool) {
	if _, ok := ls.leases[id]; ok {
		return
	}
	l := &lease{id: id, ttl: ttl, deadline: ls.now() + ttl, renewRev: rev, holder: holder}
	ls.pushLocked(l)
	ls.leases[id] = l
}

// pushLocked puts l in the heap, due at its deadline, and wakes the loop
// if it is due first.
func (ls *lessor) pushLocked(l *lease) {
	l.due = l.deadline
	heap.Push(&ls.due, l)
	if l.index == 0 {
		select {
		case ls.wake <- struct{}{}:
		default:
		}
	}
}

// endLocked removes lease id, if it exists. Its keys are deleted by their
// own changes.
func (ls *lessor) endLocked(id int64) {
	if l, ok := ls.leases[id]; ok {
		delete(ls.leases, id)
		heap.Remove(&ls.due, l.index)
	}
}

// moveKeyLocked records that key, attached to lease from (0: none), is now
// attached to lease to (0: none, or deleted).
func (ls *lessor) moveKeyLocked(key string, from, to int64) {
	if from == to {
		return
	}
	if from != 0 {
		if ks := ls.keys[from]; ks != nil {
			delete(ks, key)
			if len(ks) == 0 {
				delete(ls.keys, from)
			}
		}
	}
	if to != 0 {
		ks := ls.keys[to]
		if ks == nil {
			ks = make(map[string]struct{})
			ls.keys[to] = ks
		}
		ks[key] = struct{}{}
	}
}

// keysLocked returns the keys attached to lease id, sorted.
func (ls *lessor) keysLocked(id int64) []string {
	ks := ls.keys[id]
	out := make([]string, 0, len(ks))
	for k := range ks {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// info returns lease l as of now.
func (l *lease) info(now time.Duration) Lease {
	return Lease{ID: l.id, TTL: l.ttl, Remaining: l.deadline - now}
}

// renewAllLocked gives every lease at least its whole TTL from now: a
// store that starts from a log, or whose log could not be written for a
// while, does not expire leases for the time their holders could not keep
// them alive.
func (ls *lessor) renewAllLocked() {
	now := ls.now()
	for _, l := range ls.leases {
		l.deadline = max(l.deadline, now+l.ttl)
	}
}

// nextDue returns how long until the first lease may be due, and false if
// there is none.
func (ls *lessor) nextDue() (time.Duration, bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	if len(ls.due) == 0 {
		return 0, false
	}
	return ls.due[0].due - ls.now(), true
}

// popDue returns the leases that expire by now (with a Replicated log,
// that this store should propose the end of by now: takeover after the
// deadline unless it holds the lease), and their last renewals. They stay
// in the heap, due again a retry later: the end takes them out, and if it
// fails they come back.
func (ls *lessor) popDue(replicated bool, retry time.Duration) (ids, renewed []int64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.now()
	for len(ls.due) > 0 && ls.due[0].due <= now {
		l := ls.due[0]
		at := l.deadline
		if replicated && !l.holder {
			at += ls.takeover
		}
		if at > now {
			l.due = at
		} else {
			ids, renewed = append(ids, l.id), append(renewed, l.renewRev)
			l.due = now + retry
		}
		heap.Fix(&ls.due, 0)
	}
	return ids, renewed
}

// leaseHeap is a min-heap of leases by due.
type leaseHeap []*lease

func (h leaseHeap) Len() int           { return len(h) }
func (h leaseHeap) Less(i, j int) bool { return h[i].due < h[j].due }
func (h leaseHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *leaseHeap) Push(x any) {
	l := x.(*lease)
	l.index = len(*h)
	*h = append(*h, l)
}
func (h *leaseHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	l.index = -1
	return l
}

// newLeaseID returns a random lease ID that taken does not report taken.
func newLeaseID(taken func(int64) bool) int64 {
	for {
		id := 1 + rand.Int64N(MaxLeaseID)
		if !taken(id) {
			return id
		}
	}
}

// Leases of the Store.

// LeaseRemaining returns the time left until lease id expires, and false
// if it does not exist (or has expired).
func (s *Store) LeaseRemaining(id int64) (time.Duration, bool) {
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.now()
	l := ls.liveLocked(id, now)
	if l == nil {
		return 0, false
	}
	return l.deadline - now, true
}

// TimeToLive returns lease id, with its keys if keys is set, or
// ErrLeaseNotFound.
func (s *Store) TimeToLive(id int64, keys bool) (Lease, error) {
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.now()
	l := ls.liveLocked(id, now)
	if l == nil {
		return Lease{}, ErrLeaseNotFound
	}
	info := l.info(now)
	if keys {
		info.Keys = ls.keysLocked(id)
	}
	return info, nil
}

// Leases returns every lease that has not expired, sorted by ID, without
// their keys.
func (s *Store) Leases() []Lease {
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.now()
	out := make([]Lease, 0, len(ls.leases))
	for _, l := range ls.leases {
		if l.deadline > now {
			out = append(out, l.info(now))
		}
	}
	slices.SortFunc(out, func(a, b Lease) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// LeaseCount returns the number of leases, expired ones whose end is not
// applied yet included.
func (s *Store) LeaseCount() int {
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return len(ls.leases)
}

// snapshotLeasesLocked returns every lease, expired or not, sorted by ID,
// for a snapshot. The caller holds recMu.
func (s *Store) snapshotLeasesLocked() []Lease {
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]Lease, 0, len(ls.leases))
	for _, l := range ls.leases {
		out = append(out, Lease{ID: l.id, TTL: l.ttl})
	}
	slices.SortFunc(out, func(a, b Lease) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// leaseRequest is a lease operation queued to the committer.
type leaseRequest struct {
	kind   LeaseKind // LeaseGrant, LeaseRevoke or LeaseExpire
	id     int64     // LeaseGrant: 0 to choose one; LeaseRevoke: the lease
	ttl    time.Duration
	expire []int64 // LeaseExpire: the leases due
	lease  Lease   // LeaseGrant: the lease granted
}

// Grant grants a lease with ttl and returns it. With id 0 the store
// chooses the ID; else the lease gets id, or Grant fails with
// ErrLeaseExists if a lease has it. ttl must be a whole number of
// milliseconds (see CheckTTL; the bound is the caller's). It blocks until
// the grant is durable, like Submit, and fails like it.
func (s *Store) Grant(ctx context.Context, id int64, ttl time.Duration) (Lease, error) {
	if err := CheckTTL(ttl, 0); err != nil {
		return Lease{}, err
	}
	if id != 0 {
		if err := checkLeaseID(id); err != nil {
			return Lease{}, err
		}
	}
	if err := ctx.Err(); err != nil {
		return Lease{}, err
	}
	if s.repl != nil {
		return s.grantReplicated(ctx, id, ttl)
	}
	lr := &leaseRequest{kind: LeaseGrant, id: id, ttl: ttl}
	if _, err := s.submitLease(lr); err != nil {
		return Lease{}, err
	}
	return lr.lease, nil
}

// Revoke ends lease id: all its keys are deleted at one revision, which
// it returns (the current revision when the lease had no keys; with a
// Replicated log, the record's), each delete with ReasonRevoked. It fails
// with ErrLeaseNotFound for a lease that does not exist or has expired,
// and blocks like Submit.
func (s *Store) Revoke(ctx context.Context, id int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if s.repl != nil {
		if s.leaseExpiredHere(id) {
			return 0, ErrLeaseNotFound
		}
		o := s.propose(ctx, Record{LeaseOp: &LeaseOp{Kind: LeaseRevoke, ID: id}})
		return o.rev, o.err
	}
	return s.submitLease(&leaseRequest{kind: LeaseRevoke, id: id})
}

// KeepAlive renews each lease of ids that exists and has not expired: it
// expires its TTL from now. It returns one Lease per ID, in order, with
// TTL 0 for a lease not found. With the memory and file logs it writes
// nothing and does not block; with a Replicated log it proposes one
// record for all of ids and returns once this store applied it (its
// leases' time then counts from then), failing like Submit.
func (s *Store) KeepAlive(ctx context.Context, ids []int64) ([]Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.repl != nil {
		return s.keepAliveReplicated(ctx, ids)
	}
	out := make([]Lease, len(ids))
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	now := ls.now()
	for i, id := range ids {
		out[i].ID = id
		if l := ls.liveLocked(id, now); l != nil {
			l.deadline = now + l.ttl
			out[i] = l.info(now)
		}
	}
	return out, nil
}

// submitLease queues a lease request and returns its revision (that of a
// revocation's deletes) and its error once it is committed.
func (s *Store) submitLease(lr *leaseRequest) (int64, error) {
	r := s.requests.Get().(*request)
	r.lease = lr
	rev, _, err := s.submitRequest(r)
	return rev, err
}

// leaseLiveForCommit reports whether a set may attach a key to lease id
// now: it exists and has not expired, counting the grants and ends of the
// batch being committed. Only the committer calls it.
func (s *Store) leaseLiveForCommit(id int64) bool {
	if granted, ok := s.leaseOverlay[id]; ok {
		return granted
	}
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return ls.liveLocked(id, ls.now()) != nil
}

// commitLease decides a lease request of the batch being committed and
// appends its changes. Only the committer calls it.
func (s *Store) commitLease(r *request, changes []Change, entries []*Entry) ([]Change, []*Entry) {
	lr := r.lease
	ls := s.lessor
	switch lr.kind {
	case LeaseGrant:
		taken := func(id int64) bool {
			if _, ok := s.leaseOverlay[id]; ok {
				return true
			}
			ls.mu.Lock()
			defer ls.mu.Unlock()
			_, ok := ls.leases[id]
			return ok
		}
		id := lr.id
		if id == 0 {
			id = newLeaseID(taken)
		} else if taken(id) {
			r.err = ErrLeaseExists
			return changes, entries
		}
		s.leaseOverlay[id] = true
		lr.lease = Lease{ID: id, TTL: lr.ttl, Remaining: lr.ttl}
		changes = append(changes, Change{Op: OpGrant, Lease: id, TTL: lr.ttl, Revision: s.next})
		entries = append(entries, nil)
	case LeaseRevoke:
		if !s.leaseLiveForCommit(lr.id) {
			r.err = ErrLeaseNotFound
			return changes, entries
		}
		changes, entries = s.endLease(lr.id, ReasonRevoked, changes, entries)
		r.rev = s.next
	case LeaseExpire:
		for _, id := range lr.expire {
			if granted, ok := s.leaseOverlay[id]; ok && !granted {
				continue // revoked in this batch
			}
			ls.mu.Lock()
			l := ls.leases[id]
			due := l != nil && l.deadline <= ls.now()
			ls.mu.Unlock()
			if due {
				changes, entries = s.endLease(id, ReasonExpired, changes, entries)
			}
		}
	}
	return changes, entries
}

// endLease appends the end of lease id for reason and the deletes of its
// keys, at the next revision if it has any. Only the committer calls it.
func (s *Store) endLease(id int64, reason Reason, changes []Change, entries []*Entry) ([]Change, []*Entry) {
	s.leaseOverlay[id] = false
	changes = append(changes, Change{Op: OpLeaseEnd, Lease: id, Reason: reason, Revision: s.next})
	entries = append(entries, nil)
	keys := s.leaseKeysForCommit(id)
	if len(keys) == 0 {
		return changes, entries
	}
	s.next++
	for _, k := range keys {
		changes = append(changes, Change{Op: OpDelete, Key: k, Lease: id, Reason: reason, Revision: s.next})
		entries = append(entries, nil)
		s.overlay[k] = nil
	}
	return changes, entries
}

// leaseKeysForCommit returns the keys attached to lease id, sorted,
// counting the changes of the batch being committed. Only the committer
// calls it.
func (s *Store) leaseKeysForCommit(id int64) []string {
	ls := s.lessor
	ls.mu.Lock()
	keys := ls.keysLocked(id)
	ls.mu.Unlock()
	if len(s.overlay) == 0 {
		return keys
	}
	out := keys[:0]
	for _, k := range keys {
		if e, ok := s.overlay[k]; !ok || e != nil && e.Lease == id {
			out = append(out, k)
		}
	}
	added := false
	for k, e := range s.overlay {
		if e != nil && e.Lease == id && !slices.Contains(keys, k) {
			out, added = append(out, k), true
		}
	}
	if added {
		slices.Sort(out)
	}
	return out
}

// isLeaseOp reports whether c is a change of a lease rather than of a key.
func isLeaseOp(c *Change) bool { return c.Op == OpGrant || c.Op == OpLeaseEnd }

// splitLeaseOps returns the changes of keys (and their entries) and the
// changes of leases of a batch, without copying when there are none of
// the latter.
func splitLeaseOps(changes []Change, entries []*Entry) ([]Change, []*Entry, []Change) {
	n := 0
	for i := range changes {
		if isLeaseOp(&changes[i]) {
			n++
		}
	}
	if n == 0 {
		return changes, entries, nil
	}
	kc := make([]Change, 0, len(changes)-n)
	ke := make([]*Entry, 0, len(changes)-n)
	ops := make([]Change, 0, n)
	for i := range changes {
		if isLeaseOp(&changes[i]) {
			ops = append(ops, changes[i])
		} else {
			kc, ke = append(kc, changes[i]), append(ke, entries[i])
		}
	}
	return kc, ke, ops
}

// applyLeaseOpsLocked applies the grants and ends of ops. The caller
// holds recMu.
func (s *Store) applyLeaseOpsLocked(ops []Change, holder bool) {
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for i := range ops {
		switch ops[i].Op {
		case OpGrant:
			ls.grantLocked(ops[i].Lease, ops[i].TTL, ops[i].Revision, holder)
		case OpLeaseEnd:
			ls.endLocked(ops[i].Lease)
		}
	}
}

// expiryRetry is how long the expiry loop waits before it tries again to
// end a lease whose end failed or did not land.
const expiryRetry = time.Second

// expireLoop ends leases as they expire, on the lessor's clock. It does
// not while the log cannot be written (health fails), and afterwards gives
// every lease its whole TTL again: their holders could not keep them alive
// meanwhile.
func (s *Store) expireLoop(ctx context.Context, health func() error) {
	ls := s.lessor
	defer ls.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	outage := false
	for {
		wait, ok := ls.nextDue()
		if !ok {
			wait = time.Hour
		}
		if outage {
			wait = min(wait, 100*time.Millisecond)
		}
		timer.Reset(max(wait, 0))
		select {
		case <-ls.stop:
			return
		case <-ls.wake:
			continue
		case <-timer.C:
		}
		if health != nil && health() != nil {
			outage = true
			continue
		}
		if outage {
			outage = false
			ls.mu.Lock()
			ls.renewAllLocked()
			ls.mu.Unlock()
			continue
		}
		ids, renewed := ls.popDue(s.repl != nil, expiryRetry)
		if len(ids) == 0 {
			continue
		}
		if s.repl == nil {
			_, err := s.submitLease(&leaseRequest{kind: LeaseExpire, expire: ids})
			outage = err != nil
			continue
		}
		s.proposeExpiries(ctx, ids, renewed)
	}
}

// proposeExpiries proposes the end of each lease of ids, conditional on
// its last renewal, at most 64 at a time, without waiting for them.
func (s *Store) proposeExpiries(ctx context.Context, ids, renewed []int64) {
	ls := s.lessor
	for i, id := range ids {
		select {
		case s.expiring <- struct{}{}:
		case <-ls.stop:
			return
		}
		ls.wg.Add(1)
		go func() {
			defer ls.wg.Done()
			defer func() { <-s.expiring }()
			s.propose(ctx, Record{LeaseOp: &LeaseOp{Kind: LeaseExpire, ID: id, Renewed: renewed[i]}})
		}()
	}
}

// startLeases starts the expiry loop. health, when not nil, reports why
// the log cannot be written now.
func (s *Store) startLeases(health func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	s.lessor.cancel = cancel
	s.lessor.wg.Add(1)
	go s.expireLoop(ctx, health)
}

// stopLeases stops the expiry loop and waits for it.
func (s *Store) stopLeases() {
	select {
	case <-s.lessor.stop:
		return
	default:
	}
	close(s.lessor.stop)
	s.lessor.cancel()
	s.lessor.wg.Wait()
}
