package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/kvsdb/kvs/kv"
)

// These tests run stores in the test process on a kfake broker (see
// DESIGN.md, Testing), to reach what the end-to-end tests in cmd/kvsd
// cannot: compaction, and records written by other programs.

func newCluster(t *testing.T) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// replica is one store on the shared topic.
type replica struct {
	k    *Kafka
	s    *kv.Store
	hub  *Hub
	gaps atomic.Int64 // OnGap calls
}

func newReplica(t *testing.T, c *kfake.Cluster, topic string, more ...func(*KafkaOptions)) *replica {
	t.Helper()
	return newReplicaHub(t, c, topic, Options{}, more...)
}

// newReplicaHub is newReplica with a hub made with hopts.
func newReplicaHub(t *testing.T, c *kfake.Cluster, topic string, hopts Options, more ...func(*KafkaOptions)) *replica {
	t.Helper()
	r := &replica{hub: New(hopts)}
	opts := KafkaOptions{
		Brokers:      c.ListenAddrs(),
		Topic:        topic,
		RestoreAfter: 200 * time.Millisecond,
		FetchWait:    50 * time.Millisecond,
		OnGap: func(rev int64) {
			r.gaps.Add(1)
			r.hub.Forget(rev)
		},
	}
	for _, f := range more {
		f(&opts)
	}
	k, err := NewKafka(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.k = k
	r.s = kv.New(kv.Options{Replicated: k, Publisher: r.hub, WriteTimeout: 10 * time.Second})
	t.Cleanup(func() { r.s.Close() })
	waitFor(t, "ready", func() bool { return k.Err() == nil })
	return r
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// settled waits until every replica applied the whole topic and wrote
// every restore it owed.
func settled(t *testing.T, topic string, c *kfake.Cluster, rs ...*replica) {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...)}
	waitFor(t, "replicas to settle", func() bool {
		for _, r := range rs {
			r.k.pmu.Lock()
			n := len(r.k.pending)
			r.k.pmu.Unlock()
			if n > 0 {
				return false
			}
		}
		res, err := cl.ListOffsets(t.Context(), &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: {kafka.LastOffsetOf(0)}}})
		if err != nil {
			return false
		}
		hwm := res.Topics[topic][0].LastOffset
		for _, r := range rs {
			r.k.mu.Lock()
			next := r.k.next
			r.k.mu.Unlock()
			if next != hwm {
				return false
			}
		}
		return true
	})
}

func set(t *testing.T, r *replica, key, value string) int64 {
	t.Helper()
	rev, err := r.s.Set(t.Context(), key, []byte(value))
	if err != nil {
		t.Fatalf("set %s: %v", key, err)
	}
	return rev
}

// state returns every entry of s, by key.
func state(s *kv.Store) map[string]kv.Entry {
	es, _ := s.Snapshot("")
	m := make(map[string]kv.Entry, len(es))
	for _, e := range es {
		m[e.Key] = *e
	}
	return m
}

func diff(a, b map[string]kv.Entry) string {
	var out []string
	for k, ea := range a {
		eb, ok := b[k]
		if !ok || ea.Revision != eb.Revision || ea.CreateRevision != eb.CreateRevision || ea.Version != eb.Version || string(ea.Value) != string(eb.Value) {
			out = append(out, fmt.Sprintf("%s: %s@%d/%d/v%d vs %s@%d/%d/v%d", k, ea.Value, ea.Revision, ea.CreateRevision, ea.Version, eb.Value, eb.Revision, eb.CreateRevision, eb.Version))
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			out = append(out, k+": only in the second")
		}
	}
	return strings.Join(out, "\n")
}

