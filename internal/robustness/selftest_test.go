package robustness

import (
	"cmp"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The checker's own tests: it must catch what it is there to catch.

// op builds an operation for a hand-made history.
func op(client int, call, ret int64, in request, out response) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
}

func set(key int, value string) request { return request{Kind: opSet, Key: key, Value: value} }
func cas(key int, value string, ifRev int64) request {
	return request{Kind: opSet, Key: key, Value: value, Cond: true, IfRev: ifRev}
}
func del(key int) request   { return request{Kind: opDelete, Key: key} }
func get(key int) request   { return request{Kind: opGet, Key: key} }
func list() request         { return request{Kind: opList} }
func ok(rev int64) response { return response{Code: 200, Rev: rev} }
func status(c int) response { return response{Code: c} }
func unknown() response     { return response{Unknown: true} }
func got(e entry) response  { return response{Code: 200, Entry: e} }
func conflict(e entry) response {
	return response{Code: 409, Entry: e}
}
func listed(rev int64, entries ...entry) response {
	r := response{Code: 200, Rev: rev}
	copy(r.List[:], entries)
	return r
}

// Transactions for hand-made histories.
func txnOf(conds []cond, then, els []txnOp) request {
	return request{Kind: opTxn, Txn: &txn{If: conds, Then: then, Else: els}}
}
func tset(key int, value string) txnOp { return txnOp{Kind: opSet, Key: key, Value: value} }
func tdel(key int) txnOp               { return txnOp{Kind: opDelete, Key: key} }
func tget(key int) txnOp               { return txnOp{Kind: opGet, Key: key} }
func ran(then bool, rev int64, results ...opResult) response {
	return response{Code: 200, Rev: rev, Succeeded: then, Results: results}
}
func found(e entry) opResult { return opResult{Found: true, Entry: e} }
func deleted(rev int64) opResult {
	return opResult{Found: true, Entry: entry{Rev: rev}}
}

// visualization returns the file an error names, and removes it.
func visualization(t *testing.T, err error) string {
	t.Helper()
	m := regexp.MustCompile(`visualization: (\S+\.html)`).FindStringSubmatch(err.Error())
	if m == nil {
		t.Fatalf("no visualization named in %v", err)
	}
	st, serr := os.Stat(m[1])
	if serr != nil || st.Size() == 0 {
		t.Fatalf("visualization %s: %v", m[1], serr)
	}
	os.Remove(m[1])
	return m[1]
}

