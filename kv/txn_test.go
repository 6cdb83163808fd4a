package kv_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsdb/kvs/kv"
)

func set(key, value string) kv.TxnOp { return kv.TxnOp{Op: kv.OpSet, Key: key, Value: []byte(value)} }
func del(key string) kv.TxnOp        { return kv.TxnOp{Op: kv.OpDelete, Key: key} }
func get(key string) kv.TxnOp        { return kv.TxnOp{Op: kv.OpGet, Key: key} }

func revIs(key string, cmp kv.Compare, rev int64) kv.Cond {
	return kv.Cond{Key: key, Target: kv.TargetRevision, Compare: cmp, Revision: rev}
}

func mustTxn(t *testing.T, s *kv.Store, txn *kv.Txn) *kv.TxnResult {
	t.Helper()
	res, err := s.Txn(t.Context(), txn)
	if err != nil {
		t.Fatalf("txn: %v", err)
	}
	return res
}

// TestTxnConditions checks every kind of condition against a present and an
// absent key.
func TestTxnConditions(t *testing.T) {
	s := newStore(t, kv.Options{})
	rev := mustSubmit(t, s, setChange("k", `{"a":1}`)) // revision 1
	tests := []struct {
		name string
		cond kv.Cond
		want bool
	}{
		{"revision equal", revIs("k", kv.CompareEqual, rev), true},
		{"revision equal, wrong", revIs("k", kv.CompareEqual, rev+1), false},
		{"revision not equal", revIs("k", kv.CompareNotEqual, rev+1), true},
		{"revision less", revIs("k", kv.CompareLess, rev+1), true},
		{"revision less, equal", revIs("k", kv.CompareLess, rev), false},
		{"revision greater", revIs("k", kv.CompareGreater, rev-1), true},
		{"revision greater, equal", revIs("k", kv.CompareGreater, rev), false},
		{"absent key has revision 0", revIs("absent", kv.CompareEqual, 0), true},
		{"absent key is less than any", revIs("absent", kv.CompareLess, 1), true},
		{"exists", kv.Cond{Key: "k", Target: kv.TargetExists, Exists: true}, true},
		{"exists, absent", kv.Cond{Key: "absent", Target: kv.TargetExists, Exists: true}, false},
		{"absent", kv.Cond{Key: "absent", Target: kv.TargetExists}, true},
		{"absent, exists", kv.Cond{Key: "k", Target: kv.TargetExists}, false},
		{"value equal", kv.Cond{Key: "k", Target: kv.TargetValue, Value: []byte(`{"a":1}`)}, true},
		{"value equal is byte for byte", kv.Cond{Key: "k", Target: kv.TargetValue, Value: []byte(`{"a":1.0}`)}, false},
		{"value not equal", kv.Cond{Key: "k", Target: kv.TargetValue, Compare: kv.CompareNotEqual, Value: []byte(`2`)}, true},
		{"value of an absent key: never equal", kv.Cond{Key: "absent", Target: kv.TargetValue, Value: []byte(`1`)}, false},
		{"value of an absent key: never unequal", kv.Cond{Key: "absent", Target: kv.TargetValue, Compare: kv.CompareNotEqual, Value: []byte(`1`)}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := mustTxn(t, s, &kv.Txn{If: []kv.Cond{tt.cond}, Then: []kv.TxnOp{get("k")}, Else: []kv.TxnOp{get("absent")}})
			if res.Succeeded != tt.want {
				t.Fatalf("succeeded: got %v, want %v", res.Succeeded, tt.want)
			}
			// Read only: no revision taken.
			if res.Revision != rev || s.Rev() != rev {
				t.Fatalf("revision: got %d (store %d), want %d", res.Revision, s.Rev(), rev)
			}
		})
	}
	// All conditions must hold.
	res := mustTxn(t, s, &kv.Txn{If: []kv.Cond{revIs("k", kv.CompareEqual, rev), revIs("k", kv.CompareEqual, 99)}})
	if res.Succeeded {
		t.Fatal("a transaction with one failing condition of two succeeded")
	}
	if res := mustTxn(t, s, &kv.Txn{}); !res.Succeeded {
		t.Fatal("a transaction without conditions did not succeed")
	}
}

