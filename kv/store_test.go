package kv_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/kvsdb/kvs/kv"
)

// recorder is a Publisher that keeps every applied change.
type recorder struct {
	mu      sync.Mutex
	changes []kv.Change
}

func (r *recorder) Publish(cs []kv.Change) {
	r.mu.Lock()
	r.changes = append(r.changes, cs...)
	r.mu.Unlock()
}

func (r *recorder) all() []kv.Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]kv.Change(nil), r.changes...)
}

func newStore(t *testing.T, opts kv.Options) *kv.Store {
	t.Helper()
	s := kv.New(opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func TestRevisionsAreConsecutiveAndSkipFailures(t *testing.T) {
	s := newStore(t, kv.Options{})
	ctx := t.Context()
	if got := s.Rev(); got != 0 {
		t.Fatalf("empty store Rev: got %d, want 0", got)
	}
	steps := []struct {
		name    string
		c       kv.Change
		wantRev int64
		wantErr error
	}{
		{"create a", kv.Change{Op: kv.OpSet, Key: "a", Value: []byte(`1`)}, 1, nil},
		{"create b", kv.Change{Op: kv.OpSet, Key: "b", Value: []byte(`2`)}, 2, nil},
		{"delete missing", kv.Change{Op: kv.OpDelete, Key: "zz"}, 0, kv.ErrNotFound},
		{"failed condition", kv.Change{Op: kv.OpSet, Key: "a", Value: []byte(`3`), Cond: true, IfRevision: 2}, 0, kv.ErrConflict},
		{"update a", kv.Change{Op: kv.OpSet, Key: "a", Value: []byte(`4`)}, 3, nil},
		{"delete b", kv.Change{Op: kv.OpDelete, Key: "b"}, 4, nil},
	}
	for _, st := range steps {
		rev, err := s.Submit(ctx, st.c)
		if !errors.Is(err, st.wantErr) {
			t.Fatalf("%s: got error %v, want %v", st.name, err, st.wantErr)
		}
		if rev != st.wantRev {
			t.Fatalf("%s: got revision %d, want %d", st.name, rev, st.wantRev)
		}
	}
	if got := s.Rev(); got != 4 {
		t.Fatalf("Rev: got %d, want 4", got)
	}
}

func TestConditions(t *testing.T) {
	tests := []struct {
		name    string
		setup   []kv.Change // applied first; the key "k" ends at revision len(setup) if it exists
		c       kv.Change
		wantErr error
		wantCur int64 // revision of ConflictError.Current; -1 = nil
	}{
		{"set if absent, absent", nil,
			kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`1`), Cond: true, IfRevision: 0}, nil, 0},
		{"set if absent, present", []kv.Change{{Op: kv.OpSet, Key: "k", Value: []byte(`1`)}},
			kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`2`), Cond: true, IfRevision: 0}, kv.ErrConflict, 1},
		{"set if revision, matches", []kv.Change{{Op: kv.OpSet, Key: "k", Value: []byte(`1`)}},
			kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`2`), Cond: true, IfRevision: 1}, nil, 0},
		{"set if revision, stale", []kv.Change{{Op: kv.OpSet, Key: "k", Value: []byte(`1`)}, {Op: kv.OpSet, Key: "k", Value: []byte(`2`)}},
			kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`3`), Cond: true, IfRevision: 1}, kv.ErrConflict, 2},
		{"set if revision, missing key", nil,
			kv.Change{Op: kv.OpSet, Key: "k", Value: []byte(`1`), Cond: true, IfRevision: 5}, kv.ErrConflict, -1},
		{"delete if revision, matches", []kv.Change{{Op: kv.OpSet, Key: "k", Value: []byte(`1`)}},
			kv.Change{Op: kv.OpDelete, Key: "k", Cond: true, IfRevision: 1}, nil, 0},
		{"delete if revision, stale", []kv.Change{{Op: kv.OpSet, Key: "k", Value: []byte(`1`)}, {Op: kv.OpSet, Key: "k", Value: []byte(`2`)}},
			kv.Change{Op: kv.OpDelete, Key: "k", Cond: true, IfRevision: 1}, kv.ErrConflict, 2},
		{"delete if revision, missing key", nil,
			kv.Change{Op: kv.OpDelete, Key: "k", Cond: true, IfRevision: 3}, kv.ErrConflict, -1},
		{"delete if absent, missing key", nil,
			kv.Change{Op: kv.OpDelete, Key: "k", Cond: true, IfRevision: 0}, kv.ErrNotFound, 0},
		{"delete unconditional, missing", nil,
			kv.Change{Op: kv.OpDelete, Key: "k"}, kv.ErrNotFound, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newStore(t, kv.Options{})
			for _, c := range tt.setup {
				if _, err := s.Submit(t.Context(), c); err != nil {
					t.Fatal(err)
				}
			}
			before, _ := s.Get("k")
			rev, err := s.Submit(t.Context(), tt.c)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("got error %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				if want := int64(len(tt.setup) + 1); rev != want {
					t.Fatalf("got revision %d, want %d", rev, want)
				}
				return
			}
			// Entries are fresh copies: equal content, revision included,
			// is the same entry.
			if after, _ := s.Get("k"); !reflect.DeepEqual(after, before) {
				t.Fatalf("failed change modified the key: got %+v, want %+v", after, before)
			}
			if s.Rev() != int64(len(tt.setup)) {
				t.Fatalf("failed change took a revision: Rev %d, want %d", s.Rev(), len(tt.setup))
			}
			var ce *kv.ConflictError
			if errors.As(err, &ce) {
				switch {
				case tt.wantCur < 0 && ce.Current != nil:
					t.Fatalf("Current: got %+v, want nil", ce.Current)
				case tt.wantCur >= 0 && (ce.Current == nil || ce.Current.Revision != tt.wantCur):
					t.Fatalf("Current: got %+v, want revision %d", ce.Current, tt.wantCur)
				}
			} else if errors.Is(tt.wantErr, kv.ErrConflict) {
				t.Fatalf("got %T, want *kv.ConflictError", err)
			}
		})
	}
}

