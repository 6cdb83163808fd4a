package kv

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestAcknowledgedAfterFsync holds the log's fsync and checks that no
// change is acknowledged or visible before it returns, and that the
// changes that queue meanwhile share the next write and fsync.
func TestAcknowledgedAfterFsync(t *testing.T) {
	l, err := Open(t.TempDir(), FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var (
		syncs   atomic.Int32
		entered = make(chan int64, 100) // the segment size at each fsync
		release = make(chan struct{})
	)
	l.syncFile = func(f *os.File) error {
		if syncs.Add(1) == 1 {
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			entered <- fi.Size()
			<-release
		}
		return f.Sync()
	}
	s := New(Options{Log: l})
	t.Cleanup(func() { s.Close() })
	ctx := t.Context()

	first := make(chan error, 1)
	go func() {
		_, err := s.Set(ctx, "first", []byte(`1`))
		first <- err
	}()
	select {
	case size := <-entered:
		if size == 0 {
			t.Fatal("fsync before the batch was written")
		}
	case <-time.After(30 * time.Second): // a hang guard
		t.Fatal("no fsync within 30s of a set")
	}
	// The first set is written and being fsynced. Ten more queue behind it.
	var wg sync.WaitGroup
	revs := make([]int64, 10)
	for i := range revs {
		wg.Go(func() {
			var err error
			if revs[i], err = s.Set(ctx, "k"+string(rune('a'+i)), []byte(`2`)); err != nil {
				t.Error(err)
			}
		})
	}
	waitQueued(t, s, len(revs))
	select {
	case err := <-first:
		t.Fatalf("set acknowledged (%v) before its fsync returned", err)
	default:
	}
	if _, ok := s.Get("first"); ok {
		t.Fatal("set visible before its fsync returned")
	}

	close(release)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	slices.Sort(revs)
	if want := []int64{2, 3, 4, 5, 6, 7, 8, 9, 10, 11}; !slices.Equal(revs, want) {
		t.Fatalf("revisions of the queued sets: got %v, want %v", revs, want)
	}
	if got := syncs.Load(); got != 2 {
		t.Errorf("fsyncs: got %d, want 2 (one for the first set, one for the ten queued behind it)", got)
	}
}

// waitQueued waits until n changes are queued in s.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		s.qmu.Lock()
		q := len(s.queue)
		s.qmu.Unlock()
		if q >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d changes queued, want %d", q, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLogFailure makes a write or an fsync fail: the batch is refused, the
// log fails for good (after a failed fsync nothing about the file is
// certain), and a restart recovers every acknowledged change and nothing
// else.
func TestLogFailure(t *testing.T) {
	injected := errors.New("injected I/O error")
	tests := []struct {
		name    string
		breakIt func(l *FileLog, failing *atomic.Bool)
	}{
		{"fsync fails", func(l *FileLog, failing *atomic.Bool) { failing.Store(true) }},
		{"write fails", func(l *FileLog, failing *atomic.Bool) { l.f.Close() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l, err := Open(dir, FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var failing atomic.Bool
			l.syncFile = func(f *os.File) error {
				if failing.Load() {
					return injected
				}
				return f.Sync()
			}
			s := New(Options{Log: l})
			ctx := t.Context()
			if _, err := s.Set(ctx, "a", []byte(`1`)); err != nil {
				t.Fatal(err)
			}
			tt.breakIt(l, &failing)
			if _, err := s.Set(ctx, "b", []byte(`2`)); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("set while the log fails: got %v, want ErrUnavailable", err)
			}
			if l.Err() == nil {
				t.Fatal("Err is nil after a failure")
			}
			failing.Store(false)
			if _, err := s.Set(ctx, "c", []byte(`3`)); !errors.Is(err, ErrUnavailable) {
				t.Fatalf("set after the failure: got %v, want ErrUnavailable: the log must stay failed", err)
			}
			if _, ok := s.Get("b"); ok || s.Rev() != 1 {
				t.Fatalf("after failed sets: b present %v, Rev %d, want absent and 1", ok, s.Rev())
			}
			if err := s.Close(); err == nil {
				t.Error("Close of a failed log: got nil, want its failure")
			}

			l, err = Open(dir, FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			s = New(Options{Log: l})
			defer s.Close()
			if _, ok := s.Get("b"); ok || s.Rev() != 1 {
				t.Fatalf("after restart: b present %v, Rev %d, want absent and 1", ok, s.Rev())
			}
			if rev, err := s.Set(ctx, "d", []byte(`4`)); err != nil || rev != 2 {
				t.Fatalf("set after restart: got %d, %v, want revision 2", rev, err)
			}
		})
	}
}

// TestLargeBatchFramesDurableInOrder: a batch of more than one frame is
// written frame by frame, each fsynced before the next is written, so that
// a crash can tear only the last frame written, which recovery truncates;
// an earlier frame is never left damaged behind a good one.
func TestLargeBatchFramesDurableInOrder(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(dir, FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64 // the segment's size at each fsync
	l.syncFile = func(f *os.File) error {
		fi, err := f.Stat()
		if err != nil {
			return err
		}
		sizes = append(sizes, fi.Size())
		return f.Sync()
	}
	l.noAlloc = true // the file grows as written, so its size shows the writes
	// STATE as a crash during the Append below would leave it: the batch
	// not acknowledged.
	before, err := os.ReadFile(filepath.Join(dir, stateName))
	if err != nil {
		t.Fatal(err)
	}
	value := []byte(`"` + string(make([]byte, 1<<20)) + `"`)
	for i := range value[1 : len(value)-1] {
		value[i+1] = 'x'
	}
	var changes []Change
	for i := range 20 { // 20 MiB: three frames
		changes = append(changes, Change{Op: OpSet, Key: "k" + string(rune('a'+i)), Value: value, Revision: int64(i + 1)})
	}
	if err := l.Append(changes); err != nil {
		t.Fatal(err)
	}
	if len(sizes) != 3 {
		t.Fatalf("%d fsyncs for a batch of 20 MiB, want one per frame (3)", len(sizes))
	}
	for i := 1; i < len(sizes); i++ {
		if sizes[i] <= sizes[i-1] {
			t.Fatalf("fsync %d saw %d bytes after %d: frames not written one by one", i, sizes[i], sizes[i-1])
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Tear the last frame, as a crash during the Append would: the first
	// two frames' changes survive.
	seg := filepath.Join(dir, fileName(1, segExt))
	if err := os.Truncate(seg, sizes[1]+100); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, stateName), before, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err = Open(dir, FileOptions{})
	if err != nil {
		t.Fatalf("a torn last frame must be truncated, not refused: %v", err)
	}
	defer l.Close()
	rec := l.Recover(func() *View { return &View{} })
	if n := len(rec.Changes); n == 0 || n >= 20 {
		t.Fatalf("recovered %d changes, want those of the frames before the torn one", n)
	}
}
