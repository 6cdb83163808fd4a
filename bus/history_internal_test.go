package bus

import (
	"reflect"
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

// TestHistoryReleasesBlocks: the history keeps only the blocks that
// retained changes use, plus the one being filled, whatever it went
// through.
func TestHistoryReleasesBlocks(t *testing.T) {
	const maxBytes = 64 << 10
	h := New(Options{History: 1000, HistoryBytes: maxBytes})
	defer h.Close()
	for rev := int64(1); rev <= 5000; rev++ {
		size := 10
		if rev%97 == 0 {
			size = 20 << 10 // bigger than a block
		}
		h.Publish([]kv.Change{{Op: kv.OpSet, Key: "k", Value: []byte(strings.Repeat("v", size)), Revision: rev}})
		hist := &h.hist
		if hist.bytes > maxBytes+20<<10 {
			t.Fatalf("at %d: %d bytes retained, bound %d", rev, hist.bytes, maxBytes)
		}
		oldest := hist.at(0).block
		if hist.first != oldest {
			t.Fatalf("at %d: first block %d, but the oldest change is in block %d", rev, hist.first, oldest)
		}
		held := 0
		for _, b := range hist.blocks {
			held += cap(b)
		}
		if held > 3*maxBytes {
			t.Fatalf("at %d: %d blocks of %d bytes held for %d bytes retained", rev, len(hist.blocks), held, hist.bytes)
		}
	}
	if h.Forget(5000); len(h.hist.blocks) != 1 || h.hist.n != 0 || h.hist.bytes != 0 {
		t.Fatalf("after Forget of everything: %d blocks, %d changes, %d bytes; want the block being filled only", len(h.hist.blocks), h.hist.n, h.hist.bytes)
	}
}
