package kv

import (
	"errors"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestHistogram(t *testing.T) {
	tests := []struct {
		name       string
		bounds     []float64
		observe    []float64
		wantCounts []uint64
		wantCount  uint64
		wantSum    float64
	}{
		{"empty", []float64{1, 2}, nil, []uint64{0, 0}, 0, 0},
		{"bounds are inclusive", []float64{1, 2, 4}, []float64{1, 2, 4}, []uint64{1, 2, 3}, 3, 7},
		{"between bounds", []float64{1, 2, 4}, []float64{0.5, 1.5, 3}, []uint64{1, 2, 3}, 3, 5},
		{"above every bound", []float64{1, 2}, []float64{3, 100}, []uint64{0, 0}, 2, 103},
		{"cumulative", []float64{1, 10}, []float64{0, 0, 5, 50}, []uint64{2, 3}, 4, 55},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHistogram(tt.bounds)
			for _, v := range tt.observe {
				h.observe(v)
			}
			s := h.snapshot()
			if !slices.Equal(s.Counts, tt.wantCounts) || s.Count != tt.wantCount || s.Sum != tt.wantSum {
				t.Fatalf("got counts %v, count %d, sum %v; want %v, %d, %v", s.Counts, s.Count, s.Sum, tt.wantCounts, tt.wantCount, tt.wantSum)
			}
			if !slices.Equal(s.Bounds, tt.bounds) {
				t.Fatalf("bounds %v, want %v", s.Bounds, tt.bounds)
			}
		})
	}
}

func TestHistogramConcurrent(t *testing.T) {
	h := newHistogram([]float64{1})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				h.observe(0.5)
			}
		})
	}
	wg.Wait()
	if s := h.snapshot(); s.Count != 8000 || s.Counts[0] != 8000 || s.Sum != 4000 {
		t.Fatalf("got count %d, bucket %d, sum %v; want 8000, 8000, 4000", s.Count, s.Counts[0], s.Sum)
	}
}

// TestFileLogStats checks that Stats counts each batch with its size and
// times each fsync: one set whose fsync is held, ten queued behind it (one
// batch), and a failed fsync that counts nothing.
func TestFileLogStats(t *testing.T) {
	l, err := Open(t.TempDir(), FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu      sync.Mutex
		hold    = true
		fail    = false
		entered = make(chan struct{}, 1)
		release = make(chan struct{})
	)
	l.syncFile = func(f *os.File) error {
		mu.Lock()
		h, fl := hold, fail
		hold = false
		mu.Unlock()
		if h {
			entered <- struct{}{}
			<-release
		}
		if fl {
			return errors.New("injected")
		}
		return f.Sync()
	}
	s := New(Options{Log: l})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()

	if st := l.Stats(); st.BatchChanges.Count != 0 || st.SyncSeconds.Count != 0 {
		t.Fatalf("a new log: got %+v, want nothing counted", st)
	}
	first := make(chan error, 1)
	go func() {
		_, err := s.Set(ctx, "first", []byte(`1`))
		first <- err
	}()
	select {
	case <-entered:
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("no fsync within 30s of a set")
	}
	heldFrom := time.Now()
	var wg sync.WaitGroup
	for i := range 10 {
		wg.Go(func() {
			if _, err := s.Set(ctx, "k"+string(rune('a'+i)), []byte(`2`)); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, s, 10)
	held := time.Since(heldFrom)
	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	st := l.Stats()
	b := st.BatchChanges
	if b.Count != 2 || b.Sum != 11 {
		t.Fatalf("batches: got %d holding %v changes, want 2 holding 11", b.Count, b.Sum)
	}
	// Bounds 1, 2, 4, 8, 16, ...: the batch of 1 in the first bucket, the
	// batch of 10 from the bucket of 16 on.
	if want := []uint64{1, 1, 1, 1, 2, 2}; !slices.Equal(b.Counts[:6], want) {
		t.Fatalf("batch buckets %v, want %v...", b.Counts, want)
	}
	sy := st.SyncSeconds
	if sy.Count != 2 {
		t.Fatalf("fsyncs: got %d, want 2", sy.Count)
	}
	if sy.Sum < held.Seconds() {
		t.Fatalf("fsync seconds %v, want at least the %v the first one was held", sy.Sum, held)
	}

	mu.Lock()
	fail = true
	mu.Unlock()
	if _, err := s.Set(ctx, "x", []byte(`3`)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("set with a failing fsync: got %v, want ErrUnavailable", err)
	}
	if st := l.Stats(); st.BatchChanges.Count != 2 || st.SyncSeconds.Count != 2 {
		t.Fatalf("after a failed fsync: %d batches, %d fsyncs; want 2 and 2 (a failed batch is not counted)",
			st.BatchChanges.Count, st.SyncSeconds.Count)
	}
}

func TestFileLogStatsNoSync(t *testing.T) {
	l, err := Open(t.TempDir(), FileOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Log: l})
	t.Cleanup(func() { s.Close() })
	for i := range 3 {
		if _, err := s.Set(t.Context(), "k", []byte{'0' + byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	st := l.Stats()
	if st.BatchChanges.Count != 3 || st.BatchChanges.Sum != 3 || st.SyncSeconds.Count != 0 {
		t.Fatalf("got %d batches of %v changes and %d fsyncs, want 3, 3 and 0",
			st.BatchChanges.Count, st.BatchChanges.Sum, st.SyncSeconds.Count)
	}
}
