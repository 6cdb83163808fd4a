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
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// BenchmarkSetDuringSnapshot measures what backups cost writers: sets per
// second through the handler, on a store of 100000 keys of 256 bytes,
// with no backup, one, and two being read slowly (64 KiB every 5 ms,
// about 13 MB/s; each reader starts another backup when one ends), and
// one read as fast as it comes, on the memory and the file backend. Run
// the variants in turns, so that each turn finds the machine alike:
//
//	go test -c -o /tmp/httpapi.test ./httpapi
//	for i in $(seq 30); do /tmp/httpapi.test -test.run '^$' -test.bench SetDuringSnapshot -test.benchtime 500ms; done
func BenchmarkSetDuringSnapshot(b *testing.B) {
	for _, backend := range []string{"memory", "file"} {
		store := benchStore(b, backend)
		for _, tt := range []struct {
			name    string
			readers int
			pause   time.Duration
		}{
			{"readers=0", 0, 0},
			{"readers=1", 1, 5 * time.Millisecond},
			{"readers=2", 2, 5 * time.Millisecond},
			{"fast=1", 1, 0},
		} {
			b.Run(backend+"/"+tt.name, func(b *testing.B) {
				benchSetDuringSnapshot(b, store, backend, tt.readers, tt.pause)
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
	if err := kv.CreateDataDir(dir, entries, nil, benchKeys); err != nil {
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
		v := s.View("")
		s.Close()
		log = &loaded{kv.Recovery{Entries: v.All(), Len: v.Len(), Rev: v.Rev()}}
	}
	s := kv.New(kv.Options{Log: log})
	b.Cleanup(func() { s.Close() })
	return s
}

// loaded is a memory log that starts with a state.
type loaded struct{ rec kv.Recovery }

func (l *loaded) Append([]kv.Change) error            { return nil }
func (l *loaded) Close() error                        { return nil }
func (l *loaded) Recover(func() *kv.View) kv.Recovery { return l.rec }

func benchSetDuringSnapshot(b *testing.B, store *kv.Store, backend string, readers int, pause time.Duration) {
	// Room for a reader's next backup before the last one's handler has
	// returned.
	h := httpapi.New(httpapi.Options{Store: store, MaxSnapshots: 2 * readers})
	srv := httptest.NewServer(h)
	defer srv.Close()

	stop := make(chan struct{})
	var (
		wg      sync.WaitGroup
		read    atomic.Int64 // bytes of backups read
		started = make(chan struct{}, readers)
	)
	for range readers {
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			first := true
			for {
				resp, err := http.Get(srv.URL + "/snapshot")
				if err != nil {
					b.Error(err)
					return
				}
				if resp.StatusCode != http.StatusOK {
					b.Errorf("GET /snapshot: %s", resp.Status)
					resp.Body.Close()
					return
				}
				for {
					n, err := io.ReadFull(resp.Body, buf)
					read.Add(int64(n))
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
					case <-time.After(pause):
					}
				}
				resp.Body.Close()
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
	before := read.Load()
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
	b.ReportMetric(float64(read.Load()-before)/1e6/b.Elapsed().Seconds(), "backup-MB/s")
	close(stop)
	wg.Wait()
}
