package bus_test

import (
	"errors"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/kv"
)

// TestSlowConsumers: the hub counts the subscribers it drops for falling
// behind, by queue length or by bytes, when it drops them (a subscriber
// that does not read learns it only when it reads again); a subscriber
// that goes away by itself, or that the hub's closing ends, is not counted.
func TestSlowConsumers(t *testing.T) {
	h := bus.New(bus.Options{Buffer: 2, BufferBytes: 1 << 20, Encode: encodeValue})
	subscribe := func() *bus.Subscription {
		t.Helper()
		s, err := h.Subscribe(bus.Filter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		return s
	}
	byLength, byBytes, leaves, stays := subscribe(), subscribe(), subscribe(), subscribe()
	leaves.Close()
	h.Publish([]kv.Change{setAt(1, "a")})
	h.Publish([]kv.Change{setAt(2, "a")})
	drain(byBytes)
	drain(stays)
	if got := h.SlowConsumers(); got != 0 {
		t.Fatalf("before any fell behind: SlowConsumers %d, want 0", got)
	}
	h.Publish([]kv.Change{setAt(3, "a")}) // byLength's queue holds 2
	if !errors.Is(byLength.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("byLength: Err %v, want kv.ErrSlowConsumer", byLength.Err())
	}
	if got := h.SlowConsumers(); got != 1 {
		t.Fatalf("one dropped for its queue's length: SlowConsumers %d, want 1", got)
	}
	drain(byBytes)
	drain(stays)
	h.Publish([]kv.Change{setOf(4, "b", 600<<10)})
	drain(stays)
	h.Publish([]kv.Change{setOf(5, "b", 600<<10)}) // byBytes holds 600 KiB of its 1 MiB
	drain(stays)
	if !errors.Is(byBytes.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("byBytes: Err %v, want kv.ErrSlowConsumer", byBytes.Err())
	}
	if stays.Err() != nil {
		t.Fatalf("the subscriber that reads: Err %v", stays.Err())
	}
	h.Close()
	if got := h.SlowConsumers(); got != 2 {
		t.Fatalf("two dropped for falling behind, one gone, one ended by Close: SlowConsumers %d, want 2", got)
	}
}