// TestTxnOneRevision checks that the changes of a transaction share one
// revision, what each operation reports, and that revisions go on
// consecutively around it.
func TestTxnOneRevision(t *testing.T) {
	rec := &recorder{}
	s := newStore(t, kv.Options{Publisher: rec})
	mustSubmit(t, s, setChange("from", `5`))  // 1
	mustSubmit(t, s, setChange("gone", `1`))  // 2
	mustSubmit(t, s, setChange("other", `1`)) // 3
	res := mustTxn(t, s, &kv.Txn{
		If:   []kv.Cond{revIs("from", kv.CompareEqual, 1)},
		Then: []kv.TxnOp{get("to"), set("to", `5`), set("from", `0`), del("gone"), del("missing"), get("from"), get("missing")},
		Else: []kv.TxnOp{get("from")},
	})
	if !res.Succeeded || res.Revision != 4 || s.Rev() != 4 {
		t.Fatalf("got succeeded %v at %d (store %d), want true at 4", res.Succeeded, res.Revision, s.Rev())
	}
	want := []kv.OpResult{
		{Op: kv.OpGet, Key: "to", Found: true, Entry: &kv.Entry{Key: "to", Value: []byte(`5`), Revision: 4, CreateRevision: 4, Version: 1}},
		{Op: kv.OpSet, Key: "to", Found: true, Entry: &kv.Entry{Key: "to", Value: []byte(`5`), Revision: 4, CreateRevision: 4, Version: 1}},
		{Op: kv.OpSet, Key: "from", Found: true, Entry: &kv.Entry{Key: "from", Value: []byte(`0`), Revision: 4, CreateRevision: 1, Version: 2}},
		{Op: kv.OpDelete, Key: "gone", Found: true},
		{Op: kv.OpDelete, Key: "missing"},
		{Op: kv.OpGet, Key: "from", Found: true, Entry: &kv.Entry{Key: "from", Value: []byte(`0`), Revision: 4, CreateRevision: 1, Version: 2}},
		{Op: kv.OpGet, Key: "missing"},
	}
	if len(res.Results) != len(want) {
		t.Fatalf("got %d results, want %d", len(res.Results), len(want))
	}
	for i, w := range want {
		g := res.Results[i]
		if g.Op != w.Op || g.Key != w.Key || g.Found != w.Found || (g.Entry == nil) != (w.Entry == nil) || g.Entry != nil && !entriesEqual(*g.Entry, *w.Entry) {
			t.Errorf("result %d: got %+v %+v, want %+v %+v", i, g, g.Entry, w, w.Entry)
		}
	}
	var got []string
	for _, c := range rec.all() {
		got = append(got, fmt.Sprintf("%d %v %s", c.Revision, c.Op, c.Key))
	}
	wantFeed := []string{"1 set from", "2 set gone", "3 set other", "4 set to", "4 set from", "4 delete gone"}
	if fmt.Sprint(got) != fmt.Sprint(wantFeed) {
		t.Fatalf("published: got %v, want %v", got, wantFeed)
	}
	// The next change takes the next revision.
	if rev := mustSubmit(t, s, setChange("other", `2`)); rev != 5 {
		t.Fatalf("revision after the transaction: got %d, want 5", rev)
	}
	// A failed condition runs Else; a delete of a missing key alone
	// changes nothing and takes no revision.
	res = mustTxn(t, s, &kv.Txn{If: []kv.Cond{revIs("from", kv.CompareEqual, 1)}, Else: []kv.TxnOp{del("missing")}})
	if res.Succeeded || res.Revision != 5 || s.Rev() != 5 || res.Changed() {
		t.Fatalf("else with a no-op delete: got %+v, store at %d; want else at 5", res, s.Rev())
	}
}

// TestTxnInvalid checks what Check refuses.
func TestTxnInvalid(t *testing.T) {
	s := newStore(t, kv.Options{})
	tests := []struct {
		name string
		txn  kv.Txn
	}{
		{"key written twice", kv.Txn{Then: []kv.TxnOp{set("a", `1`), del("a")}}},
		{"key set twice in else", kv.Txn{Else: []kv.TxnOp{set("a", `1`), set("a", `2`)}}},
		{"bad key", kv.Txn{Then: []kv.TxnOp{get("")}}},
		{"bad condition key", kv.Txn{If: []kv.Cond{revIs("a\x00", kv.CompareEqual, 1)}}},
		{"set without value", kv.Txn{Then: []kv.TxnOp{{Op: kv.OpSet, Key: "a"}}}},
		{"set of null", kv.Txn{Then: []kv.TxnOp{set("a", `null`)}}},
		{"unknown op", kv.Txn{Then: []kv.TxnOp{{Op: 9, Key: "a"}}}},
		{"unknown target", kv.Txn{If: []kv.Cond{{Key: "a", Target: 9}}}},
		{"no target", kv.Txn{If: []kv.Cond{{Key: "a"}}}},
		{"less on a value", kv.Txn{If: []kv.Cond{{Key: "a", Target: kv.TargetValue, Compare: kv.CompareLess, Value: []byte(`1`)}}}},
		{"comparison on existence", kv.Txn{If: []kv.Cond{{Key: "a", Target: kv.TargetExists, Compare: kv.CompareNotEqual}}}},
		{"negative revision", kv.Txn{If: []kv.Cond{revIs("a", kv.CompareEqual, -1)}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Txn(t.Context(), &tt.txn); !errors.Is(err, kv.ErrInvalidTxn) {
				t.Fatalf("got %v, want ErrInvalidTxn", err)
			}
		})
	}
	// The same key in both lists, and read twice, is fine.
	if _, err := s.Txn(t.Context(), &kv.Txn{Then: []kv.TxnOp{set("a", `1`), get("a"), get("a")}, Else: []kv.TxnOp{del("a")}}); err != nil {
		t.Fatal(err)
	}
	if s.Rev() != 1 {
		t.Fatalf("revision: got %d, want 1", s.Rev())
	}
}