// TestModel checks hand-made histories of two keys: the linearizable ones
// pass, and each defect is caught.
func TestModel(t *testing.T) {
	t.Parallel()
	a, b := `"a"`, `"b"`
	x := func(v string, rev, create, version int64) entry {
		return entry{Value: v, Rev: rev, Create: create, Version: version}
	}
	tests := []struct {
		name string
		ops  []porcupine.Operation
		feed []event // nil: the acknowledged writes, in revision order
		want string  // "" linearizable, else a part of the error
	}{
		{"every kind of operation", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(1, 11, 20, get(0), got(x(a, 1, 1, 1))),
			op(0, 21, 30, cas(0, b, 1), ok(2)),
			op(1, 31, 40, cas(0, `"c"`, 1), conflict(x(b, 2, 1, 2))),
			op(0, 41, 50, list(), listed(2, x(b, 2, 1, 2))),
			op(1, 51, 60, del(0), ok(3)),
			op(0, 61, 70, get(0), status(404)),
			op(1, 71, 80, del(0), status(404)),
			op(0, 81, 90, cas(1, a, 0), ok(4)),
			op(1, 91, 100, list(), listed(4, entry{}, x(a, 4, 4, 1))),
		}, nil, ""},
		{"concurrent writes in either order", []porcupine.Operation{
			op(0, 0, 100, set(0, a), ok(2)),
			op(1, 0, 100, set(0, b), ok(1)),
			op(2, 50, 60, get(0), got(x(b, 1, 1, 1))),
			op(2, 101, 110, get(0), got(x(a, 2, 1, 2))),
		}, nil, ""},
		{"an unanswered write resolved by the feed", []porcupine.Operation{
			op(0, 0, forever, set(0, a), unknown()),
			op(1, 50, 60, get(0), got(x(a, 7, 7, 1))),
		}, []event{{Type: "set", Key: "r/k0", Value: a, Rev: 7, At: 40}}, ""},
		{"an unanswered write that did not take effect", []porcupine.Operation{
			op(0, 0, forever, set(0, a), unknown()),
			op(1, 50, 60, get(0), status(404)),
		}, []event{}, ""},
		{"stale read", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(0, 20, 30, set(0, b), ok(2)),
			op(1, 40, 50, get(0), got(x(a, 1, 1, 1))),
		}, nil, "not linearizable"},
		{"stale listing", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(0, 20, 30, set(1, b), ok(2)),
			op(1, 40, 50, list(), listed(1, x(a, 1, 1, 1))),
		}, nil, "not linearizable"},
		{"lost acknowledged write", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(1, 20, 30, get(0), status(404)),
		}, nil, "not linearizable"},
		{"read of a write that did not take effect", []porcupine.Operation{
			op(0, 0, forever, set(0, a), unknown()),
			op(1, 50, 60, get(0), got(x(a, 7, 7, 1))),
		}, []event{}, "not linearizable"},
		{"revisions against real time", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(2)),
			op(1, 20, 30, set(1, b), ok(1)),
		}, nil, "not linearizable"},
		{"listing that is no snapshot", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(0, 0, 10, set(1, a), ok(2)),
			op(1, 20, 30, list(), listed(2, x(a, 1, 1, 1))),
		}, nil, "not linearizable"},
		{"listing revision past a write it lacks", []porcupine.Operation{
			op(0, 0, 100, set(0, a), ok(1)),
			op(1, 0, 100, set(1, b), ok(2)),
			op(2, 20, 30, list(), listed(3, x(a, 1, 1, 1))),
		}, nil, "not linearizable"},
		{"listing with a wrong entry", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(1, 20, 30, list(), listed(1, x(a, 1, 1, 2))),
		}, nil, "not linearizable"},
		{"condition decided wrong", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(1, 20, 30, cas(0, b, 0), ok(2)),
		}, nil, "not linearizable"},
		{"wrong version", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(0, 20, 30, set(0, b), ok(2)),
			op(1, 40, 50, get(0), got(x(b, 2, 1, 1))),
		}, nil, "not linearizable"},
		{"revision given twice", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(1, 20, 30, set(1, b), ok(1)),
		}, nil, "acknowledged to two writes"},
		{"acknowledged write missing from the feed", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(0, 20, 30, set(0, b), ok(2)),
		}, []event{{Type: "set", Key: "r/k0", Value: a, Rev: 1}}, "missing from the feed"},
		{"feed at another revision than the answer", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
		}, []event{{Type: "set", Key: "r/k0", Value: a, Rev: 3}}, "answered"},
		{"feed event nobody wrote", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
		}, []event{{Type: "set", Key: "r/k0", Value: a, Rev: 1}, {Type: "set", Key: "r/k1", Value: b, Rev: 2}}, "no client wrote"},

		// Transactions (keys r/k0, r/k1, r/k2).
		{"transactions of every kind", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			// A move: k0 deleted, k1 set, both read after.
			op(1, 11, 20, txnOf([]cond{{Key: 0, Target: onRevision, Rev: 1}, {Key: 1, Target: onExists}},
				[]txnOp{tdel(0), tset(1, b), tget(0), tget(1)}, []txnOp{tget(0)}),
				ran(true, 2, deleted(2), found(x(b, 2, 2, 1)), opResult{}, found(x(b, 2, 2, 1)))),
			// The same move again: its Else reads, at the last revision.
			op(0, 21, 30, txnOf([]cond{{Key: 0, Target: onRevision, Rev: 1}, {Key: 1, Target: onExists}},
				[]txnOp{tdel(0), tset(1, `"c"`)}, []txnOp{tget(0), tget(1)}),
				ran(false, 2, opResult{}, found(x(b, 2, 2, 1)))),
			// A value condition that fails; Else writes two keys.
			op(1, 31, 40, txnOf([]cond{{Key: 1, Target: onValue, Value: a}},
				[]txnOp{tset(2, `"d"`)}, []txnOp{tset(0, `"e"`), tset(2, `"f"`), tget(1)}),
				ran(false, 3, found(x(`"e"`, 3, 3, 1)), found(x(`"f"`, 3, 3, 1)), found(x(b, 2, 2, 1)))),
			op(0, 41, 50, txnOf(nil, []txnOp{tdel(1), tget(0)}, nil), ran(true, 4, deleted(4), found(x(`"e"`, 3, 3, 1)))),
			// A delete of a missing key changes nothing: read-only.
			op(1, 51, 60, txnOf([]cond{{Key: 2, Target: onRevision, Compare: ">", Rev: 3}}, []txnOp{tdel(2)}, []txnOp{tdel(1), tget(2)}),
				ran(false, 4, opResult{}, found(x(`"f"`, 3, 3, 1)))),
			op(0, 61, 70, list(), listed(4, x(`"e"`, 3, 3, 1), entry{}, x(`"f"`, 3, 3, 1))),
		}, nil, ""},
		{"an unanswered transaction resolved by the feed", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(1, 20, forever, txnOf(nil, []txnOp{tdel(0), tset(1, b), tget(2)}, nil), unknown()),
			op(2, 50, 60, get(1), got(x(b, 5, 5, 1))),
			op(2, 61, 70, get(0), status(404)),
		}, []event{
			{Type: "set", Key: "r/k0", Value: a, Rev: 1, At: 10},
			{Type: "delete", Key: "r/k0", Rev: 5, At: 40},
			{Type: "set", Key: "r/k1", Value: b, Rev: 5, At: 41},
		}, ""},
		{"transaction observed half applied", []porcupine.Operation{
			op(0, 0, 10, txnOf(nil, []txnOp{tset(0, a), tset(1, b)}, nil), ran(true, 1, found(x(a, 1, 1, 1)), found(x(b, 1, 1, 1)))),
			op(1, 20, 30, get(0), got(x(a, 1, 1, 1))),
			op(1, 31, 40, get(1), status(404)),
		}, nil, "not linearizable"},
		{"transaction observed half applied by a listing", []porcupine.Operation{
			op(0, 0, 100, txnOf(nil, []txnOp{tset(0, a), tset(1, b)}, nil), ran(true, 1, found(x(a, 1, 1, 1)), found(x(b, 1, 1, 1)))),
			op(1, 20, 30, list(), listed(1, x(a, 1, 1, 1))),
		}, nil, "not linearizable"},
		{"transaction's get before its writes", []porcupine.Operation{
			op(0, 0, 10, txnOf(nil, []txnOp{tset(0, a), tget(0)}, nil), ran(true, 1, found(x(a, 1, 1, 1)), opResult{})),
		}, nil, "not linearizable"},
		{"transaction on the wrong branch", []porcupine.Operation{
			op(0, 0, 10, txnOf([]cond{{Key: 0, Target: onExists, Exists: true}}, []txnOp{tset(1, a)}, []txnOp{tset(2, b)}),
				ran(true, 1, found(x(a, 1, 1, 1)))),
		}, nil, "not linearizable"},
		{"stale read-only transaction", []porcupine.Operation{
			op(0, 0, 10, set(0, a), ok(1)),
			op(0, 20, 30, set(0, b), ok(2)),
			op(1, 40, 50, txnOf(nil, []txnOp{tget(0)}, nil), ran(true, 1, found(x(a, 1, 1, 1)))),
		}, nil, "not linearizable"},
		{"transaction whose writes are not at its revision", []porcupine.Operation{
			op(0, 0, 10, txnOf(nil, []txnOp{tset(0, a), tset(1, b)}, nil), ran(true, 2, found(x(a, 2, 2, 1)), found(x(b, 2, 2, 1)))),
		}, []event{{Type: "set", Key: "r/k0", Value: a, Rev: 1}, {Type: "set", Key: "r/k1", Value: b, Rev: 2}}, "acknowledged to txn"},
		{"half a transaction in the feed", []porcupine.Operation{
			op(0, 0, 10, txnOf(nil, []txnOp{tset(0, a), tset(1, b)}, nil), ran(true, 1, found(x(a, 1, 1, 1)), found(x(b, 1, 1, 1)))),
		}, []event{{Type: "set", Key: "r/k0", Value: a, Rev: 1}}, "which made [set r/k0"},
		{"half an unanswered transaction in the feed", []porcupine.Operation{
			op(0, 0, forever, txnOf(nil, []txnOp{tset(0, a), tset(1, b)}, nil), unknown()),
		}, []event{{Type: "set", Key: "r/k1", Value: b, Rev: 1}}, "lacks its set of r/k0"},
		{"a transaction's change at another revision", []porcupine.Operation{
			op(0, 0, forever, txnOf(nil, []txnOp{tset(0, a), tdel(1)}, nil), unknown()),
			op(1, 0, 10, set(1, b), ok(1)),
		}, []event{{Type: "set", Key: "r/k1", Value: b, Rev: 1}, {Type: "set", Key: "r/k0", Value: a, Rev: 2}, {Type: "delete", Key: "r/k1", Rev: 3}}, "which no client made"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := &history{name: "r", keys: []string{"r/k0", "r/k1", "r/k2"}, ops: tt.ops}
			feed := tt.feed
			if feed == nil {
				slices.SortFunc(tt.ops, func(a, b porcupine.Operation) int {
					return cmp.Compare(a.Output.(response).Rev, b.Output.(response).Rev)
				})
				for _, o := range tt.ops {
					in, out := o.Input.(request), o.Output.(response)
					for _, ev := range changes(h.keys, in, out) {
						ev.Rev, ev.At = out.Rev, o.Return
						feed = append(feed, ev)
					}
				}
			}
			err := checkHistory(h, feed, time.Minute)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v, want linearizable", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			case tt.want == "not linearizable":
				visualization(t, err)
			}
		})
	}
}