func TestVersionAndCreateRevision(t *testing.T) {
	s := newStore(t, kv.Options{})
	ctx := t.Context()
	set := func(v string) {
		t.Helper()
		if _, err := s.Set(ctx, "k", []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(rev, create, version int64) {
		t.Helper()
		e, ok := s.Get("k")
		if !ok {
			t.Fatal("key missing")
		}
		if e.Revision != rev || e.CreateRevision != create || e.Version != version {
			t.Fatalf("got Revision %d CreateRevision %d Version %d, want %d %d %d",
				e.Revision, e.CreateRevision, e.Version, rev, create, version)
		}
	}
	set(`1`)
	check(1, 1, 1)
	set(`2`)
	check(2, 1, 2)
	set(`3`)
	check(3, 1, 3)
	if _, err := s.Delete(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Get("k"); ok {
		t.Fatal("deleted key still there")
	}
	set(`4`)
	check(5, 5, 1)
}

func TestSubmitRejectsBadInput(t *testing.T) {
	s := newStore(t, kv.Options{})
	tests := []struct {
		name string
		c    kv.Change
	}{
		{"empty key", kv.Change{Op: kv.OpSet, Key: "", Value: []byte(`1`)}},
		{"long key", kv.Change{Op: kv.OpSet, Key: string(make([]byte, kv.MaxKeyBytes+1)), Value: []byte(`1`)}},
		{"control character", kv.Change{Op: kv.OpSet, Key: "a\nb", Value: []byte(`1`)}},
		{"set without value", kv.Change{Op: kv.OpSet, Key: "a"}},
		{"unknown op", kv.Change{Op: 9, Key: "a"}},
	}
	for _, tt := range tests {
		if _, err := s.Submit(t.Context(), tt.c); err == nil {
			t.Errorf("%s: got no error", tt.name)
		}
	}
	if s.Rev() != 0 || s.Len() != 0 {
		t.Fatalf("bad input changed the store: Rev %d Len %d", s.Rev(), s.Len())
	}
}

// TestConcurrentWritersAndReaders runs writers, readers and listers at once
// (under -race) and checks that every acknowledged revision is unique and
// that the published changes carry exactly those revisions, in order.
func TestConcurrentWritersAndReaders(t *testing.T) {
	rec := &recorder{}
	s := newStore(t, kv.Options{Shards: 4, Publisher: rec})
	ctx := t.Context()
	const writers, perWriter = 8, 300
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked = make(map[int64]bool)
		stop  atomic.Bool
	)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				key := "k" + strconv.Itoa(rand.IntN(50))
				var rev int64
				var err error
				if i%5 == 4 {
					rev, err = s.Delete(ctx, key)
					if errors.Is(err, kv.ErrNotFound) {
						continue
					}
				} else {
					rev, err = s.Set(ctx, key, []byte(strconv.Itoa(w*perWriter+i)))
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				if acked[rev] {
					t.Errorf("revision %d acknowledged twice", rev)
				}
				acked[rev] = true
				mu.Unlock()
				if e, ok := s.Get(key); ok && e.Revision < rev && i%5 != 4 {
					t.Errorf("read after acknowledged set %d: entry at older revision %d", rev, e.Revision)
				}
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for !stop.Load() {
				s.Get("k" + strconv.Itoa(rand.IntN(50)))
				s.Snapshot("k1")
			}
		})
	}
	wg.Wait()
	stop.Store(true)
	readers.Wait()

	changes := rec.all()
	if len(changes) != len(acked) {
		t.Fatalf("published %d changes, acknowledged %d", len(changes), len(acked))
	}
	for i, c := range changes {
		if c.Revision != int64(i+1) {
			t.Fatalf("published change %d has revision %d, want %d", i, c.Revision, i+1)
		}
		if !acked[c.Revision] {
			t.Fatalf("published revision %d was never acknowledged", c.Revision)
		}
	}
}

