package kv

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"strings"
	"testing"
)

// checkTable checks t against want, and its accounting: every live record
// found by its key, the live and used bytes the sums over the slabs, and
// no slot that find would miss.
func checkTable(t *testing.T, tb *table, want map[string]Entry) {
	t.Helper()
	if tb.n != len(want) {
		t.Fatalf("table holds %d keys, want %d", tb.n, len(want))
	}
	for k, w := range want {
		var got Entry
		if !tb.get(maphash.String(tb.seed, k), k, &got) {
			t.Fatalf("key %q missing", k)
		}
		if got.Key != w.Key || !bytes.Equal(got.Value, w.Value) || got.Revision != w.Revision ||
			got.CreateRevision != w.CreateRevision || got.Version != w.Version {
			t.Fatalf("key %q: got %+v, want %+v", k, got, w)
		}
	}
	var live, used, alloc int64
	for id, s := range tb.slabs {
		if id == 0 && (s.b != nil || s.live != 0) {
			t.Fatal("slab 0 is used")
		}
		live += s.live
		used += int64(len(s.b))
		alloc += int64(cap(s.b))
	}
	if live != tb.live || used != tb.used || alloc != tb.alloc {
		t.Fatalf("accounting: live %d used %d alloc %d, slabs say %d %d %d", tb.live, tb.used, tb.alloc, live, used, alloc)
	}
	var sum int64
	n := 0
	for i, s := range tb.slots {
		if s == 0 {
			continue
		}
		n++
		l := readRecord(tb.record(s&posMask), nil)
		sum += int64(l)
		k := string(tb.keyAt(s & posMask))
		if j, ok := tb.find(maphash.String(tb.seed, k), k); !ok || j != i {
			t.Fatalf("slot %d (key %q) not found by its key: got %d, %v", i, k, j, ok)
		}
	}
	if n != tb.n || sum != tb.live {
		t.Fatalf("%d slots with %d live bytes, table says %d and %d", n, sum, tb.n, tb.live)
	}
}

// TestTableAgainstMap runs random sets and deletes, of small and big
// values, against a map, and checks that the table holds the same, that
// entries read earlier keep their bytes, and that compaction bounds the
// dead bytes.
func TestTableAgainstMap(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name    string
		keys    int
		ops     int
		bigEach int // one value in bigEach is bigger than bigRecord
	}{
		{"few keys, many updates", 50, 20000, 0},
		{"many keys", 5000, 40000, 0},
		{"big values", 200, 3000, 10},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(1, uint64(tt.keys)))
			tb := &table{seed: maphash.MakeSeed()}
			want := make(map[string]Entry)
			type held struct {
				e     Entry
				value []byte // a copy of e.Value
			}
			var holds []held
			for op := range tt.ops {
				k := fmt.Sprintf("key/%d", rng.IntN(tt.keys))
				h := maphash.String(tb.seed, k)
				if rng.IntN(4) == 0 {
					cur, had := want[k]
					if lease, got := tb.del(h, k); got != had || lease != cur.Lease {
						t.Fatalf("op %d: del %q = %d, %v, want %d, %v", op, k, lease, got, cur.Lease, had)
					}
					delete(want, k)
					continue
				}
				size := 1 + rng.IntN(200)
				if tt.bigEach > 0 && rng.IntN(tt.bigEach) == 0 {
					size = bigRecord + rng.IntN(bigRecord)
				}
				v := bytes.Repeat([]byte{byte('a' + op%26)}, size)
				e := Entry{Key: k, Value: v, Revision: int64(op + 1), CreateRevision: int64(op + 1), Version: 1}
				if rng.IntN(3) == 0 { // a lease, of up to 53 bits
					e.Lease = 1 + rng.Int64N(MaxLeaseID)
				}
				cur, ok := want[k]
				if ok {
					e.CreateRevision, e.Version = cur.CreateRevision, cur.Version+1
				}
				if old := tb.set(h, &e); old != cur.Lease {
					t.Fatalf("op %d: set %q replaced lease %d, want %d", op, k, old, cur.Lease)
				}
				v[0] = '!' // the table copied the value
				e.Value = bytes.Repeat([]byte{byte('a' + op%26)}, size)
				want[k] = e
				if op%97 == 0 {
					var got Entry
					tb.get(h, k, &got)
					holds = append(holds, held{got, bytes.Clone(got.Value)})
				}
				if op%1000 == 0 {
					checkTable(t, tb, want)
				}
			}
			checkTable(t, tb, want)
			for _, h := range holds {
				if !bytes.Equal(h.e.Value, h.value) || !strings.HasPrefix(h.e.Key, "key/") {
					t.Fatalf("an entry read earlier changed: %q %q", h.e.Key, h.e.Value)
				}
			}
			if dead := tb.used - tb.live; dead > slabMax+max(tb.used/4, 2*slabMax) {
				t.Fatalf("dead bytes %d of %d used: compaction does not keep up", dead, tb.used)
			}
			for k := range want {
				tb.del(maphash.String(tb.seed, k), k)
			}
			if tb.n != 0 || tb.live != 0 || len(tb.slots) != 0 {
				t.Fatalf("after deleting every key: %d keys, %d live bytes, %d slots", tb.n, tb.live, len(tb.slots))
			}
		})
	}
}

