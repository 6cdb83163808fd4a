package bus

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kvsdb/kvs/kv"
)

func grantLease(t *testing.T, r *replica, ttl time.Duration) int64 {
	t.Helper()
	l, err := r.s.Grant(t.Context(), 0, ttl)
	if err != nil {
		t.Fatalf("grant: %v", err)
	}
	return l.ID
}

func setLease(t *testing.T, r *replica, key, value string, lease int64) int64 {
	t.Helper()
	rev, err := r.s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: key, Value: []byte(value), Lease: lease})
	if err != nil {
		t.Fatalf("set %s into lease %d: %v", key, lease, err)
	}
	return rev
}

// leaseHub makes hubs that encode each event as text with its lease and
// reason (which a replayed event has in its encoding only).
var leaseHub = Options{Encode: func(b []byte, c *kv.Change) []byte {
	return fmt.Appendf(b, "%d %v %s %s lease=%d %v", c.Revision, c.Op, c.Key, c.Value, c.Lease, c.Reason)
}}

// leaseReplica is a replica whose hub is a leaseHub.
func leaseReplica(t *testing.T, c *kfake.Cluster, topic string) *replica {
	t.Helper()
	return newReplicaHub(t, c, topic, leaseHub)
}

// leaseFeed returns every event a leaseReplica's hub retains from from on.
func leaseFeed(t *testing.T, r *replica, from int64) []string {
	t.Helper()
	sub, err := r.hub.Subscribe(Filter{}, from)
	if err != nil {
		t.Fatalf("subscribe from %d: %v", from, err)
	}
	defer sub.Close()
	var out []string
	for chunk := range sub.Replay() {
		for _, ev := range chunk {
			out = append(out, string(ev.Data))
			sub.Done(ev)
		}
	}
	return out
}

// leaseIDs returns the IDs of s's leases.
func leaseIDs(s *kv.Store) []int64 {
	var ids []int64
	for _, l := range s.Leases() {
		ids = append(ids, l.ID)
	}
	return ids
}

// TestKafkaLeases grants a lease on one instance, attaches keys to it on
// the other, keeps it alive on the first and revokes it on the second:
// both instances hold the same leases and keys throughout, and delete the
// keys at the same revision, with the same events.
func TestKafkaLeases(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-leases"
	a, b := leaseReplica(t, c, topic), leaseReplica(t, c, topic)
	ctx := t.Context()
	id := grantLease(t, a, time.Hour)
	other := grantLease(t, b, time.Hour)
	settled(t, topic, c, a, b)
	setLease(t, b, "x", `1`, id)
	setLease(t, a, "y", `2`, id)
	setLease(t, a, "z", `3`, other)
	res := txn(t, b, &kv.Txn{Then: []kv.TxnOp{{Op: kv.OpSet, Key: "w", Value: []byte(`4`), Lease: id}}})
	if _, err := a.s.Txn(ctx, &kv.Txn{Then: []kv.TxnOp{{Op: kv.OpSet, Key: "v", Value: []byte(`5`), Lease: 424242}}}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("transaction into an unknown lease: %v", err)
	}
	if _, err := a.s.Submit(ctx, kv.Change{Op: kv.OpSet, Key: "v", Value: []byte(`5`), Lease: 424242}); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("set into an unknown lease: %v", err)
	}
	ls, err := a.s.KeepAlive(ctx, []int64{id, 424242})
	if err != nil || ls[0].TTL != time.Hour || ls[1].TTL != 0 {
		t.Fatalf("keep-alive: %+v, %v", ls, err)
	}
	settled(t, topic, c, a, b)
	for _, r := range []*replica{a, b} {
		l, err := r.s.TimeToLive(id, true)
		if err != nil || !slices.Equal(l.Keys, []string{"w", "x", "y"}) {
			t.Fatalf("lease %d: %+v, %v", id, l, err)
		}
	}
	rev, err := b.s.Revoke(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if rev <= res.Revision {
		t.Fatalf("revoke at revision %d, after %d", rev, res.Revision)
	}
	if _, err := a.s.Revoke(ctx, 424242); !errors.Is(err, kv.ErrLeaseNotFound) {
		t.Fatalf("revoke of an unknown lease: %v", err)
	}
	settled(t, topic, c, a, b)
	if d := diff(state(a.s), state(b.s)); d != "" {
		t.Fatalf("A and B differ:\n%s", d)
	}
	for _, r := range []*replica{a, b} {
		if ids := leaseIDs(r.s); !slices.Equal(ids, []int64{other}) {
			t.Fatalf("leases: %v, want only %d", ids, other)
		}
		if _, ok := r.s.Get("z"); !ok {
			t.Fatal("z, of the other lease, is gone")
		}
	}
	fa, fb := leaseFeed(t, a, 1), leaseFeed(t, b, 1)
	if !slices.Equal(fa, fb) {
		t.Fatalf("feeds differ:\n%q\n%q", fa, fb)
	}
	want := []string{
		fmt.Sprintf("%d delete w  lease=%d revoked", rev, id),
		fmt.Sprintf("%d delete x  lease=%d revoked", rev, id),
		fmt.Sprintf("%d delete y  lease=%d revoked", rev, id),
	}
	if got := fa[len(fa)-3:]; !slices.Equal(got, want) {
		t.Fatalf("the revocation's events: %q, want %q", got, want)
	}
}

