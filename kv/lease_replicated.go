package kv

import (
	"context"
	"errors"
	"time"
)

// Leases with a Replicated log: every grant, keep-alive and end is a
// record (see Record.LeaseOp), decided by each store when it applies it.

// leaseExists reports whether lease id exists in the log's state (expired
// or not: only a record ends a lease). Only the applier calls it.
func (s *Store) leaseExists(id int64) bool {
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	_, ok := ls.leases[id]
	return ok
}

// leaseExpiredHere reports whether this store holds lease id and counts it
// expired: the log has not ended it yet, but it is gone for the calls made
// here. A lease this store does not hold may be one it has not applied the
// grant of yet: the log decides.
func (s *Store) leaseExpiredHere(id int64) bool {
	ls := s.lessor
	ls.mu.Lock()
	defer ls.mu.Unlock()
	l := ls.leases[id]
	return l != nil && l.deadline <= ls.now()
}

// grantReplicated proposes the grant of a lease, choosing a free ID when
// id is 0 (again if another store took it meanwhile).
func (s *Store) grantReplicated(ctx context.Context, id int64, ttl time.Duration) (Lease, error) {
	for range 8 {
		want := id
		if want == 0 {
			want = newLeaseID(s.leaseExists)
		} else if s.leaseExists(want) {
			return Lease{}, ErrLeaseExists
		}
		o := s.propose(ctx, Record{LeaseOp: &LeaseOp{Kind: LeaseGrant, ID: want, TTL: ttl}})
		if errors.Is(o.err, ErrLeaseExists) && id == 0 {
			continue
		}
		if o.err != nil {
			return Lease{}, o.err
		}
		return o.leases[0], nil
	}
	return Lease{}, ErrLeaseExists
}

// keepAliveReplicated proposes a keep-alive of the leases of ids that have
// not expired here, and returns their renewals once this store applied it.
func (s *Store) keepAliveReplicated(ctx context.Context, ids []int64) ([]Lease, error) {
	out := make([]Lease, len(ids))
	var live []int64
	for i, id := range ids {
		out[i].ID = id
		if !s.leaseExpiredHere(id) {
			live = append(live, id)
		}
	}
	if len(live) == 0 {
		return out, nil
	}
	o := s.propose(ctx, Record{LeaseOp: &LeaseOp{Kind: LeaseKeepAlive, IDs: live}})
	if o.err != nil {
		return nil, o.err
	}
	renewed := make(map[int64]Lease, len(o.leases))
	for _, l := range o.leases {
		if l.TTL > 0 {
			renewed[l.ID] = l
		}
	}
	for i := range out {
		if l, ok := renewed[out[i].ID]; ok {
			out[i] = l
		}
	}
	return out, nil
}

// applyLease applies the lease record r and returns its outcome and the
// restores it calls for. Only the applier calls it, with nothing pending
// to apply.
func (s *Store) applyLease(r *Record) (outcome, []Restore) {
	switch r.LeaseOp.Kind {
	case LeaseGrant:
		return s.applyGrant(r)
	case LeaseKeepAlive:
		return s.applyKeepAlive(r)
	case LeaseRevoke, LeaseExpire:
		return s.applyLeaseEnd(r)
	case LeaseRestore:
		return s.applyLeaseRestore(r)
	}
	return outcome{rev: r.Revision}, nil
}

// applyGrant applies the grant r, a lease record.
func (s *Store) applyGrant(r *Record) (outcome, []Restore) {
	op := r.LeaseOp
	ls := s.lessor
	s.recMu.Lock()
	ls.mu.Lock()
	l := ls.leases[op.ID]
	switch {
	case l == nil:
		ls.grantLocked(op.ID, op.TTL, r.Revision, r.Ours)
	case r.Isolated:
		// The lease as the grant claims it, which what follows repairs.
		l.ttl, l.renewRev, l.holder = op.TTL, r.Revision, r.Ours
		l.deadline = max(l.deadline, ls.now()+op.TTL)
	}
	ls.mu.Unlock()
	s.recMu.Unlock()
	if l != nil && !r.Isolated {
		var rs []Restore
		if l.ttl != op.TTL {
			rs = append(rs, Restore{After: r.Revision, Lease: op.ID, LeaseTTL: l.ttl, Ours: r.Ours})
		}
		return outcome{err: ErrLeaseExists}, rs
	}
	return outcome{rev: r.Revision, leases: []Lease{{ID: op.ID, TTL: op.TTL, Remaining: op.TTL}}}, nil
}

