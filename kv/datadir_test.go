package kv_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

// TestCreateDataDir checks that a store opened on a data directory made by
// CreateDataDir holds exactly the entries given, at the revision given,
// and that its next change gets the revision after.
func TestCreateDataDir(t *testing.T) {
	t.Parallel()
	entries := []*kv.Entry{
		{Key: "a", Value: []byte(`1`), Revision: 7, CreateRevision: 2, Version: 3},
		{Key: "b", Value: []byte(`"x"`), Revision: 40, CreateRevision: 40, Version: 1},
		{Key: "c/d", Value: []byte(`{"n":[1,2]}`), Revision: 12, CreateRevision: 9, Version: 4},
	}
	for _, tt := range []struct {
		name string
		dir  func(t *testing.T) string
	}{
		{"missing", func(t *testing.T) string { return filepath.Join(t.TempDir(), "data") }},
		{"empty", func(t *testing.T) string { return t.TempDir() }},
		{"empty but for lost+found", func(t *testing.T) string {
			d := t.TempDir()
			if err := os.Mkdir(filepath.Join(d, "lost+found"), 0o700); err != nil {
				t.Fatal(err)
			}
			return d
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := tt.dir(t)
			const rev = 1000050
			if err := kv.CreateDataDir(dir, entries, nil, rev); err != nil {
				t.Fatal(err)
			}
			fl, err := kv.Open(dir, kv.FileOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if fl.SnapshotRev() != rev {
				t.Fatalf("snapshot at %d, want %d", fl.SnapshotRev(), rev)
			}
			var pub changeLog
			s := kv.New(kv.Options{Log: fl, Publisher: &pub})
			defer s.Close()
			got, at := s.Snapshot("")
			if at != rev || !reflect.DeepEqual(got, entries) {
				t.Fatalf("got %v at %d, want %v at %d", got, at, entries, rev)
			}
			r, err := s.Set(t.Context(), "a", []byte(`2`))
			if err != nil || r != rev+1 {
				t.Fatalf("next set: revision %d, %v; want %d", r, err, rev+1)
			}
			if e, _ := s.Get("a"); e.CreateRevision != 2 || e.Version != 4 {
				t.Fatalf("after a set: %+v, want create revision 2 and version 4", e)
			}
			if revs := pub.revs(); !slices.Equal(revs, []int64{rev + 1}) {
				t.Fatalf("published %v", revs)
			}
		})
	}
}

// TestCreateDataDirRefuses checks that CreateDataDir refuses a directory
// that holds anything, and writes nothing there.
func TestCreateDataDirRefuses(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "notes"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := kv.CreateDataDir(dir, nil, nil, 5)
	if !errors.Is(err, kv.ErrNotEmpty) {
		t.Fatalf("got %v, want ErrNotEmpty", err)
	}
	des, _ := os.ReadDir(dir)
	if len(des) != 1 {
		t.Fatalf("the directory holds %d files, want the one it had", len(des))
	}
	// A data directory in use: not empty either.
	used := t.TempDir()
	fl, err := kv.Open(used, kv.FileOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer fl.Close()
	if err := kv.CreateDataDir(used, nil, nil, 5); !errors.Is(err, kv.ErrNotEmpty) {
		t.Fatalf("a data directory in use: got %v, want ErrNotEmpty", err)
	}
}
