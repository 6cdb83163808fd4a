package bus

import (
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kvsdb/kvs/kv"
)

// seedEntries returns n entries of a backup at revision 3n, sorted by key.
func seedEntries(n int) []*kv.Entry {
	es := make([]*kv.Entry, n)
	for i := range es {
		es[i] = &kv.Entry{
			Key:            fmt.Sprintf("k%03d", i),
			Value:          fmt.Appendf(nil, `{"i":%d}`, i),
			Revision:       int64(3*i + 3),
			CreateRevision: int64(3*i + 1),
			Version:        int64(i%3 + 1),
		}
	}
	return es
}

func entriesOf(es []*kv.Entry) iter.Seq2[*kv.Entry, error] {
	return func(yield func(*kv.Entry, error) bool) {
		for _, e := range es {
			if !yield(e, nil) {
				return
			}
		}
	}
}

func entryMap(es []*kv.Entry) map[string]kv.Entry {
	m := make(map[string]kv.Entry, len(es))
	for _, e := range es {
		m[e.Key] = *e
	}
	return m
}

// TestKafkaSeed seeds a topic from a backup and checks that every replica
// of it holds the backup's entries exactly, continues the revisions after
// the seed, refuses subscriptions from before it, and still does after the
// topic is compacted.
func TestKafkaSeed(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-seeded"
	es := seedEntries(300)
	const at = 1000000900 // the backup's revision, 900, and a bump
	opts := KafkaOptions{Brokers: c.ListenAddrs(), Topic: topic, MaxBatchBytes: 4 << 10}
	rev, err := Seed(t.Context(), opts, at, nil, int64(len(es)), entriesOf(es))
	if err != nil {
		t.Fatal(err)
	}
	if want := int64(at + len(es)); rev != want {
		t.Fatalf("Seed returned %d, want %d", rev, want)
	}
	if _, err := Seed(t.Context(), opts, at, nil, int64(len(es)), entriesOf(es)); !errors.Is(err, ErrTopicNotEmpty) {
		t.Fatalf("seeding the topic again: got %v, want ErrTopicNotEmpty", err)
	}

	a, b := newReplica(t, c, topic), newReplica(t, c, topic)
	for _, r := range []*replica{a, b} {
		if d := diff(entryMap(es), state(r.s)); d != "" {
			t.Fatalf("the seeded store differs from the backup:\n%s", d)
		}
		if got := r.s.Rev(); got != rev {
			t.Fatalf("revision: got %d, want %d", got, rev)
		}
		var ce *kv.CompactedError
		if _, err := r.hub.Subscribe(Filter{}, rev); !errors.As(err, &ce) || ce.Oldest != rev+1 {
			t.Fatalf("subscribe from %d: got %v, want a *kv.CompactedError with oldest %d", rev, err, rev+1)
		}
	}
	sub, err := a.hub.Subscribe(Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if got := set(t, b, "k001", `"new"`); got != rev+1 {
		t.Fatalf("the first write: revision %d, want %d", got, rev+1)
	}
	ev := <-sub.C()
	if ev.Key != "k001" || ev.Revision != rev+1 {
		t.Fatalf("the first event: %+v, want k001 at %d", ev.Change, rev+1)
	}
	set(t, a, "fresh", `1`)
	a.s.Delete(t.Context(), "k002")
	settled(t, topic, c, a, b)
	e, _ := a.s.Get("k001")
	if e.CreateRevision != es[1].CreateRevision || e.Version != es[1].Version+1 {
		t.Fatalf("k001 after a set: %+v, want create revision %d and version %d", e, es[1].CreateRevision, es[1].Version+1)
	}
	if d := diff(state(a.s), state(b.s)); d != "" {
		t.Fatalf("A and B differ:\n%s", d)
	}

	// Compaction removes the seed records that later changes superseded;
	// a replica that replays what is left reaches the same state.
	for i := range 50 {
		set(t, a, fmt.Sprintf("k%03d", i), `"again"`)
	}
	set(t, a, "after", `1`)
	c.Compact()
	set(t, a, "after", `2`)
	settled(t, topic, c, a, b)
	fresh := newReplica(t, c, topic)
	settled(t, topic, c, a, b, fresh)
	if fresh.gaps.Load() < 2 {
		t.Fatal("the replica that replayed after compaction saw no gap: the topic was not compacted")
	}
	if d := diff(state(a.s), state(fresh.s)); d != "" {
		t.Fatalf("the replica that replayed the compacted topic differs:\n%s", d)
	}
	if got, want := fresh.s.Rev(), a.s.Rev(); got != want {
		t.Fatalf("revision after replay: got %d, want %d", got, want)
	}
}

// TestKafkaSeedUnfinished checks that replicas of a topic whose seed is
// not all there yet refuse writes and say why, and take them once it is.
func TestKafkaSeedUnfinished(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-seeding"
	es := seedEntries(10)
	// What a seeding kvsd that stopped half-way leaves: the seed record,
	// which announces 10 records, and 4 of them. Seed the whole backup
	// into another topic, and copy its first five records here.
	mk, err := NewKafka(KafkaOptions{Brokers: c.ListenAddrs(), Topic: topic})
	if err != nil {
		t.Fatal(err)
	}
	err = mk.createTopic(t.Context())
	mk.Close()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Seed(t.Context(), KafkaOptions{Brokers: c.ListenAddrs(), Topic: "kvs-source"}, 100, nil, 10, entriesOf(es)); err != nil {
		t.Fatal(err)
	}
	source := fetchAll(t, c, "kvs-source")
	if len(source) != 11 {
		t.Fatalf("the seeded topic holds %d records, want 11", len(source))
	}
	produce(t, c, topic, source[:5]...)

	r := &replica{hub: New(Options{})}
	k, err := NewKafka(KafkaOptions{Brokers: c.ListenAddrs(), Topic: topic, FetchWait: 50 * time.Millisecond, OnGap: r.hub.Forget})
	if err != nil {
		t.Fatal(err)
	}
	r.k, r.s = k, kv.New(kv.Options{Replicated: k, Publisher: r.hub, WriteTimeout: time.Second})
	t.Cleanup(func() { r.s.Close() })
	waitFor(t, "the four records applied", func() bool { return len(state(r.s)) == 4 })
	if err := k.Err(); err == nil || !strings.Contains(err.Error(), "being seeded from a backup: at offset 5 of 11") {
		t.Fatalf("Err: got %v, want being seeded at offset 5 of 11", err)
	}
	if _, err := r.s.Set(t.Context(), "x", []byte(`1`)); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("a write during the seed: got %v, want ErrUnavailable", err)
	}
	produce(t, c, topic, source[5:]...)
	waitFor(t, "ready", func() bool { return k.Err() == nil })
	if d := diff(entryMap(es), state(r.s)); d != "" {
		t.Fatalf("the seeded store differs from the backup:\n%s", d)
	}
	if got := set(t, r, "x", `1`); got != 111 {
		t.Fatalf("the first write: revision %d, want 111", got)
	}
}