// TestTableCompaction overwrites every key of a table many times and
// checks that the memory it holds stays within a bound of what is live.
func TestTableCompaction(t *testing.T) {
	t.Parallel()
	tb := &table{seed: maphash.MakeSeed()}
	const keys = 20000
	v := bytes.Repeat([]byte("x"), 100)
	rev := int64(0)
	for round := range 10 {
		for i := range keys {
			k := fmt.Sprintf("k%07d", (i*7919+round)%keys)
			rev++
			tb.set(maphash.String(tb.seed, k), &Entry{Key: k, Value: v, Revision: rev, CreateRevision: 1, Version: int64(round + 1)})
		}
	}
	if tb.n != keys {
		t.Fatalf("%d keys, want %d", tb.n, keys)
	}
	// Live is about 2.2 MB; dead bytes are compacted once they are a
	// quarter of those written, and slabs are at most slabMax.
	if tb.alloc > tb.live*3/2+2*slabMax {
		t.Fatalf("slabs take %d bytes for %d live", tb.alloc, tb.live)
	}
	checkTable(t, tb, func() map[string]Entry {
		m := make(map[string]Entry)
		for i := range keys {
			k := fmt.Sprintf("k%07d", i)
			var e Entry
			tb.get(maphash.String(tb.seed, k), k, &e)
			m[k] = e
		}
		return m
	}())
}

// TestTableCollidingTags puts keys whose hashes share their tags, and so
// their homes, and checks lookups and deletes among them.
func TestTableCollidingTags(t *testing.T) {
	t.Parallel()
	tb := &table{seed: maphash.MakeSeed()}
	want := make(map[string]Entry)
	const n = 300
	for i := range n {
		k := fmt.Sprintf("c%d", i)
		h := uint64(42)<<posBits | uint64(i) // same tag, different low bits
		e := Entry{Key: k, Value: []byte("1"), Revision: int64(i + 1), CreateRevision: int64(i + 1), Version: 1}
		tb.set(h, &e)
		want[k] = e
	}
	for i := 0; i < n; i += 3 {
		k := fmt.Sprintf("c%d", i)
		if _, ok := tb.del(uint64(42)<<posBits|uint64(i), k); !ok {
			t.Fatalf("del %q: not found", k)
		}
		delete(want, k)
	}
	for k, w := range want {
		var i int
		fmt.Sscanf(k, "c%d", &i)
		var got Entry
		if ok := tb.get(uint64(42)<<posBits|uint64(i), k, &got); !ok || got.Revision != w.Revision {
			t.Fatalf("%q: got %+v, %v", k, got, ok)
		}
	}
}

func TestRecordRoundTrip(t *testing.T) {
	t.Parallel()
	for _, e := range []Entry{
		{Key: "k", Value: []byte("1"), Revision: 1, CreateRevision: 1, Version: 1},
		{Key: strings.Repeat("é", 500), Value: bytes.Repeat([]byte("v"), 70000), Revision: 1 << 62, CreateRevision: 3, Version: 1<<62 - 2},
		{Key: "x", Value: []byte(`{"a":[1,2]}`), Revision: 300, CreateRevision: 128, Version: 173},
	} {
		b := appendRecord([]byte("junk"), &e)
		var got Entry
		n := readRecord(b[4:], &got)
		if n != recordLen(&e) || n != len(b)-4 {
			t.Fatalf("%q: length %d, recordLen %d, written %d", e.Key, n, recordLen(&e), len(b)-4)
		}
		if got.Key != e.Key || !bytes.Equal(got.Value, e.Value) || got.Revision != e.Revision ||
			got.CreateRevision != e.CreateRevision || got.Version != e.Version {
			t.Fatalf("got %+v, want %+v", got, e)
		}
		if cap(got.Value) != len(got.Value) {
			t.Fatalf("value's capacity %d reaches past it (%d)", cap(got.Value), len(got.Value))
		}
	}
}

// TestTableEmptied sets and deletes a few keys with values of 16 KB, as
// the robustness suite's slow-subscriber scenario does, until every key is
// deleted, many times over: no slab may outlive its records, and an empty
// table holds no slab at all. (A slab filled and left with no live record
// lingered, and compacting it once the last key was deleted indexed an
// empty index.)
func TestTableEmptied(t *testing.T) {
	t.Parallel()
	for seed := range uint64(100) {
		rng := rand.New(rand.NewPCG(seed, 7))
		tb := &table{seed: maphash.MakeSeed()}
		want := make(map[string]Entry)
		for op := range 300 {
			k := fmt.Sprintf("key/%d", rng.IntN(5))
			h := maphash.String(tb.seed, k)
			if rng.IntN(5) == 0 {
				tb.del(h, k)
				delete(want, k)
				continue
			}
			e := Entry{Key: k, Value: bytes.Repeat([]byte("v"), 15000+rng.IntN(2000)), Revision: int64(op + 1), CreateRevision: int64(op + 1), Version: 1}
			tb.set(h, &e)
			want[k] = e
		}
		checkTable(t, tb, want)
		for k := range want {
			tb.del(maphash.String(tb.seed, k), k)
		}
		if tb.n != 0 || tb.alloc != 0 || tb.used != 0 || tb.active != 0 {
			t.Fatalf("seed %d: an empty table holds %d keys, %d bytes of slabs (%d used), active slab %d", seed, tb.n, tb.alloc, tb.used, tb.active)
		}
	}
}
