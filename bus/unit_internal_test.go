package bus

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

// TestReplayChunksWholeRevisions: a replay's chunks hold whole revisions,
// each but a revision's last event with More, exactly as the live feed
// has them: no revision spans two chunks, whatever the limits, and a
// revision larger than a chunk's limits comes as one chunk of its own.
// Each revision is charged as it is taken.
func TestReplayChunksWholeRevisions(t *testing.T) {
	h := New(Options{Buffer: 100000, BufferBytes: 64 << 20, Encode: appendQuoted})
	defer h.Close()
	filters := []Filter{{}, {Prefix: "a"}, {Key: "b1"}}
	live := make([]*Subscription, len(filters))
	for i, f := range filters {
		s, err := h.Subscribe(f, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		live[i] = s
	}
	// Revisions of 1 to 6 changes, most small, some of 30 KiB (a few make
	// a revision larger than a chunk's bytes), and one of 300 changes (more
	// than a chunk's events).
	var total int
	for rev := int64(1); rev <= 400; rev++ {
		n := 1 + int(rev*7%6)
		if rev == 200 {
			n = 300
		}
		var cs []kv.Change
		for j := range n {
			size := 10
			if rev%9 == 0 {
				size = 30 << 10
			}
			key := fmt.Sprintf("%c%d", "ab"[(int(rev)+j)%2], j)
			cs = append(cs, kv.Change{Op: kv.OpSet, Key: key, Value: []byte(strings.Repeat("v", size)), Revision: rev})
		}
		total += n
		h.Publish(cs)
	}
	describe := func(ev *kv.Event) string {
		return fmt.Sprintf("%d %s %v %d", ev.Revision, ev.Key, ev.More, len(ev.Data))
	}
	wants := make([][]*kv.Event, len(filters))
	for i := range filters {
		for len(live[i].C()) > 0 {
			ev := <-live[i].C()
			wants[i] = append(wants[i], ev)
			live[i].Done(ev)
		}
	}
	if len(wants[0]) != total {
		t.Fatalf("live: %d events, want %d", len(wants[0]), total)
	}
	for i, f := range filters {
		want := wants[i]
		s, err := h.Subscribe(f, 1)
		if err != nil {
			t.Fatal(err)
		}
		var got []*kv.Event
		chunks, edges := 0, 0 // edges: chunks that start with a revision of several events
		var last int64
		for chunk := range s.Replay() {
			chunks++
			var sum int64
			for _, ev := range chunk {
				sum += ev.Bytes
			}
			if held := s.held.Load(); held != sum {
				t.Fatalf("filter %+v: the subscription holds %d bytes with a chunk of %d", f, held, sum)
			}
			first, end := chunk[0], chunk[len(chunk)-1]
			if first.Revision <= last {
				t.Fatalf("filter %+v: chunk %d starts at revision %d, the one before ended at %d", f, chunks, first.Revision, last)
			}
			if end.More {
				t.Fatalf("filter %+v: chunk %d ends inside revision %d", f, chunks, end.Revision)
			}
			if first.Revision != end.Revision && (len(chunk) > maxChunk || sum > chunkBytes) {
				t.Fatalf("filter %+v: a chunk of %d revisions, %d events, %d bytes", f, end.Revision-first.Revision+1, len(chunk), sum)
			}
			if chunks > 1 && first.More {
				edges++
			}
			last = end.Revision
			for _, ev := range chunk {
				got = append(got, ev)
				s.Done(ev)
			}
		}
		if len(got) != len(want) {
			t.Fatalf("filter %+v: replayed %d events, live %d", f, len(got), len(want))
		}
		for j := range got {
			if describe(got[j]) != describe(want[j]) || !bytes.Equal(got[j].Data, want[j].Data) {
				t.Fatalf("filter %+v: replayed event %d is %s, live %s", f, j, describe(got[j]), describe(want[j]))
			}
		}
		if f == (Filter{}) && (chunks < 10 || edges == 0) {
			t.Fatalf("%d chunks, %d of them starting with a transaction: the test does not test chunk edges", chunks, edges)
		}
		if held, _ := h.Buffered(); held != 0 {
			t.Fatalf("filter %+v: %d bytes held after the replay", f, held)
		}
		s.Close()
	}
}