// fetchAll returns every record of topic, ready to be produced again.
func fetchAll(t *testing.T, c *kfake.Cluster, topic string) []kafka.Record {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...)}
	var out []kafka.Record
	for {
		res, err := cl.Fetch(t.Context(), &kafka.FetchRequest{Topic: topic, Offset: int64(len(out)), MinBytes: 1, MaxBytes: 1 << 20, MaxWait: 100 * time.Millisecond})
		if err == nil {
			err = res.Error
		}
		if err != nil {
			t.Fatal(err)
		}
		n := len(out)
		for {
			m, err := res.Records.ReadRecord()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			key, _ := kafka.ReadAll(m.Key)
			value, _ := kafka.ReadAll(m.Value)
			out = append(out, kafka.Record{Key: kafka.NewBytes(key), Value: kafka.NewBytes(value), Headers: m.Headers})
		}
		if len(out) == n || int64(len(out)) >= res.HighWatermark {
			return out
		}
	}
}

// TestKafkaSeedEmpty seeds a topic from the backup of an empty store: the
// replicas start at the seed's revision all the same.
func TestKafkaSeedEmpty(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-seeded-empty"
	rev, err := Seed(t.Context(), KafkaOptions{Brokers: c.ListenAddrs(), Topic: topic}, 500, nil, 0, entriesOf(nil))
	if err != nil || rev != 500 {
		t.Fatalf("Seed: %d, %v; want 500", rev, err)
	}
	r := newReplica(t, c, topic)
	if got := r.s.Rev(); got != 500 {
		t.Fatalf("revision: got %d, want 500", got)
	}
	var ce *kv.CompactedError
	if _, err := r.hub.Subscribe(Filter{}, 500); !errors.As(err, &ce) {
		t.Fatalf("subscribe from 500: got %v, want a *kv.CompactedError", err)
	}
	sub, err := r.hub.Subscribe(Filter{}, 501)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if got := set(t, r, "a", `1`); got != 501 {
		t.Fatalf("the first write: revision %d, want 501", got)
	}
	if ev := <-sub.C(); ev.Revision != 501 {
		t.Fatalf("the first event at %d, want 501", ev.Revision)
	}
}

// TestKafkaSeedLeases seeds a topic from a backup with leases: every
// replica holds them, with the keys that name them and their whole TTL
// (a restore renews every lease, as a restart does), and a revocation
// deletes their keys everywhere.
func TestKafkaSeedLeases(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-seeded-leases"
	es := seedEntries(10)
	for i, e := range es {
		e.Lease = int64(7 + i%2) // leases 7 and 8
	}
	leases := []kv.Lease{{ID: 7, TTL: time.Hour}, {ID: 8, TTL: 30 * time.Minute}}
	rev, err := Seed(t.Context(), KafkaOptions{Brokers: c.ListenAddrs(), Topic: topic}, 100, leases, int64(len(es)), entriesOf(es))
	if err != nil || rev != 100+2+10 {
		t.Fatalf("Seed: %d, %v, want revision %d", rev, err, 112)
	}
	a, b := newReplica(t, c, topic), newReplica(t, c, topic)
	for _, r := range []*replica{a, b} {
		if got := r.s.Rev(); got != rev {
			t.Fatalf("revision: got %d, want %d", got, rev)
		}
		l, err := r.s.TimeToLive(7, true)
		if err != nil || len(l.Keys) != 5 || l.TTL != time.Hour || l.Remaining < 59*time.Minute {
			t.Fatalf("lease 7: %+v, %v", l, err)
		}
		if e, _ := r.s.Get(es[1].Key); e.Lease != 8 {
			t.Fatalf("%s: lease %d, want 8", es[1].Key, e.Lease)
		}
	}
	if _, err := a.s.Revoke(t.Context(), 8); err != nil {
		t.Fatal(err)
	}
	settled(t, topic, c, a, b)
	for _, r := range []*replica{a, b} {
		if r.s.Len() != 5 || len(r.s.Leases()) != 1 {
			t.Fatalf("after revoking lease 8: %d keys, %d leases, want 5 and 1", r.s.Len(), len(r.s.Leases()))
		}
	}
}
