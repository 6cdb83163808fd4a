package kv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/kv"
)

// changeLog is a Publisher that keeps what it is given.
type changeLog struct {
	mu      sync.Mutex
	changes []kv.Change
}

func (p *changeLog) Publish(cs []kv.Change) {
	p.mu.Lock()
	p.changes = append(p.changes, cs...)
	p.mu.Unlock()
}

func (p *changeLog) revs() []int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []int64
	for _, c := range p.changes {
		out = append(out, c.Revision)
	}
	return out
}

// fileStore is a Store on a FileLog in dir, closed at the end of the test
// unless the test closes it first.
type fileStore struct {
	*kv.Store
	log  *kv.FileLog
	pub  *changeLog
	logs *kvstest.LockedBuffer
}

func openFileStore(t *testing.T, dir string, opts kv.FileOptions) *fileStore {
	t.Helper()
	fs := &fileStore{pub: &changeLog{}, logs: &kvstest.LockedBuffer{}}
	opts.Logger = slog.New(slog.NewJSONHandler(fs.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var err error
	if fs.log, err = kv.Open(dir, opts); err != nil {
		t.Fatalf("Open: %v", err)
	}
	fs.Store = kv.New(kv.Options{Log: fs.log, Publisher: fs.pub})
	t.Cleanup(func() { fs.Close() })
	return fs
}

// state returns every entry of s by key, and its revision.
func state(s *kv.Store) (map[string]kv.Entry, int64) {
	entries, rev := s.Snapshot("")
	m := make(map[string]kv.Entry, len(entries))
	for _, e := range entries {
		m[e.Key] = *e
	}
	return m, rev
}

func entriesEqual(a, b kv.Entry) bool {
	return a.Key == b.Key && bytes.Equal(a.Value, b.Value) && a.Revision == b.Revision &&
		a.CreateRevision == b.CreateRevision && a.Version == b.Version
}

// checkState fails the test unless s holds exactly want at revision rev.
func checkState(t *testing.T, s *kv.Store, want map[string]kv.Entry, rev int64) {
	t.Helper()
	got, gotRev := state(s)
	if gotRev != rev || s.Rev() != rev {
		t.Errorf("revision: got %d (Rev %d), want %d", gotRev, s.Rev(), rev)
	}
	if !maps.EqualFunc(got, want, entriesEqual) {
		t.Errorf("entries:\n got %v\nwant %v", got, want)
	}
}

// mustSubmit submits c and returns its revision.
func mustSubmit(t *testing.T, s *kv.Store, c kv.Change) int64 {
	t.Helper()
	rev, err := s.Submit(t.Context(), c)
	if err != nil {
		t.Fatalf("submit %v %q: %v", c.Op, c.Key, err)
	}
	return rev
}

func setChange(key, value string) kv.Change {
	return kv.Change{Op: kv.OpSet, Key: key, Value: []byte(value)}
}

// writeSome applies a fixed mix of changes to s: creates, updates,
// conditional sets, deletes and a re-create.
func writeSome(t *testing.T, s *kv.Store, prefix string) {
	t.Helper()
	for i := range 20 {
		mustSubmit(t, s, setChange(prefix+strconv.Itoa(i%7), strconv.Itoa(i)))
	}
	a := mustSubmit(t, s, setChange(prefix+"a", `{"x":[1,2]}`))
	mustSubmit(t, s, kv.Change{Op: kv.OpSet, Key: prefix + "a", Value: []byte(`"cas"`), Cond: true, IfRevision: a})
	mustSubmit(t, s, kv.Change{Op: kv.OpDelete, Key: prefix + "3"})
	mustSubmit(t, s, kv.Change{Op: kv.OpDelete, Key: prefix + "4"})
	mustSubmit(t, s, setChange(prefix+"4", `"again"`))
}

// files returns the names in dir with the extension ext.
func files(t *testing.T, dir, ext string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"+ext))
	if err != nil {
		t.Fatal(err)
	}
	for i := range m {
		m[i] = filepath.Base(m[i])
	}
	return m
}

func TestFileLogRestart(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			s := openFileStore(t, dir, kv.FileOptions{NoSync: noSync})
			writeSome(t, s.Store, "k")
			want, rev := state(s.Store)
			if err := s.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}

			s = openFileStore(t, dir, kv.FileOptions{NoSync: noSync})
			checkState(t, s.Store, want, rev)
			// The recovered changes are published, in order: they refill
			// the feed's history.
			if got := s.pub.revs(); len(got) != int(rev) || got[0] != 1 || got[len(got)-1] != rev {
				t.Errorf("published at start-up: got %v, want 1 to %d", got, rev)
			}
			if got := mustSubmit(t, s.Store, setChange("new", `1`)); got != rev+1 {
				t.Fatalf("revision after restart: got %d, want %d", got, rev+1)
			}
		})
	}
}

