package bus

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

func tset(key, value string) kv.TxnOp { return kv.TxnOp{Op: kv.OpSet, Key: key, Value: []byte(value)} }
func tdel(key string) kv.TxnOp        { return kv.TxnOp{Op: kv.OpDelete, Key: key} }
func tget(key string) kv.TxnOp        { return kv.TxnOp{Op: kv.OpGet, Key: key} }
func revEq(key string, rev int64) kv.Cond {
	return kv.Cond{Key: key, Target: kv.TargetRevision, Revision: rev}
}

func txn(t *testing.T, r *replica, tx *kv.Txn) *kv.TxnResult {
	t.Helper()
	res, err := r.s.Txn(t.Context(), tx)
	if err != nil {
		t.Fatalf("txn: %v", err)
	}
	return res
}

// feed returns every event r's hub retains from revision 1 on, as text.
func feed(t *testing.T, r *replica, from int64) []string {
	t.Helper()
	sub, err := r.hub.Subscribe(Filter{}, from)
	if err != nil {
		t.Fatalf("subscribe from %d: %v", from, err)
	}
	defer sub.Close()
	var out []string
	for chunk := range sub.Replay() {
		for _, ev := range chunk {
			out = append(out, fmt.Sprintf("%d %v %s %s", ev.Revision, ev.Op, ev.Key, ev.Value))
			sub.Done(ev)
		}
	}
	return out
}

// TestKafkaTxn runs a transaction on one instance: both apply it at one
// revision, the writer answers with its result, and both feeds carry its
// changes together.
func TestKafkaTxn(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-txn"
	a, b := newReplica(t, c, topic), newReplica(t, c, topic)
	r1 := set(t, a, "from", `5`)
	set(t, b, "gone", `1`)
	settled(t, topic, c, a, b)
	res := txn(t, b, &kv.Txn{
		If:   []kv.Cond{revEq("from", r1)},
		Then: []kv.TxnOp{tset("to", `5`), tset("from", `0`), tdel("gone"), tdel("missing"), tget("to")},
		Else: []kv.TxnOp{tget("from")},
	})
	if !res.Succeeded || len(res.Results) != 5 || !res.Results[4].Found || string(res.Results[4].Entry.Value) != `5` || res.Results[3].Found {
		t.Fatalf("result: %+v", res)
	}
	rev := res.Revision
	settled(t, topic, c, a, b)
	for _, r := range []*replica{a, b} {
		for _, k := range []string{"to", "from"} {
			if e, ok := r.s.Get(k); !ok || e.Revision != rev {
				t.Fatalf("%s: %+v, want revision %d", k, e, rev)
			}
		}
		if _, ok := r.s.Get("gone"); ok {
			t.Fatal("gone is still there")
		}
	}
	if d := diff(state(a.s), state(b.s)); d != "" {
		t.Fatalf("A and B differ:\n%s", d)
	}
	fa, fb := feed(t, a, 1), feed(t, b, 1)
	want := []string{"1 set from 5", "2 set gone 1", fmt.Sprintf("%d set to 5", rev), fmt.Sprintf("%d set from 0", rev), fmt.Sprintf("%d delete gone ", rev)}
	if !slices.Equal(fa, want) || !slices.Equal(fb, want) {
		t.Fatalf("feeds:\n A %q\n B %q\nwant %q", fa, fb, want)
	}
	// Else, on the other instance; a transaction that changes nothing is a
	// record too, with a revision of its own.
	before := a.s.Rev() // past the restores of the first transaction
	res = txn(t, a, &kv.Txn{If: []kv.Cond{revEq("from", r1)}, Then: []kv.TxnOp{tdel("from")}, Else: []kv.TxnOp{tget("from")}})
	if res.Succeeded || res.Revision <= before || string(res.Results[0].Entry.Value) != `0` {
		t.Fatalf("else after revision %d: %+v", before, res)
	}
	if e, _ := a.s.Get("from"); e.Revision != rev {
		t.Fatalf("from after Else: %+v, want it unchanged at %d", e, rev)
	}
}

