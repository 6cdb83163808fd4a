package kv_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

func BenchmarkStoreGet(b *testing.B) {
	for _, shards := range []int{1, 32, 256} {
		b.Run(fmt.Sprintf("shards=%d", shards), func(b *testing.B) {
			s := kv.New(kv.Options{Shards: shards})
			defer s.Close()
			const n = 10000
			keys := make([]string, n)
			for i := range keys {
				keys[i] = "k" + strconv.Itoa(i)
				if _, err := s.Set(context.Background(), keys[i], []byte(`"0123456789abcdef"`)); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, ok := s.Get(keys[i%n]); !ok {
						b.Fatal("missing key")
					}
					i++
				}
			})
		})
	}
}

func BenchmarkStoreSet(b *testing.B) {
	for _, size := range []int{16, 1024} {
		b.Run(fmt.Sprintf("value=%d", size), func(b *testing.B) {
			s := kv.New(kv.Options{})
			defer s.Close()
			val := []byte(strconv.Quote(string(make([]byte, size-2))))
			const n = 10000
			keys := make([]string, n)
			for i := range keys {
				keys[i] = "k" + strconv.Itoa(i)
			}
			b.ReportAllocs()
			b.SetParallelism(32) // like many HTTP connections, each waiting for its write
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ctx := context.Background()
				i := 0
				for pb.Next() {
					if _, err := s.Set(ctx, keys[i%n], val); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}

// fillStore sets n keys of 16 bytes with values of 100 bytes, like
// `kvsbench fill -key-size 16 -value-size 98`: each value in its own
// buffer, as a request's.
func fillStore(b *testing.B, s *kv.Store, n int) {
	b.Helper()
	val := []byte(strconv.Quote(strings.Repeat("v", 98)))
	ctx := context.Background()
	var wg sync.WaitGroup
	const writers = 64
	for w := range writers {
		wg.Go(func() {
			for i := w; i < n; i += writers {
				if _, err := s.Set(ctx, fmt.Sprintf("k%015d", i), bytes.Clone(val)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkStoreSnapshot takes a snapshot of a store, sorted, and reads
// every entry of it: as a View (what the file log, /getall, /list and
// backups use) and as Snapshot's []*Entry.
func BenchmarkStoreSnapshot(b *testing.B) {
	for _, n := range []int{10000, 1000000} {
		s := kv.New(kv.Options{})
		fillStore(b, s, n)
		b.Run(fmt.Sprintf("keys=%d/view", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				v := s.View("")
				got := 0
				for e := range v.All() {
					got += len(e.Value)
				}
				if v.Len() != n || got != n*100 {
					b.Fatalf("%d entries, %d bytes of values; want %d, %d", v.Len(), got, n, n*100)
				}
			}
		})
		b.Run(fmt.Sprintf("keys=%d/entries", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				entries, _ := s.Snapshot("")
				if len(entries) != n {
					b.Fatalf("%d entries, want %d", len(entries), n)
				}
			}
		})
		s.Close()
	}
}

// BenchmarkStore1M measures gets and sets (updates) on a store of 1M keys
// of 16 bytes with 100-byte values, where most lookups miss the CPU's
// caches, and reports the live heap per key after the fill.
func BenchmarkStore1M(b *testing.B) {
	const n = 1000000
	s := kv.New(kv.Options{})
	defer s.Close()
	fillStore(b, s, n)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	live := float64(ms.HeapAlloc) / n
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%015d", i)
	}
	b.Run("get", func(b *testing.B) {
		b.ReportAllocs()
		b.ReportMetric(live, "live-B/key")
		b.RunParallel(func(pb *testing.PB) {
			rng := rand.New(rand.NewPCG(rand.Uint64(), 0))
			for pb.Next() {
				if _, ok := s.Get(keys[rng.IntN(n)]); !ok {
					b.Fatal("missing key")
				}
			}
		})
	})
	b.Run("set", func(b *testing.B) {
		val := []byte(strconv.Quote(strings.Repeat("w", 98)))
		b.ReportAllocs()
		b.SetParallelism(32)
		b.RunParallel(func(pb *testing.PB) {
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
			for pb.Next() {
				if _, err := s.Set(ctx, keys[rng.IntN(n)], val); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}
