package kv

import (
	"context"
	"fmt"
	"time"
)

// Replicated is a log that several stores share and that orders their
// changes itself, such as bus.Kafka; a Store takes it as
// Options.Replicated. With a Replicated log a Store does not log its own
// changes, and never appends: Submit proposes the change to the
// log, every store applies every record in log order, and Submit answers
// once this store applied its own record (read-your-writes). Conditions
// are decided when each store applies the record, against the same state
// on every store, so every store reaches the same verdict.
//
// A record's revision is its position in the log, so revisions are
// increasing but not consecutive: a record whose condition failed, a
// restore record, and a record removed by compaction each leave a number
// out.
type Replicated interface {
	// Propose hands r to the shared log (r.Revision is zero). It returns
	// once the log holds r durably, or an error if it may not: the record
	// may then still be applied later. Propose is called from many
	// goroutines at once, and must give up when ctx is done.
	Propose(ctx context.Context, r Record) error
	// Start is called once by New: from then on the log calls apply from
	// one goroutine, with every record of the log in log order, each with
	// its Revision set. apply returns the restores the log should write
	// (see Restore).
	Start(apply func(recs []Record) []Restore)
	// Close stops the log: once it returns, apply is not called again.
	// The Store calls it once, from Store.Close.
	Close() error
}

// Record is a change as a Replicated log carries it, with what the
// proposing store knew when it proposed the change.
//
// A log that compacts (Kafka's cleanup.policy=compact keeps only the last
// record of each key) can remove the records before a record of the same
// key. A store that replays such a log sees the record without its
// history, so every record also carries the entry it expects to make: its
// claim. When a store applies a record and the outcome is not what the
// record claims (a condition failed, or another change came in between),
// the log writes a restore record for the key right after it, holding the
// key's real entry. The last record of a key is then always one whose
// claim held, or a restore: self-contained either way.
//
// How the Kafka log writes each kind of record (change, restore,
// transaction, lease, seed), its headers and the rules a record must keep,
// is documented in one place: bus/kafka_record.go.
type Record struct {
	Change
	// Txn, when not nil, makes the record a transaction instead of a
	// change (Change is then zero): it is decided when each store applies
	// it, and its changes take the record's revision. A transaction
	// carries no claim: after it, the log writes a restore record for
	// every key that Txn.Then or Txn.Else writes (see Restore), so that
	// every such key's last record is self-contained again.
	Txn *Txn
	// LeaseOp, when not nil, makes the record a lease operation instead of
	// a change (Change is then zero), decided when each store applies it:
	// a grant if the ID is free, a keep-alive of the leases that exist, a
	// revocation, or an expiry if the lease's last renewal is the one it
	// names. The end of a lease deletes its keys at the record's revision;
	// like a transaction, it carries no claim for them: the log writes a
	// restore record of each key deleted (see Restore). A grant claims the
	// lease with its TTL, an end claims its absence; when that does not
	// hold, the log writes a restore of the lease. While a store replays a
	// log after compaction removed records, a lease record of a lease it
	// has seen no record of since is Isolated: the store takes its claim
	// (an end then deletes no key: the keys' restores do).
	LeaseOp *LeaseOp
	// Request identifies the change at the store that proposed it. The
	// log sets it, on the records it delivers, only for this store's own
	// records, and leaves it zero for records of other stores.
	Request uint64
	// Ours is set by the log on the records this store wrote.
	Ours bool
	// Version and CreateRevision are the claim of a set: the entry the
	// set makes if the key is, when the set is applied, as the proposer
	// saw it. CreateRevision zero means that the set creates the key (its
	// CreateRevision is the record's revision). Version zero means no
	// claim (a record written by another program): the record is applied
	// as decided and never restored.
	//
	// For a restore they describe the restored entry.
	Version        int64
	CreateRevision int64
	// IsRestore makes the record a restore: it holds the key's real entry
	// (Value, EntryRevision, CreateRevision and Version; an OpDelete when
	// the key is absent) after a record whose claim did not hold. A store
	// that took that claim holds the key at revision Restores (the claimed
	// entry's revision, 0 for a claimed absence): if its entry is at
	// Restores, or if it never saw the key (see Isolated), it takes the
	// restore's entry. For every other store a restore changes nothing. A
	// restore is never published, and has a claim too: the entry it holds.
	IsRestore     bool
	Restores      int64
	EntryRevision int64
	// Isolated is set by the log on a record that may have lost its
	// predecessors: records before it were removed by compaction, and the
	// log delivered no earlier record of the same key (transactions do not
	// count). When the record's outcome differs from its claim, the store
	// takes the claim, which is what the proposer saw happen; an isolated
	// restore is always taken.
	//
	// On a transaction, Isolated means that the log delivered no record of
	// some key the transaction tests or writes since records were removed:
	// the store applies it as decided but does not publish it, and the log
	// tells the feed that its revision cannot be delivered. The restores
	// that follow it repair what it changed.
	Isolated bool
}

