package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// BenchmarkSetDuringSnapshot measures what backups cost writers: sets per
// second through the handler, on a store of 100000 keys of 256 bytes,
// with no backup, one, and two being read slowly (64 KiB every 5 ms,
// about 13 MB/s; each reader starts another backup when one ends), on the
// memory and the file backend:
//
//	go test ./httpapi -run '^$' -bench SetDuringSnapshot -count 5
func BenchmarkSetDuringSnapshot(b *testing.B) {
	for _, backend := range []string{"memory", "file"} {
		store := benchStore(b, backend)
		for _, readers := range []int{0, 1, 2} {
			b.Run(fmt.Sprintf("%s/readers=%d", backend, readers), func(b *testing.B) {
				benchSetDuringSnapshot(b, store, backend, readers)
			})
		}
	}
}

const (
	benchKeys      = 100000
	benchValueSize = 256
)

func benchStore(b *testing.B, backend string) *kv.Store {
	b.Helper()
	value := []byte(`"` + strings.Repeat("v", benchValueSize-2) + `"`)
	entries := make([]*kv.Entry, benchKeys)
	for i := range entries {
		entries[i] = &kv.Entry{Key: fmt.Sprintf("k%06d", i), Value: value, Revision: int64(i + 1), CreateRevision: int64(i + 1), Version: 1}
	}
	dir := b.TempDir()
	if err := kv.CreateDataDir(dir, entries, benchKeys); err != nil {
		b.Fatal(err)
	}
	// No snapshot of the log while the benchmark runs: it would cost the
	// writers as much as a backup does.
	fl, err := kv.Open(dir, kv.FileOptions{NoSync: backend == "memory", SnapshotBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	var log kv.Log = fl
	if backend == "memory" {
		// The memory backend, loaded from the directory.
		s := kv.New(kv.Options{Log: fl})
		es, rev := s.Snapshot("")
		s.Close()
		log = &loaded{kv.Recovery{Entries: es, Rev: rev}}
	}
	s := kv.New(kv.Options{Log: log})
	b.Cleanup(func() { s.Close() })
	return s
}

// loaded is a memory log that starts with a state.
type loaded struct{ rec kv.Recovery }

func (l *loaded) Append([]kv.Change) error                      { return nil }
func (l *loaded) Close() error                                  { return nil }
func (l *loaded) Recover(func() ([]*kv.Entry, int64)) kv.Recovery { return l.rec }

func benchSetDuringSnapshot(b *testing.B, store *kv.Store, backend string, readers int) {
	h := httpapi.New(httpapi.Options{Store: store, MaxSnapshots: readers})
	srv := httptest.NewServer(h)
	defer srv.Close()

	stop := make(chan struct{})
	var wg sync.WaitGroup
	started := make(chan struct{}, readers)
	backups := make([]int, readers)
	for r := range readers {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			first := true
			for {
				resp, err := http.Get(srv.URL + "/snapshot")
				if err != nil {
					b.Error(err)
					return
				}
				for {
					_, err := io.ReadFull(resp.Body, buf)
					if first {
						started <- struct{}{}
						first = false
					}
					if err != nil {
						break
					}
					select {
					case <-stop:
						resp.Body.Close()
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
				resp.Body.Close()
				backups[r]++
			}
		})
	}
	for range readers {
		<-started
	}

	value := []byte(`{"Key":"k000000","Value":"` + strings.Repeat("w", benchValueSize-2) + `"}`)
	if backend == "file" {
		b.SetParallelism(16) // writers enough for group commit
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discard{h: make(http.Header)}
		body := bytes.Clone(value)
		rd := bytes.NewReader(nil)
		r := httptest.NewRequest("POST", "/set", nil)
		rng := rand.New(rand.NewPCG(rand.Uint64(), 1))
		for pb.Next() {
			copy(body[9:15], fmt.Sprintf("%06d", rng.IntN(benchKeys)))
			rd.Reset(body)
			r.Body = readCloser{rd}
			clear(w.h)
			h.ServeHTTP(w, r)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "sets/s")
	close(stop)
	wg.Wait()
}