// TestTxnInOneBatch commits transactions and changes in one batch: each
// is decided against the changes before it in the batch.
func TestTxnInOneBatch(t *testing.T) {
	g := &gateLog{entered: make(chan struct{}), open: make(chan struct{})}
	s := newStore(t, kv.Options{Log: g})
	go s.Set(t.Context(), "other", []byte(`1`)) // the committer, held in Append
	<-g.entered
	const n = 8
	type answer struct {
		res *kv.TxnResult
		err error
	}
	answers := make(chan answer, n)
	for range n {
		go func() {
			// Take the lock only if it is absent: exactly one wins.
			res, err := s.Txn(t.Context(), &kv.Txn{
				If:   []kv.Cond{{Key: "lock", Target: kv.TargetExists}},
				Then: []kv.TxnOp{set("lock", `1`), set("owner", `1`)},
			})
			answers <- answer{res, err}
		}()
	}
	time.Sleep(50 * time.Millisecond) // for them to queue; if some do not, they commit later, with the same outcome
	close(g.open)
	wins := 0
	for range n {
		a := <-answers
		if a.err != nil {
			t.Fatal(a.err)
		}
		if a.res.Succeeded {
			wins++
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d lock transactions won, want 1", wins, n)
	}
}

// TestTxnFailedLogAppliesNothing: when the log fails, a transaction is
// neither applied nor published, and the transactions of its batch that
// changed nothing fail too.
func TestTxnFailedLogAppliesNothing(t *testing.T) {
	rec := &recorder{}
	l := &failingLog{}
	s := newStore(t, kv.Options{Log: l, Publisher: rec})
	mustSubmit(t, s, setChange("a", `1`))
	l.fail.Store(true)
	_, err := s.Txn(t.Context(), &kv.Txn{Then: []kv.TxnOp{set("a", `2`), set("b", `2`)}})
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if e, _ := s.Get("a"); string(e.Value) != `1` {
		t.Fatalf("a after a failed transaction: got %s, want 1", e.Value)
	}
	if _, ok := s.Get("b"); ok || s.Rev() != 1 || len(rec.all()) != 1 {
		t.Fatalf("a failed transaction left b %v, revision %d, %d published", ok, s.Rev(), len(rec.all()))
	}
	l.fail.Store(false)
	if res := mustTxn(t, s, &kv.Txn{Then: []kv.TxnOp{set("b", `3`)}}); res.Revision != 2 {
		t.Fatalf("revision after the failure: got %d, want 2", res.Revision)
	}
}

// transfers runs writers that move random amounts between n keys with
// transactions (each reads two keys, then writes both if neither changed
// meanwhile) until stop is set, and returns the number of transfers made.
func transfers(t *testing.T, s *kv.Store, keys []string, writers int, stop *atomic.Bool) (wait func() int64) {
	var wg sync.WaitGroup
	var done atomic.Int64
	for w := range writers {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			for !stop.Load() {
				a, b := keys[rng.IntN(len(keys))], keys[rng.IntN(len(keys))]
				if a == b {
					continue
				}
				res, err := s.Txn(t.Context(), &kv.Txn{Then: []kv.TxnOp{get(a), get(b)}})
				if err != nil {
					t.Error(err)
					return
				}
				ea, eb := res.Results[0].Entry, res.Results[1].Entry
				va, _ := strconv.Atoi(string(ea.Value))
				vb, _ := strconv.Atoi(string(eb.Value))
				amount := rng.IntN(10)
				res, err = s.Txn(t.Context(), &kv.Txn{
					If:   []kv.Cond{revIs(a, kv.CompareEqual, ea.Revision), revIs(b, kv.CompareEqual, eb.Revision)},
					Then: []kv.TxnOp{set(a, strconv.Itoa(va-amount)), set(b, strconv.Itoa(vb+amount))},
				})
				if err != nil {
					t.Error(err)
					return
				}
				if res.Succeeded {
					done.Add(1)
				}
			}
		})
	}
	return func() int64 { wg.Wait(); return done.Load() }
}

