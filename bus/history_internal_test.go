package bus

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

// TestHistoryHasNoPointers: the ring's retained values hold no pointer, so
// that the garbage collector does not scan the history.
func TestHistoryHasNoPointers(t *testing.T) {
	var walk func(reflect.Type) bool
	walk = func(typ reflect.Type) bool {
		switch typ.Kind() {
		case reflect.Struct:
			for i := range typ.NumField() {
				if walk(typ.Field(i).Type) {
					return true
				}
			}
			return false
		case reflect.Array:
			return walk(typ.Elem())
		case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64:
			return false
		}
		return true
	}
	if walk(reflect.TypeFor[retained]()) {
		t.Fatalf("retained holds a pointer")
	}
}

// TestHistoryReleasesBlocks: whatever the sizes of the changes, the
// history's blocks take about -history-bytes (the bound counts their unused
// ends), and it keeps only the blocks that retained changes use, plus the
// one being filled.
func TestHistoryReleasesBlocks(t *testing.T) {
	const maxBytes = 64 << 10 // blocks of 4 KiB
	tests := []struct {
		name  string
		sizes []int // of the values, in turn
	}{
		{"a fifth of a block", []int{800}},
		{"over half a block", []int{2100}},
		{"mixed", []int{10, 800, 2100, 20 << 10, 10, 1500, 3000}},
	}
	for _, tt := range tests {
		for _, encode := range []func([]byte, *kv.Change) []byte{nil, appendQuoted} {
			h := New(Options{History: 1000, HistoryBytes: maxBytes, Encode: encode})
			largest := slices.Max(tt.sizes) + 200
			for rev := int64(1); rev <= 3000; rev++ {
				size := tt.sizes[int(rev)%len(tt.sizes)]
				h.Publish([]kv.Change{{Op: kv.OpSet, Key: strings.Repeat("k", int(rev%40)+1), Value: []byte(strings.Repeat("v", size)), Revision: rev}})
				hist := &h.hist
				if hist.bytes > maxBytes && hist.n > 1 {
					t.Fatalf("%s: at %d: %d bytes retained in %d changes, bound %d", tt.name, rev, hist.bytes, hist.n, maxBytes)
				}
				if oldest := hist.at(0).block; hist.first != oldest {
					t.Fatalf("%s: at %d: first block %d, but the oldest change is in block %d", tt.name, rev, hist.first, oldest)
				}
				held := 0
				for _, b := range hist.blocks {
					held += cap(b)
				}
				// The bound, plus the first block (partly dropped) and
				// the one being filled.
				if limit := maxBytes + 2*max(hist.blockSize, largest); held > limit {
					t.Fatalf("%s: at %d: %d blocks take %d bytes, more than %d", tt.name, rev, len(hist.blocks), held, limit)
				}
			}
			if h.Forget(3000); len(h.hist.blocks) != 1 || h.hist.n != 0 || h.hist.bytes != 0 {
				t.Fatalf("%s: after Forget of everything: %d blocks, %d changes, %d bytes; want the block being filled only", tt.name, len(h.hist.blocks), h.hist.n, h.hist.bytes)
			}
			h.Close()
		}
	}
}

// appendQuoted encodes a change as its key and value, quoted: longer than
// the history guesses for keys with quotes in them.
func appendQuoted(b []byte, c *kv.Change) []byte {
	b = strconv.AppendQuote(b, c.Key)
	return strconv.AppendQuote(b, string(c.Value))
}