// TestConcurrentCreateIfAbsent: many writers race to create one key with
// IfRevision 0; exactly one wins.
func TestConcurrentCreateIfAbsent(t *testing.T) {
	s := newStore(t, kv.Options{})
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Go(func() {
			_, err := s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: "lock", Value: []byte(strconv.Itoa(i)), Cond: true})
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, kv.ErrConflict):
				conflicts.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || conflicts.Load() != 31 {
		t.Fatalf("got %d wins and %d conflicts, want 1 and 31", wins.Load(), conflicts.Load())
	}
}

// gateLog is a memory log whose first Append waits for open to be closed,
// so that the changes submitted meanwhile queue up as one batch.
type gateLog struct {
	entered, open chan struct{}
	once          sync.Once
}

func (g *gateLog) Append([]kv.Change) error {
	g.once.Do(func() {
		close(g.entered)
		<-g.open
	})
	return nil
}

func (g *gateLog) Close() error { return nil }

// TestCreateIfAbsentInOneBatch: writers that create one key with
// IfRevision 0 and are committed in one batch see each other's change:
// exactly one wins.
func TestCreateIfAbsentInOneBatch(t *testing.T) {
	g := &gateLog{entered: make(chan struct{}), open: make(chan struct{})}
	s := newStore(t, kv.Options{Log: g})
	go s.Set(t.Context(), "other", []byte(`1`)) // the committer, held in Append
	<-g.entered
	const n = 8
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := s.Submit(t.Context(), kv.Change{Op: kv.OpSet, Key: "lock", Value: []byte(`1`), Cond: true})
			errs <- err
		}()
	}
	time.Sleep(50 * time.Millisecond) // for them to queue; if some do not, they commit later, with the same outcome
	close(g.open)
	wins := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			wins++
		case !errors.Is(err, kv.ErrConflict):
			t.Fatal(err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d of %d create-if-absent sets of one key won, want 1", wins, n)
	}
}

// TestSnapshotIsConsistent checks, with writers running, that every
// snapshot equals the state obtained by applying exactly the changes with a
// revision up to the snapshot's.
func TestSnapshotIsConsistent(t *testing.T) {
	rec := &recorder{}
	s := newStore(t, kv.Options{Shards: 8, Publisher: rec})
	ctx := t.Context()
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				key := "k" + strconv.Itoa(rand.IntN(200))
				if i%4 == 3 {
					s.Delete(ctx, key)
				} else if _, err := s.Set(ctx, key, []byte(strconv.Itoa(w*1000000+i))); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	type snap struct {
		entries []*kv.Entry
		rev     int64
		prefix  string
	}
	var snaps []snap
	for i := 0; i < 200 || s.Rev() < 3000; i++ {
		prefix := ""
		if i%3 == 1 {
			prefix = "k1"
		}
		entries, rev := s.Snapshot(prefix)
		snaps = append(snaps, snap{entries, rev, prefix})
	}
	stop.Store(true)
	wg.Wait()

	changes := rec.all()
	state := make(map[string]string)
	ci := 0
	checked := 0
	for _, sn := range snaps { // snapshots were taken in increasing revision order
		for ; ci < len(changes) && changes[ci].Revision <= sn.rev; ci++ {
			c := changes[ci]
			if c.Op == kv.OpDelete {
				delete(state, c.Key)
			} else {
				state[c.Key] = string(c.Value)
			}
		}
		want := make(map[string]string)
		for k, v := range state {
			if len(k) >= len(sn.prefix) && k[:len(sn.prefix)] == sn.prefix {
				want[k] = v
			}
		}
		got := make(map[string]string)
		for i, e := range sn.entries {
			if i > 0 && sn.entries[i-1].Key >= e.Key {
				t.Fatalf("snapshot at %d not sorted: %q before %q", sn.rev, sn.entries[i-1].Key, e.Key)
			}
			got[e.Key] = string(e.Value)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("snapshot at revision %d (prefix %q): got %d keys, want %d; differs from the changes up to it",
				sn.rev, sn.prefix, len(got), len(want))
		}
		checked++
	}
	if checked == 0 || snaps[0].rev == snaps[len(snaps)-1].rev {
		t.Fatal("no snapshot was taken while writes happened")
	}
}

