package kv

import (
	"context"
	"fmt"
	"hash/maphash"
	"iter"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Log makes changes durable. The Store calls Append from one goroutine at a
// time, with changes in revision order; Append returns once all of them are
// durable, or an error if none of them may be treated as logged.
type Log interface {
	Append(changes []Change) error
	// Close flushes and releases the log. The Store calls it once, after
	// its last Append.
	Close() error
}

// Recovery is the state a log holds when it is opened: a snapshot, and the
// changes logged after it.
type Recovery struct {
	// Entries yields the snapshot: every entry at revision Rev, with its
	// revisions and version, sorted by key. The Key and Value it yields
	// may share the log's buffers: the Store copies them. Nil for none.
	Entries iter.Seq[Entry]
	// Len is the number of entries Entries yields.
	Len int
	// Rev is the revision of the snapshot, 0 for none.
	Rev int64
	// Leases are the leases of the snapshot, by ID, each with its ID and
	// TTL: the store renews them (their TTL starts again).
	Leases []Lease
	// Changes are the changes logged after Rev, in revision order, and
	// the changes of leases (OpGrant, OpLeaseEnd) logged with them from
	// the one that follows Rev on, which the store applies again: such a
	// change changes nothing when the snapshot holds it already.
	Changes []Change
}

// Recoverer is implemented by a Log that keeps changes across restarts,
// such as FileLog. New calls Recover once, before the Store takes a change.
type Recoverer interface {
	Log
	// Recover returns the state to start from. New loads its entries, then
	// applies its changes and publishes them, in order, so that the Store
	// continues after the last of them. Once New has returned, and until
	// Close, the log may call snapshot from its own goroutines to compact
	// itself: snapshot returns every entry and the revision they hold,
	// like Store.View("").
	Recover(snapshot func() *View) Recovery
}

// Publisher receives every applied change, in revision order, from one
// goroutine. Publish must not block. It must not keep the slice after it
// returns, but it may keep the changes in it: their values are immutable.
type Publisher interface {
	Publish(changes []Change)
}

// Options configures a Store. The zero value of every field means its
// default.
type Options struct {
	// Shards is the number of map shards, rounded up to a power of two.
	// Zero means 32.
	Shards int
	// Log makes changes durable. Nil means the memory log: nothing is
	// written and revisions come from a counter. A Log that is also a
	// Recoverer gives the Store its state to start from.
	Log Log
	// Replicated, when not nil, is a log that several stores share (see
	// Replicated), which the Store uses instead of a Log: Log must be nil
	// then. A Replicated log that has an Err() error method reports
	// through it why it cannot serve current data.
	Replicated Replicated
	// Publisher receives every applied change. Nil means none.
	Publisher Publisher
	// WriteTimeout bounds Submit with a Replicated log: how long it waits
	// for its change to be logged and applied. Zero means 10s.
	WriteTimeout time.Duration
	// LeaseTakeover is, with a Replicated log, how long after a lease's
	// deadline a store that did not write its last renewal (grant or
	// keep-alive) waits before it proposes the lease's end: the store that
	// wrote it proposes at the deadline, and the others take over if it
	// died. Zero means 2s.
	LeaseTakeover time.Duration
}

// Lock order. These are every mutex of a Store and its parts, in the order
// they are taken: a goroutine that holds one takes only locks later in the
// list, and each may be taken with none held.
//
//  1. Store.commitMu: the commit pipeline. Held by the committer for a whole
//     commit, and by a Replicated log's applier (applyRecords) for a batch
//     of records. Log.Append and Log.Close run under it, and so take the
//     file log's locks (7, 8) after it; so does Publisher.Publish (bus.Hub
//     takes its own lock after commitMu).
//  2. Store.qmu (idle waits on it): the submit queue. The committer takes
//     it under commitMu to take the queue; submitters, Close and propose
//     take it alone. Nothing is taken under it.
//  3. Store.recMu: orders the applied state and rev against View, and
//     guards recorders. Taken under commitMu to apply, alone by View.
//  4. shard.mu, each shard's RWMutex: write-locked under recMu (install,
//     applyUnit, setQuietly), read-locked alone (Get, Len, View's copy).
//     Only applyUnit holds several, taken in ascending shard order. Nothing
//     is taken under a shard lock, and the committer, the only writer,
//     reads the tables without them (currentForCommit).
//  5. lessor.mu: the leases. Under recMu (install, View's leases, a
//     Replicated grant or restore), under commitMu alone (a lease request
//     being committed), or alone (KeepAlive, the expiry loop). Never held
//     with a shard lock: the lease index is updated after the shards are
//     unlocked (moveLeaseKey). Nothing is taken under it.
//  6. Store.waitMu (Replicated log only): the waiting Submits. Under
//     commitMu (the applier answers them) or alone (propose). Nothing is
//     taken under it.
//  7. FileLog.mu: its segments and snapshot revision. Under commitMu
//     (Append starting a segment) or alone (the snapshot goroutine,
//     SnapshotRev). Nothing is taken under it.
//  8. stateFile.mu, the file log's STATE: under commitMu (Append, Close)
//     or alone (the state loop). Nothing is taken under it.
//
// Besides locks, two waits: Store.Close holds commitMu while FileLog.Close
// waits for the log's goroutines, which take 3, 4, 5 and 7 (the snapshot)
// and 8 (the state loop) but never commitMu; and Store.Close closes a
// Replicated log, which waits for its applier, without holding commitMu,
// which the applier takes.

// Store is a sharded, revisioned key-value map with a single write pipeline:
// Submit queues a change; one submitter at a time, the committer, takes
// everything queued, decides each condition, gives each change the next
// revision, appends them to the log together (group commit), applies them in
// order and publishes them. Changes queued while a commit is under way make
// up the next batch.
type Store struct {
	seed   maphash.Seed
	shards []shard
	mask   uint64
	log    Log
	pub    Publisher

	// rev is the revision of the last applied change (with a Replicated
	// log, of the last record). It is written only by the committer, under
	// recMu.
	rev atomic.Int64

	// recMu orders the committer's updates of rev and the shards against
	// Snapshot, and guards recorders. (Lock order: above Store.)
	recMu     sync.Mutex
	recorders map[*recorder]struct{}

	// qmu guards queue, leading and closed. (Lock order: above Store.)
	qmu     sync.Mutex
	queue   []*request
	leading bool       // a submitter is the committer, or has been made it
	idle    *sync.Cond // on qmu: signalled when leading becomes false
	closed  bool

	requests sync.Pool // of *request, each with its done channel

	// commitMu is held by the committer. It guards the fields below and
	// the calls to log.
	commitMu sync.Mutex
	next     int64             // last assigned revision
	overlay  map[string]*Entry // a batch's not yet applied entries, nil = deleted
	spare    []*request        // the queue's next backing array
	changes  []Change
	entries  []*Entry

	// leaseOverlay holds the leases a batch grants (true) or ends (false)
	// until it is applied; guarded by commitMu.
	leaseOverlay map[int64]bool

	// lessor holds the leases (see lease.go); expiring bounds the
	// expiries proposed at once to a Replicated log.
	lessor   *lessor
	expiring chan struct{}

	// With a Replicated log (see replicated.go): repl is the log, reqID
	// the last request id given out, and waiters the Submits waiting for
	// their record, by request id, guarded by waitMu.
	repl         Replicated
	writeTimeout time.Duration
	reqID        atomic.Uint64
	waitMu       sync.Mutex
	waiters      map[uint64]chan outcome
}

type shard struct {
	// mu guards t.
	mu sync.RWMutex
	t  table
	_  [(64 - (unsafe.Sizeof(sync.RWMutex{})+unsafe.Sizeof(table{}))%64) % 64]byte // keep each shard's lock on its own cache line
}

// request is a queued change or transaction and, once committed, its
// outcome.
type request struct {
	c     Change
	txn   *Txn          // a transaction instead of c
	lease *leaseRequest // a lease operation instead of c
	res   *TxnResult    // its result
	rev   int64
	err   error
	lead  bool          // set when the request's submitter is made the committer
	done  chan struct{} // one token when rev and err are set, or lead is
}

// New returns a Store, with the state recovered from opts.Log if it is a
// Recoverer. Call Close to release its log.
func New(opts Options) *Store {
	n := opts.Shards
	if n <= 0 {
		n = 32
	}
	n = 1 << bits.Len(uint(n-1))
	s := &Store{
		seed:      maphash.MakeSeed(),
		shards:    make([]shard, n),
		mask:      uint64(n - 1),
		log:       opts.Log,
		pub:       opts.Publisher,
		recorders: make(map[*recorder]struct{}),
		overlay:   make(map[string]*Entry),

		leaseOverlay: make(map[int64]bool),
		lessor:       newLessor(cmpOr(opts.LeaseTakeover, defaultLeaseTakeover)),
		expiring:     make(chan struct{}, 64),
	}
	s.idle = sync.NewCond(&s.qmu)
	s.requests.New = func() any { return &request{done: make(chan struct{}, 1)} }
	if s.log == nil {
		s.log = memoryLog{}
	}
	for i := range s.shards {
		s.shards[i].t.seed = s.seed
	}
	if r, ok := s.log.(Recoverer); ok {
		s.load(r.Recover(func() *View { return s.View("") }))
	}
	if r := opts.Replicated; r != nil {
		if opts.Log != nil {
			panic("kv: Options with both a Log and a Replicated log")
		}
		s.repl, s.waiters = r, make(map[uint64]chan outcome)
		s.writeTimeout = opts.WriteTimeout
		if s.writeTimeout <= 0 {
			s.writeTimeout = defaultWriteTimeout
		}
		r.Start(s.applyRecords)
	}
	var health func() error
	var logged any = s.log
	if s.repl != nil {
		logged = s.repl
	}
	if h, ok := logged.(interface{ Err() error }); ok {
		health = h.Err
	}
	s.startLeases(health)
	return s
}

// defaultLeaseTakeover is Options.LeaseTakeover's default.
const defaultLeaseTakeover = 2 * time.Second

func cmpOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// load installs the state a log recovered into a new Store: the
// snapshot's entries, then the changes after it, applied and published as
// if just committed.
func (s *Store) load(rec Recovery) {
	ls := s.lessor
	ls.mu.Lock()
	if rec.Entries != nil {
		for i := range s.shards {
			s.shards[i].t.reserve(rec.Len / len(s.shards))
		}
		for e := range rec.Entries {
			h := maphash.String(s.seed, e.Key)
			s.shards[h&s.mask].t.set(h, &e)
			if e.Lease != 0 {
				// e.Key shares the recovery's buffers: the lessor keeps a copy.
				ls.moveKeyLocked(strings.Clone(e.Key), 0, e.Lease)
			}
		}
	}
	for _, l := range rec.Leases {
		ls.grantLocked(l.ID, l.TTL, 0, false)
	}
	ls.mu.Unlock()
	s.rev.Store(rec.Rev)
	s.next = rec.Rev
	for cs := rec.Changes; len(cs) > 0; {
		// Chunks end between revisions: a transaction is applied and
		// published whole.
		n := min(len(cs), 1024)
		for n < len(cs) && cs[n].Revision == cs[n-1].Revision {
			n++
		}
		s.replay(cs[:n])
		cs = cs[n:]
	}
}

// replay applies logged changes, whose conditions were decided when they
// were committed. A delete of a missing key, which a log never holds,
// would apply as nothing.
func (s *Store) replay(changes []Change) {
	entries := s.entries[:0]
	clear(s.overlay)
	for i := range changes {
		c := &changes[i]
		if isLeaseOp(c) {
			entries = append(entries, nil)
			continue
		}
		sameUnit := i > 0 && c.Revision == changes[i-1].Revision && !isLeaseOp(&changes[i-1])
		if c.Revision < s.next || c.Revision == s.next && !sameUnit {
			panic(fmt.Sprintf("kv: recovered revision %d after %d", c.Revision, s.next))
		}
		c.Cond = false
		e, _ := decide(s.currentForCommit(c.Key), *c, c.Revision)
		s.overlay[c.Key] = e
		s.next = c.Revision
		entries = append(entries, e)
	}
	s.apply(changes, entries)
	clear(entries)
	s.entries = entries[:0]
}

func (s *Store) shard(key string) *shard {
	return &s.shards[maphash.String(s.seed, key)&s.mask]
}

// setLocked sets key's entry to e, or removes it when e is nil, and
// returns the lease of the entry it replaced (0 for none). The caller
// holds sh.mu.
func (sh *shard) setLocked(key string, e *Entry) (oldLease int64) {
	h := maphash.String(sh.t.seed, key)
	if e != nil {
		return sh.t.set(h, e)
	}
	oldLease, _ = sh.t.del(h, key)
	return oldLease
}

// Get returns the entry for key. The entry is the caller's and stays the
// same however the key changes later; its Key and Value share the store's
// memory: do not modify them.
func (s *Store) Get(key string) (*Entry, bool) {
	e := new(Entry)
	if !s.lookup(key, e) {
		return nil, false
	}
	return e, true
}

// Lookup returns the entry for key, like Get, without allocating.
func (s *Store) Lookup(key string) (e Entry, ok bool) {
	ok = s.lookup(key, &e)
	return e, ok
}

func (s *Store) lookup(key string, e *Entry) bool {
	h := maphash.String(s.seed, key)
	sh := &s.shards[h&s.mask]
	sh.mu.RLock()
	ok := sh.t.get(h, key, e)
	sh.mu.RUnlock()
	return ok
}

// Rev returns the revision of the last applied change, 0 for a store that
// never had one. With a Replicated log it is the revision of the last
// record applied, whether or not that record changed anything.
func (s *Store) Rev() int64 { return s.rev.Load() }

// Len returns the number of keys.
func (s *Store) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		n += sh.t.n
		sh.mu.RUnlock()
	}
	return n
}

