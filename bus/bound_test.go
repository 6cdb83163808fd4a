package bus_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/kv"
)

// encodeValue encodes a change as its value.
func encodeValue(b []byte, c *kv.Change) []byte { return append(b, c.Value...) }

// setOf is a set of key to a value of size bytes at revision rev.
func setOf(rev int64, key string, size int) kv.Change {
	return kv.Change{Op: kv.OpSet, Key: key, Value: []byte(strings.Repeat("v", size)), Revision: rev}
}

// drain receives what is queued on s's channel, letting go of each event,
// and returns the events' Bytes.
func drain(s *bus.Subscription) (n int, bytes int64) {
	for {
		select {
		case ev, ok := <-s.C():
			if !ok {
				return n, bytes
			}
			n++
			bytes += ev.Bytes
			s.Done(ev)
		default:
			return n, bytes
		}
	}
}

// TestBufferBytes: the events queued to a subscriber that does not read
// take at most BufferBytes; the next one drops it with kv.ErrSlowConsumer,
// while a subscriber that reads gets every event. One that holds nothing
// takes an event of any size.
func TestBufferBytes(t *testing.T) {
	const bound = 1 << 20
	h := bus.New(bus.Options{BufferBytes: bound, Encode: encodeValue})
	defer h.Close()
	slow, err := h.Subscribe(bus.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	reader, err := h.Subscribe(bus.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	for rev := int64(1); rev <= 50; rev++ {
		h.Publish([]kv.Change{setOf(rev, "k", 100<<10)})
		if n, _ := drain(reader); n != 1 {
			t.Fatalf("the reading subscriber got %d events for revision %d (%v)", n, rev, reader.Err())
		}
	}
	if !errors.Is(slow.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("subscriber that does not read: Err %v, want kv.ErrSlowConsumer", slow.Err())
	}
	n, queued := drain(slow)
	if queued > bound || n < 5 || n >= 50 {
		t.Fatalf("subscriber that does not read: %d events of %d bytes queued before it was dropped, want at most %d bytes", n, queued, bound)
	}
	if now, peak := h.Buffered(); now != 0 || peak > bound+200<<10 {
		t.Fatalf("Buffered: %d now, %d at most; want 0 now, and about the one subscriber's bound", now, peak)
	}

	// A subscriber that holds nothing takes an event larger than the
	// bound, and nothing more.
	big, err := h.Subscribe(bus.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer big.Close()
	h.Publish([]kv.Change{setOf(51, "k", 3<<20), setOf(52, "k", 10)})
	if n, _ := drain(big); n != 1 || !errors.Is(big.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("after a 3 MiB event then another: %d queued, Err %v; want 1, then dropped", n, big.Err())
	}
}

// TestTotalBufferBytes: an event that many subscribers hold counts once
// towards TotalBufferBytes; events that would take the total past it drop
// the subscribers they were for; and when the subscribers are gone, the
// memory is given back.
func TestTotalBufferBytes(t *testing.T) {
	const total = 1 << 20
	h := bus.New(bus.Options{TotalBufferBytes: total, Encode: encodeValue})
	defer h.Close()
	var subs []*bus.Subscription
	for range 100 {
		s, err := h.Subscribe(bus.Filter{}, 0)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	// 8 events of 100 KiB, held by 100 subscribers: 800 KiB, not 80 MiB.
	for rev := int64(1); rev <= 8; rev++ {
		h.Publish([]kv.Change{setOf(rev, "k", 100<<10)})
	}
	if h.Len() != 100 {
		t.Fatalf("%d of 100 subscribers left after 800 KiB of shared events", h.Len())
	}
	for rev := int64(9); rev <= 20; rev++ {
		h.Publish([]kv.Change{setOf(rev, "k", 100<<10)})
	}
	if now, peak := h.Buffered(); now > total || peak > total {
		t.Fatalf("Buffered: %d now, %d at most; bound %d", now, peak, total)
	}
	for _, s := range subs {
		if !errors.Is(s.Err(), kv.ErrSlowConsumer) {
			t.Fatalf("after 2 MiB of events with a total of 1 MiB: Err %v, want kv.ErrSlowConsumer", s.Err())
		}
	}
	for _, s := range subs {
		s.Close()
	}
	if now, _ := h.Buffered(); now != 0 {
		t.Fatalf("Buffered after every subscriber left: %d, want 0", now)
	}
}

// TestReplayBounds: each replay holds its chunk (its own copy of the
// small events), and counts it towards TotalBufferBytes: a replay whose
// chunk does not fit ends with kv.ErrSlowConsumer; so does one whose
// subscriber's queue already holds its BufferBytes.
func TestReplayBounds(t *testing.T) {
	const total = 256 << 10
	h := bus.New(bus.Options{BufferBytes: 128 << 10, TotalBufferBytes: total, Encode: encodeValue})
	defer h.Close()
	for rev := int64(1); rev <= 1000; rev++ {
		h.Publish([]kv.Change{setOf(rev, "k", 1000)})
	}
	var ended int
	var subs []*bus.Subscription
	var chunks [][]*kv.Event
	for range 10 {
		s, err := h.Subscribe(bus.Filter{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
		chunks = append(chunks, nil)
		for chunk := range s.Replay() {
			chunks[len(chunks)-1] = chunk
			break // a transport that does not get to write its first chunk
		}
		if errors.Is(s.Err(), kv.ErrSlowConsumer) {
			ended++
		}
	}
	if now, peak := h.Buffered(); now > total || peak > total {
		t.Fatalf("Buffered: %d now, %d at most; bound %d", now, peak, total)
	}
	if ended < 5 || ended == 10 {
		t.Fatalf("%d of 10 replays holding a chunk of 64 KiB with a total of 256 KiB ended, want the ones past the total", ended)
	}
	for i, s := range subs {
		for _, ev := range chunks[i] {
			s.Done(ev) // the transport gives up
		}
		s.Close()
	}
	if now, _ := h.Buffered(); now != 0 {
		t.Fatalf("Buffered after the replays closed: %d, want 0", now)
	}

	// A replay behind a full queue.
	s, err := h.Subscribe(bus.Filter{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h.Publish([]kv.Change{setOf(1001, "k", 127<<10)})
	if s.Err() != nil {
		t.Fatalf("a subscriber that holds nothing was dropped: %v", s.Err())
	}
	for range s.Replay() {
		t.Fatalf("a replay whose subscriber's queue holds its bound yielded a chunk")
	}
	if !errors.Is(s.Err(), kv.ErrSlowConsumer) {
		t.Fatalf("Err %v, want kv.ErrSlowConsumer", s.Err())
	}
}

// TestReplaysShareLargeEvents: subscribers that replay (or receive) the
// same large change get the same event, which shares the history's bytes
// and counts once towards TotalBufferBytes: a herd of watchers resuming
// over large values is not closed for memory it does not take.
func TestReplaysShareLargeEvents(t *testing.T) {
	const total = 8 << 20
	h := bus.New(bus.Options{TotalBufferBytes: total, Encode: encodeValue})
	defer h.Close()
	live, err := h.Subscribe(bus.Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	for rev := int64(1); rev <= 4; rev++ {
		h.Publish([]kv.Change{setOf(rev, "k", 1<<20)})
	}
	first := <-live.C()
	var subs []*bus.Subscription
	for range 50 {
		s, err := h.Subscribe(bus.Filter{}, 1)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		subs = append(subs, s)
		for chunk := range s.Replay() {
			if len(chunk) != 1 || chunk[0] != first {
				t.Fatalf("replay of a 1 MiB change: got %d events (the live one: %v), want the live event", len(chunk), chunk[0] == first)
			}
			break // held, not written
		}
	}
	if now, _ := h.Buffered(); now > 5<<20 || h.Len() != 51 {
		t.Fatalf("50 replays and a live subscriber holding 4 changes of 1 MiB: %d bytes counted, %d subscribers left; want about 4 MiB and every subscriber", now, h.Len())
	}
	live.Done(first)
	for _, s := range subs {
		s.Done(first)
		s.Close()
	}
	live.Close()
	if now, _ := h.Buffered(); now != 0 {
		t.Fatalf("after they left: %d bytes counted, want 0", now)
	}
}