// TestReplayChunks: a replay holds one chunk at a time, bounded in events
// and bytes, charged to the subscription until Done; whatever the sizes of
// the changes, the chunks together are the whole replay.
func TestReplayChunks(t *testing.T) {
	h := New(Options{History: 100000, HistoryBytes: 64 << 20, Encode: appendQuoted})
	defer h.Close()
	sizes := []int{1, 100, 3000, 70 << 10, 300 << 10}
	const n = 3000
	for rev := int64(1); rev <= n; rev++ {
		size := sizes[0]
		if rev%100 == 0 {
			size = sizes[rev/100%int64(len(sizes))]
		}
		h.Publish([]kv.Change{{Op: kv.OpSet, Key: "k" + strconv.Itoa(int(rev%3)), Value: []byte(strings.Repeat("v", size)), Revision: rev}})
	}
	for _, f := range []Filter{{}, {Key: "k1"}} {
		s, err := h.Subscribe(f, 1)
		if err != nil {
			t.Fatal(err)
		}
		next := int64(1)
		chunks := 0
		for chunk := range s.Replay() {
			chunks++
			var sum int64
			for _, ev := range chunk {
				if ev.Revision < next || f.Key != "" && ev.Key != f.Key {
					t.Fatalf("filter %+v: event %d %q after %d", f, ev.Revision, ev.Key, next-1)
				}
				next = ev.Revision + 1
				sum += ev.Bytes
			}
			if held := s.held.Load(); held != sum {
				t.Fatalf("filter %+v: the subscription holds %d bytes with a chunk of %d", f, held, sum)
			}
			if len(chunk) > maxChunk || len(chunk) > 1 && sum > chunkBytes {
				t.Fatalf("filter %+v: a chunk of %d events, %d bytes", f, len(chunk), sum)
			}
			for _, ev := range chunk {
				s.Done(ev)
			}
		}
		if last := next - 1; f.Key == "" && last != n || f.Key != "" && last != n-2 { // k1: the revisions 1 mod 3
			t.Fatalf("filter %+v: replay ended at %d", f, last)
		}
		if held, _ := h.Buffered(); held != 0 || s.held.Load() != 0 {
			t.Fatalf("filter %+v: after the replay, %d bytes held (subscription %d), want 0", f, held, s.held.Load())
		}
		if chunks < 2 {
			t.Fatalf("filter %+v: replay in %d chunks", f, chunks)
		}
		for range s.Replay() {
			t.Fatalf("a replay yielded twice")
		}
		s.Close()
	}
}

// TestEventsPinLittle: an event that holds a slice of a history block
// counts the whole block, and only one that is at least half its block
// shares it; a smaller one gets its own copy, so that a queued event does
// not keep a block of other changes alive after the history drops it.
func TestEventsPinLittle(t *testing.T) {
	h := New(Options{HistoryBytes: 16 << 20, Encode: appendQuoted}) // blocks of 1 MiB
	defer h.Close()
	live, err := h.Subscribe(Filter{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	for rev, size := range []int{10, 1000, 200 << 10, 600 << 10, 2 << 20} {
		h.Publish([]kv.Change{{Op: kv.OpSet, Key: "k", Value: []byte(strings.Repeat("v", size)), Revision: int64(rev + 1)}})
	}
	check := func(what string, ev *kv.Event) {
		t.Helper()
		r := h.hist.at(h.hist.search(ev.Revision))
		blk := h.hist.blocks[r.block-h.hist.first]
		shares := &ev.Data[0] == &blk[r.off+r.keyLen]
		if want := 2*len(ev.Data) >= cap(blk); shares != want {
			t.Fatalf("%s %d (%d bytes in a block of %d): shares the block: %v, want %v", what, ev.Revision, len(ev.Data), cap(blk), shares, want)
		}
		min := eventOverhead + int64(len(ev.Key)+len(ev.Data))
		if shares {
			min = eventOverhead + int64(len(ev.Key)+cap(blk))
		}
		if ev.Bytes != min {
			t.Fatalf("%s %d: Bytes %d, want %d", what, ev.Revision, ev.Bytes, min)
		}
	}
	for range 5 {
		ev := <-live.C()
		check("live", ev)
		live.Done(ev)
	}
	s, err := h.Subscribe(Filter{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for chunk := range s.Replay() {
		for _, ev := range chunk {
			check("replayed", ev)
			s.Done(ev)
		}
	}
}