// MemoryStats describes the memory a Store's entries take.
type MemoryStats struct {
	// Keys is the number of keys.
	Keys int
	// SlabBytes is the capacity of the slabs that hold the entries.
	SlabBytes int64
	// LiveBytes is what the entries take in them: the rest is entries
	// replaced or deleted, not yet reclaimed, and room not yet filled.
	LiveBytes int64
	// IndexBytes is what the index that finds them takes.
	IndexBytes int64
}

// Memory returns the memory the entries take now.
func (s *Store) Memory() MemoryStats {
	var m MemoryStats
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		m.Keys += sh.t.n
		m.SlabBytes += sh.t.alloc
		m.LiveBytes += sh.t.live
		m.IndexBytes += int64(len(sh.t.slots)) * 8
		sh.mu.RUnlock()
	}
	return m
}

// Set stores value, which must be compact JSON text, under key and returns
// the change's revision. It blocks until the change is durable and applied.
func (s *Store) Set(ctx context.Context, key string, value []byte) (int64, error) {
	return s.Submit(ctx, Change{Op: OpSet, Key: key, Value: value})
}

// Delete removes key and returns the change's revision, or ErrNotFound.
// It blocks like Set.
func (s *Store) Delete(ctx context.Context, key string) (int64, error) {
	return s.Submit(ctx, Change{Op: OpDelete, Key: key})
}

