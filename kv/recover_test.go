package kv

// Recovery from crafted data directories: files written with the log's own
// encoders, then cut, damaged or left half-done the way a crash or a disk
// would leave them.

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// craftSegment writes a segment starting at first with one record per
// batch, and returns the path and each record's offset, plus the end.
func craftSegment(t *testing.T, dir string, first int64, batches ...[]Change) (string, []int64) {
	t.Helper()
	var b []byte
	var offs []int64
	for _, batch := range batches {
		offs = append(offs, int64(len(b)))
		var err error
		if b, err = appendBatch(b, batch); err != nil {
			t.Fatal(err)
		}
	}
	offs = append(offs, int64(len(b)))
	path := filepath.Join(dir, fileName(first, segExt))
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, offs
}

// craftSnapshot writes a snapshot of entries at rev and returns its path.
func craftSnapshot(t *testing.T, dir string, rev int64, entries ...*Entry) string {
	t.Helper()
	var b bytes.Buffer
	if err := writeSnapshot(&b, entries, nil, rev, nil); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, fileName(rev, snapExt))
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// batch returns changes with consecutive revisions from rev: "k=v" is a
// set of k to the JSON string "v", "-k" a delete of k.
func batch(rev int64, ops ...string) []Change {
	var cs []Change
	for i, op := range ops {
		c := Change{Op: OpDelete, Key: strings.TrimPrefix(op, "-"), Revision: rev + int64(i)}
		if k, v, ok := strings.Cut(op, "="); ok {
			c = Change{Op: OpSet, Key: k, Value: []byte(`"` + v + `"`), Revision: rev + int64(i)}
		}
		cs = append(cs, c)
	}
	return cs
}

// pubRecorder is a Publisher that keeps the revisions it is given.
type pubRecorder struct {
	mu   sync.Mutex
	revs []int64
}

func (p *pubRecorder) Publish(cs []Change) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.revs = append(p.revs, c.Revision)
	}
}

// opened is a data directory opened as a Store.
type opened struct {
	s    *Store
	log  *FileLog
	pub  *pubRecorder
	logs *bytes.Buffer
}

func openDir(t *testing.T, dir string) (*opened, error) {
	t.Helper()
	o := &opened{pub: &pubRecorder{}, logs: &bytes.Buffer{}}
	var err error
	o.log, err = Open(dir, FileOptions{NoSync: true, Logger: slog.New(slog.NewJSONHandler(o.logs, nil))})
	if err != nil {
		return nil, err
	}
	o.s = New(Options{Log: o.log, Publisher: o.pub})
	t.Cleanup(func() { o.s.Close() })
	return o, nil
}

func mustOpenDir(t *testing.T, dir string) *opened {
	t.Helper()
	o, err := openDir(t, dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return o
}

// values returns key=value for every entry of s, the value's JSON quotes
// removed, sorted.
func values(s *Store) []string {
	entries, _ := s.Snapshot("")
	var out []string
	for _, e := range entries {
		out = append(out, e.Key+"="+strings.Trim(string(e.Value), `"`))
	}
	return out
}

func names(t *testing.T, dir string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, de := range des {
		if de.Name() != "LOCK" && de.Name() != stateName {
			out = append(out, de.Name())
		}
	}
	return out
}

func revRange(from, to int64) []int64 {
	var out []int64
	for r := from; r <= to; r++ {
		out = append(out, r)
	}
	return out
}

// TestTornTail cuts the last record of the log at every byte offset, and
// also overwrites it with zeros from every offset (the log's reserved space
// that the write did not reach): each time recovery keeps the records
// before it, truncates the rest with a warning, and appends after them.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	path, offs := craftSegment(t, src, 1,
		batch(1, "a=1", "b=2"),
		batch(3, "-a", "c=3", "d=a longer value, to have more offsets to cut at"))
	start, end := offs[1], offs[2]
	eachTear(t, path, start, end-1, end, func(t *testing.T, cut int64, seg string, data []byte) {
		dir := filepath.Dir(seg)
		o := mustOpenDir(t, dir)
		if got, want := values(o.s), []string{"a=1", "b=2"}; !slices.Equal(got, want) || o.s.Rev() != 2 {
			t.Fatalf("after recovery: got %v at %d, want %v at 2", got, o.s.Rev(), want)
		}
		// Zeros alone are space reserved for records, not a torn one.
		torn := cut > start
		warned := strings.Contains(o.logs.String(), `"level":"WARN","msg":"truncated a torn record`)
		if warned != torn {
			t.Errorf("warning logged: got %v, want %v\n%s", warned, torn, o.logs)
		}
		wantSize := int64(len(data))
		if torn {
			wantSize = start
		}
		if fi, err := os.Stat(seg); err != nil || fi.Size() != wantSize {
			t.Fatalf("segment after recovery: %v, size %d, want %d", err, fi.Size(), wantSize)
		}
		rev, err := o.s.Set(t.Context(), "e", []byte(`"5"`))
		if err != nil || rev != 3 {
			t.Fatalf("set after recovery: got %d, %v, want revision 3", rev, err)
		}
		o.s.Close()
		o = mustOpenDir(t, dir)
		if got, want := values(o.s), []string{"a=1", "b=2", "e=5"}; !slices.Equal(got, want) || o.s.Rev() != 3 {
			t.Fatalf("after a second restart: got %v at %d, want %v at 3", got, o.s.Rev(), want)
		}
	})
}

