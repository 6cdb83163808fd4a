package robustness

import (
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// forever is the return time of an operation whose answer never came: it
// may take effect at any time after its call.
const forever = math.MaxInt64

// history is one round's operations: a key space of its own (the round's
// prefix), so that each round is checked from an empty state.
type history struct {
	name string
	keys []string // at most maxKeys

	mu  sync.Mutex
	ops []porcupine.Operation
}

func (h *history) add(op porcupine.Operation) {
	h.mu.Lock()
	h.ops = append(h.ops, op)
	h.mu.Unlock()
}

func (h *history) operations() []porcupine.Operation {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// event is a change of the feed, as the watchers received it.
type event struct {
	Type  string // "set" or "delete"
	Key   string
	Value string // a set's value as JSON text
	Rev   int64
	At    int64 // when the first watcher received it, on the clock of the operations
}

// patch resolves the operations whose answer never came with the feed, as
// etcd's robustness tests do: a set (or a transaction) whose unique value
// is in the feed took effect at the feed's revision, no later than a
// watcher received it; a delete in the feed that no acknowledged delete
// explains is the earliest unanswered delete of its key called before it
// was received; the other unanswered writes did not take effect (the feed
// has every change: the watch validators check it), and unanswered reads
// say nothing. It also checks that the feed agrees with the answers: the
// changes of each revision are those of one write a client made, answered
// with that revision (all of a transaction's, and nothing else), and every
// acknowledged write is in the feed. It returns the operations to check and
// the revisions of every write that took effect.
func patch(h *history, feed []event) (ops []porcupine.Operation, revs []int64, problems []string) {
	index := make(map[string]int, len(h.keys))
	for i, k := range h.keys {
		index[k] = i
	}
	all := h.operations()
	// origin is where a set's value comes from: an operation, and for a
	// transaction the list.
	type origin struct {
		op      int
		elseRan bool
	}
	bySetValue := make(map[string]origin)
	acked := make(map[int64]int) // revision -> operation
	for i, op := range all {
		in, out := op.Input.(request), op.Output.(response)
		switch in.Kind {
		case opSet:
			bySetValue[in.Value] = origin{op: i}
		case opTxn:
			for _, o := range in.Txn.Then {
				if o.Kind == opSet {
					bySetValue[o.Value] = origin{op: i}
				}
			}
			for _, o := range in.Txn.Else {
				if o.Kind == opSet {
					bySetValue[o.Value] = origin{op: i, elseRan: true}
				}
			}
		}
		if changes(h.keys, in, out) != nil {
			if j, ok := acked[out.Rev]; ok {
				problems = append(problems, fmt.Sprintf("revision %d acknowledged to two writes: %s and %s",
					out.Rev, describe(h.keys, all[j].Input.(request), all[j].Output.(response)), describe(h.keys, in, out)))
			}
			acked[out.Rev] = i
		}
	}
	resolved := func(i int, out response, at int64) {
		all[i].Output = out
		all[i].Return = min(all[i].Return, at)
	}
	// The feed's changes of the round's keys, a revision at a time.
	var groups [][]event
	for _, ev := range feed {
		if _, ok := index[ev.Key]; !ok {
			continue
		}
		if n := len(groups); n > 0 && groups[n-1][0].Rev == ev.Rev {
			groups[n-1] = append(groups[n-1], ev)
		} else {
			groups = append(groups, []event{ev})
		}
	}
	inFeed := make(map[int64]bool)
	for _, g := range groups {
		rev, at := g[0].Rev, g[0].At
		for _, ev := range g {
			at = min(at, ev.At)
		}
		inFeed[rev] = true
		if i, ok := acked[rev]; ok {
			in, out := all[i].Input.(request), all[i].Output.(response)
			if want := changes(h.keys, in, out); !sameChanges(g, want) {
				problems = append(problems, fmt.Sprintf("the feed has %s at revision %d, acknowledged to %s, which made %s",
					showChanges(g), rev, describe(h.keys, in, out), showChanges(want)))
			}
			continue
		}
		// An unanswered write: a set names it.
		si := slices.IndexFunc(g, func(ev event) bool { return ev.Type == "set" })
		if si < 0 {
			if len(g) > 1 {
				problems = append(problems, fmt.Sprintf("the feed has %s at revision %d, which no client made", showChanges(g), rev))
				continue
			}
			ev, best := g[0], -1
			for i, op := range all {
				in, out := op.Input.(request), op.Output.(response)
				if in.Kind == opDelete && h.keys[in.Key] == ev.Key && out.Unknown && op.Call <= at && (best < 0 || op.Call < all[best].Call) {
					best = i
				}
			}
			if best < 0 {
				problems = append(problems, fmt.Sprintf("the feed has delete %s at revision %d, which no client made", ev.Key, rev))
				continue
			}
			resolved(best, response{Code: 200, Rev: rev}, at)
			continue
		}
		ev := g[si]
		o, ok := bySetValue[ev.Value]
		var in request
		if ok {
			in = all[o.op].Input.(request)
		}
		switch {
		case !ok || in.Kind == opSet && h.keys[in.Key] != ev.Key:
			problems = append(problems, fmt.Sprintf("the feed has set %s=%s at revision %d, which no client wrote", ev.Key, short(ev.Value), rev))
		case !all[o.op].Output.(response).Unknown:
			problems = append(problems, fmt.Sprintf("the feed has %s at revision %d, answered %s",
				showChanges(g), rev, describe(h.keys, in, all[o.op].Output.(response))))
		case in.Kind == opSet && len(g) > 1:
			problems = append(problems, fmt.Sprintf("the feed has %s at revision %d, made by %s alone", showChanges(g), rev, describe(h.keys, in, unknown())))
		case in.Kind == opSet:
			resolved(o.op, response{Code: 200, Rev: rev}, at)
		default:
			out, bad := resolveTxn(h.keys, in.Txn, o.elseRan, rev, g)
			if bad != "" {
				problems = append(problems, fmt.Sprintf("the feed has %s at revision %d, made by %s, which %s",
					showChanges(g), rev, describe(h.keys, in, unknown()), bad))
				continue
			}
			resolved(o.op, out, at)
		}
	}
	for rev, i := range acked {
		if !inFeed[rev] {
			problems = append(problems, fmt.Sprintf("acknowledged write missing from the feed: %s", describe(h.keys, all[i].Input.(request), all[i].Output.(response))))
		}
	}
	for _, op := range all {
		in, out := op.Input.(request), op.Output.(response)
		if out.Unknown {
			continue // a read that said nothing, or a write that did not take effect
		}
		if changes(h.keys, in, out) != nil {
			revs = append(revs, out.Rev)
		}
		ops = append(ops, op)
	}
	slices.SortFunc(problems, strings.Compare)
	return ops, revs, capped(problems, 20)
}

// checkHistory patches h with the feed and checks it for
// linearizability. On a failure it writes porcupine's visualization to a
// file and names it in the error.
func checkHistory(h *history, feed []event, timeout time.Duration) error {
	ops, revs, problems := patch(h, feed)
	if len(problems) > 0 {
		return fmt.Errorf("%s: the feed disagrees with the answers:\n\t%s", h.name, strings.Join(problems, "\n\t"))
	}
	m := model(h.keys, newOrder(revs))
	res, info := porcupine.CheckOperationsVerbose(m, ops, timeout)
	if res == porcupine.Ok {
		return nil
	}
	what := "not linearizable"
	if res == porcupine.Unknown {
		what = fmt.Sprintf("not shown linearizable within %v", timeout)
	}
	f, err := os.CreateTemp("", "kvs-robustness-"+strings.ReplaceAll(h.name, "/", "-")+"-*.html")
	if err != nil {
		return fmt.Errorf("%s: %d operations %s (and no visualization: %v)", h.name, len(ops), what, err)
	}
	err = porcupine.Visualize(m, info, f)
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %d operations %s (and no visualization: %v)", h.name, len(ops), what, err)
	}
	return fmt.Errorf("%s: %d operations %s; visualization: %s", h.name, len(ops), what, f.Name())
}