// TestKafkaLeaseExpiry lets a lease that one instance kept alive expire:
// both instances propose its end, it ends once, and both delete its keys
// at one revision, with Reason expired. A keep-alive to either instance
// counts, and no key is deleted before the TTL since the last one.
func TestKafkaLeaseExpiry(t *testing.T) {
	c := newCluster(t)
	const ttl = 800 * time.Millisecond
	var (
		topic string
		a, b  *replica
		id    int64
		last  time.Time
	)
	// A pause of the test longer than the TTL (a busy machine) lets the
	// lease expire as it should: then again, on a new topic.
	for attempt := 0; ; attempt++ {
		topic = fmt.Sprintf("kvs-lease-expiry-%d", attempt)
		a, b = leaseReplica(t, c, topic), leaseReplica(t, c, topic)
		id = grantLease(t, a, ttl)
		setLease(t, a, "k1", `1`, id)
		setLease(t, b, "k2", `2`, id)
		if kafkaKeptAlive(t, []*replica{a, b}, id, ttl, &last) {
			break
		}
		if attempt == 4 {
			t.Fatal("every attempt paused longer than the TTL between keep-alives")
		}
		t.Logf("attempt %d: a pause outran the TTL of %v; again", attempt, ttl)
	}
	waitFor(t, "the keys to expire everywhere", func() bool { return a.s.Len() == 0 && b.s.Len() == 0 })
	if since := time.Since(last); since < ttl {
		t.Fatalf("keys deleted %v after the last keep-alive, before the TTL of %v", since, ttl)
	}
	settled(t, topic, c, a, b)
	fa, fb := leaseFeed(t, a, 1), leaseFeed(t, b, 1)
	if !slices.Equal(fa, fb) {
		t.Fatalf("feeds differ:\n%q\n%q", fa, fb)
	}
	deletes := fa[2:]
	if len(deletes) != 2 || !strings.Contains(deletes[0], "expired") || !strings.Contains(deletes[1], "expired") ||
		strings.Fields(deletes[0])[0] != strings.Fields(deletes[1])[0] {
		t.Fatalf("the expiry's events: %q, want two deletes at one revision, expired", deletes)
	}
	if len(a.s.Leases())+len(b.s.Leases()) != 0 {
		t.Fatal("the lease outlived its keys")
	}
}

// kafkaKeptAlive renews lease id, which holds 2 keys, 8 times every third
// of its TTL, through each replica of rs in turn, and fails t if a replica
// lost a key before the TTL had passed since the last acknowledged
// keep-alive (sent at *last). It returns false if the test paused so long
// that the lease expired rightly.
func kafkaKeptAlive(t *testing.T, rs []*replica, id int64, ttl time.Duration, last *time.Time) bool {
	t.Helper()
	for i := range 8 {
		sent := time.Now()
		ls, err := rs[i%len(rs)].s.KeepAlive(t.Context(), []int64{id})
		if err != nil {
			t.Fatalf("keep-alive %d: %v", i, err)
		}
		if ls[0].TTL == 0 {
			if since := time.Since(*last); i > 0 && since < ttl {
				t.Fatalf("keep-alive %d: lease gone %v after the last, before the TTL of %v", i, since, ttl)
			}
			return false
		}
		*last = sent
		time.Sleep(ttl / 3)
		for _, r := range rs {
			n, since := r.s.Len(), time.Since(*last)
			if n != 2 && since < ttl {
				t.Fatalf("keys deleted %v after a keep-alive, before the TTL of %v", since, ttl)
			}
			if n != 2 {
				return false
			}
		}
	}
	return true
}