// eachTear runs f in a subtest for each torn copy of the segment at path
// whose last record spans start to end: cut at every offset from start to
// last, and zeroed from each of them up to end (space the log reserved
// that the write did not reach). Each copy is written alone, as seg, into
// a new directory.
func eachTear(t *testing.T, path string, start, last, end int64, f func(t *testing.T, cut int64, seg string, data []byte)) {
	t.Helper()
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, zeros := range []bool{false, true} {
		for cut := start; cut <= last; cut++ {
			name := fmt.Sprintf("cut at %d", cut)
			data := whole[:cut]
			if zeros {
				name = fmt.Sprintf("zeros from %d", cut)
				data = append(slices.Clone(whole[:cut]), make([]byte, end-cut)...)
			}
			t.Run(name, func(t *testing.T) {
				seg := filepath.Join(t.TempDir(), filepath.Base(path))
				if err := os.WriteFile(seg, data, 0o600); err != nil {
					t.Fatal(err)
				}
				f(t, cut, seg, data)
			})
		}
	}
}

// TestCorruption damages files before the end of the log: Open refuses,
// names the file and offset, and changes nothing.
func TestCorruption(t *testing.T) {
	flip := func(path string, off int64) func(t *testing.T) {
		return func(t *testing.T) {
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b[off] ^= 0x10
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	tests := []struct {
		name string
		// setup crafts dir and returns the damage to do, the damaged
		// file's name and the offset Open must report.
		setup   func(t *testing.T, dir string) (damage func(*testing.T), file string, off int64)
		wantMsg string
	}{
		{"bit flipped in the middle of the first record", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			path, offs := craftSegment(t, dir, 1, batch(1, "a=1", "b=2"), batch(3, "c=3"), batch(4, "d=4"))
			return flip(path, (offs[0]+offs[1])/2), path, 0
		}, "checksum mismatch, and valid records follow it"},
		{"bit flipped in the length of a middle record", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			path, offs := craftSegment(t, dir, 1, batch(1, "a=1"), batch(2, "b=2"), batch(3, "c=3"))
			return flip(path, offs[1]), path, offs[1]
		}, "valid records follow it"},
		{"bit flipped in the length, pointing past the end", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			path, offs := craftSegment(t, dir, 1, batch(1, "a=1"), batch(2, "b=2"), batch(3, "c=3"))
			return func(t *testing.T) {
				b, _ := os.ReadFile(path)
				b[offs[1]+2] ^= 0x01 // length += 64 KiB
				os.WriteFile(path, b, 0o600)
			}, path, offs[1]
		}, "valid records follow it"},
		{"bit flipped in the last record of an earlier segment", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			path, offs := craftSegment(t, dir, 1, batch(1, "a=1"), batch(2, "b=2"))
			craftSegment(t, dir, 3, batch(3, "c=3"))
			return flip(path, offs[2]-1), path, offs[1]
		}, "checksum mismatch"},
		{"torn record at the end of an earlier segment", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			path, offs := craftSegment(t, dir, 1, batch(1, "a=1"), batch(2, "b=2"))
			craftSegment(t, dir, 3, batch(3, "c=3"))
			return func(t *testing.T) { os.Truncate(path, offs[2]-3) }, path, offs[1]
		}, "not the last"},
		{"segment missing in the middle", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			craftSegment(t, dir, 1, batch(1, "a=1"))
			mid, _ := craftSegment(t, dir, 2, batch(2, "b=2"))
			last, _ := craftSegment(t, dir, 3, batch(3, "c=3"))
			return func(t *testing.T) { os.Remove(mid) }, last, 0
		}, "revisions 2 to 2 are missing"},
		{"log starts after the snapshot", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			craftSnapshot(t, dir, 1, &Entry{Key: "a", Value: []byte(`1`), Revision: 1, CreateRevision: 1, Version: 1})
			first, _ := craftSegment(t, dir, 2, batch(2, "b=2"))
			last, _ := craftSegment(t, dir, 3, batch(3, "c=3"))
			return func(t *testing.T) { os.Remove(first) }, last, 0
		}, "revisions 2 to 2 are missing"},
		{"record with a revision out of order", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			path, offs := craftSegment(t, dir, 1, batch(1, "a=1"), batch(3, "b=2"), batch(4, "c=3"))
			return func(*testing.T) {}, path, offs[1]
		}, "revision 3 does not follow revision 1"},
		{"segment name that does not match its first record", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			craftSegment(t, dir, 1, batch(1, "a=1"))
			path, _ := craftSegment(t, dir, 2, batch(3, "c=3"))
			return func(*testing.T) {}, path, 0
		}, "the first record has revision 3, but the file name says 2"},
		{"bit flipped in the middle of the snapshot", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			var entries []*Entry
			for i := range 20000 { // more than one frame
				k := fmt.Sprintf("key%05d", i)
				entries = append(entries, &Entry{Key: k, Value: []byte(`"v"`), Revision: int64(i + 1), CreateRevision: int64(i + 1), Version: 1})
			}
			path := craftSnapshot(t, dir, 20000, entries...)
			craftSegment(t, dir, 20001, batch(20001, "x=1"))
			fi, _ := os.Stat(path)
			// The damage is reported at the start of the frame it is in.
			var frameAt int64
			b, _ := os.ReadFile(path)
			for off := int64(len(snapMagic)); off < fi.Size()/2; {
				frameAt = off
				off += frameHeader + int64(b[off]) | int64(b[off+1])<<8 | int64(b[off+2])<<16
			}
			return flip(path, fi.Size()/2), path, frameAt
		}, "checksum mismatch"},
		{"empty snapshot", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			path := filepath.Join(dir, fileName(7, snapExt))
			craftSegment(t, dir, 1, batch(1, "a=1"))
			return func(t *testing.T) { os.WriteFile(path, nil, 0o600) }, path, 0
		}, "not a kvs snapshot"},
		{"snapshot whose name does not match its revision", func(t *testing.T, dir string) (func(*testing.T), string, int64) {
			path := craftSnapshot(t, dir, 3, &Entry{Key: "a", Value: []byte(`1`), Revision: 1, CreateRevision: 1, Version: 1})
			wrong := filepath.Join(dir, fileName(4, snapExt))
			return func(t *testing.T) { os.Rename(path, wrong) }, wrong, 0
		}, "its name says 4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			damage, file, off := tt.setup(t, dir)
			damage(t)
			before := kvstest.DirDigest(t, dir)
			_, err := openDir(t, dir)
			var ce *CorruptError
			if !errors.Is(err, ErrCorrupt) || !errors.As(err, &ce) {
				t.Fatalf("Open: got %v, want a CorruptError", err)
			}
			if ce.File != file || ce.Offset != off {
				t.Errorf("damage reported in %s at %d, want %s at %d", ce.File, ce.Offset, file, off)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.wantMsg) || !strings.Contains(msg, file) ||
				!strings.Contains(msg, fmt.Sprintf("offset %d", off)) {
				t.Errorf("error %q: want it to name %s, offset %d and %q", msg, file, off, tt.wantMsg)
			}
			if after := kvstest.DirDigest(t, dir); !maps.Equal(before, after) {
				t.Errorf("Open changed the directory:\nbefore %v\n after %v", before, after)
			}
			// The directory was released: it can be opened again (and
			// fails again).
			if _, err := openDir(t, dir); !errors.Is(err, ErrCorrupt) {
				t.Errorf("second Open: got %v, want ErrCorrupt", err)
			}
		})
	}
}