// TestWatchValidators checks hand-made feeds: duplicates, gaps, reorders,
// early progress events and wrong resume revisions are caught.
func TestWatchValidators(t *testing.T) {
	t.Parallel()
	ev := func(rev int64) watchItem { return watchItem{Kind: "set", Key: "k", Value: "1", Rev: rev} }
	// tx is an event of a transaction at revision 8, with More or not.
	tx := func(key string, more bool) watchItem {
		return watchItem{Kind: "set", Key: key, Value: "1", Rev: 8, More: more}
	}
	progress := func(rev int64) watchItem { return watchItem{Kind: "progress", Rev: rev} }
	closed := func(code int, reason string) watchItem { return watchItem{Kind: "closed", Code: code, Reason: reason} }
	good := []watchItem{ev(1), ev(2), ev(4), progress(6), ev(7), tx("j", true), tx("k", false)}
	then := func(items ...watchItem) []watchItem { return append([]watchItem{ev(1), ev(2), ev(4), ev(7)}, items...) }
	tests := []struct {
		name  string
		other []watchItem // the second watcher's items; the first gets good
		want  string
	}{
		{"same feed", good, ""},
		{"closed and resumed", []watchItem{ev(1), ev(2), closed(4408, "slow consumer, resume from 3"), ev(4), ev(7), tx("j", true), tx("k", false)}, ""},
		{"transaction whole again after a lost connection", then(tx("j", true), closed(-1, "EOF"), tx("j", true), tx("k", false)), ""},
		{"duplicate", []watchItem{ev(1), ev(2), ev(2), ev(4), ev(7)}, "duplicate or out of order"},
		{"reordered", []watchItem{ev(1), ev(4), ev(2), ev(7)}, "duplicate or out of order"},
		{"gap", []watchItem{ev(1), ev(4), ev(7)}, "event 1: got set k=1 at 4, want set k=1 at 2"},
		{"missing tail", []watchItem{ev(1), ev(2), ev(4)}, "3 events missing"},
		{"early progress", []watchItem{ev(1), progress(2), ev(2), ev(4), ev(7)}, "progress at revision 2 after 1 events"},
		{"progress past an unsent change", []watchItem{ev(1), ev(2), progress(5), ev(7)}, "progress at revision 5 after 2 events"},
		{"resume claims too much", []watchItem{ev(1), closed(4408, "slow consumer, resume from 5"), ev(2), ev(4), ev(7)}, "want resume from 2"},
		{"compacted", []watchItem{ev(1), ev(2), closed(4410, "history compacted, oldest retained revision 9")}, "closed for a gap"},
		{"transaction without More", then(tx("j", false), tx("k", false)), "a revision's events without More"},
		{"More on a transaction's last event", then(tx("j", true), tx("k", true), ev(9)), "revision 8 split: set k with More, then set at revision 9"},
		{"progress inside a transaction", then(tx("j", true), progress(8), tx("k", false)), "revision 8 split: set j with More, then progress"},
		{"closed inside a transaction", then(tx("j", true), closed(4408, "slow consumer, resume from 8"), tx("j", true), tx("k", false)),
			"closed with 4408 (slow consumer, resume from 8) inside revision 8, after 1 of its events"},
		{"resumed inside a transaction", then(tx("j", true), closed(-1, "EOF"), tx("k", false)), "event 4: got set k=1 at 8, want set j=1 at 8"},
		{"a key twice in a transaction", then(tx("j", true), tx("j", true), tx("k", false)), "set j twice at revision 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			w0 := &watcher{name: "w0", items: good}
			w1 := &watcher{name: "w1", items: tt.other}
			_, _, problems := validateWatches([]*watcher{w0, w1})
			all := strings.Join(problems, "\n")
			switch {
			case tt.want == "" && len(problems) > 0:
				t.Fatalf("got %s, want no problem", all)
			case tt.want != "" && !strings.Contains(all, tt.want):
				t.Fatalf("got %q, want a problem with %q", all, tt.want)
			}
		})
	}
}

