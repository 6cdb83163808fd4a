package bus

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

// TestHistoryHasNoPointers: the ring's records hold no pointer, so that
// the garbage collector does not scan the history.
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
	if walk(reflect.TypeFor[record]()) {
		t.Fatalf("record holds a pointer")
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

// TestReplayLetsGo: a subscription holds the history's bytes it replays
// only until it has replayed them.
func TestReplayLetsGo(t *testing.T) {
	h := New(Options{History: 100})
	defer h.Close()
	for rev := int64(1); rev <= 10; rev++ {
		h.Publish([]kv.Change{{Op: kv.OpSet, Key: "k", Value: []byte("1"), Revision: rev}})
	}
	s, err := h.Subscribe(Filter{}, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	n := 0
	for range s.Replay() {
		if n++; n == 5 {
			break
		}
	}
	if len(s.replay.blocks) == 0 {
		t.Fatalf("replay let go of its blocks after 5 of 10 events")
	}
	for range s.Replay() {
		n++
	}
	if n != 15 || s.replay.blocks != nil || s.replay.records != nil {
		t.Fatalf("after the replay: %d events yielded (want 5 + 10), blocks %d, records %d: want none held", n, len(s.replay.blocks), len(s.replay.records))
	}
	for range s.Replay() {
		t.Fatalf("a replay yielded twice")
	}
}