// TestKafkaCompaction makes every kind of record that compaction could
// leave without its history (updates, conditional sets that won and that
// failed, conditional deletes that failed, deletes, races between two
// writers), compacts the topic, and checks that a replica that replays the
// compacted topic reaches the same state, entry metadata included.
func TestKafkaCompaction(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-compaction"
	a, b := newReplica(t, c, topic), newReplica(t, c, topic)
	ctx := t.Context()
	cond := func(r *replica, key, value string, ifRev int64) error {
		_, err := r.s.Submit(ctx, kv.Change{Op: kv.OpSet, Key: key, Value: []byte(value), Cond: true, IfRevision: ifRev})
		return err
	}

	// Updates: version 3, create revision of the first.
	set(t, a, "updated", `1`)
	set(t, b, "updated", `2`)
	r3 := set(t, a, "updated", `3`)
	// A conditional set that wins, on an existing key.
	if err := cond(b, "updated", `4`, r3); err != nil {
		t.Fatal(err)
	}
	// A conditional set that fails: its record is the key's last but for
	// the restore.
	set(t, a, "shadowed", `"real"`)
	if err := cond(b, "shadowed", `"rejected"`, 12345); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("conditional set: got %v, want a conflict", err)
	}
	// A conditional set on a missing key that fails.
	if err := cond(a, "absent", `"rejected"`, 7); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("conditional set: got %v, want a conflict", err)
	}
	// A conditional delete that fails.
	rk := set(t, b, "kept", `"kept"`)
	if _, err := b.s.Submit(ctx, kv.Change{Op: kv.OpDelete, Key: "kept", Cond: true, IfRevision: rk + 100}); !errors.Is(err, kv.ErrConflict) {
		t.Fatalf("conditional delete: got %v, want a conflict", err)
	}
	// A delete, and a key set again after a delete.
	set(t, a, "deleted", `1`)
	if _, err := a.s.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	set(t, a, "reborn", `1`)
	a.s.Delete(ctx, "reborn")
	set(t, b, "reborn", `2`)
	set(t, a, "reborn", `3`)
	// Races: unconditional sets from both replicas on one key, so that
	// claims made from a stale view need restores.
	var wg sync.WaitGroup
	for _, r := range []*replica{a, b} {
		wg.Go(func() {
			for i := range 50 {
				if _, err := r.s.Set(ctx, "raced", []byte(fmt.Sprint(i))); err != nil {
					t.Error(err)
				}
				if _, err := r.s.Submit(ctx, kv.Change{Op: kv.OpSet, Key: "cas", Value: []byte(fmt.Sprint(i)), Cond: true, IfRevision: 0}); err != nil && !errors.Is(err, kv.ErrConflict) {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	settled(t, topic, c, a, b)
	want := state(a.s)
	if d := diff(want, state(b.s)); d != "" {
		t.Fatalf("A and B differ:\n%s", d)
	}

	fresh, want := compactAndReplay(t, c, topic, a, b)
	if got, want := fresh.s.Rev(), a.s.Rev(); got != want {
		t.Fatalf("revision after replay: got %d, want %d", got, want)
	}
	// Its feed cannot deliver what was compacted away: 410, not a gap.
	var ce *kv.CompactedError
	if _, err := fresh.hub.Subscribe(Filter{}, 1); !errors.As(err, &ce) {
		t.Fatalf("subscribe from 1 after compaction: got %v, want a *kv.CompactedError", err)
	}
	// The replicas go on deciding alike.
	e := want["updated"]
	if err := cond(fresh, "updated", `5`, e.Revision); err != nil {
		t.Fatal(err)
	}
	settled(t, topic, c, a, b, fresh)
	if d := diff(state(a.s), state(fresh.s)); d != "" {
		t.Fatalf("after a write on the fresh replica:\n%s", d)
	}
}

// produce writes raw records to topic, as another program would.
func produce(t *testing.T, c *kfake.Cluster, topic string, recs ...kafka.Record) {
	t.Helper()
	cl := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...)}
	res, err := cl.Produce(t.Context(), &kafka.ProduceRequest{Topic: topic, RequiredAcks: kafka.RequireAll, Records: kafka.NewRecordReader(recs...)})
	if err == nil {
		err = res.Error
	}
	if err != nil {
		t.Fatal(err)
	}
}

func header(k, v string) kafka.Header { return kafka.Header{Key: k, Value: []byte(v)} }

// TestKafkaRestoreTakeover writes a record whose claim does not hold as
// an instance would that died right after: another instance writes the
// restore record for it.
func TestKafkaRestoreTakeover(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-takeover"
	a := newReplica(t, c, topic)
	rev := set(t, a, "k", `"real"`)
	produce(t, c, topic, kafka.Record{
		Key: kafka.NewBytes([]byte("k")), Value: kafka.NewBytes([]byte(`"rejected"`)),
		Headers: []kafka.Header{header(HeaderOrigin, "dead"), header(HeaderRequest, "1"),
			header(HeaderIfRevision, fmt.Sprint(rev+50)), header(HeaderCreateRevision, fmt.Sprint(rev)), header(HeaderVersion, "2")},
	})
	settled(t, topic, c, a)
	// kfake compacts only up to the last batch, and by the keys before it.
	set(t, a, "after", `1`)
	c.Compact()
	set(t, a, "after", `2`)
	settled(t, topic, c, a)
	fresh := newReplica(t, c, topic)
	settled(t, topic, c, a, fresh)
	if fresh.gaps.Load() == 0 {
		t.Fatal("the replica that replayed after compaction saw no gap: the topic was not compacted")
	}
	if e, ok := fresh.s.Get("k"); !ok || string(e.Value) != `"real"` || e.Revision != rev {
		t.Fatalf("k after compaction: got %+v, want \"real\" at revision %d", e, rev)
	}
}

// TestKafkaForeignRecords checks records that another program wrote: a
// set with a JSON value is applied (stored compact), a tombstone deletes,
// and a record that kvs cannot serve is skipped.
func TestKafkaForeignRecords(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-foreign"
	a := newReplica(t, c, topic)
	rec := func(k string, v []byte) kafka.Record {
		return kafka.Record{Key: kafka.NewBytes([]byte(k)), Value: kafka.NewBytes(v)}
	}
	produce(t, c, topic,
		rec("json", []byte(`{ "a" : [1, 2] }`)),
		rec("gone", []byte(`1`)),
		rec("gone", nil),
		rec("bad", []byte(`{not json`)),
		rec("null", []byte(`null`)),
		rec("ctl\x01key", []byte(`1`)),
		rec("last", []byte(`true`)),
	)
	settled(t, topic, c, a)
	got := state(a.s)
	if e := got["json"]; string(e.Value) != `{"a":[1,2]}` || e.Revision != 1 || e.Version != 1 {
		t.Errorf("json: got %+v, want the compact value at revision 1", e)
	}
	for _, k := range []string{"gone", "bad", "null", "ctl\x01key"} {
		if _, ok := got[k]; ok {
			t.Errorf("%q: got %+v, want no entry", k, got[k])
		}
	}
	if e := got["last"]; e.Revision != 7 {
		t.Errorf("last: got %+v, want revision 7", e)
	}
}

// TestKafkaReadYourWrites checks that a set answers only after its own
// instance applied it, while another instance writes the same keys.
func TestKafkaReadYourWrites(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-ryw"
	a, b := newReplica(t, c, topic), newReplica(t, c, topic)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for i := 0; ctx.Err() == nil; i++ {
			b.s.Set(ctx, fmt.Sprintf("k%d", i%4), []byte(fmt.Sprint(i)))
		}
	}()
	for i := range 100 {
		key := fmt.Sprintf("k%d", i%4)
		rev := set(t, a, key, `"a"`)
		if e, ok := a.s.Get(key); !ok || e.Revision < rev {
			t.Fatalf("get %s right after its set at revision %d: got %+v", key, rev, e)
		}
		if a.s.Rev() < rev {
			t.Fatalf("store revision %d right after a set at revision %d", a.s.Rev(), rev)
		}
	}
}

// TestKafkaRecordFormat reads the topic with a plain Kafka client: the key
// is the store key, the value the JSON value, a delete a tombstone, and
// the headers carry the writer, the request and the condition.
func TestKafkaRecordFormat(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-format"
	a := newReplica(t, c, topic)
	r1 := set(t, a, "k", `{"a":1}`)
	if _, err := a.s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`2`), Cond: true, IfRevision: r1}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.s.Delete(t.Context(), "k"); err != nil {
		t.Fatal(err)
	}
	cl := &kafka.Client{Addr: kafka.TCP(c.ListenAddrs()...)}
	res, err := cl.Fetch(t.Context(), &kafka.FetchRequest{Topic: topic, Offset: 0, MinBytes: 1, MaxBytes: 1 << 20, MaxWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	type rec struct {
		key, value string
		tombstone  bool
		headers    map[string]string
	}
	want := []rec{
		{"k", `{"a":1}`, false, map[string]string{HeaderOrigin: a.k.Origin(), HeaderRequest: "1", HeaderVersion: "1"}},
		{"k", `2`, false, map[string]string{HeaderOrigin: a.k.Origin(), HeaderRequest: "2", HeaderIfRevision: "1", HeaderCreateRevision: "1", HeaderVersion: "2"}},
		{"k", ``, true, map[string]string{HeaderOrigin: a.k.Origin(), HeaderRequest: "3"}},
	}
	for i, w := range want {
		m, err := res.Records.ReadRecord()
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		key, _ := kafka.ReadAll(m.Key)
		value, _ := kafka.ReadAll(m.Value)
		got := rec{string(key), string(value), value == nil, map[string]string{}}
		for _, h := range m.Headers {
			got.headers[h.Key] = string(h.Value)
		}
		if m.Offset != int64(i) || got.key != w.key || got.value != w.value || got.tombstone != w.tombstone || fmt.Sprint(got.headers) != fmt.Sprint(w.headers) {
			t.Errorf("record at offset %d: got %+v, want %+v at offset %d", m.Offset, got, w, i)
		}
	}
}

// TestKafkaReplayReadiness checks that a log reports that it is replaying
// until it has applied the topic up to the end the topic had when it
// started.
func TestKafkaReplayReadiness(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-replay"
	a := newReplica(t, c, topic)
	for i := range 20 {
		set(t, a, fmt.Sprint("k", i), `1`)
	}
	k, err := NewKafka(KafkaOptions{Brokers: c.ListenAddrs(), Topic: topic, FetchWait: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	release := make(chan struct{})
	var applied atomic.Int64
	k.Start(func(recs []kv.Record) []kv.Restore {
		<-release
		applied.Add(int64(len(recs)))
		return nil
	})
	waitFor(t, "connected", func() bool { err := k.Err(); return err != nil && strings.Contains(err.Error(), "replaying") })
	time.Sleep(50 * time.Millisecond)
	if err := k.Err(); err == nil || !strings.Contains(err.Error(), "at offset 0 of 20") {
		t.Fatalf("Err while the first records are applied: got %v, want replaying at offset 0 of 20", err)
	}
	// Writes wait until the replay is done: they are refused, not queued
	// behind it.
	if err := k.Propose(t.Context(), kv.Record{Change: kv.Change{Op: kv.OpSet, Key: "k0", Value: []byte(`2`)}, Version: 1}); err == nil || !strings.Contains(err.Error(), "not taking writes") {
		t.Fatalf("Propose while replaying: got %v, want a refusal", err)
	}
	close(release)
	waitFor(t, "caught up", func() bool { return k.Err() == nil })
	if n := applied.Load(); n != 20 {
		t.Fatalf("applied %d records when caught up, want 20", n)
	}
}

// TestKafkaOffsetOutOfRange makes the broker answer that the next offset
// is out of range, as a broker that lost data does: the log says so,
// stops, and refuses writes, rather than skip.
func TestKafkaOffsetOutOfRange(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-lost"
	a := newReplica(t, c, topic)
	set(t, a, "k", `1`)
	c.ControlKey(int16(kmsg.Fetch), func(kr kmsg.Request) (kmsg.Response, error, bool) {
		req := kr.(*kmsg.FetchRequest)
		res := req.ResponseKind().(*kmsg.FetchResponse)
		for _, rt := range req.Topics {
			st := kmsg.NewFetchResponseTopic()
			st.Topic, st.TopicID = rt.Topic, rt.TopicID
			for _, rp := range rt.Partitions {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition, sp.ErrorCode = rp.Partition, kerr.OffsetOutOfRange.Code
				st.Partitions = append(st.Partitions, sp)
			}
			res.Topics = append(res.Topics, st)
		}
		return res, nil, true
	})
	waitFor(t, "data loss to be reported", func() bool { return errors.Is(a.k.Err(), ErrDataLost) })
	if _, err := a.s.Set(t.Context(), "k", []byte(`2`)); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("set after data loss: got %v, want kv.ErrUnavailable", err)
	}
	if e, ok := a.s.Get("k"); !ok || string(e.Value) != `1` {
		t.Fatalf("get after data loss: got %+v, want the value it had", e)
	}
}

// TestKafkaLargeValues writes values of the largest size kvsd accepts by
// default, several at once: they go in separate produce requests, fit the
// topic's max.message.bytes, and replay.
func TestKafkaLargeValues(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-large"
	a := newReplica(t, c, topic)
	big := func(i int) []byte { return []byte(`"` + strings.Repeat(string(rune('a'+i)), 1<<20-2) + `"`) }
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			if _, err := a.s.Set(t.Context(), fmt.Sprint("big", i), big(i)); err != nil {
				t.Errorf("set of 1 MiB: %v", err)
			}
		})
	}
	wg.Wait()
	fresh := newReplica(t, c, topic)
	settled(t, topic, c, a, fresh)
	for i := range 4 {
		if e, ok := fresh.s.Get(fmt.Sprint("big", i)); !ok || string(e.Value) != string(big(i)) {
			t.Fatalf("big%d after replay: missing or different", i)
		}
	}
}