// Restore is a restore record for the log to write: a record whose claim
// did not hold, and the entry its key has right after it. (Its wire format
// in the Kafka log: bus/kafka_record.go.)
type Restore struct {
	// After is the revision of the record whose claim did not hold.
	After int64
	// Of is the revision of the entry that record claimed (0 for an
	// absence): the revision at which a store that took the claim holds
	// the key.
	Of  int64
	Key string
	// Entry is the key's entry right after that record, nil if absent.
	Entry *Entry
	// Ours is true when this store wrote the record: it writes the
	// restore at once. Other stores write it only if none arrives in time
	// (the proposer died in between).
	Ours bool
	// Lease, when not 0, makes this a restore of that lease instead of a
	// key (Key is then empty): LeaseTTL is its TTL, 0 when it does not
	// exist.
	Lease    int64
	LeaseTTL time.Duration
}

// Record returns the restore record that carries r.
func (r Restore) Record() Record {
	if r.Lease != 0 {
		return Record{LeaseOp: &LeaseOp{Kind: LeaseRestore, ID: r.Lease, TTL: r.LeaseTTL}}
	}
	rec := Record{Change: Change{Op: OpDelete, Key: r.Key}, IsRestore: true, Restores: r.Of}
	if e := r.Entry; e != nil {
		rec.Op, rec.Value, rec.Change.Lease = OpSet, e.Value, e.Lease
		rec.EntryRevision, rec.CreateRevision, rec.Version = e.Revision, e.CreateRevision, e.Version
	}
	return rec
}

// outcome is a replicated change's answer, sent to the waiting Submit or
// Txn.
type outcome struct {
	rev    int64
	txn    *TxnResult
	leases []Lease
	err    error
}

// submitReplicated proposes c to the shared log and waits until this store
// applied it, for at most the write timeout.
func (s *Store) submitReplicated(ctx context.Context, c Change) (int64, error) {
	r := Record{Change: c}
	if c.Op == OpSet {
		r.Version = 1
		if cur, ok := s.Get(c.Key); ok {
			r.CreateRevision, r.Version = cur.CreateRevision, cur.Version+1
		}
	}
	o := s.propose(ctx, r)
	return o.rev, o.err
}

// txnReplicated proposes t to the shared log as one record and waits until
// this store applied it, for at most the write timeout.
func (s *Store) txnReplicated(ctx context.Context, t *Txn) (*TxnResult, error) {
	o := s.propose(ctx, Record{Txn: t})
	return o.txn, o.err
}

// propose hands r to the shared log, with a new request id, and waits
// until this store applied it, for at most the write timeout.
func (s *Store) propose(ctx context.Context, r Record) outcome {
	s.qmu.Lock()
	closed := s.closed
	s.qmu.Unlock()
	if closed {
		return outcome{err: fmt.Errorf("%w: store closed", ErrUnavailable)}
	}
	r.Request = s.reqID.Add(1)
	done := make(chan outcome, 1)
	s.waitMu.Lock()
	s.waiters[r.Request] = done
	s.waitMu.Unlock()
	defer func() {
		s.waitMu.Lock()
		delete(s.waiters, r.Request)
		s.waitMu.Unlock()
	}()

	wctx, cancel := context.WithTimeout(ctx, s.writeTimeout)
	defer cancel()
	if err := s.repl.Propose(wctx, r); err != nil {
		select {
		case o := <-done: // applied before its acknowledgement failed
			return o
		default:
		}
		if ctx.Err() != nil {
			return outcome{err: ctx.Err()}
		}
		return outcome{err: fmt.Errorf("%w: %v", ErrUnavailable, err)}
	}
	select {
	case o := <-done:
		return o
	case <-wctx.Done():
		if ctx.Err() != nil {
			return outcome{err: ctx.Err()}
		}
		return outcome{err: fmt.Errorf("%w: the change was logged but not applied here within %v", ErrUnavailable, s.writeTimeout)}
	}
}

