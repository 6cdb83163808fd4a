package kv_test

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

// memValue is the value a writer sets: its key and version spelled out,
// padded, so that a reader can tell a value from the entry it came with.
func memValue(key string, version int64) []byte {
	s := fmt.Sprintf("%s@%d", key, version)
	return []byte(strconv.Quote(s + strings.Repeat(".", 300-len(s))))
}

// TestEntriesOutliveCompaction overwrites and deletes a few keys many times,
// so that slabs fill, are compacted and dropped, while readers get entries,
// take views, and keep some of what they read; and checks (under -race)
// that every entry read has the value it was set with, at read time and at
// the end.
func TestEntriesOutliveCompaction(t *testing.T) {
	t.Parallel()
	s := newStore(t, kv.Options{Shards: 2})
	ctx := t.Context()
	const keys, rounds = 40, 1000
	var (
		stop atomic.Bool
		wg   sync.WaitGroup
		kept = make([][]*kv.Entry, 3)
	)
	check := func(e *kv.Entry) {
		if want := memValue(e.Key, e.Version); !bytes.Equal(e.Value, want) {
			t.Errorf("entry %q version %d has value %.40s..., want %.40s...", e.Key, e.Version, e.Value, want)
		}
	}
	for r := range kept {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				key := "k" + strconv.Itoa(i%keys)
				if i%3 == 0 {
					key = "s" + strconv.Itoa(i%rounds/10*10)
				}
				if e, ok := s.Get(key); ok {
					check(e)
					if i%50 == 0 {
						kept[r] = append(kept[r], e)
					}
				}
				if i%200 == 0 {
					v := s.View("")
					n := 0
					for e := range v.All() {
						check(&e)
						n++
					}
					if n != v.Len() {
						t.Errorf("view yields %d entries, Len says %d", n, v.Len())
					}
				}
			}
		})
	}
	versions := make(map[string]int64)
	for round := range rounds {
		// A key set once, now and then, keeps a slab partly live: to
		// reclaim the rest, its records are moved.
		if round%10 == 0 {
			key := "s" + strconv.Itoa(round)
			versions[key] = 1
			if _, err := s.Set(ctx, key, memValue(key, 1)); err != nil {
				t.Fatal(err)
			}
		}
		for k := range keys {
			key := "k" + strconv.Itoa(k)
			if (round+k)%7 == 0 && versions[key] > 0 {
				if _, err := s.Delete(ctx, key); err != nil {
					t.Fatal(err)
				}
				versions[key] = 0
				continue
			}
			versions[key]++
			if _, err := s.Set(ctx, key, memValue(key, versions[key])); err != nil {
				t.Fatal(err)
			}
		}
	}
	stop.Store(true)
	wg.Wait()
	total := 0
	for _, es := range kept {
		for _, e := range es {
			check(e)
		}
		total += len(es)
	}
	if total == 0 {
		t.Fatal("the readers kept no entry")
	}
	// About 12 MB were written, 40 KB are live: what is dead was
	// reclaimed, but for a shard's slabs before they are worth compacting
	// (at least 256 KiB dead) and its slab being filled.
	m := s.Memory()
	if m.SlabBytes > 2*(3*256<<10) || m.Keys != s.Len() {
		t.Fatalf("memory %+v: the dead entries were not reclaimed", m)
	}
	for key, ver := range versions {
		e, ok := s.Get(key)
		if ok != (ver > 0) || ok && e.Version != ver {
			t.Fatalf("%q: got %v (%v), want version %d", key, e, ok, ver)
		}
	}
}