// FuzzKafkaDecode feeds records of any content to the decoder (seeds in
// testdata/fuzz/FuzzKafkaDecode): it must not panic, must return only valid
// keys and JSON values, and what it returns for a kvs record must encode
// back to the same record.
func FuzzKafkaDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, key string, value []byte, tombstone bool, request, ifRev, version, create, restores string) {
		if tombstone {
			value = nil
		}
		k := &Kafka{origin: "me"}
		var h []kafka.Header
		revision := version // a restore's entry revision
		if restores == "" {
			revision = ""
		}
		for _, kv := range [][2]string{{HeaderOrigin, "me"}, {HeaderRequest, request}, {HeaderIfRevision, ifRev},
			{HeaderVersion, version}, {HeaderCreateRevision, create}, {HeaderRestores, restores}, {HeaderRevision, revision}} {
			if kv[1] != "" {
				h = append(h, kafka.Header{Key: kv[0], Value: []byte(kv[1])})
			}
		}
		for _, hs := range [][]kafka.Header{h, nil} { // a kvs record, and one of another program
			r, err := k.decode(&kafka.Record{Key: kafka.NewBytes([]byte(key)), Value: kafka.NewBytes(value), Headers: hs})
			if err != nil {
				continue
			}
			if !kv.ValidKey(r.Key) {
				t.Fatalf("decoded an invalid key %q", r.Key)
			}
			if r.Op == kv.OpSet && (len(r.Value) == 0 || !json.Valid(r.Value)) {
				t.Fatalf("decoded a set with value %q", r.Value)
			}
			if hs == nil {
				continue
			}
			back, err := k.decode(ptr(k.encode(r)))
			if err != nil {
				t.Fatalf("decoding the encoding of %+v: %v", r, err)
			}
			back.Ours = r.Ours
			if fmt.Sprint(back) != fmt.Sprint(r) {
				t.Fatalf("round trip: got %+v, want %+v", back, r)
			}
		}
	})
}

