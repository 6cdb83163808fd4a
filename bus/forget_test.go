package bus_test

import (
	"errors"
	"slices"
	"strings"
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
			for _, ev := range replayed(s) {
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

// TestForgetEndsLiveSubscriptions: a subscriber that may have wanted a
// forgotten change ends with a *kv.CompactedError (4410 on the socket)
// instead of skipping it; one that starts after the gap goes on.
func TestForgetEndsLiveSubscriptions(t *testing.T) {
	h := bus.New(bus.Options{})
	defer h.Close()
	h.Publish([]kv.Change{setAt(1, "a")})
	live, err := h.Subscribe(bus.Filter{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	later, err := h.Subscribe(bus.Filter{}, 9)
	if err != nil {
		t.Fatal(err)
	}
	h.Forget(8)
	h.Publish([]kv.Change{setAt(9, "b")})
	var got []int64
	for ev := range live.C() {
		got = append(got, ev.Revision)
	}
	var ce *kv.CompactedError
	if !errors.As(live.Err(), &ce) || ce.Oldest != 9 {
		t.Fatalf("live subscriber: got %v after %v, want a *kv.CompactedError with oldest 9", live.Err(), got)
	}
	if slices.Contains(got, 9) {
		t.Fatalf("live subscriber got %v: revision 9 across the gap", got)
	}
	if ev := <-later.C(); ev.Revision != 9 || later.Err() != nil {
		t.Fatalf("subscriber from after the gap: got %v (%v), want revision 9", ev.Revision, later.Err())
	}
}

// TestHistoryBytes: the history holds at most HistoryBytes of changes,
// dropping the oldest first, and resuming from a dropped one is refused.
func TestHistoryBytes(t *testing.T) {
	h := bus.New(bus.Options{HistoryBytes: 16 << 10, Encode: func(b []byte, c *kv.Change) []byte {
		return append(b, c.Value...)
	}})
	defer h.Close()
	value := []byte(strings.Repeat("v", 1<<10))
	for rev := int64(1); rev <= 100; rev++ {
		h.Publish([]kv.Change{{Op: kv.OpSet, Key: "k", Value: value, Revision: rev}})
	}
	_, err := h.Subscribe(bus.Filter{}, 1)
	var ce *kv.CompactedError
	if !errors.As(err, &ce) {
		t.Fatalf("from 1 after 100 KiB of changes: got %v, want a *kv.CompactedError", err)
	}
	s, err := h.Subscribe(bus.Filter{}, ce.Oldest)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	replay := replayed(s)
	n := len(replay)
	if n == 0 || n > 16 || replay[n-1].Revision != 100 {
		t.Fatalf("retained %d changes of 1 KiB (the newest %d), want at most 16 ending at 100", n, replay[n-1].Revision)
	}
	if ev := replay[0]; ev.Value != nil || len(ev.Data) != len(value) {
		t.Fatalf("retained event keeps Value (%d bytes) beside Data (%d): want Data only", len(ev.Value), len(ev.Data))
	}
}
