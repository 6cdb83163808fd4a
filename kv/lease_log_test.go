package kv

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// leaseEnd returns the end of lease id at revision rev (the revision
// before its deletes) and the deletes of keys at rev + 1.
func leaseEnd(id, rev int64, reason Reason, keys ...string) []Change {
	cs := []Change{{Op: OpLeaseEnd, Lease: id, Reason: reason, Revision: rev}}
	for _, k := range keys {
		cs = append(cs, Change{Op: OpDelete, Key: k, Lease: id, Reason: reason, Revision: rev + 1})
	}
	return cs
}

// TestLeaseRecordsRoundTrip checks that changes of leases and keys with
// leases read back as written, and that a frame of changes of leases only
// starts at the revision its next change would have.
func TestLeaseRecordsRoundTrip(t *testing.T) {
	t.Parallel()
	grantAt := Change{Op: OpGrant, Lease: 7, TTL: 1500 * time.Millisecond, Revision: 2}
	set := Change{Op: OpSet, Key: "a", Value: []byte(`1`), Lease: 7, Revision: 3}
	frames := [][]Change{
		{grantAt},
		{set, {Op: OpSet, Key: "b", Value: []byte(`2`), Revision: 4}},
		slices.Concat(leaseEnd(7, 4, ReasonExpired, "a", "c"), []Change{{Op: OpGrant, Lease: MaxLeaseID, TTL: time.Hour, Revision: 5}}),
		leaseEnd(9, 5, ReasonRevoked),
	}
	wantRange := [][2]int64{{3, 2}, {3, 4}, {5, 5}, {6, 5}}
	for i, f := range frames {
		b, err := appendBatch(nil, f)
		if err != nil {
			t.Fatal(err)
		}
		got, first, last, err := decodeFrame(b[frameHeader:])
		if err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, f) || first != wantRange[i][0] || last != wantRange[i][1] {
			t.Errorf("frame %d: got %+v from %d to %d, want %+v from %d to %d", i, got, first, last, f, wantRange[i][0], wantRange[i][1])
		}
	}
}

// TestDecodeBadLeaseRecords checks that damaged changes of leases are
// refused rather than guessed at.
func TestDecodeBadLeaseRecords(t *testing.T) {
	t.Parallel()
	payload := func(rev byte, body ...byte) []byte { return append([]byte{kindBatch, rev, 1}, body...) }
	tests := []struct {
		name string
		p    []byte
	}{
		{"grant of lease 0", payload(1, opGrant, 0, 10)},
		{"grant with TTL 0", payload(1, opGrant, 5, 0)},
		{"end for no reason", payload(1, opLeaseEnd, 5, 0)},
		{"end for an unknown reason", payload(1, opLeaseEnd, 5, 9)},
		{"grant cut short", payload(1, opGrant, 5)},
		{"delete of a lease without reason", payload(1, 2|opLease, 1, 'k', 5)},
		{"set into lease 0", payload(1, 1|opLease, 1, 'k', 1, '1', 0)},
		{"a revision continued after a lease", append([]byte{kindBatch, 2, 2}, opGrant, 5, 10, 2|opSameRev, 1, 'k')},
	}
	for _, tt := range tests {
		if cs, err := decodeBatch(tt.p); err == nil {
			t.Errorf("%s: decoded as %+v, want an error", tt.name, cs)
		}
	}
}

// TestTornLeaseEnd cuts the record that ends a lease and deletes its keys
// at every byte: recovery keeps all of it or none of it: the lease and
// its keys, or neither.
func TestTornLeaseEnd(t *testing.T) {
	t.Parallel()
	src := t.TempDir()
	first := []Change{
		{Op: OpGrant, Lease: 5, TTL: time.Hour, Revision: 0},
		{Op: OpSet, Key: "a", Value: []byte(`"1"`), Lease: 5, Revision: 1},
		{Op: OpSet, Key: "b", Value: []byte(`"2"`), Lease: 5, Revision: 2},
		{Op: OpSet, Key: "c", Value: []byte(`"3"`), Revision: 3},
	}
	end := slices.Concat(leaseEnd(5, 3, ReasonExpired, "a", "b"), batch(5, "d=4"))
	path, offs := craftSegment(t, src, 1, first, end)
	whole, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for cut := offs[1]; cut <= offs[2]; cut++ {
		t.Run(fmt.Sprintf("cut at %d", cut), func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, filepath.Base(path)), whole[:cut], 0o600); err != nil {
				t.Fatal(err)
			}
			o := mustOpenDir(t, dir)
			want, rev, leases := []string{"a=1", "b=2", "c=3"}, int64(3), 1
			if cut == offs[2] {
				want, rev, leases = []string{"c=3", "d=4"}, 5, 0
			}
			if got := values(o.s); !slices.Equal(got, want) || o.s.Rev() != rev || len(o.s.Leases()) != leases {
				t.Fatalf("after recovery: got %v at %d with %d leases, want %v at %d with %d", got, o.s.Rev(), len(o.s.Leases()), want, rev, leases)
			}
		})
	}
}

// TestRecoverLeaseOpAtSnapshot writes a snapshot at revision 2 and a
// segment whose changes of leases follow revision 2, some of which the
// snapshot holds already: recovery applies them again, to the same state.
func TestRecoverLeaseOpAtSnapshot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	var b bytes.Buffer
	entries := []*Entry{
		{Key: "a", Value: []byte(`"1"`), Revision: 1, CreateRevision: 1, Version: 1, Lease: 5},
		{Key: "b", Value: []byte(`"2"`), Revision: 2, CreateRevision: 2, Version: 1},
	}
	if err := writeSnapshot(&b, entries, []Lease{{ID: 5, TTL: time.Hour}, {ID: 6, TTL: time.Hour}}, 2, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, fileName(2, snapExt)), b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	craftSegment(t, dir, 1,
		batch(1, "a=1", "b=2"),
		[]Change{
			{Op: OpGrant, Lease: 5, TTL: time.Hour, Revision: 2},           // in the snapshot
			{Op: OpGrant, Lease: 6, TTL: time.Hour, Revision: 2},           // in the snapshot
			{Op: OpLeaseEnd, Lease: 6, Reason: ReasonRevoked, Revision: 2}, // not in it
			{Op: OpGrant, Lease: 8, TTL: time.Minute, Revision: 2},         // not in it
		},
		leaseEnd(5, 2, ReasonRevoked, "a"),
	)
	o := mustOpenDir(t, dir)
	if got := values(o.s); !slices.Equal(got, []string{"b=2"}) || o.s.Rev() != 3 {
		t.Fatalf("after recovery: got %v at %d, want b=2 at 3", got, o.s.Rev())
	}
	if ls := o.s.Leases(); len(ls) != 1 || ls[0].ID != 8 || ls[0].TTL != time.Minute {
		t.Fatalf("leases after recovery: got %+v, want lease 8 alone", ls)
	}
}

// TestSnapshotLeasesRefused checks the snapshot reader's checks of leases.
func TestSnapshotLeasesRefused(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := writeSnapshot(&b, []*Entry{{Key: "a", Value: []byte(`1`), Revision: 1, CreateRevision: 1, Version: 1, Lease: 3}},
		[]Lease{{ID: 3, TTL: time.Second}, {ID: 2, TTL: time.Second}}, 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := readSnapshot(&b); err == nil || !strings.Contains(err.Error(), "unordered") {
		t.Fatalf("leases out of order: got %v, want refused", err)
	}
}