// wake answers the waiting Submit of request id, if it still waits.
func (s *Store) wake(id uint64, o outcome) {
	s.waitMu.Lock()
	done, ok := s.waiters[id]
	delete(s.waiters, id)
	s.waitMu.Unlock()
	if ok {
		done <- o
	}
}

// failWaiters answers every waiting Submit with err.
func (s *Store) failWaiters(err error) {
	s.waitMu.Lock()
	defer s.waitMu.Unlock()
	for id, done := range s.waiters {
		done <- outcome{err: err}
		delete(s.waiters, id)
	}
}

// claimed returns the entry that r claims to make: nil for a delete, and
// ok false when r makes no claim.
func claimed(r *Record) (e *Entry, ok bool) {
	if r.Op == OpDelete {
		return nil, true
	}
	if r.Version == 0 {
		return nil, false
	}
	e = &Entry{Key: r.Key, Value: r.Value, Revision: r.Revision, CreateRevision: r.CreateRevision, Version: r.Version, Lease: r.Change.Lease}
	if r.IsRestore {
		e.Revision = r.EntryRevision
	} else if e.CreateRevision == 0 {
		e.CreateRevision = r.Revision
	}
	return e, true
}

// claimRev returns the revision of a claimed entry, 0 for an absence.
func claimRev(e *Entry) int64 {
	if e == nil {
		return 0
	}
	return e.Revision
}

// sameEntry reports whether a and b are the same entry, or both absent.
func sameEntry(a, b *Entry) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Revision == b.Revision && a.CreateRevision == b.CreateRevision &&
		a.Version == b.Version && a.Lease == b.Lease && string(a.Value) == string(b.Value)
}

// applyRecords is the apply function of a Replicated log: it decides and
// applies records in log order, publishes the applied changes, answers
// this store's waiting Submits, and returns the restores to write.
func (s *Store) applyRecords(recs []Record) []Restore {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	b := applyBatch{s: s, changes: s.changes[:0], entries: s.entries[:0]}
	clear(s.overlay)
	for i := range recs {
		r := &recs[i]
		if r.Revision <= s.next {
			panic(fmt.Sprintf("kv: replicated record at revision %d after %d", r.Revision, s.next))
		}
		s.next = r.Revision
		switch {
		case r.LeaseOp != nil:
			b.flush()
			o, rs := s.applyLease(r)
			b.restores = append(b.restores, rs...)
			b.answer(r, o)
		case r.Txn != nil:
			b.txn(r)
		case r.IsRestore:
			b.restore(r)
		default:
			b.change(r)
		}
	}
	b.flush()
	s.changes, s.entries = b.changes, b.entries
	// The store's revision is its position in the log, whether or not the
	// last records changed anything (a failed condition, a restore), so
	// that a listing's Kvs-Revision + 1 is where its feed goes on, past
	// any revisions compaction removed.
	if len(recs) > 0 {
		s.recMu.Lock()
		s.rev.Store(s.next)
		s.recMu.Unlock()
	}
	for _, w := range b.wakes {
		s.wake(w.id, w.o)
	}
	return b.restores
}

// applyBatch is what applyRecords gathers while it applies a batch of
// records: the changes decided but not yet applied, with the entries they
// make (s.overlay holds those by key, for the decisions that follow), the
// restores to ask for, and the answers to this store's waiting Submits.
type applyBatch struct {
	s        *Store
	changes  []Change
	entries  []*Entry
	restores []Restore
	wakes    []reply
}

// reply is the outcome of this store's record of request id, for its
// waiting Submit.
type reply struct {
	id uint64
	o  outcome
}

// flush applies and publishes the changes decided so far.
func (b *applyBatch) flush() {
	if len(b.changes) > 0 {
		b.s.apply(b.changes, b.entries)
	}
	b.reset()
}

// reset forgets the changes decided so far, which the caller applied.
func (b *applyBatch) reset() {
	clear(b.changes)
	clear(b.entries)
	b.changes, b.entries = b.changes[:0], b.entries[:0]
	clear(b.s.overlay)
}

// answer answers r's Submit with o once the batch is applied, if r is this
// store's.
func (b *applyBatch) answer(r *Record, o outcome) {
	if r.Request != 0 {
		b.wakes = append(b.wakes, reply{r.Request, o})
	}
}

