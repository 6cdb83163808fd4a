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
// etcd's robustness tests do: a set whose unique value is in the feed took
// effect at the feed's revision, no later than a watcher received it; a
// delete in the feed that no acknowledged delete explains is the earliest
// unanswered delete of its key called before it was received; the other
// unanswered writes did not take effect (the feed has every change: the
// watch validators check it), and unanswered reads say nothing. It also
// checks that the feed agrees with the answers: every event is a write a
// client made, at the revision it was answered with, and every
// acknowledged write is in the feed. It returns the operations to check
// and the revisions of every write that took effect.
func patch(h *history, feed []event) (ops []porcupine.Operation, revs []int64, problems []string) {
	index := make(map[string]int, len(h.keys))
	for i, k := range h.keys {
		index[k] = i
	}
	all := h.operations()
	bySetValue := make(map[string]int)
	acked := make(map[int64]int) // revision -> operation
	for i, op := range all {
		in, out := op.Input.(request), op.Output.(response)
		if in.Kind == opSet {
			bySetValue[in.Value] = i
		}
		if (in.Kind == opSet || in.Kind == opDelete) && !out.Unknown && out.Code == 200 {
			if j, ok := acked[out.Rev]; ok {
				problems = append(problems, fmt.Sprintf("revision %d acknowledged to two writes: %s and %s",
					out.Rev, describe(h.keys, all[j].Input.(request), all[j].Output.(response)), describe(h.keys, in, out)))
			}
			acked[out.Rev] = i
		}
	}
	resolve := func(i int, ev event) {
		out := all[i].Output.(response)
		out.Unknown, out.Code, out.Rev = false, 200, ev.Rev
		all[i].Output = out
		all[i].Return = min(all[i].Return, ev.At)
	}
	inFeed := make(map[int64]bool)
	for _, ev := range feed {
		k, ok := index[ev.Key]
		if !ok {
			continue
		}
		inFeed[ev.Rev] = true
		if i, ok := acked[ev.Rev]; ok {
			in := all[i].Input.(request)
			if in.Key != k || (ev.Type == "set") != (in.Kind == opSet) || (in.Kind == opSet && in.Value != ev.Value) {
				problems = append(problems, fmt.Sprintf("the feed has %s %s=%s at revision %d, acknowledged to %s",
					ev.Type, ev.Key, short(ev.Value), ev.Rev, describe(h.keys, in, all[i].Output.(response))))
			}
			continue
		}
		switch ev.Type {
		case "set":
			i, ok := bySetValue[ev.Value]
			switch {
			case !ok || all[i].Input.(request).Key != k:
				problems = append(problems, fmt.Sprintf("the feed has set %s=%s at revision %d, which no client wrote", ev.Key, short(ev.Value), ev.Rev))
			case !all[i].Output.(response).Unknown:
				problems = append(problems, fmt.Sprintf("the feed has set %s=%s at revision %d, answered %s",
					ev.Key, short(ev.Value), ev.Rev, describe(h.keys, all[i].Input.(request), all[i].Output.(response))))
			default:
				resolve(i, ev)
			}
		case "delete":
			best := -1
			for i, op := range all {
				in, out := op.Input.(request), op.Output.(response)
				if in.Kind == opDelete && in.Key == k && out.Unknown && op.Call <= ev.At && (best < 0 || op.Call < all[best].Call) {
					best = i
				}
			}
			if best < 0 {
				problems = append(problems, fmt.Sprintf("the feed has delete %s at revision %d, which no client made", ev.Key, ev.Rev))
				continue
			}
			resolve(best, ev)
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
		if (in.Kind == opSet || in.Kind == opDelete) && out.Code == 200 {
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