// TestCheckerFindsStaleReads runs two Kafka instances, the second one
// getting the broker's answers 500ms late, with reads that ask for
// consistency=local: the suite must find a stale read (as the issue
// describes it: a write acknowledged by one instance, and then not seen by
// a read on the other). With the default, linearizable reads, the same
// fault passes (TestRobustness/kafka/slow-delivery). A run on a very busy
// machine may send too few requests to hit one: up to three runs.
func TestCheckerFindsStaleReads(t *testing.T) {
	t.Parallel()
	for run := 1; ; run++ {
		res := runScenario(t, scenario{
			name: "local-reads", backend: "kafka", nodes: 2, watchers: 1,
			traffic: trafficConfig{clients: 6, keys: 2, local: true},
			fault:   constantDelay(500 * time.Millisecond),
		}, 4*time.Second)
		found := false
		for _, p := range res.problems {
			if strings.Contains(p, "not linearizable") {
				found = true
				t.Logf("run %d found, as it should: %s", run, p)
				visualization(t, errString(p))
			} else {
				t.Errorf("unexpected problem: %s", p)
			}
		}
		switch {
		case found:
			return
		case run == 3:
			t.Fatal("local reads on an instance 500ms behind: the checker found no stale read in three runs")
		}
	}
}

// TestCheckerFindsLostWrites kills and restarts kvsd with the memory
// backend, which loses every acknowledged write: the suite must say so.
func TestCheckerFindsLostWrites(t *testing.T) {
	t.Parallel()
	res := runScenario(t, scenario{
		name: "memory-restart", backend: "memory", nodes: 1, watchers: 1,
		traffic: trafficConfig{clients: 4, keys: 3},
		fault:   killRestart(time.Second, 1500*time.Millisecond, 0),
	}, 2500*time.Millisecond)
	if len(res.problems) == 0 {
		t.Fatal("kvsd with the memory backend restarted: the checker found nothing lost")
	}
	for _, p := range res.problems {
		t.Logf("found: %.300s", p)
		if strings.Contains(p, "visualization: ") {
			visualization(t, errString(p))
		}
	}
}