// TestKafkaLeaseRecordFormat reads the topic with a plain Kafka client: a
// grant and an end are records of the lease's own Kafka key, a keep-alive
// one of KeepAliveKey, and a set with a lease carries kvs-lease; after the
// end, each key it deleted gets a restore record (a tombstone).
func TestKafkaLeaseRecordFormat(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-lease-format"
	a := newReplica(t, c, topic)
	l, err := a.s.Grant(t.Context(), 7, 1500*time.Millisecond)
	if err != nil || l.ID != 7 {
		t.Fatalf("grant of lease 7: %+v, %v", l, err)
	}
	setLease(t, a, "k", `1`, 7)
	a.s.KeepAlive(t.Context(), []int64{7})
	a.s.Revoke(t.Context(), 7)
	settled(t, topic, c, a)
	got := readTopic(t, c, topic)
	want := []string{
		`0 "\x00kvs-lease/7" {"ID":7,"TTLMillis":1500} map[kvs-lease-op:grant kvs-request:1]`,
		`1 "k" 1 map[kvs-lease:7 kvs-request:2 kvs-version:1]`,
		`2 "\x00kvs-keepalive" {"IDs":[7]} map[kvs-lease-op:keepalive kvs-request:3]`,
		`3 "\x00kvs-lease/7"  map[kvs-lease-op:revoke kvs-request:4]`,
		`4 "k"  map[kvs-restores:2]`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("records:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// readTopic returns every record of topic as text: offset, key, value and
// headers but kvs-origin.
func readTopic(t *testing.T, c interface{ ListenAddrs() []string }, topic string) []string {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...)}
	fr, err := cl.Fetch(t.Context(), &kafka.FetchRequest{Topic: topic, Offset: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, err := fr.Records.ReadRecord()
		if err != nil {
			break
		}
		key, _ := kafka.ReadAll(m.Key)
		value, _ := kafka.ReadAll(m.Value)
		hs := map[string]string{}
		for _, h := range m.Headers {
			if h.Key != HeaderOrigin {
				hs[h.Key] = string(h.Value)
			}
		}
		got = append(got, fmt.Sprintf("%d %q %s %v", m.Offset, key, value, hs))
	}
	return got
}

// TestKafkaLeaseCompaction makes the lease records compaction could leave
// without their history (grants, keep-alives, revocations, expiries that
// held and that a keep-alive overtook, sets into leases, keys moved from
// one lease to another), compacts the topic, and checks that a replica that
// replays the compacted topic holds the same keys and leases.
func TestKafkaLeaseCompaction(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-lease-compaction"
	a, b := newReplica(t, c, topic), newReplica(t, c, topic)
	ctx := t.Context()

	kept := grantLease(t, a, time.Hour)
	revoked := grantLease(t, b, time.Hour)
	short := grantLease(t, a, 300*time.Millisecond)
	setLease(t, a, "kept1", `1`, kept)
	setLease(t, b, "kept2", `2`, kept)
	setLease(t, a, "revoked1", `3`, revoked)
	setLease(t, b, "moved", `4`, revoked)
	setLease(t, a, "moved", `5`, kept) // moved to another lease
	setLease(t, a, "short1", `6`, short)
	setLease(t, b, "detached", `7`, kept)
	set(t, b, "detached", `8`) // detached from its lease
	for range 5 {
		a.s.KeepAlive(ctx, []int64{kept, revoked})
	}
	if _, err := b.s.Revoke(ctx, revoked); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the short lease to expire", func() bool {
		_, ok := a.s.Get("short1")
		_, ok2 := b.s.Get("short1")
		return !ok && !ok2
	})
	// An expiry that a keep-alive overtook: the end, proposed for the
	// renewal before it, does not hold; the lease is restored after it.
	overtaken := grantLease(t, a, time.Hour)
	setLease(t, a, "overtaken1", `9`, overtaken)
	a.s.KeepAlive(ctx, []int64{overtaken})
	// Propose, as a late instance would, the end of an older renewal.
	proposeExpire(t, b, overtaken, 1)
	settled(t, topic, c, a, b)
	restored := false
	for _, r := range readTopic(t, c, topic) {
		restored = restored || strings.Contains(r, fmt.Sprintf(`"\x00kvs-lease/%d" {"ID":%d,"TTLMillis":3600000} map[kvs-lease-op:restore]`, overtaken, overtaken))
	}
	if !restored {
		t.Fatal("no restore of the lease after the expiry that did not hold")
	}
	want := state(a.s)
	if d := diff(want, state(b.s)); d != "" {
		t.Fatalf("A and B differ:\n%s", d)
	}
	if _, ok := want["overtaken1"]; !ok {
		t.Fatal("the overtaken expiry ended the lease")
	}
	wantLeases := leaseIDs(a.s)

	fresh, want := compactAndReplay(t, c, topic, a, b)
	if got := leaseIDs(fresh.s); !slices.Equal(got, wantLeases) {
		t.Fatalf("leases after replay: %v, want %v", got, wantLeases)
	}
	for k, e := range want {
		if g := state(fresh.s)[k]; g.Lease != e.Lease {
			t.Errorf("%s: lease %d after replay, want %d", k, g.Lease, e.Lease)
		}
	}
	// The replicas go on alike: a revocation on the fresh one deletes the
	// same keys everywhere.
	if _, err := fresh.s.Revoke(ctx, kept); err != nil {
		t.Fatal(err)
	}
	settled(t, topic, c, a, b, fresh)
	if d := diff(state(a.s), state(fresh.s)); d != "" {
		t.Fatalf("after a revocation on the fresh replica:\n%s", d)
	}
	if _, ok := a.s.Get("kept1"); ok {
		t.Fatal("kept1 outlived its lease")
	}
}

