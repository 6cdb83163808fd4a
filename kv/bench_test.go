package kv_test

import (
	"context"
	"fmt"
	"strconv"
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
