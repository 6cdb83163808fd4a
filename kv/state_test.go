package kv

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// noSnapshots is a FileLog whose background snapshots write nothing, so
// that the segments it starts stay until a test writes a snapshot itself.
type noSnapshots struct{ *FileLog }

func (l noSnapshots) Recover(func() *View) Recovery {
	return l.FileLog.Recover(func() *View { return &View{} })
}

// acknowledgedDir returns a data directory where revisions 1 to n were
// acknowledged and the log closed: a snapshot at n-50, and segments of a
// few records each after it (the newest holding the last ones). The
// snapshot is written at once, and none in the background, so that the
// segments do not depend on when a background snapshot ends.
func acknowledgedDir(t *testing.T, n int) string {
	t.Helper()
	dir := t.TempDir()
	l, err := Open(dir, FileOptions{NoSync: true, SnapshotBytes: 2 << 10})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Log: noSnapshots{l}})
	for i := 1; i <= n; i++ {
		if rev, err := s.Set(t.Context(), "k"+strconv.Itoa(i%10), []byte(`"`+strings.Repeat("v", 100)+`"`)); err != nil || rev != int64(i) {
			t.Fatalf("set %d: revision %d, %v", i, rev, err)
		}
		if i == n-50 {
			if err := l.snapshot(func() *View { return s.View("") }); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newestSegment returns the path of the newest segment in dir, and the
// offsets of its records and its end.
func newestSegment(t *testing.T, dir string) (string, []int64) {
	t.Helper()
	df, err := listDir(dir)
	if err != nil || len(df.segs) < 2 {
		t.Fatalf("want two segments or more: %v, %v", df.segs, err)
	}
	path := filepath.Join(dir, df.segs[len(df.segs)-1].name)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var offs []int64
	fr := newFrameReader(f)
	for {
		_, off, err := fr.next()
		offs = append(offs, off)
		if err != nil {
			break
		}
	}
	if len(offs) < 3 {
		t.Fatalf("the newest segment %s holds %d records, want 2 or more", path, len(offs)-1)
	}
	return path, offs
}

// TestLogEndsBeforeAcknowledged damages a data directory whose revisions
// 1 to 200 were acknowledged, in each way that loses its last revisions
// without leaving a bad record behind a good one: the log must refuse to
// open, naming the file and the missing revisions, and change nothing;
// revisions are never given twice. (Damage before the tail: TestCorruption.)
func TestLogEndsBeforeAcknowledged(t *testing.T) {
	const n = 200
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir, newest string, offs []int64)
		wantMsg string
	}{
		{"newest segment deleted", func(t *testing.T, dir, newest string, offs []int64) {
			os.Remove(newest)
		}, "the newest segment is missing"},
		{"newest segment truncated to zero", func(t *testing.T, dir, newest string, offs []int64) {
			os.Truncate(newest, 0)
		}, "but the revisions up to 200 were acknowledged"},
		{"newest segment cut after its first record", func(t *testing.T, dir, newest string, offs []int64) {
			os.Truncate(newest, offs[1])
		}, "but the revisions up to 200 were acknowledged"},
		{"newest segment cut in its last record", func(t *testing.T, dir, newest string, offs []int64) {
			os.Truncate(newest, offs[len(offs)-1]-5)
		}, "but the revisions up to 200 were acknowledged"},
		{"bit flipped in the last record", func(t *testing.T, dir, newest string, offs []int64) {
			b, _ := os.ReadFile(newest)
			b[offs[len(offs)-1]-3] ^= 0x10
			os.WriteFile(newest, b, 0o600)
		}, "but the revisions up to 200 were acknowledged"},
		{"newest two segments deleted", func(t *testing.T, dir, newest string, offs []int64) {
			df, _ := listDir(dir)
			for _, s := range df.segs[len(df.segs)-2:] {
				os.Remove(filepath.Join(dir, s.name))
			}
		}, "the newest segment is missing"},
		{"STATE damaged", func(t *testing.T, dir, newest string, offs []int64) {
			b, _ := os.ReadFile(filepath.Join(dir, stateName))
			b[3] ^= 1
			b[stateSlot+3] ^= 1
			os.WriteFile(filepath.Join(dir, stateName), b, 0o600)
		}, "no valid state in it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := acknowledgedDir(t, n)
			newest, offs := newestSegment(t, dir)
			tt.damage(t, dir, newest, offs)
			before := kvstest.DirDigest(t, dir)
			_, err := openDir(t, dir)
			var ce *CorruptError
			if !errors.As(err, &ce) || !strings.Contains(ce.Reason, tt.wantMsg) {
				t.Fatalf("Open after the damage: got %v, want a *CorruptError saying %q", err, tt.wantMsg)
			}
			if tt.name != "STATE damaged" && ce.File != newest && !strings.HasSuffix(ce.File, segExt) {
				t.Fatalf("the error names %s, want a segment", ce.File)
			}
			if after := kvstest.DirDigest(t, dir); !maps.Equal(before, after) {
				t.Fatalf("Open changed the directory:\nbefore %v\nafter  %v", before, after)
			}
		})
	}

	t.Run("no damage", func(t *testing.T) {
		dir := acknowledgedDir(t, n)
		o := mustOpenDir(t, dir)
		if rev, err := o.s.Set(t.Context(), "z", []byte(`1`)); err != nil || rev != n+1 {
			t.Fatalf("set after a clean restart: revision %d, %v; want %d", rev, err, n+1)
		}
	})
	t.Run("a crash tears an unacknowledged write", func(t *testing.T) {
		// STATE records what was acknowledged, not what was written: a
		// torn record after that is truncated as before.
		dir := acknowledgedDir(t, n)
		newest, offs := newestSegment(t, dir)
		f, _ := os.OpenFile(newest, os.O_WRONLY, 0)
		b, _ := appendBatch(nil, batch(n+1, "x=1"))
		f.WriteAt(b[:len(b)-4], offs[len(offs)-1])
		f.Close()
		o := mustOpenDir(t, dir)
		if o.s.Rev() != n || !strings.Contains(o.logs.String(), "torn record") {
			t.Fatalf("recovered to %d (logs %s), want %d and the torn record truncated", o.s.Rev(), o.logs, n)
		}
	})
	t.Run("STATE deleted", func(t *testing.T) {
		// Without STATE the check cannot be made (a directory of an
		// older kvsd has none): it opens, with a warning.
		dir := acknowledgedDir(t, n)
		os.Remove(filepath.Join(dir, stateName))
		o := mustOpenDir(t, dir)
		if o.s.Rev() != n || !strings.Contains(o.logs.String(), "no STATE file") {
			t.Fatalf("recovered to %d, logs %s; want %d and a warning", o.s.Rev(), o.logs, n)
		}
	})
}

// TestStateSlots: STATE keeps the newest valid of its two slots, so that a
// write torn by a crash leaves the one before; it never goes back.
func TestStateSlots(t *testing.T) {
	dir := t.TempDir()
	s, err := createState(dir, logState{seg: 1, acked: 0}, 0, false, datasync)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	for _, st := range []logState{{1, 5}, {1, 9}, {10, 12}, {10, 11}, {1, 40}} {
		if err := s.write(st); err != nil {
			t.Fatal(err)
		}
	}
	if st, _, err := readState(dir); err != nil || st != (logState{10, 12}) {
		t.Fatalf("after writes: %+v, %v; want {10 12} (later states never go back)", st, err)
	}
	s.write(logState{10, 20})
	// Tear the slot just written: the other one stands.
	b, _ := os.ReadFile(filepath.Join(dir, stateName))
	slot := int(s.seq%2) * stateSlot
	b[slot+20] ^= 0xff
	os.WriteFile(filepath.Join(dir, stateName), b, 0o600)
	if st, _, err := readState(dir); err != nil || st != (logState{10, 12}) {
		t.Fatalf("with the newest slot torn: %+v, %v; want the one before, {10 12}", st, err)
	}
}