// proposeExpire proposes, from r, the end of lease id conditional on its
// renewal at revision renewed, as the expiry loop does.
func proposeExpire(t *testing.T, r *replica, id, renewed int64) {
	t.Helper()
	if err := r.k.Propose(t.Context(), kv.Record{LeaseOp: &kv.LeaseOp{Kind: kv.LeaseExpire, ID: id, Renewed: renewed}}); err != nil {
		t.Fatal(err)
	}
}

// FuzzKafkaLeaseDecode feeds lease records to the decoder: whatever it
// accepts must encode back to the same record.
func FuzzKafkaLeaseDecode(f *testing.F) {
	f.Add(LeaseKeyPrefix+"7", []byte(`{"ID":7,"TTLMillis":1500}`), false, "grant", "")
	f.Add(KeepAliveKey, []byte(`{"IDs":[7,8]}`), false, "keepalive", "")
	f.Add(LeaseKeyPrefix+"7", []byte(nil), true, "expire", "12")
	f.Add(LeaseKeyPrefix+"9", []byte(nil), true, "restore", "")
	f.Fuzz(func(t *testing.T, key string, value []byte, tombstone bool, op, renewed string) {
		if tombstone {
			value = nil
		}
		k := &Kafka{origin: "me"}
		h := []kafka.Header{{Key: HeaderOrigin, Value: []byte("me")}, {Key: HeaderLeaseOp, Value: []byte(op)}}
		if renewed != "" {
			h = append(h, kafka.Header{Key: HeaderLeaseRenewed, Value: []byte(renewed)})
		}
		r, err := k.decode(&kafka.Record{Key: kafka.NewBytes([]byte(key)), Value: kafka.NewBytes(value), Headers: h})
		if err != nil {
			return
		}
		if r.LeaseOp == nil {
			if !kv.ValidKey(r.Key) {
				t.Fatalf("decoded an invalid key %q", r.Key)
			}
			return
		}
		back, err := k.decode(ptr(k.encode(r)))
		if err != nil {
			t.Fatalf("decoding the encoding of %+v: %v", r.LeaseOp, err)
		}
		if fmt.Sprint(*back.LeaseOp) != fmt.Sprint(*r.LeaseOp) {
			t.Fatalf("round trip: got %+v, want %+v", *back.LeaseOp, *r.LeaseOp)
		}
	})
}
