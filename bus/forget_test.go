package bus_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/kv"
)

// TestForget checks that after Forget(rev) the hub answers a subscription
// from rev or earlier with the oldest revision it still has, replays what
// it kept after rev, and goes on after rev.
func TestForget(t *testing.T) {
	h := bus.New(bus.Options{History: 10})
	defer h.Close()
	h.Publish([]kv.Change{setAt(1, "a"), setAt(2, "b"), setAt(5, "c"), setAt(7, "d")})
	h.Forget(5)
	tests := []struct {
		name       string
		from       int64
		wantOldest int64 // 0: the subscription must succeed
		wantReplay []int64
	}{
		{"from a forgotten revision", 2, 6, nil},
		{"from the forgotten end", 5, 6, nil},
		{"from after it", 6, 0, []int64{7}},
		{"from the next change", 0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := h.Subscribe(bus.Filter{}, tt.from)
			var ce *kv.CompactedError
			switch {
			case tt.wantOldest != 0:
				if !errors.As(err, &ce) || ce.Oldest != tt.wantOldest {
					t.Fatalf("got %v, want a *kv.CompactedError with oldest %d", err, tt.wantOldest)
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			defer s.Close()
			var got []int64
			for _, ev := range s.Replay() {
				got = append(got, ev.Revision)
			}
			if !slices.Equal(got, tt.wantReplay) {
				t.Fatalf("replay: got %v, want %v", got, tt.wantReplay)
			}
		})
	}
	// Forgetting past the last change: the feed goes on after it.
	h.Forget(20)
	if got := h.Rev(); got != 20 {
		t.Fatalf("Rev after Forget(20): got %d, want 20", got)
	}
	s, err := h.Subscribe(bus.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h.Publish([]kv.Change{setAt(21, "e")})
	if ev := <-s.C(); ev.Revision != 21 {
		t.Fatalf("after Forget(20): got revision %d, want 21", ev.Revision)
	}
}