type failingLog struct {
	fail atomic.Bool
	n    atomic.Int64
}

func (l *failingLog) Append(cs []kv.Change) error {
	if l.fail.Load() {
		return errors.New("disk on fire")
	}
	l.n.Add(int64(len(cs)))
	return nil
}
func (l *failingLog) Close() error { return nil }

func TestLogFailureAppliesNothing(t *testing.T) {
	log := &failingLog{}
	rec := &recorder{}
	s := newStore(t, kv.Options{Log: log, Publisher: rec})
	ctx := t.Context()
	if _, err := s.Set(ctx, "a", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	log.fail.Store(true)
	if _, err := s.Set(ctx, "a", []byte(`2`)); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("got %v, want ErrUnavailable", err)
	}
	if e, _ := s.Get("a"); string(e.Value) != `1` || s.Rev() != 1 {
		t.Fatalf("failed write was applied: %s at Rev %d", e.Value, s.Rev())
	}
	log.fail.Store(false)
	rev, err := s.Set(ctx, "a", []byte(`3`))
	if err != nil || rev != 2 {
		t.Fatalf("after recovery: got rev %d err %v, want 2 and nil", rev, err)
	}
	if n := len(rec.all()); n != 2 {
		t.Fatalf("published %d changes, want 2", n)
	}
}

func TestClose(t *testing.T) {
	s := kv.New(kv.Options{})
	if _, err := s.Set(t.Context(), "a", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(t.Context(), "a", []byte(`2`)); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("set after Close: got %v, want ErrUnavailable", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestSubmitHonoursCancelledContext(t *testing.T) {
	s := newStore(t, kv.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Set(ctx, "a", []byte(`1`)); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if s.Rev() != 0 {
		t.Fatal("cancelled set was applied")
	}
}

func TestValidKey(t *testing.T) {
	tests := []struct {
		key  string
		want bool
	}{
		{"a", true},
		{"City", true},
		{"with space and /slashes/", true},
		{"ünïcødé ключ 鍵", true},
		{"<img src=x onerror=alert(1)>", true},
		{string(make([]byte, 0)), false},
		{"tab\there", false},
		{"nul\x00", false},
		{"del\x7f", false},
		{"bad\xff", false},
		{"é\x01", false}, // control character after a multi-byte rune
		{"\xc3", false},  // truncated rune
	}
	for _, tt := range tests {
		if got := kv.ValidKey(tt.key); got != tt.want {
			t.Errorf("ValidKey(%q): got %v, want %v", tt.key, got, tt.want)
		}
	}
	long := make([]byte, kv.MaxKeyBytes)
	for i := range long {
		long[i] = 'x'
	}
	if !kv.ValidKey(string(long)) {
		t.Errorf("key of %d bytes: got invalid, want valid", len(long))
	}
	if kv.ValidKey(string(long) + "x") {
		t.Errorf("key of %d bytes: got valid, want invalid", len(long)+1)
	}
}

func FuzzValidKey(f *testing.F) {
	for _, s := range []string{"a", "", "a\x00", "é", "\xff", "ключ"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		want := len(key) > 0 && len(key) <= kv.MaxKeyBytes && utf8.ValidString(key)
		for _, r := range key {
			if r < 0x20 || r == 0x7f {
				want = false
			}
		}
		if got := kv.ValidKey(key); got != want {
			t.Fatalf("ValidKey(%q): got %v, want %v", key, got, want)
		}
	})
}

func Example() {
	s := kv.New(kv.Options{})
	defer s.Close()
	ctx := context.Background()
	rev, _ := s.Set(ctx, "City", []byte(`"Ahmedabad"`))
	e, _ := s.Get("City")
	_, err := s.Submit(ctx, kv.Change{Op: kv.OpSet, Key: "City", Value: []byte(`"Pune"`), Cond: true, IfRevision: 0})
	fmt.Println(rev, string(e.Value), e.Version)
	fmt.Println(errors.Is(err, kv.ErrConflict))
	// Output:
	// 1 "Ahmedabad" 1
	// true
}
