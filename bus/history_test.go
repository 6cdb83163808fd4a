package bus_test

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/kv"
)

// triple encodes a change with its value three times: longer than the hub
// guesses, for values over 32 bytes, so that the encoding is redone.
func triple(b []byte, c *kv.Change) []byte {
	b = fmt.Appendf(b, "%v %s %d ", c.Op, c.Key, c.Revision)
	for range 3 {
		b = append(b, c.Value...)
	}
	return b
}

// historyChanges returns n changes from revision 1 on: sets and deletes of
// keys under a/ and b/, with values from 1 byte to larger than a block.
func historyChanges(n int) []kv.Change {
	var cs []kv.Change
	for i := range n {
		c := kv.Change{Op: kv.OpSet, Key: "ab"[i%2:i%2+1] + "/" + strconv.Itoa(i%7), Revision: int64(i + 1)}
		if i%5 == 4 {
			c.Op = kv.OpDelete
		} else {
			size := []int{1, 40, 300, 9000}[i%4]
			c.Value = []byte(strconv.Quote(strings.Repeat(string(rune('a'+i%26)), size)))
		}
		cs = append(cs, c)
	}
	return cs
}

// TestHistoryRetainsChanges publishes changes of every size, one by one and
// in batches, into a history small enough to drop most of them, and checks
// that a subscription replays exactly the retained ones that match its
// filter, with their encodings, and that the live events carry the same.
func TestHistoryRetainsChanges(t *testing.T) {
	for _, encode := range []bool{true, false} {
		t.Run(fmt.Sprintf("encode=%v", encode), func(t *testing.T) {
			opts := bus.Options{History: 50, HistoryBytes: 256 << 10}
			if encode {
				opts.Encode = triple
			}
			h := bus.New(opts)
			defer h.Close()
			live, err := h.Subscribe(bus.Filter{Prefix: "a/"}, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer live.Close()
			cs := historyChanges(400)
			for i := 0; i < len(cs); {
				n := min(1+i%9, len(cs)-i)
				h.Publish(slices.Clone(cs[i : i+n]))
				i += n
			}

			check := func(what string, ev *kv.Event, c kv.Change) {
				t.Helper()
				if ev.Revision != c.Revision || ev.Op != c.Op || ev.Key != c.Key {
					t.Fatalf("%s: got %v %q at %d, want %v %q at %d", what, ev.Op, ev.Key, ev.Revision, c.Op, c.Key, c.Revision)
				}
				switch {
				case encode && (ev.Value != nil || !bytes.Equal(ev.Data, triple(nil, &c))):
					t.Fatalf("%s %d: Data %.40q (Value %d bytes), want %.40q", what, c.Revision, ev.Data, len(ev.Value), triple(nil, &c))
				case !encode && (ev.Data != nil || !bytes.Equal(ev.Value, c.Value)):
					t.Fatalf("%s %d: Value %.40q (Data %d bytes), want %.40q", what, c.Revision, ev.Value, len(ev.Data), c.Value)
				}
			}

			_, err = h.Subscribe(bus.Filter{}, 1)
			var ce *kv.CompactedError
			if !errors.As(err, &ce) || ce.Oldest < 300 {
				t.Fatalf("from 1 after 400 changes into 50: got %v, want a CompactedError past 300", err)
			}
			for _, f := range []bus.Filter{{}, {Prefix: "b/"}, {Key: "a/3"}} {
				sub, err := h.Subscribe(f, ce.Oldest)
				if err != nil {
					t.Fatal(err)
				}
				var want []kv.Change
				for _, c := range cs[ce.Oldest-1:] {
					if f.Key == c.Key || f.Key == "" && strings.HasPrefix(c.Key, f.Prefix) {
						want = append(want, c)
					}
				}
				got := replayed(sub)
				if len(got) != len(want) || len(want) == 0 {
					t.Fatalf("filter %+v: replayed %d changes, want %d", f, len(got), len(want))
				}
				for i := range got {
					check(fmt.Sprintf("filter %+v: replay", f), got[i], want[i])
				}
				sub.Close()
			}

			// The live subscriber's queue (1024) holds every a/ change.
			for _, c := range cs {
				if !strings.HasPrefix(c.Key, "a/") {
					continue
				}
				ev, ok := <-live.C()
				if !ok {
					t.Fatalf("live subscriber ended: %v", live.Err())
				}
				check("live", ev, c)
			}
		})
	}
}

// TestReplayReadsTheHistory: a replay reads the history as it goes, so it
// holds one chunk at a time. While the history still holds the changes the
// replay has yet to deliver, the replay is whole however much the history
// moves on; when the history drops one of them first, the replay ends where
// it was, with kv.ErrSlowConsumer (the subscriber resumes from there and
// learns that the history no longer reaches it), and when Forget drops them,
// with a *kv.CompactedError. It never skips a change.
func TestReplayReadsTheHistory(t *testing.T) {
	tests := []struct {
		name    string
		history int
		move    func(h *bus.Hub, cs []kv.Change) // after the first chunk
		whole   bool
		wantErr error
	}{
		{"the history moves on but keeps the rest", 1000, func(h *bus.Hub, cs []kv.Change) {
			for _, c := range cs[600:] {
				h.Publish([]kv.Change{c})
			}
		}, true, nil},
		{"the history drops the rest", 600, func(h *bus.Hub, cs []kv.Change) {
			for _, c := range cs[600:] {
				h.Publish([]kv.Change{c})
			}
		}, false, kv.ErrSlowConsumer},
		{"Forget drops the rest", 1000, func(h *bus.Hub, cs []kv.Change) {
			h.Forget(cs[500].Revision)
		}, false, kv.ErrCompacted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bus.New(bus.Options{History: tt.history, HistoryBytes: 64 << 20, Encode: triple})
			defer h.Close()
			cs := historyChanges(1000)
			h.Publish(slices.Clone(cs[:600]))
			sub, err := h.Subscribe(bus.Filter{}, 1)
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Close()
			var got []*kv.Event
			for chunk := range sub.Replay() {
				if len(got) == 0 {
					tt.move(h, cs)
				}
				for _, ev := range chunk {
					got = append(got, ev)
					sub.Done(ev)
				}
			}
			for i, ev := range got {
				c := cs[i]
				if ev.Revision != c.Revision || !bytes.Equal(ev.Data, triple(nil, &c)) {
					t.Fatalf("replay %d: got %d %.40q, want %d %.40q", i, ev.Revision, ev.Data, c.Revision, triple(nil, &c))
				}
			}
			if tt.whole {
				if len(got) != 600 || sub.Err() != nil {
					t.Fatalf("replayed %d changes (%v), want 600", len(got), sub.Err())
				}
				return
			}
			if len(got) == 0 || len(got) >= 600 || !errors.Is(sub.Err(), tt.wantErr) {
				t.Fatalf("replayed %d of 600 changes, then %v; want part of them, then %v", len(got), sub.Err(), tt.wantErr)
			}
			for ev := range sub.C() { // closed: the loop ends
				sub.Done(ev)
			}
		})
	}
}