// TestCheckerFindsFeedDefects has the first watcher record one event twice
// and skip another, record a close with 4408 inside a transaction's
// revision (after its first event), and drop More from the first event of
// another transaction: the watch validators must catch each. A run on a
// very busy machine may make too few transactions of several changes for
// both: up to three runs.
func TestCheckerFindsFeedDefects(t *testing.T) {
	t.Parallel()
	for run := 1; ; run++ {
		var n, txns int
		res := runScenario(t, scenario{
			name: "feed-defects", backend: "file", nodes: 1, watchers: 2,
			traffic: trafficConfig{clients: 4, keys: 3},
			inject: func(items []watchItem, it watchItem) []watchItem {
				if it.Kind != "set" && it.Kind != "delete" {
					return append(items, it)
				}
				n++
				switch {
				case n == 5:
					return append(items, it, it) // duplicated
				case n == 9:
					return items // lost
				case it.More && txns == 0:
					txns++
					return append(items, it, watchItem{Kind: "closed", Code: 4408, Reason: fmt.Sprintf("slow consumer, resume from %d", it.Rev), At: it.At})
				case it.More && txns == 1:
					txns++
					it.More = false
				}
				return append(items, it)
			},
		}, 1500*time.Millisecond)
		all := strings.Join(res.problems, "\n")
		// Each defect, and the problem that names it (any of them: an
		// event duplicated inside a transaction's revision is the same
		// key twice in it).
		want := [][]string{{"duplicate or out of order", "twice at revision"}, {"watcher 0.0 differs from"}}
		if txns == 2 {
			want = append(want, []string{"closed with 4408 (slow consumer, resume from"}, []string{"a revision's events without More"})
		}
		for _, w := range want {
			if !slices.ContainsFunc(w, func(s string) bool { return strings.Contains(all, s) }) {
				t.Errorf("a duplicated and a lost event, a close inside a revision, a missing More: got problems %q, want one with %q", all, w)
			}
		}
		switch {
		case txns == 2 || t.Failed():
			return
		case run == 3:
			t.Fatalf("three runs made %d transactions of several changes, want 2", txns)
		}
	}
}

type errString string

func (e errString) Error() string { return string(e) }