// TestTxnAtomicForReaders moves amounts between keys with 8 writers while
// readers check that the sum stays constant through Snapshot and through
// gets inside transactions; then it replays the published feed one whole
// revision at a time and checks the sum after each.
func TestTxnAtomicForReaders(t *testing.T) {
	rec := &recorder{}
	s := newStore(t, kv.Options{Shards: 4, Publisher: rec})
	const n, total = 8, 8000
	var keys []string
	for i := range n {
		keys = append(keys, fmt.Sprintf("acct%d", i))
		mustSubmit(t, s, setChange(keys[i], strconv.Itoa(total/n)))
	}
	var stop atomic.Bool
	wait := transfers(t, s, keys, 8, &stop)

	sum := func(values [][]byte) int {
		n := 0
		for _, v := range values {
			x, err := strconv.Atoi(string(v))
			if err != nil {
				t.Fatalf("value %q", v)
			}
			n += x
		}
		return n
	}
	var readers sync.WaitGroup
	readers.Go(func() { // listings
		for !stop.Load() {
			entries, _ := s.Snapshot("acct")
			var vs [][]byte
			for _, e := range entries {
				vs = append(vs, e.Value)
			}
			if got := sum(vs); got != total || len(vs) != n {
				t.Errorf("snapshot: sum %d of %d keys, want %d of %d", got, len(vs), total, n)
				return
			}
		}
	})
	readers.Go(func() { // gets inside a transaction
		ops := make([]kv.TxnOp, n)
		for i, k := range keys {
			ops[i] = get(k)
		}
		for !stop.Load() {
			res, err := s.Txn(t.Context(), &kv.Txn{Then: ops})
			if err != nil {
				t.Error(err)
				return
			}
			var vs [][]byte
			for _, r := range res.Results {
				vs = append(vs, r.Entry.Value)
			}
			if got := sum(vs); got != total {
				t.Errorf("gets in a transaction at %d: sum %d, want %d", res.Revision, got, total)
				return
			}
		}
	})
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	moved := wait()
	readers.Wait()
	if moved == 0 {
		t.Fatal("no transfer succeeded")
	}
	t.Logf("%d transfers", moved)

	// The feed, applied one whole revision at a time, keeps the sum.
	state := map[string]int{}
	feed := rec.all()
	for i := 0; i < len(feed); {
		j := i
		for j < len(feed) && feed[j].Revision == feed[i].Revision {
			x, _ := strconv.Atoi(string(feed[j].Value))
			state[feed[j].Key] = x
			j++
		}
		if feed[i].Revision > int64(n) {
			s := 0
			for _, v := range state {
				s += v
			}
			if s != total {
				t.Fatalf("feed after revision %d: sum %d, want %d", feed[i].Revision, s, total)
			}
		}
		i = j
	}
}

// TestTxnVisibleAtOnce: a reader that sees a transaction's change of one
// key, then gets another key it changed, sees that change too, although
// the two keys live in different shards and each Get takes one shard's
// lock.
func TestTxnVisibleAtOnce(t *testing.T) {
	s := newStore(t, kv.Options{Shards: 64})
	const pairs = 8
	var stop atomic.Bool
	var wg sync.WaitGroup
	for p := range pairs {
		x, y := fmt.Sprintf("x%d", p), fmt.Sprintf("y%d", p)
		wg.Go(func() {
			for i := 1; !stop.Load(); i++ {
				v := strconv.Itoa(i)
				if _, err := s.Txn(t.Context(), &kv.Txn{Then: []kv.TxnOp{set(x, v), set(y, v)}}); err != nil {
					t.Error(err)
					return
				}
			}
		})
		wg.Go(func() {
			for !stop.Load() {
				ex, ok := s.Get(x)
				if !ok {
					continue
				}
				ey, _ := s.Get(y)
				if ey == nil || ey.Revision < ex.Revision {
					t.Errorf("saw %s at revision %d, then %s at %v", x, ex.Revision, y, ey)
					return
				}
			}
		})
	}
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) && !t.Failed() {
		time.Sleep(10 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
}
