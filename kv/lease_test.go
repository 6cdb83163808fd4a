package kv_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvsdb/kvs/kv"
)

func grant(t *testing.T, s *kv.Store, ttl time.Duration) int64 {
	t.Helper()
	l, err := s.Grant(t.Context(), 0, ttl)
	if err != nil {
		t.Fatal(err)
	}
	if l.ID < 1 || l.ID > kv.MaxLeaseID || l.TTL != ttl {
		t.Fatalf("grant: got %+v", l)
	}
	return l.ID
}

func setLease(t *testing.T, s *kv.Store, key string, lease int64) int64 {
	t.Helper()
	rev, err := s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: key, Value: []byte(`1`), Lease: lease})
	if err != nil {
		t.Fatalf("set %s with lease %d: %v", key, lease, err)
	}
	return rev
}

// TestLeaseRevoke checks that a revocation deletes every key of the lease
// at one revision, published with ReasonRevoked, and nothing else; that
// the lease is then gone; and that keys set without the lease stay.
func TestLeaseRevoke(t *testing.T) {
	t.Parallel()
	pub := &recorder{}
	s := kv.New(kv.Options{Publisher: pub})
	defer s.Close()
	id := grant(t, s, time.Minute)
	other := grant(t, s, time.Minute)
	for _, k := range []string{"b", "a", "c"} {
		setLease(t, s, k, id)
	}
	setLease(t, s, "d", other)
	setLease(t, s, "e", 0)
	// A key set again without the lease is detached from it.
	setLease(t, s, "c", 0)
	if rev := s.Rev(); rev != 6 {
		t.Fatalf("revision after 6 sets: got %d (grants must take none)", rev)
	}
	l, err := s.TimeToLive(id, true)
	if err != nil || !slices.Equal(l.Keys, []string{"a", "b"}) || l.TTL != time.Minute || l.Remaining <= 0 || l.Remaining > time.Minute {
		t.Fatalf("TimeToLive: got %+v %v, want keys a, b", l, err)
	}
	if e, _ := s.Get("a"); e.Lease != id {
		t.Fatalf("entry a: got lease %d, want %d", e.Lease, id)
	}

	rev, err := s.Revoke(t.Context(), id)
	if err != nil || rev != 7 {
		t.Fatalf("revoke: got %d, %v, want revision 7", rev, err)
	}
	for k, want := range map[string]bool{"a": false, "b": false, "c": true, "d": true, "e": true} {
		if _, ok := s.Get(k); ok != want {
			t.Errorf("after revoke: key %s present %v, want %v", k, ok, want)
		}
	}
	var got []string
	for _, c := range pub.all() {
		if c.Revision == 7 {
			if c.Op != kv.OpDelete || c.Reason != kv.ReasonRevoked || c.Lease != id {
				t.Errorf("revoke's change: got %+v", c)
			}
			got = append(got, c.Key)
		}
		if c.Op != kv.OpSet && c.Op != kv.OpDelete {
			t.Errorf("published a change that is not of a key: %+v", c)
		}
	}
	if !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("revoke's deletes: got %v, want a, b", got)
	}
	if _, err := s.TimeToLive(id, false); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("TimeToLive after revoke: got %v, want ErrLeaseNotFound", err)
	}
	if _, err := s.Revoke(t.Context(), id); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("revoke again: got %v, want ErrLeaseNotFound", err)
	}
	if _, err := s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: "a", Value: []byte(`1`), Lease: id}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("set into the revoked lease: got %v, want ErrLeaseNotFound", err)
	}
	if ks, _ := s.KeepAlive(t.Context(), []int64{id, other}); ks[0].TTL != 0 || ks[1].TTL != time.Minute {
		t.Fatalf("keep-alive of the revoked lease and another: got %+v", ks)
	}
	// A lease without keys ends without a revision.
	empty := grant(t, s, time.Minute)
	if rev, err := s.Revoke(t.Context(), empty); err != nil || rev != 7 || s.Rev() != 7 {
		t.Fatalf("revoke of a lease without keys: got %d, %v, store at %d, want 7", rev, err, s.Rev())
	}
	if ls := s.Leases(); len(ls) != 1 || ls[0].ID != other {
		t.Fatalf("Leases: got %+v, want only %d", ls, other)
	}
}