// txn decides the transaction r and adds its changes to the batch.
func (b *applyBatch) txn(r *Record) {
	s := b.s
	n := len(b.changes)
	res, cs, es, err := decideTxn(r.Txn, s.currentForCommit, s.leaseExists, r.Revision, b.changes, b.entries)
	b.changes, b.entries = cs, es
	if err != nil {
		b.answer(r, outcome{err: err})
		return
	}
	for i := n; i < len(b.changes); i++ {
		s.overlay[b.changes[i].Key] = b.entries[i]
	}
	if r.Isolated && len(b.changes) > n {
		// Decided against a state that may lack compacted records:
		// applied, but not published (the log tells the feed).
		if n > 0 {
			s.apply(b.changes[:n], b.entries[:n])
		}
		s.install(b.changes[n:], b.entries[n:], nil)
		b.reset()
	}
	res.Revision = r.Revision
	// Every key either list writes gets a restore record with its
	// entry now: a store that replays the log after compaction
	// removed this record's predecessors may decide it otherwise,
	// and the restores, its keys' next records, repair that. (Such
	// a store asks for none: its entries may be wrong.)
	for _, key := range r.Txn.WriteKeys() {
		if r.Isolated {
			break
		}
		b.restores = append(b.restores, Restore{After: r.Revision, Of: r.Revision, Key: key, Entry: s.currentForCommit(key), Ours: r.Ours})
	}
	b.answer(r, outcome{rev: r.Revision, txn: res})
}

// restore applies the restore record r.
func (b *applyBatch) restore(r *Record) {
	s := b.s
	cur := s.currentForCommit(r.Key)
	claim, _ := claimed(r)
	// A restore changes a key whose state came from the restored
	// record's claim or from a transaction (Of is its revision),
	// or that this store has not seen a record of since records
	// were removed from the log.
	after := cur
	fix := cur != nil && cur.Revision == r.Restores || r.Isolated
	if fix && !sameEntry(cur, claim) {
		b.flush()
		s.setQuietly(r.Key, claim)
		after = claim
	}
	if !sameEntry(after, claim) {
		// The key changed between the record this restores and
		// the restore: restore the restore.
		b.restores = append(b.restores, Restore{After: r.Revision, Of: claimRev(claim), Key: r.Key, Entry: after, Ours: r.Ours})
	}
}

// change decides the change r and adds it to the batch.
func (b *applyBatch) change(r *Record) {
	s := b.s
	cur := s.currentForCommit(r.Key)
	claim, hasClaim := claimed(r)
	e, err := decide(cur, r.Change, r.Revision)
	if err == nil && r.Op == OpSet && r.Change.Lease != 0 && !s.leaseExists(r.Change.Lease) {
		e, err = nil, ErrLeaseNotFound
	}
	after := cur
	if err == nil {
		after = e
	}
	if hasClaim && !sameEntry(after, claim) {
		if r.Isolated {
			// The key's history may have been compacted away (a
			// transaction may have set it from a state this store
			// could not know): the claim is what the proposer saw
			// happen.
			e, err = claim, nil
			if e == nil && cur == nil {
				err = ErrNotFound
			}
		} else {
			b.restores = append(b.restores, Restore{After: r.Revision, Of: claimRev(claim), Key: r.Key, Entry: after, Ours: r.Ours})
		}
	}
	if err == nil {
		c := r.Change
		c.Cond, c.IfRevision = false, 0
		s.overlay[r.Key] = e
		b.changes = append(b.changes, c)
		b.entries = append(b.entries, e)
	}
	o := outcome{rev: r.Revision, err: err}
	if err != nil {
		o.rev = 0
	}
	b.answer(r, o)
}

// setQuietly sets key's entry to e (nil: removes it) without a revision of
// its own and without publishing: a restore repairs state that was wrong,
// it is not a change.
func (s *Store) setQuietly(key string, e *Entry) {
	s.recMu.Lock()
	sh := s.shard(key)
	sh.mu.Lock()
	old := sh.setLocked(key, e)
	sh.mu.Unlock()
	s.moveLeaseKey(key, old, e)
	c := []Change{{Key: key}}
	es := []*Entry{e}
	for rec := range s.recorders {
		rec.record(c, es)
	}
	s.recMu.Unlock()
}

// defaultWriteTimeout bounds a replicated Submit when Options.WriteTimeout
// is zero.
const defaultWriteTimeout = 10 * time.Second