func TestFileLogSnapshots(t *testing.T) {
	dir := t.TempDir()
	opts := kv.FileOptions{NoSync: true, SnapshotBytes: 2 << 10}
	s := openFileStore(t, dir, opts)
	ctx := t.Context()
	// Writers race the snapshot goroutine: several snapshots are taken
	// while changes are committed.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 300 {
				if _, err := s.Set(ctx, fmt.Sprintf("w%d-%d", w, i%50), fmt.Appendf(nil, `"%d"`, i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	waitFor(t, "a snapshot", func() bool { return s.log.SnapshotRev() > 0 })
	want, rev := state(s.Store)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	snapRev := s.log.SnapshotRev()
	if got := files(t, dir, ".snap"); len(got) != 1 {
		t.Errorf("snapshots after Close: got %v, want one", got)
	}
	if !strings.Contains(s.logs.String(), `"msg":"snapshot written"`) {
		t.Errorf("no snapshot logged:\n%s", s.logs)
	}

	s = openFileStore(t, dir, opts)
	checkState(t, s.Store, want, rev)
	if got := s.log.SnapshotRev(); got != snapRev {
		t.Errorf("SnapshotRev after restart: got %d, want %d", got, snapRev)
	}
	// Only the changes after the snapshot are replayed and published.
	var wantPub []int64
	for r := snapRev + 1; r <= rev; r++ {
		wantPub = append(wantPub, r)
	}
	if got := s.pub.revs(); !slices.Equal(got, wantPub) {
		t.Errorf("published at start-up: got %v, want %d to %d", got, snapRev+1, rev)
	}
	// The segments that the snapshot covers are gone: the first segment
	// left holds revision snapRev+1, the next ones start after it.
	segs := files(t, dir, ".wal")
	for i, name := range segs {
		first, err := strconv.ParseInt(strings.TrimSuffix(name, ".wal"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if covers := first <= snapRev+1; covers != (i == 0) {
			t.Errorf("segments %v after a snapshot at %d: only the first may start at or before %d", segs, snapRev, snapRev+1)
		}
	}
	if got := mustSubmit(t, s.Store, setChange("new", `1`)); got != rev+1 {
		t.Fatalf("revision after restart: got %d, want %d", got, rev+1)
	}
}

// waitFor polls cond until it holds, failing the test after a long
// deadline (a hang guard, not a performance check).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFileLogLocked(t *testing.T) {
	dir := t.TempDir()
	l, err := kv.Open(dir, kv.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = kv.Open(dir, kv.FileOptions{})
	if !errors.Is(err, kv.ErrLocked) || !strings.Contains(err.Error(), strconv.Itoa(os.Getpid())) {
		t.Fatalf("second Open: got %v, want ErrLocked naming process %d", err, os.Getpid())
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l, err = kv.Open(dir, kv.FileOptions{})
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	l.Close()
}

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "kvs-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	log, err := kv.Open(dir, kv.FileOptions{})
	if err != nil {
		panic(err)
	}
	s := kv.New(kv.Options{Log: log})
	s.Set(ctx, "City", []byte(`"Ahmedabad"`))
	s.Set(ctx, "City", []byte(`"Surat"`))
	s.Close()

	// Open again: the store continues where it stopped.
	log, err = kv.Open(dir, kv.FileOptions{})
	if err != nil {
		panic(err)
	}
	s = kv.New(kv.Options{Log: log})
	defer s.Close()
	e, _ := s.Get("City")
	fmt.Printf("%s revision %d version %d\n", e.Value, e.Revision, e.Version)
	rev, _ := s.Set(ctx, "Country", []byte(`"India"`))
	fmt.Println("next revision", rev)
	// Output:
	// "Surat" revision 2 version 2
	// next revision 3
}