// TestLeaseBadInput checks the refusals: TTLs out of range, an ID in use,
// a set into a lease that does not exist; and that they change nothing.
func TestLeaseBadInput(t *testing.T) {
	t.Parallel()
	s := kv.New(kv.Options{})
	defer s.Close()
	for _, ttl := range []time.Duration{0, -time.Second, time.Microsecond, 1500 * time.Microsecond} {
		if _, err := s.Grant(t.Context(), 0, ttl); !errors.Is(err, kv.ErrInvalidLease) {
			t.Errorf("grant with TTL %v: got %v, want ErrInvalidLease", ttl, err)
		}
	}
	for _, id := range []int64{-1, kv.MaxLeaseID + 1} {
		if _, err := s.Grant(t.Context(), id, time.Second); !errors.Is(err, kv.ErrInvalidLease) {
			t.Errorf("grant with ID %d: got %v, want ErrInvalidLease", id, err)
		}
	}
	if _, err := s.Grant(t.Context(), 42, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Grant(t.Context(), 42, time.Minute); !errors.Is(err, kv.ErrLeaseExists) {
		t.Fatalf("grant of an ID in use: got %v, want ErrLeaseExists", err)
	}
	if _, err := s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`1`), Lease: 43}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("set into an unknown lease: got %v", err)
	}
	if _, err := s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`1`), Lease: -5}); !errors.Is(err, kv.ErrInvalidLease) {
		t.Fatalf("set into lease -5: got %v", err)
	}
	txn := &kv.Txn{Then: []kv.TxnOp{{Op: kv.OpSet, Key: "a", Value: []byte(`1`)}, {Op: kv.OpSet, Key: "b", Value: []byte(`2`), Lease: 43}}}
	if _, err := s.Txn(t.Context(), txn); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("transaction with a set into an unknown lease: got %v", err)
	}
	if s.Rev() != 0 || s.Len() != 0 {
		t.Fatalf("refusals changed the store: revision %d, %d keys", s.Rev(), s.Len())
	}
	if ls := s.Leases(); len(ls) != 1 || ls[0].ID != 42 {
		t.Fatalf("Leases: got %+v, want lease 42 only", ls)
	}
	txn.Then[1].Lease = 42
	res, err := s.Txn(t.Context(), txn)
	if err != nil || !res.Succeeded || res.Revision != 1 {
		t.Fatalf("transaction into lease 42: got %+v, %v", res, err)
	}
	if l, _ := s.TimeToLive(42, true); !slices.Equal(l.Keys, []string{"b"}) {
		t.Fatalf("lease 42's keys: got %v, want b", l.Keys)
	}
}

// TestLeaseExpiry checks a lease's time: its keys are never deleted before
// its TTL has passed since the last keep-alive (measured from before the
// call), and are deleted, at one revision with ReasonExpired, within the
// TTL and a second after it. A lease without keys expires without a
// revision.
func TestLeaseExpiry(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	var (
		s         *kv.Store
		pub       *recorder
		id, empty int64
		last      time.Time
	)
	// Keep it alive for a while: every keep-alive acknowledged must hold.
	// A pause of the test longer than the TTL (a busy machine) lets the
	// lease expire as it should: then again, on a new store.
	for attempt := 0; ; attempt++ {
		pub = &recorder{}
		s = kv.New(kv.Options{Publisher: pub})
		defer s.Close()
		id = grant(t, s, ttl)
		empty = grant(t, s, ttl)
		for i := range 5 {
			setLease(t, s, fmt.Sprint("k", i), id)
		}
		if keptAlive(t, s, id, ttl, &last) {
			break
		}
		if attempt == 4 {
			t.Fatal("every attempt paused longer than the TTL between keep-alives")
		}
		t.Logf("attempt %d: a pause outran the TTL of %v; again", attempt, ttl)
	}
	var early time.Duration
	waitFor(t, "the keys to expire", func() bool {
		n, since := s.Len(), time.Since(last)
		switch {
		case n != 5 && since < ttl:
			early = since
		case n == 5 && since < ttl, n != 0 && since < ttl+time.Second:
			return false
		}
		return true
	})
	if early > 0 {
		t.Fatalf("keys deleted %v after the last keep-alive, before the TTL of %v", early, ttl)
	}
	if s.Len() != 0 {
		t.Fatalf("%d keys left %v after the last keep-alive, want none after TTL + 1s", s.Len(), time.Since(last))
	}
	var revs []int64
	for _, c := range pub.all() {
		if c.Op == kv.OpDelete {
			if c.Reason != kv.ReasonExpired || c.Lease != id {
				t.Errorf("expiry's delete: got %+v", c)
			}
			revs = append(revs, c.Revision)
		}
	}
	if len(revs) != 5 || slices.Min(revs) != 6 || slices.Max(revs) != 6 {
		t.Fatalf("expiry's deletes at revisions %v, want 5 at revision 6", revs)
	}
	waitFor(t, "the lease without keys to expire", func() bool { return len(s.Leases()) == 0 })
	if _, ok := s.LeaseRemaining(empty); ok || s.Rev() != 6 {
		t.Fatalf("lease without keys: remaining %v, store at revision %d, want gone and 6", ok, s.Rev())
	}
	if ls, _ := s.KeepAlive(t.Context(), []int64{id}); ls[0].TTL != 0 {
		t.Fatalf("keep-alive of an expired lease: got %+v, want not found", ls)
	}
}