// applyKeepAlive applies the keep-alive r, a lease record.
func (s *Store) applyKeepAlive(r *Record) (outcome, []Restore) {
	op := r.LeaseOp
	ls := s.lessor
	out := make([]Lease, len(op.IDs))
	ls.mu.Lock()
	now := ls.now()
	for i, id := range op.IDs {
		out[i].ID = id
		if l := ls.leases[id]; l != nil {
			l.deadline = max(l.deadline, now+l.ttl)
			l.renewRev, l.holder = r.Revision, r.Ours
			out[i] = l.info(now)
		}
	}
	ls.mu.Unlock()
	return outcome{rev: r.Revision, leases: out}, nil
}

// applyLeaseEnd applies r, a lease record that revokes or expires a lease:
// if it ends the lease, it deletes the lease's keys.
func (s *Store) applyLeaseEnd(r *Record) (outcome, []Restore) {
	op := r.LeaseOp
	ls := s.lessor
	ls.mu.Lock()
	l := ls.leases[op.ID]
	ends := l != nil && (op.Kind == LeaseRevoke || l.renewRev == op.Renewed)
	var ttl time.Duration
	if l != nil {
		ttl = l.ttl
	}
	ls.mu.Unlock()
	if r.Isolated {
		// Its claim: the lease is gone. Its keys stay until their
		// restores, which follow an end that held, delete them.
		s.recMu.Lock()
		s.applyLeaseOpsLocked([]Change{{Op: OpLeaseEnd, Lease: op.ID, Revision: r.Revision}}, false)
		s.recMu.Unlock()
		return outcome{rev: r.Revision}, nil
	}
	if !ends {
		var rs []Restore
		if l != nil {
			// The claim, the lease's absence, did not hold.
			rs = append(rs, Restore{After: r.Revision, Lease: op.ID, LeaseTTL: ttl, Ours: r.Ours})
		}
		if op.Kind == LeaseRevoke {
			return outcome{err: ErrLeaseNotFound}, rs
		}
		return outcome{rev: r.Revision}, rs
	}
	reason := ReasonRevoked
	if op.Kind == LeaseExpire {
		reason = ReasonExpired
	}
	ls.mu.Lock()
	keys := ls.keysLocked(op.ID)
	ls.mu.Unlock()
	changes := make([]Change, 0, 1+len(keys))
	entries := make([]*Entry, 0, 1+len(keys))
	changes = append(changes, Change{Op: OpLeaseEnd, Lease: op.ID, Reason: reason, Revision: r.Revision})
	entries = append(entries, nil)
	var rs []Restore
	for _, k := range keys {
		cur := s.currentForCommit(k)
		if cur == nil {
			continue
		}
		changes = append(changes, Change{Op: OpDelete, Key: k, Lease: op.ID, Reason: reason, Revision: r.Revision})
		entries = append(entries, nil)
		// A store that took this record's claim without deleting the
		// key holds it at this revision: the restore deletes it there.
		rs = append(rs, Restore{After: r.Revision, Of: cur.Revision, Key: k, Ours: r.Ours})
	}
	s.apply(changes, entries)
	return outcome{rev: r.Revision}, rs
}

// applyLeaseRestore applies r, the restore record of a lease.
func (s *Store) applyLeaseRestore(r *Record) (outcome, []Restore) {
	op := r.LeaseOp
	ls := s.lessor
	var rs []Restore
	s.recMu.Lock()
	ls.mu.Lock()
	l := ls.leases[op.ID]
	switch {
	case r.Isolated && op.TTL > 0 && l == nil:
		ls.grantLocked(op.ID, op.TTL, r.Revision, false)
	case r.Isolated && op.TTL > 0:
		l.ttl, l.renewRev = op.TTL, r.Revision
	case r.Isolated:
		ls.endLocked(op.ID)
	case l == nil && op.TTL > 0 || l != nil && l.ttl != op.TTL:
		// The lease changed between the record this restores and the
		// restore: restore the restore.
		var ttl time.Duration
		if l != nil {
			ttl = l.ttl
		}
		rs = append(rs, Restore{After: r.Revision, Lease: op.ID, LeaseTTL: ttl, Ours: r.Ours})
	}
	ls.mu.Unlock()
	s.recMu.Unlock()
	return outcome{rev: r.Revision}, rs
}
