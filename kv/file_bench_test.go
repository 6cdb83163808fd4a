package kv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// benchValue is a 100-byte value: a JSON string of 98 characters.
var benchValue = []byte(`"` + strings.Repeat("v", 98) + `"`)

// benchKey returns the i-th 16-byte key.
func benchKey(i int) string { return fmt.Sprintf("key-%012d", i) }

// BenchmarkFileLogAppend appends batches of 16-byte keys and 100-byte
// values, as the committer does: one write, and one fsync unless off.
func BenchmarkFileLogAppend(b *testing.B) {
	for _, fsync := range []bool{true, false} {
		for _, n := range []int{1, 16, 256} {
			b.Run(fmt.Sprintf("fsync=%v/batch=%d", fsync, n), func(b *testing.B) {
				l, err := Open(b.TempDir(), FileOptions{NoSync: !fsync, SnapshotBytes: 1 << 40})
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				changes := make([]Change, n)
				for i := range changes {
					changes[i] = Change{Op: OpSet, Key: benchKey(i), Value: benchValue}
				}
				b.SetBytes(int64(n * (16 + len(benchValue))))
				b.ReportAllocs()
				var rev int64
				for b.Loop() {
					for i := range changes {
						rev++
						changes[i].Revision = rev
					}
					if err := l.Append(changes); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(rev)/b.Elapsed().Seconds(), "changes/s")
			})
		}
	}
}

// BenchmarkFileStoreSet sets keys through a Store on the file log with
// fsync, from one writer (each set waits for its own fsync) and from 64
// (sets that queue during an fsync share the next one).
func BenchmarkFileStoreSet(b *testing.B) {
	for _, writers := range []int{1, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			l, err := Open(b.TempDir(), FileOptions{})
			if err != nil {
				b.Fatal(err)
			}
			s := New(Options{Log: l})
			defer s.Close()
			ctx := context.Background()
			const keys = 10000
			b.ReportAllocs()
			if writers == 1 {
				i := 0
				for b.Loop() {
					if _, err := s.Set(ctx, benchKey(i%keys), benchValue); err != nil {
						b.Fatal(err)
					}
					i++
				}
				return
			}
			b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if _, err := s.Set(ctx, benchKey(i%keys), benchValue); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		})
	}
}

// BenchmarkRecover opens a data directory and starts a Store from it: a
// snapshot of keys entries (16-byte keys, 100-byte values), alone or
// followed by a log of 500000 updates (64 MiB, the default snapshot
// threshold). It reports the heap the recovered store takes.
func BenchmarkRecover(b *testing.B) {
	for _, keys := range []int{100000, 1000000} {
		for _, logged := range []int{0, 500000} {
			b.Run(fmt.Sprintf("keys=%d/logged=%d", keys, logged), func(b *testing.B) {
				dir := b.TempDir()
				writeBenchDir(b, dir, keys, logged)
				var heap uint64
				for b.Loop() {
					l, err := Open(dir, FileOptions{})
					if err != nil {
						b.Fatal(err)
					}
					s := New(Options{Log: l})
					b.StopTimer()
					if s.Len() != keys {
						b.Fatalf("recovered %d keys, want %d", s.Len(), keys)
					}
					runtime.GC()
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					heap = ms.HeapAlloc
					s.Close()
					b.StartTimer()
				}
				b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
			})
		}
	}
}

// writeBenchDir writes a snapshot of keys entries at revision keys and a
// log of logged updates after it into dir.
func writeBenchDir(b *testing.B, dir string, keys, logged int) {
	b.Helper()
	entries := make([]*Entry, keys)
	for i := range entries {
		rev := int64(i + 1)
		entries[i] = &Entry{Key: benchKey(i), Value: benchValue, Revision: rev, CreateRevision: rev, Version: 1}
	}
	var snap bytes.Buffer
	if err := writeSnapshot(&snap, entries, nil, int64(keys), nil); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fileName(int64(keys), snapExt)), snap.Bytes(), 0o600); err != nil {
		b.Fatal(err)
	}
	var seg []byte
	changes := make([]Change, 0, 64)
	for i := range logged {
		changes = append(changes, Change{Op: OpSet, Key: benchKey(i % keys), Value: benchValue, Revision: int64(keys + i + 1)})
		if len(changes) == cap(changes) || i == logged-1 {
			var err error
			if seg, err = appendBatch(seg, changes); err != nil {
				b.Fatal(err)
			}
			changes = changes[:0]
		}
	}
	if err := os.WriteFile(filepath.Join(dir, fileName(int64(keys+1), segExt)), seg, 0o600); err != nil {
		b.Fatal(err)
	}
}