func ptr[T any](v T) *T { return &v }

// TestKafkaProposeAfterClose: a proposal made as the log closes is answered
// at once, with its outcome or an error, rather than when its context
// expires: the producer may have stopped before taking it.
func TestKafkaProposeAfterClose(t *testing.T) {
	c := newCluster(t)
	r := newReplica(t, c, "kvs-propose-close")
	r.k.Close()
	for i := range 20 {
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		start := time.Now()
		err := r.k.Propose(ctx, kv.Record{Change: kv.Change{Op: kv.OpSet, Key: fmt.Sprint("k", i), Value: []byte(`1`)}})
		cancel()
		if err == nil {
			t.Fatalf("proposal %d after Close: no error", i)
		}
		if d := time.Since(start); d > 30*time.Second {
			t.Fatalf("proposal %d after Close answered after %v: %v", i, d, err)
		}
	}
}

// compactAndReplay compacts the topic that a and b share, then replays it
// on a fresh replica, which must see a gap (records were compacted away)
// and end with a's state. It returns the fresh replica and that state.
func compactAndReplay(t *testing.T, c *kfake.Cluster, topic string, a, b *replica) (*replica, map[string]kv.Entry) {
	t.Helper()
	// kfake compacts only up to the last batch, and by the keys before it.
	set(t, a, "after", `1`)
	c.Compact()
	set(t, a, "after", `2`)
	settled(t, topic, c, a, b)
	want := state(a.s)
	fresh := newReplica(t, c, topic)
	settled(t, topic, c, a, b, fresh)
	if fresh.gaps.Load() == 0 {
		t.Fatal("the replica that replayed after compaction saw no gap: the topic was not compacted")
	}
	if d := diff(want, state(fresh.s)); d != "" {
		t.Fatalf("the replica that replayed the compacted topic differs:\n%s", d)
	}
	return fresh, want
}
