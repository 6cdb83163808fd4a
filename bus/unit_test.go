package bus_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/kv"
)

// unitAt is a transaction's changes: a set of each key, all at rev.
func unitAt(rev int64, keys ...string) []kv.Change {
	var cs []kv.Change
	for _, k := range keys {
		cs = append(cs, setAt(rev, k))
	}
	return cs
}

// describe renders events as "rev key" with a "+" for More.
func describe(evs []*kv.Event) []string {
	var out []string
	for _, ev := range evs {
		s := fmt.Sprintf("%d %s", ev.Revision, ev.Key)
		if ev.More {
			s += "+"
		}
		out = append(out, s)
	}
	return out
}

// queued takes every event queued on sub without waiting.
func queued(sub *bus.Subscription) []*kv.Event {
	var evs []*kv.Event
	for {
		select {
		case ev, ok := <-sub.C():
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		default:
			return evs
		}
	}
}

// TestHubRevisionAllOrNothing: a subscriber whose queue has room for only
// part of a revision's events gets none of them: it is dropped before,
// and its queue ends with the last whole revision.
func TestHubRevisionAllOrNothing(t *testing.T) {
	h := bus.New(bus.Options{Buffer: 4})
	defer h.Close()
	sub, err := h.Subscribe(bus.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(slices.Concat(unitAt(1, "a", "b"), []kv.Change{setAt(2, "c")})) // 3 queued
	h.Publish(unitAt(3, "d", "e"))                                            // 2 more: no room
	if !errors.Is(sub.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("Err: got %v, want ErrSlowConsumer", sub.Err())
	}
	if got, want := describe(queued(sub)), []string{"1 a+", "1 b", "2 c"}; !slices.Equal(got, want) {
		t.Fatalf("queued: got %q, want %q", got, want)
	}
	// A revision that fits exactly is queued whole.
	sub2, err := h.Subscribe(bus.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(unitAt(4, "a", "b", "c", "d"))
	if sub2.Err() != nil {
		t.Fatalf("Err: %v", sub2.Err())
	}
	if got := describe(queued(sub2)); len(got) != 4 || got[3] != "4 d" {
		t.Fatalf("queued: got %q, want 4 events at 4", got)
	}
}

// TestHubMore checks More, live and replayed, for subscribers with
// filters: it is set on each event that the subscriber's own stream
// follows with another of the same revision.
func TestHubMore(t *testing.T) {
	h := bus.New(bus.Options{})
	defer h.Close()
	filters := []struct {
		f    bus.Filter
		want []string
	}{
		{bus.Filter{}, []string{"1 a1+", "1 b+", "1 a2", "2 a3", "3 b", "4 a4+", "4 a5"}},
		{bus.Filter{Prefix: "a"}, []string{"1 a1+", "1 a2", "2 a3", "4 a4+", "4 a5"}},
		{bus.Filter{Key: "a2"}, []string{"1 a2"}},
		{bus.Filter{Prefix: "b"}, []string{"1 b", "3 b"}},
	}
	var subs []*bus.Subscription
	for _, f := range filters {
		sub, err := h.Subscribe(f.f, 1)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	h.Publish(slices.Concat(unitAt(1, "a1", "b", "a2"), []kv.Change{setAt(2, "a3"), setAt(3, "b")}))
	h.Publish(unitAt(4, "a4", "a5"))
	for i, f := range filters {
		if got := describe(queued(subs[i])); !slices.Equal(got, f.want) {
			t.Errorf("live, %+v: got %q, want %q", f.f, got, f.want)
		}
		sub, err := h.Subscribe(f.f, 1)
		if err != nil {
			t.Fatal(err)
		}
		if got := describe(replayed(sub)); !slices.Equal(got, f.want) {
			t.Errorf("replayed, %+v: got %q, want %q", f.f, got, f.want)
		}
		sub.Close()
	}
}

// TestHubHistoryDropsWholeRevisions: the history makes room by dropping
// whole revisions: a subscription from a revision it dropped is refused,
// and one from the next gets that revision whole.
func TestHubHistoryDropsWholeRevisions(t *testing.T) {
	h := bus.New(bus.Options{History: 5})
	defer h.Close()
	h.Publish(unitAt(1, "a", "b", "c"))
	h.Publish(unitAt(2, "d", "e"))
	h.Publish(unitAt(3, "f")) // the ring is full: revision 1 goes, all of it
	var ce *kv.CompactedError
	if _, err := h.Subscribe(bus.Filter{}, 1); !errors.As(err, &ce) || ce.Oldest != 2 {
		t.Fatalf("subscribe from 1: got %v, want Oldest 2", err)
	}
	sub, err := h.Subscribe(bus.Filter{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if got, want := describe(replayed(sub)), []string{"2 d+", "2 e", "3 f"}; !slices.Equal(got, want) {
		t.Fatalf("replay from 2: got %q, want %q", got, want)
	}
}