// TestRecoveryStates opens directories in the states a crash, a clean stop
// or an operator can leave.
func TestRecoveryStates(t *testing.T) {
	entry := func(key, value string, rev, create, version int64) *Entry {
		return &Entry{Key: key, Value: []byte(`"` + value + `"`), Revision: rev, CreateRevision: create, Version: version}
	}
	tests := []struct {
		name       string
		setup      func(t *testing.T, dir string)
		wantValues []string
		wantRev    int64
		wantPub    []int64 // revisions published at start-up: the feed's refilled history
		wantFiles  []string
	}{
		{"missing directory", func(t *testing.T, dir string) {
			os.Remove(dir)
		}, nil, 0, nil, []string{fileName(1, segExt)}},
		{"empty directory", func(t *testing.T, dir string) {}, nil, 0, nil, []string{fileName(1, segExt)}},
		{"empty segment", func(t *testing.T, dir string) {
			craftSegment(t, dir, 1)
		}, nil, 0, nil, []string{fileName(1, segExt)}},
		{"empty segment after a full one", func(t *testing.T, dir string) {
			craftSegment(t, dir, 1, batch(1, "a=1", "b=2"), batch(3, "a=3"))
			craftSegment(t, dir, 4)
		}, []string{"a=3", "b=2"}, 3, revRange(1, 3), []string{fileName(1, segExt), fileName(4, segExt)}},
		{"snapshot only", func(t *testing.T, dir string) {
			craftSnapshot(t, dir, 5, entry("a", "x", 4, 2, 2), entry("b", "y", 5, 5, 1))
		}, []string{"a=x", "b=y"}, 5, nil, []string{fileName(5, snapExt), fileName(6, segExt)}},
		{"snapshot plus a log", func(t *testing.T, dir string) {
			// An older snapshot and the segment it needed, left by a
			// crash before they were removed; the newest snapshot (5)
			// falls inside the second segment, which holds 4 to 7.
			craftSnapshot(t, dir, 2, entry("a", "1", 1, 1, 1), entry("b", "2", 2, 2, 1))
			craftSegment(t, dir, 1, batch(1, "a=1", "b=2"), batch(3, "c=3"))
			craftSnapshot(t, dir, 5, entry("a", "4", 4, 1, 2), entry("b", "2", 2, 2, 1), entry("c", "5", 5, 3, 2))
			craftSegment(t, dir, 4, batch(4, "a=4", "c=5"), batch(6, "-b", "d=7"))
			craftSegment(t, dir, 8, batch(8, "a=8"))
		}, []string{"a=8", "c=5", "d=7"}, 8, revRange(6, 8),
			[]string{fileName(4, segExt), fileName(5, snapExt), fileName(8, segExt)}},
		{"snapshot ahead of the log (unsynced writes lost by a machine crash)", func(t *testing.T, dir string) {
			craftSegment(t, dir, 1, batch(1, "a=1"), batch(2, "b=2"))
			craftSnapshot(t, dir, 4, entry("a", "1", 1, 1, 1), entry("b", "2", 2, 2, 1), entry("c", "4", 4, 3, 2))
		}, []string{"a=1", "b=2", "c=4"}, 4, nil,
			[]string{fileName(1, segExt), fileName(4, snapExt), fileName(5, segExt)}},
		{"stale temporary snapshot", func(t *testing.T, dir string) {
			craftSegment(t, dir, 1, batch(1, "a=1"))
			os.WriteFile(filepath.Join(dir, fileName(1, snapExt+tmpExt)), []byte("half a snap"), 0o600)
		}, []string{"a=1"}, 1, revRange(1, 1), []string{fileName(1, segExt)}},
		{"zeros after the records of an earlier segment (a crash before its reserved space was given back)", func(t *testing.T, dir string) {
			path, _ := craftSegment(t, dir, 1, batch(1, "a=1"), batch(2, "b=2"))
			f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			f.Write(make([]byte, 5000))
			f.Close()
			craftSegment(t, dir, 3, batch(3, "a=3"))
		}, []string{"a=3", "b=2"}, 3, revRange(1, 3), []string{fileName(1, segExt), fileName(3, segExt)}},
		{"lock file of a process that is gone", func(t *testing.T, dir string) {
			craftSegment(t, dir, 1, batch(1, "a=1"))
			os.WriteFile(filepath.Join(dir, "LOCK"), []byte("999999\n"), 0o600)
		}, []string{"a=1"}, 1, revRange(1, 1), []string{fileName(1, segExt)}},
		{"files the log does not know are left alone", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("mine"), 0o600)
		}, nil, 0, nil, []string{fileName(1, segExt), "notes.txt"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			tt.setup(t, dir)
			o := mustOpenDir(t, dir)
			if got := values(o.s); !slices.Equal(got, tt.wantValues) || o.s.Rev() != tt.wantRev {
				t.Errorf("recovered %v at %d, want %v at %d", got, o.s.Rev(), tt.wantValues, tt.wantRev)
			}
			if !slices.Equal(o.pub.revs, tt.wantPub) {
				t.Errorf("published %v, want %v", o.pub.revs, tt.wantPub)
			}
			if got := names(t, dir); !slices.Equal(got, tt.wantFiles) {
				t.Errorf("files after Open: got %v, want %v", got, tt.wantFiles)
			}
			// Writes continue the revisions, and survive another restart
			// with everything else.
			want := append(values(o.s), "z=new")
			slices.Sort(want)
			if rev, err := o.s.Set(t.Context(), "z", []byte(`"new"`)); err != nil || rev != tt.wantRev+1 {
				t.Fatalf("set: got %d, %v, want revision %d", rev, err, tt.wantRev+1)
			}
			o.s.Close()
			o = mustOpenDir(t, dir)
			if got := values(o.s); !slices.Equal(got, want) || o.s.Rev() != tt.wantRev+1 {
				t.Errorf("after a restart: got %v at %d, want %v at %d", got, o.s.Rev(), want, tt.wantRev+1)
			}
		})
	}
}