// TestKafkaTxnRecordFormat reads the topic with a plain Kafka client: a
// transaction is one record with the key TxnKey and the transaction as
// JSON, followed by a restore record for each key it writes.
func TestKafkaTxnRecordFormat(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-txn-format"
	a := newReplica(t, c, topic)
	set(t, a, "v", `1`)
	res := txn(t, a, &kv.Txn{
		If:   []kv.Cond{{Key: "k", Target: kv.TargetExists}, {Key: "v", Target: kv.TargetValue, Compare: kv.CompareNotEqual, Value: []byte(`"<&>"`)}},
		Then: []kv.TxnOp{tset("k", `{"a":"<&>"}`), tget("v")},
		Else: []kv.TxnOp{tdel("x")},
	})
	if !res.Succeeded || res.Revision != 2 {
		t.Fatalf("result: %+v", res)
	}
	settled(t, topic, c, a)
	got := readTopic(t, c, topic)
	want := []string{
		`1 "\x00kvs-txn" {"If":[{"Key":"k","Target":"exists"},{"Key":"v","Target":"value","Compare":"!=","Value":"<&>"}],"Then":[{"Op":"set","Key":"k","Value":{"a":"<&>"}},{"Op":"get","Key":"v"}],"Else":[{"Op":"delete","Key":"x"}]} map[kvs-request:2 kvs-txn:1]`,
	}
	if len(got) != 4 || got[1] != want[0] {
		t.Fatalf("records:\n%s\nwant second\n%s and two restores", got, want[0])
	}
	// The restores, in either order: k's new entry, and x's absence.
	rest := slices.Sorted(slices.Values([]string{got[2][2:], got[3][2:]}))
	wantRest := []string{`"k" {"a":"<&>"} map[kvs-create-revision:2 kvs-restores:2 kvs-revision:2 kvs-version:1]`, `"x"  map[kvs-restores:2]`}
	if !slices.Equal(rest, wantRest) {
		t.Fatalf("restores: got %q, want %q", rest, wantRest)
	}
}