// keptAlive renews lease id, which holds 5 keys, 10 times every third of
// its TTL, and fails t if a key is gone before the TTL has passed since the
// last acknowledged keep-alive (sent at *last). It returns false if the
// test paused so long that the lease expired rightly.
func keptAlive(t *testing.T, s *kv.Store, id int64, ttl time.Duration, last *time.Time) bool {
	t.Helper()
	for range 10 {
		sent := time.Now()
		ls, err := s.KeepAlive(t.Context(), []int64{id})
		if err != nil {
			t.Fatal(err)
		}
		if ls[0].TTL == 0 && time.Since(*last) >= ttl {
			return false
		}
		if ls[0].TTL != ttl || ls[0].Remaining != ttl {
			t.Fatalf("keep-alive %v after the last: got %+v", time.Since(*last), ls)
		}
		*last = sent
		time.Sleep(ttl / 3)
		n, since := s.Len(), time.Since(*last)
		if n != 5 && since < ttl {
			t.Fatalf("keys deleted %v after a keep-alive, before the TTL of %v", since, ttl)
		}
		if n != 5 {
			return false
		}
	}
	return true
}

// TestLeaseExpiredNotRenewed checks that a lease whose TTL has passed
// cannot be renewed, attached to or revoked, even before its keys are
// deleted: once kvsd says it expired, it has.
func TestLeaseExpiredNotRenewed(t *testing.T) {
	t.Parallel()
	s := kv.New(kv.Options{})
	defer s.Close()
	id := grant(t, s, time.Millisecond)
	time.Sleep(2 * time.Millisecond)
	if ls, _ := s.KeepAlive(t.Context(), []int64{id}); ls[0].TTL != 0 {
		t.Fatalf("keep-alive after the TTL: got %+v", ls)
	}
	if _, err := s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`1`), Lease: id}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("set into an expired lease: got %v", err)
	}
	if _, err := s.TimeToLive(id, false); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("TimeToLive of an expired lease: got %v", err)
	}
}

// TestLeaseRevokeRacesSets revokes leases while other writers set keys
// into them, so that sets and revocations share batches: afterwards no key
// may name a lease that does not exist.
func TestLeaseRevokeRacesSets(t *testing.T) {
	t.Parallel()
	s := kv.New(kv.Options{})
	defer s.Close()
	for round := range 50 {
		id := grant(t, s, time.Minute)
		var wg sync.WaitGroup
		for w := range 8 {
			wg.Go(func() {
				s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: fmt.Sprintf("r%d-w%d", round, w), Value: []byte(`1`), Lease: id})
			})
		}
		wg.Go(func() {
			if _, err := s.Revoke(t.Context(), id); err != nil {
				t.Errorf("revoke: %v", err)
			}
		})
		wg.Wait()
		entries, _ := s.Snapshot("")
		for _, e := range entries {
			if e.Lease == id {
				t.Fatalf("round %d: key %s is attached to revoked lease %d", round, e.Key, id)
			}
		}
	}
}

// TestLeaseBatchDeletesAtomically checks that a revocation's deletes
// become visible at once: a reader that sees one key gone never sees
// another of the lease's keys afterwards.
func TestLeaseBatchDeletesAtomically(t *testing.T) {
	t.Parallel()
	s := kv.New(kv.Options{Shards: 64})
	defer s.Close()
	for round := range 20 {
		id := grant(t, s, time.Minute)
		keys := make([]string, 32)
		for i := range keys {
			keys[i] = fmt.Sprintf("r%d-%d", round, i)
			setLease(t, s, keys[i], id)
		}
		done := make(chan struct{})
		go func() {
			defer close(done)
			s.Revoke(context.Background(), id)
		}()
		for gone := false; !gone; {
			select {
			case <-done:
				gone = true
			default:
			}
			missing := -1
			for i, k := range keys {
				_, ok := s.Get(k)
				if !ok && missing < 0 {
					missing = i
				}
				if ok && missing >= 0 {
					t.Fatalf("round %d: %s gone but %s still there", round, keys[missing], k)
				}
			}
		}
	}
}