// TestRecoveredEntries checks that entries come back with their revisions
// and versions, from a snapshot and from the log.
func TestRecoveredEntries(t *testing.T) {
	dir := t.TempDir()
	craftSnapshot(t, dir, 3, &Entry{Key: "a", Value: []byte(`"x"`), Revision: 3, CreateRevision: 1, Version: 3})
	craftSegment(t, dir, 4, batch(4, "a=y", "b=1"), batch(6, "-b"), batch(7, "b=2", "b=3"))
	o := mustOpenDir(t, dir)
	tests := []struct {
		key                  string
		rev, create, version int64
		value                string
	}{
		{"a", 4, 1, 4, `"y"`},
		{"b", 8, 7, 2, `"3"`},
	}
	for _, tt := range tests {
		e, ok := o.s.Get(tt.key)
		if !ok {
			t.Fatalf("%s missing", tt.key)
		}
		if e.Revision != tt.rev || e.CreateRevision != tt.create || e.Version != tt.version || string(e.Value) != tt.value {
			t.Errorf("%s: got %+v, want revision %d, create %d, version %d, value %s", tt.key, *e, tt.rev, tt.create, tt.version, tt.value)
		}
	}
}

// TestReservedSpace checks that the log reserves space ahead of its records
// and gives it back on Close, and that a crash that leaves the reserved
// zeros behind recovers cleanly and appends after the records, not after
// the zeros.
func TestReservedSpace(t *testing.T) {
	dir := t.TempDir()
	o := mustOpenDir(t, dir)
	if _, err := o.s.Set(t.Context(), "a", []byte(`"1"`)); err != nil {
		t.Fatal(err)
	}
	seg := filepath.Join(dir, fileName(1, segExt))
	fi, err := os.Stat(seg)
	if err != nil {
		t.Fatal(err)
	}
	if o.log.size >= fi.Size() && runtime.GOOS == "linux" {
		t.Errorf("segment of %d bytes holding %d bytes of records: want space reserved", fi.Size(), o.log.size)
	}
	// A crash now: copy the directory as it is.
	crashed := t.TempDir()
	for _, name := range names(t, dir) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	size := o.log.size
	if err := o.s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(seg); err != nil || fi.Size() != size {
		t.Errorf("segment after Close: %v, %d bytes, want %d: the reserved space given back", err, fi.Size(), size)
	}

	o = mustOpenDir(t, crashed)
	if strings.Contains(o.logs.String(), "torn") {
		t.Errorf("reserved space taken for a torn record:\n%s", o.logs)
	}
	if _, err := o.s.Set(t.Context(), "b", []byte(`"2"`)); err != nil {
		t.Fatal(err)
	}
	o.s.Close()
	o = mustOpenDir(t, crashed)
	if got, want := values(o.s), []string{"a=1", "b=2"}; !slices.Equal(got, want) || o.s.Rev() != 2 {
		t.Fatalf("after a crash and a restart: got %v at %d, want %v at 2", got, o.s.Rev(), want)
	}
}
