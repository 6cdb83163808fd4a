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

// queued takes every event queued on sub without waiting, and lets go of
// each.
func queued(sub *bus.Subscription) []*kv.Event {
	var evs []*kv.Event
	for {
		select {
		case ev, ok := <-sub.C():
			if !ok {
				return evs
			}
			evs = append(evs, ev)
			sub.Done(ev)
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

// bigUnit is a transaction's changes: a set of each key to a value of
// size bytes, all at rev.
func bigUnit(rev int64, size int, keys ...string) []kv.Change {
	var cs []kv.Change
	for _, k := range keys {
		cs = append(cs, setOf(rev, k, size))
	}
	return cs
}

// TestHubTxnBytesAllOrNothing: a transaction's events are charged against
// a subscriber's memory bound, and against the total, as a whole: a
// subscriber near its bound gets all of a transaction of large values or
// is dropped before any of it, never part of it (charged event by event,
// it would get the first two of three here); one that holds nothing gets
// a transaction larger than its bound whole; one whose filter matches part
// of it is charged for that part only.
func TestHubTxnBytesAllOrNothing(t *testing.T) {
	const mb = 1_000_000
	h := bus.New(bus.Options{BufferBytes: 5 << 20, Encode: encodeValue})
	defer h.Close()
	subscribe := func(f bus.Filter) *bus.Subscription {
		s, err := h.Subscribe(f, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	near, empty, part := subscribe(bus.Filter{}), subscribe(bus.Filter{Prefix: "k"}), subscribe(bus.Filter{Prefix: "k"})
	h.Publish(bigUnit(1, mb, "a", "b", "c"))
	// near holds 3 MB; empty and part hold nothing (their filter matches
	// none of revision 1).
	h.Publish(bigUnit(2, mb, "k1", "k2", "k3", "k4", "k5", "k6")) // 6 MB: more than any bound
	if !errors.Is(near.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("a subscriber holding 3 MB of 5 MiB, for 6 MB more: Err %v, want kv.ErrSlowConsumer", near.Err())
	}
	if got, want := describe(queued(near)), []string{"1 a+", "1 b+", "1 c"}; !slices.Equal(got, want) {
		t.Fatalf("near its bound: queued %q, want %q and none of revision 2", got, want)
	}
	if got := describe(queued(empty)); len(got) != 6 || empty.Err() != nil || got[5] != "2 k6" {
		t.Fatalf("holding nothing: queued %q (%v), want the 6 MB transaction whole", got, empty.Err())
	}
	// part now holds 6 MB: over its bound, as one that held nothing may.
	// A transaction with one change it matches does not fit either.
	h.Publish(slices.Concat(bigUnit(3, mb, "x"), bigUnit(3, 10, "k7")))
	if !errors.Is(part.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("over its bound: Err %v, want kv.ErrSlowConsumer", part.Err())
	}

	// Near the bound by one event: 3 MB held, a transaction of 2 MB fits
	// (5 MB of 5 MiB), one of 3 MB does not, and is not queued in part.
	fits := subscribe(bus.Filter{Prefix: "f"})
	h.Publish(bigUnit(4, mb, "f1", "f2", "f3"))
	h.Publish(bigUnit(5, mb, "f4", "f5"))
	h.Publish(bigUnit(6, mb, "f6", "f7", "f8"))
	if got, want := describe(queued(fits)), []string{"4 f1+", "4 f2+", "4 f3", "5 f4+", "5 f5"}; !slices.Equal(got, want) || !errors.Is(fits.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("queued %q (%v), want %q, then dropped", got, fits.Err(), want)
	}
}

// TestHubTxnTotalBytesAllOrNothing: a transaction whose events would take
// the total past TotalBufferBytes drops the subscribers it was for before
// any of them, and counts nothing for them; when they are gone, nothing
// is held.
func TestHubTxnTotalBytesAllOrNothing(t *testing.T) {
	const mb = 1_000_000
	h := bus.New(bus.Options{TotalBufferBytes: 7 << 19, Encode: encodeValue}) // 3.5 MiB
	defer h.Close()
	a, err := h.Subscribe(bus.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := h.Subscribe(bus.Filter{Prefix: "t"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	h.Publish(bigUnit(1, mb, "x"))              // 1 MB, held by a
	h.Publish(bigUnit(2, mb, "t1", "t2", "t3")) // 3 MB more: 2 of them would fit
	for _, s := range []*bus.Subscription{a, b} {
		if !errors.Is(s.Err(), kv.ErrSlowConsumer) {
			t.Fatalf("Err %v, want kv.ErrSlowConsumer", s.Err())
		}
	}
	if got := describe(queued(a)); !slices.Equal(got, []string{"1 x"}) {
		t.Fatalf("a: queued %q, want only revision 1", got)
	}
	if got := describe(queued(b)); len(got) != 0 {
		t.Fatalf("b: queued %q, want nothing", got)
	}
	if now, peak := h.Buffered(); now > 2*mb || peak > 7<<19 {
		t.Fatalf("Buffered: %d now, %d at most; want revision 1's event only", now, peak)
	}
	a.Close()
	b.Close()
	if now, _ := h.Buffered(); now != 0 {
		t.Fatalf("Buffered after they left: %d, want 0", now)
	}
}

// TestReplayOutrunAtRevisionBoundary: a replay of transactions that the
// history outruns ends, with kv.ErrSlowConsumer, after a whole revision:
// what it yielded is whole revisions, each but their last event with
// More, and nothing of the revisions the history dropped.
func TestReplayOutrunAtRevisionBoundary(t *testing.T) {
	h := bus.New(bus.Options{History: 600, Encode: encodeValue})
	defer h.Close()
	for rev := int64(1); rev <= 200; rev++ {
		h.Publish(bigUnit(rev, 10<<10, "a", "b", "c"))
	}
	sub, err := h.Subscribe(bus.Filter{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	var got []*kv.Event
	for chunk := range sub.Replay() {
		if len(got) == 0 {
			for rev := int64(201); rev <= 300; rev++ { // the history drops 1 to 100
				h.Publish(bigUnit(rev, 10<<10, "a", "b", "c"))
			}
		}
		for _, ev := range chunk {
			got = append(got, ev)
			sub.Done(ev)
		}
	}
	if !errors.Is(sub.Err(), kv.ErrSlowConsumer) || len(got) == 0 || len(got) >= 600 {
		t.Fatalf("replayed %d of 600 events, then %v; want part of them, then kv.ErrSlowConsumer", len(got), sub.Err())
	}
	for i, ev := range got {
		rev, more := int64(i/3+1), i%3 < 2
		if ev.Revision != rev || ev.More != more {
			t.Fatalf("event %d: revision %d, More %v; want %d, %v (whole revisions from 1)", i, ev.Revision, ev.More, rev, more)
		}
	}
	if len(got)%3 != 0 {
		t.Fatalf("the replay ended inside revision %d", got[len(got)-1].Revision)
	}
}