// TestKafkaTxnCompaction makes transactions of every kind that compaction
// could leave without their history (Then and Else, sets, deletes, creates,
// transactions that are a key's last change, transactions racing single
// changes and each other on two instances), compacts the topic, and checks
// that a replica that replays the compacted topic reaches the same state.
func TestKafkaTxnCompaction(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-txn-compaction"
	a, b := newReplica(t, c, topic), newReplica(t, c, topic)
	ctx := t.Context()

	r := set(t, a, "x", `1`)
	set(t, a, "y", `1`)
	txn(t, b, &kv.Txn{If: []kv.Cond{revEq("x", r)}, Then: []kv.TxnOp{tset("x", `2`), tset("created", `1`), tdel("y")}})
	txn(t, a, &kv.Txn{If: []kv.Cond{revEq("x", r)}, Then: []kv.TxnOp{tset("x", `"lost"`)}, Else: []kv.TxnOp{tset("else", `1`), tdel("created")}})
	set(t, b, "x", `3`) // a single change after a transaction of its key
	txn(t, a, &kv.Txn{Then: []kv.TxnOp{tset("only", `"txn"`)}})
	set(t, a, "cond", `1`)
	txn(t, b, &kv.Txn{If: []kv.Cond{{Key: "cond", Target: kv.TargetValue, Value: []byte(`1`)}}, Then: []kv.TxnOp{tset("cond", `2`), tset("dep", `"from cond"`)}})
	// Races: both instances move amounts between three keys, reading them
	// first, so that transactions fail their conditions and interleave
	// with plain sets.
	for _, k := range []string{"p", "q", "s"} {
		set(t, a, k, `100`)
	}
	settled(t, topic, c, a, b)
	var wg sync.WaitGroup
	for i, rep := range []*replica{a, b} {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(i), 2))
			keys := []string{"p", "q", "s"}
			for range 40 {
				from, to := keys[rng.IntN(3)], keys[rng.IntN(3)]
				if from == to {
					if _, err := rep.s.Set(ctx, from, []byte(strconv.Itoa(rng.IntN(5)))); err != nil {
						t.Error(err)
					}
					continue
				}
				ef, _ := rep.s.Get(from)
				et, _ := rep.s.Get(to)
				if _, err := rep.s.Txn(ctx, &kv.Txn{
					If:   []kv.Cond{revEq(from, ef.Revision), revEq(to, et.Revision)},
					Then: []kv.TxnOp{tset(from, `1`), tset(to, `2`)},
					Else: []kv.TxnOp{tdel("never")},
				}); err != nil {
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
	if fa, fb := feed(t, a, 1), feed(t, b, 1); !slices.Equal(fa, fb) {
		t.Fatalf("A and B have different feeds:\n%q\n%q", fa, fb)
	}

	fresh, want := compactAndReplay(t, c, topic, a, b)
	if got, want := fresh.s.Rev(), a.s.Rev(); got != want {
		t.Fatalf("revision after replay: got %d, want %d", got, want)
	}
	// The replicas go on deciding alike.
	e := want["p"]
	txn(t, fresh, &kv.Txn{If: []kv.Cond{revEq("p", e.Revision)}, Then: []kv.TxnOp{tset("p", `"fresh"`), tset("q", `"fresh"`)}})
	settled(t, topic, c, a, b, fresh)
	if d := diff(state(a.s), state(fresh.s)); d != "" {
		t.Fatalf("after a transaction on the fresh replica:\n%s", d)
	}
	if e, _ := a.s.Get("p"); string(e.Value) != `"fresh"` {
		t.Fatalf("p after the fresh replica's transaction: %s", e.Value)
	}
}

// TestKafkaTxnSerialize runs transactions from two instances that move
// amounts between overlapping keys, with readers checking the sum through
// gets inside transactions; at the end both instances hold the same state
// and the same feed, and the feed, applied one whole revision at a time
// from revision 1, keeps the sum after every revision.
func TestKafkaTxnSerialize(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-txn-serialize"
	a, b := newReplica(t, c, topic), newReplica(t, c, topic)
	ctx := t.Context()
	const n, each = 4, 100
	var keys []string
	for i := range n {
		keys = append(keys, fmt.Sprintf("acct%d", i))
		set(t, a, keys[i], strconv.Itoa(each))
	}
	settled(t, topic, c, a, b)
	sum := func(res *kv.TxnResult) int {
		s := 0
		for _, r := range res.Results {
			v, _ := strconv.Atoi(string(r.Entry.Value))
			s += v
		}
		return s
	}
	all := make([]kv.TxnOp, n)
	for i, k := range keys {
		all[i] = tget(k)
	}
	var wg sync.WaitGroup
	for w := range 8 {
		rep := []*replica{a, b}[w%2]
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 3))
			for range 15 {
				i, j := rng.IntN(n), rng.IntN(n)
				if i == j {
					continue
				}
				res, err := rep.s.Txn(ctx, &kv.Txn{Then: []kv.TxnOp{tget(keys[i]), tget(keys[j])}})
				if err != nil {
					t.Error(err)
					return
				}
				ei, ej := res.Results[0].Entry, res.Results[1].Entry
				vi, _ := strconv.Atoi(string(ei.Value))
				vj, _ := strconv.Atoi(string(ej.Value))
				amt := rng.IntN(5)
				if _, err := rep.s.Txn(ctx, &kv.Txn{
					If:   []kv.Cond{revEq(keys[i], ei.Revision), revEq(keys[j], ej.Revision)},
					Then: []kv.TxnOp{tset(keys[i], strconv.Itoa(vi-amt)), tset(keys[j], strconv.Itoa(vj+amt))},
				}); err != nil {
					t.Error(err)
					return
				}
				res, err = rep.s.Txn(ctx, &kv.Txn{Then: all})
				if err != nil {
					t.Error(err)
					return
				}
				if got := sum(res); got != n*each {
					t.Errorf("gets in a transaction at %d: sum %d, want %d", res.Revision, got, n*each)
				}
			}
		})
	}
	wg.Wait()
	settled(t, topic, c, a, b)
	if d := diff(state(a.s), state(b.s)); d != "" {
		t.Fatalf("A and B differ:\n%s", d)
	}
	fa, fb := feed(t, a, 1), feed(t, b, 1)
	if !slices.Equal(fa, fb) {
		t.Fatalf("A and B have different feeds:\n%q\n%q", fa, fb)
	}
	sub, err := a.hub.Subscribe(Filter{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	vals := map[string]int{}
	var prev int64
	check := func() {
		s := 0
		for _, v := range vals {
			s += v
		}
		if len(vals) == n && s != n*each {
			t.Fatalf("feed after revision %d: sum %d, want %d", prev, s, n*each)
		}
	}
	for chunk := range sub.Replay() {
		for _, ev := range chunk {
			if ev.Revision != prev {
				check()
				prev = ev.Revision
			}
			v, _ := strconv.Atoi(string(ev.Value))
			vals[ev.Key] = v
			sub.Done(ev)
		}
	}
	check()
}

// FuzzKafkaTxnDecode feeds any bytes to the decoder as a transaction
// record, kvs's and another program's: it must not panic, what it returns
// must be a transaction alone that passes kv's check, with values that
// keep the rules of a value, and encode back to the same transaction.
func FuzzKafkaTxnDecode(f *testing.F) {
	f.Add([]byte(`{"If":[{"Key":"k","Target":"revision","Compare":"<","Revision":3},{"Key":"v","Target":"value","Value":[1, 2]}],"Then":[{"Op":"set","Key":"k","Value":{"a":1}},{"Op":"get","Key":"v"}],"Else":[{"Op":"delete","Key":"k"}]}`))
	f.Add([]byte(`{"If":[{"Key":"k","Target":"exists","Exists":true}]}`))
	f.Add([]byte(`{"Then":[{"Op":"set","Key":"k","Value":null}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"Then":[{"Op":"set","Key":"k","Value":"` + strings.Repeat("x", 99) + `"}]}`))
	f.Add([]byte("{\"Then\":[{\"Op\":\"set\",\"Key\":\"k\",\"Value\":\"\xff\"}]}"))
	f.Fuzz(func(t *testing.T, value []byte) {
		k := &Kafka{origin: "me", maxValue: 100}
		ours := []kafka.Header{header(HeaderOrigin, "me"), header(HeaderRequest, "1"), header(HeaderTxn, "1")}
		for _, hs := range [][]kafka.Header{ours, {header(HeaderTxn, "1")}} {
			r, err := k.decode(&kafka.Record{Key: kafka.NewBytes([]byte(TxnKey)), Value: kafka.NewBytes(value), Headers: hs})
			if err != nil {
				continue
			}
			tx := r.Txn
			if tx == nil || r.Key != "" || r.Value != nil || r.Op != 0 {
				t.Fatalf("decoded %+v, want a transaction alone", r)
			}
			if err := tx.Check(); err != nil {
				t.Fatalf("decoded a transaction that kv refuses: %v", err)
			}
			values := make([][]byte, 0, len(tx.If))
			for _, c := range tx.If {
				if c.Value != nil {
					values = append(values, c.Value)
				}
			}
			for _, op := range slices.Concat(tx.Then, tx.Else) {
				if op.Op == kv.OpSet {
					values = append(values, op.Value)
				}
			}
			for _, v := range values {
				if !json.Valid(v) || !utf8.Valid(v) || len(v) > 100 {
					t.Fatalf("decoded a value %q, against the rules of a value", v)
				}
			}
			back, err := k.decode(ptr(k.encodeTxnRecord(tx, r.Request)))
			if err != nil {
				t.Fatalf("decoding the encoding of %+v: %v", tx, err)
			}
			if !reflect.DeepEqual(back.Txn, tx) || back.Request != r.Request {
				t.Fatalf("round trip: got %+v, want %+v", back, r)
			}
		}
	})
}