// Submit sends c through the write pipeline and returns its revision once
// it is durable and applied. It returns ErrInvalidKey for a bad key,
// ErrNotFound for a delete of a missing key, a *ConflictError when c.Cond
// does not hold, and ErrUnavailable (wrapped) when the log fails or the
// store is closed. ctx is checked before c is queued; once queued, c is
// committed (a log's Append is bounded), so Submit never leaves a change
// whose fate it does not report.
//
// With a Replicated log, c is proposed to the shared log and Submit
// returns once this store applied it; its condition is decided then. If
// the log does not take c, or c is not applied here within
// Options.WriteTimeout, Submit returns ErrUnavailable (wrapped): c may
// then still be applied later.
func (s *Store) Submit(ctx context.Context, c Change) (int64, error) {
	if !ValidKey(c.Key) {
		return 0, ErrInvalidKey
	}
	switch c.Op {
	case OpSet:
		if c.Value == nil {
			return 0, fmt.Errorf("kv: set %q without a value", c.Key)
		}
		if c.Lease != 0 {
			if err := checkLeaseID(c.Lease); err != nil {
				return 0, err
			}
		}
	case OpDelete:
		c.Value, c.Lease = nil, 0
	default:
		return 0, fmt.Errorf("kv: unknown op %v", c.Op)
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	c.Revision, c.TTL, c.Reason = 0, 0, ReasonNone
	if s.repl != nil {
		if c.Lease != 0 && s.leaseExpiredHere(c.Lease) {
			// The log may not have ended it yet, but this store says it
			// is gone, as it says to a keep-alive.
			return 0, ErrLeaseNotFound
		}
		return s.submitReplicated(ctx, c)
	}

	r := s.requests.Get().(*request)
	r.c = c
	rev, _, err := s.submitRequest(r)
	return rev, err
}

// Txn runs t through the write pipeline and returns its result once its
// changes, if any, are durable and applied. It returns an error wrapping
// ErrInvalidTxn for a transaction that Check refuses, and ErrUnavailable
// (wrapped) when the log fails or the store is closed; a transaction whose
// conditions fail is not an error (Else runs). The conditions are decided
// against the state the transaction applies to, like Change.Cond, and
// every change it makes gets one revision. ctx is checked before t is
// queued, as in Submit.
//
// With a Replicated log, t is proposed to the shared log as one record and
// decided when each store applies it; Txn returns once this store applied
// it, or ErrUnavailable (wrapped) as Submit does.
func (s *Store) Txn(ctx context.Context, t *Txn) (*TxnResult, error) {
	if err := t.Check(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s.repl != nil {
		return s.txnReplicated(ctx, t)
	}
	r := s.requests.Get().(*request)
	r.txn = t
	_, res, err := s.submitRequest(r)
	return res, err
}

// submitRequest queues r, a request from the pool that the caller filled in,
// and returns its outcome once it is committed; r is back in the pool
// then.
func (s *Store) submitRequest(r *request) (rev int64, res *TxnResult, err error) {
	if !s.enqueue(r) {
		return 0, nil, fmt.Errorf("%w: store closed", ErrUnavailable)
	}
	rev, res, err = r.rev, r.res, r.err
	*r = request{done: r.done}
	s.requests.Put(r)
	return rev, res, err
}

// enqueue queues r and returns once it is committed, with its outcome in
// r; false, and r back in the pool, if the store is closed.
func (s *Store) enqueue(r *request) bool {
	s.qmu.Lock()
	if s.closed {
		s.qmu.Unlock()
		*r = request{done: r.done}
		s.requests.Put(r)
		return false
	}
	s.queue = append(s.queue, r)
	follow := s.leading
	s.leading = true
	s.qmu.Unlock()

	// One submitter at a time is the committer: the first to find no
	// committer, or the one a committer hands over to. Followers wait for
	// the committer to answer them; changes queued during a commit (an
	// fsync) make up the next batch, committed by the first of them.
	if follow {
		<-r.done
	}
	if !follow || r.lead {
		s.lead(r)
	}
	return true
}

// lead commits the queue, own included, then hands over to the first
// submitter queued meanwhile, if any.
func (s *Store) lead(own *request) {
	s.commitMu.Lock()
	s.commitQueuedLocked(own)
	s.commitMu.Unlock()
	s.qmu.Lock()
	if len(s.queue) == 0 {
		s.leading = false
		s.idle.Broadcast()
		s.qmu.Unlock()
		return
	}
	next := s.queue[0]
	next.lead = true
	s.qmu.Unlock()
	next.done <- struct{}{}
}

// Close stops taking changes and closes the log. Changes already submitted
// are committed first.
func (s *Store) Close() error {
	s.stopLeases()
	s.qmu.Lock()
	already := s.closed
	s.closed = true
	for s.leading {
		s.idle.Wait()
	}
	s.qmu.Unlock()
	if already {
		return nil
	}
	if s.repl != nil {
		// The log's applier takes commitMu: close the log first.
		err := s.repl.Close()
		s.failWaiters(fmt.Errorf("%w: store closed", ErrUnavailable))
		return err
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	return s.log.Close()
}

// commitQueuedLocked commits whatever is queued, as one batch, and wakes
// the submitters of its changes but own's.
func (s *Store) commitQueuedLocked(own *request) {
	s.qmu.Lock()
	batch := s.queue
	if len(batch) > 0 {
		s.queue = s.spare[:0]
	}
	s.qmu.Unlock()
	if len(batch) == 0 {
		return
	}
	s.commit(batch)
	for _, r := range batch {
		if r != own {
			r.done <- struct{}{}
		}
	}
	clear(batch)
	s.spare = batch[:0]
}

// commit decides the conditions of a batch against the current state,
// logs the changes that pass, applies them and answers every request.
func (s *Store) commit(batch []*request) {
	changes, entries := s.changes[:0], s.entries[:0]
	clear(s.overlay)
	clear(s.leaseOverlay)
	start := s.next
	for _, r := range batch {
		if r.lease != nil {
			changes, entries = s.commitLease(r, changes, entries)
			continue
		}
		if r.txn != nil {
			n := len(changes)
			r.res, changes, entries, r.err = decideTxn(r.txn, s.currentForCommit, s.leaseLiveForCommit, s.next+1, changes, entries)
			if r.err != nil {
				continue
			}
			if len(changes) > n {
				s.next++
				for i := n; i < len(changes); i++ {
					s.overlay[changes[i].Key] = entries[i]
				}
			}
			r.res.Revision = s.next
			continue
		}
		if r.c.Lease != 0 && !s.leaseLiveForCommit(r.c.Lease) {
			r.err = ErrLeaseNotFound
			continue
		}
		cur := s.currentForCommit(r.c.Key)
		e, err := decide(cur, r.c, s.next+1)
		if err != nil {
			r.err = err
			continue
		}
		s.next++
		r.c.Revision, r.rev = s.next, s.next
		if len(batch) > 1 {
			// Only a later change of the same batch reads it.
			s.overlay[r.c.Key] = e
		}
		changes = append(changes, r.c)
		entries = append(entries, e)
	}
	if len(changes) > 0 {
		if err := s.log.Append(changes); err != nil {
			// Every request of the batch failed, also a transaction that
			// changed nothing: it was decided against changes that will
			// never be.
			s.next = start
			err = fmt.Errorf("%w: %v", ErrUnavailable, err)
			for _, r := range batch {
				if r.err == nil {
					r.rev, r.res, r.err = 0, nil, err
				}
			}
		} else {
			s.apply(changes, entries)
		}
	}
	clear(changes)
	clear(entries)
	s.changes, s.entries = changes[:0], entries[:0]
}

// currentForCommit returns the entry a change queued now would apply to.
// Only the committer calls it: it is the only writer of the shards, so it
// reads them without their locks.
func (s *Store) currentForCommit(key string) *Entry {
	if e, ok := s.overlay[key]; ok {
		return e
	}
	h := maphash.String(s.seed, key)
	e := new(Entry)
	if !s.shards[h&s.mask].t.get(h, key, e) {
		return nil
	}
	return e
}

// decide returns the entry that c, given revision rev, makes of cur: nil for
// a delete. It fails if c's condition does not hold or c deletes a missing
// key.
func decide(cur *Entry, c Change, rev int64) (*Entry, error) {
	if c.Cond {
		have := int64(0)
		if cur != nil {
			have = cur.Revision
		}
		if have != c.IfRevision {
			return nil, &ConflictError{Current: cur}
		}
	}
	if c.Op == OpDelete {
		if cur == nil {
			return nil, ErrNotFound
		}
		return nil, nil
	}
	e := &Entry{Key: c.Key, Value: c.Value, Revision: rev, CreateRevision: rev, Version: 1, Lease: c.Lease}
	if cur != nil {
		e.CreateRevision = cur.CreateRevision
		e.Version = cur.Version + 1
	}
	return e, nil
}

// apply makes logged changes visible, in order, and publishes them (but
// the changes of leases, which are not events).
func (s *Store) apply(changes []Change, entries []*Entry) {
	changes, entries, ops := splitLeaseOps(changes, entries)
	s.install(changes, entries, ops)
	if s.pub != nil && len(changes) > 0 {
		s.pub.Publish(changes)
	}
}

// install makes changes visible, in order, and applies ops, changes of
// leases. The changes of one revision (a transaction) become visible to
// Get all at once: install holds the locks of all their shards while it
// writes them.
func (s *Store) install(changes []Change, entries []*Entry, ops []Change) {
	s.recMu.Lock()
	if len(ops) > 0 {
		s.applyLeaseOpsLocked(ops, false)
	}
	if len(changes) == 0 {
		s.recMu.Unlock()
		return
	}
	for i := 0; i < len(changes); {
		n := 1
		for i+n < len(changes) && changes[i+n].Revision == changes[i].Revision {
			n++
		}
		if n == 1 {
			sh := s.shard(changes[i].Key)
			sh.mu.Lock()
			old := sh.setLocked(changes[i].Key, entries[i])
			sh.mu.Unlock()
			s.moveLeaseKey(changes[i].Key, old, entries[i])
		} else {
			s.applyUnit(changes[i:i+n], entries[i:i+n])
		}
		i += n
	}
	s.rev.Store(changes[len(changes)-1].Revision)
	for rec := range s.recorders {
		rec.record(changes, entries)
	}
	s.recMu.Unlock()
}

// moveLeaseKey records in the lessor's index that key, whose entry was
// attached to lease old, now has entry e (nil: deleted). The caller holds
// recMu.
func (s *Store) moveLeaseKey(key string, old int64, e *Entry) {
	var to int64
	if e != nil {
		to = e.Lease
	}
	if old == to {
		return
	}
	s.lessor.mu.Lock()
	s.lessor.moveKeyLocked(key, old, to)
	s.lessor.mu.Unlock()
}

// applyUnit applies the changes of one revision under the locks of all
// their shards, taken in shard order (readers take one shard's lock at a
// time, and the committer is the only writer): a reader that sees one of
// them sees every other one too.
func (s *Store) applyUnit(changes []Change, entries []*Entry) {
	var buf [16]int
	idx := buf[:0]
	for i := range changes {
		idx = append(idx, int(maphash.String(s.seed, changes[i].Key)&s.mask))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, j := range idx {
		s.shards[j].mu.Lock()
	}
	var olds [16]int64
	old := olds[:0]
	for i := range changes {
		old = append(old, s.shard(changes[i].Key).setLocked(changes[i].Key, entries[i]))
	}
	for _, j := range idx {
		s.shards[j].mu.Unlock()
	}
	for i := range changes {
		s.moveLeaseKey(changes[i].Key, old[i], entries[i])
	}
}

// A recorder collects the changes applied while a Snapshot scans the shards.
type recorder struct {
	prefix string
	final  map[string]*Entry // key -> entry after its last change, nil = deleted
}

func (r *recorder) record(changes []Change, entries []*Entry) {
	for i := range changes {
		if strings.HasPrefix(changes[i].Key, r.prefix) {
			if r.final == nil {
				r.final = make(map[string]*Entry)
			}
			r.final[changes[i].Key] = entries[i]
		}
	}
}

// Snapshot returns the entries whose keys start with prefix, sorted by key,
// and the revision they are consistent with: they hold exactly the changes
// up to and including that revision. Writers are never blocked for longer
// than one shard takes to copy. It makes an Entry for every key: View
// gives the same without.
func (s *Store) Snapshot(prefix string) ([]*Entry, int64) {
	v := s.View(prefix)
	return v.Entries(), v.Rev()
}

// SnapshotLeases returns every entry, like Snapshot(""), and every lease
// at the same revision, sorted by ID, with its ID and TTL (expired ones
// too: their keys are not deleted yet). View("") gives the same without an
// Entry per key.
func (s *Store) SnapshotLeases() ([]*Entry, []Lease, int64) {
	v := s.View("")
	return v.Entries(), v.Leases(), v.Rev()
}

// memoryLog is the Log that keeps nothing.
type memoryLog struct{}

func (memoryLog) Append([]Change) error { return nil }
func (memoryLog) Close() error          { return nil }
