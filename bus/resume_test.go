package bus_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/kv"
)

// setAt is a set of key at revision rev.
func setAt(rev int64, key string) kv.Change {
	return kv.Change{Op: kv.OpSet, Key: key, Value: []byte(`1`), Revision: rev}
}

func TestStartAfter(t *testing.T) {
	h := bus.New(bus.Options{History: 3})
	defer h.Close()
	h.StartAfter(10)
	if got := h.Rev(); got != 10 {
		t.Fatalf("Rev after StartAfter(10): got %d, want 10", got)
	}
	tests := []struct {
		name       string
		from       int64
		wantOldest int64 // 0: the subscription must succeed
		wantFrom   int64
	}{
		{"from the restart revision", 10, 11, 0},
		{"from before it", 3, 11, 0},
		{"from the first revision", 1, 11, 0},
		{"from the next revision", 11, 0, 11},
		{"from now", 0, 0, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := h.Subscribe(bus.Filter{}, tt.from)
			if tt.wantOldest != 0 {
				var ce *kv.CompactedError
				if !errors.As(err, &ce) || ce.Oldest != tt.wantOldest {
					t.Fatalf("Subscribe(from=%d): got %v, want a CompactedError with Oldest %d", tt.from, err, tt.wantOldest)
				}
				return
			}
			if err != nil {
				t.Fatalf("Subscribe(from=%d): %v", tt.from, err)
			}
			defer sub.Close()
			if got := sub.From(); got != tt.wantFrom {
				t.Fatalf("From: got %d, want %d", got, tt.wantFrom)
			}
		})
	}

	// The replayed changes after the restart revision are the new history.
	h.Publish([]kv.Change{setAt(11, "a"), setAt(12, "b")})
	sub, err := h.Subscribe(bus.Filter{}, 11)
	if err != nil {
		t.Fatal(err)
	}
	if got := eventRevs(replayed(sub)); !slices.Equal(got, []int64{11, 12}) {
		t.Fatalf("replay from 11: got %v, want [11 12]", got)
	}
	sub.Close()

	// Beyond the window, history is compacted as usual.
	h.Publish([]kv.Change{setAt(13, "c"), setAt(14, "d")})
	var ce *kv.CompactedError
	if _, err := h.Subscribe(bus.Filter{}, 11); !errors.As(err, &ce) || ce.Oldest != 12 {
		t.Fatalf("Subscribe(from=11) after the window moved: got %v, want Oldest 12", err)
	}
}

func TestStartAfterPanics(t *testing.T) {
	tests := []struct {
		name string
		do   func(h *bus.Hub)
	}{
		{"publish at or before the restart revision", func(h *bus.Hub) {
			h.StartAfter(10)
			h.Publish([]kv.Change{setAt(10, "a")})
		}},
		{"StartAfter after a publish", func(h *bus.Hub) {
			h.Publish([]kv.Change{setAt(1, "a")})
			h.StartAfter(10)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := bus.New(bus.Options{})
			defer h.Close()
			defer func() {
				if recover() == nil {
					t.Fatal("no panic")
				}
			}()
			tt.do(h)
		})
	}
}

func eventRevs(evs []*kv.Event) []int64 {
	var out []int64
	for _, ev := range evs {
		out = append(out, ev.Revision)
	}
	return out
}

// replayed collects s's replay, letting go of each chunk as a transport
// does once it has written it.
func replayed(s *bus.Subscription) []*kv.Event {
	var out []*kv.Event
	for chunk := range s.Replay() {
		for _, ev := range chunk {
			out = append(out, ev)
			s.Done(ev)
		}
	}
	return out
}
