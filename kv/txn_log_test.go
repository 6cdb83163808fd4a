package kv

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// unit returns the changes of one transaction at rev, written like batch's.
func unit(rev int64, ops ...string) []Change {
	cs := batch(rev, ops...)
	for i := range cs {
		cs[i].Revision = rev
	}
	return cs
}

// TestTornTxn cuts a log record that holds a transaction, between two
// single changes, at every byte (and zeroes it from every byte): recovery
// keeps the records before it and none of the transaction, never part of
// it; whole, it keeps all of it, at one revision.
func TestTornTxn(t *testing.T) {
	src := t.TempDir()
	last := slices.Concat(batch(3, "x=0"), unit(4, "a=moved", "-b", "c=3"), batch(5, "y=5"))
	path, offs := craftSegment(t, src, 1, batch(1, "a=1", "b=2"), last)
	start, end := offs[1], offs[2]
	eachTear(t, path, start, end, end, func(t *testing.T, cut int64, seg string, _ []byte) {
		dir := filepath.Dir(seg)
		o := mustOpenDir(t, dir)
		want, rev := []string{"a=1", "b=2"}, int64(2)
		if cut == end {
			want, rev = []string{"a=moved", "c=3", "x=0", "y=5"}, 5
		}
		if got := values(o.s); !slices.Equal(got, want) || o.s.Rev() != rev {
			t.Fatalf("after recovery: got %v at %d, want %v at %d", got, o.s.Rev(), want, rev)
		}
		if cut == end {
			for _, k := range []string{"a", "c"} {
				if e, _ := o.s.Get(k); e.Revision != 4 {
					t.Errorf("%s: revision %d, want 4", k, e.Revision)
				}
			}
			if got, want := o.pub.revs, []int64{1, 2, 3, 4, 4, 4, 5}; !slices.Equal(got, want) {
				t.Errorf("published revisions: got %v, want %v", got, want)
			}
		}
	})
}

// TestTxnNotSplitBetweenFrames writes a batch larger than a frame whose
// frame boundary would fall inside a transaction: the transaction stays in
// one frame, and the batch reads back as written.
func TestTxnNotSplitBetweenFrames(t *testing.T) {
	big := strings.Repeat("v", 1<<20)
	var changes []Change
	rev := int64(1)
	for len(changes) < 7 { // about 7 MiB of single changes
		changes = append(changes, Change{Op: OpSet, Key: fmt.Sprint("k", rev), Value: []byte(`"` + big + `"`), Revision: rev})
		rev++
	}
	for i := range 4 { // a transaction across the 8 MiB mark
		changes = append(changes, Change{Op: OpSet, Key: fmt.Sprint("t", i), Value: []byte(`"` + big + `"`), Revision: rev})
	}
	changes = append(changes, Change{Op: OpDelete, Key: "k1", Revision: rev + 1})
	b, err := appendBatch(nil, changes)
	if err != nil {
		t.Fatal(err)
	}
	records, err := readRecords(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(records) < 2 {
		t.Fatalf("got %d frames, want the batch split", len(records))
	}
	for i := 1; i < len(records); i++ {
		prev, first := records[i-1][len(records[i-1])-1], records[i][0]
		if first.Revision == prev.Revision {
			t.Fatalf("frame %d starts inside the transaction at revision %d", i, first.Revision)
		}
	}
	if got := slices.Concat(records...); !slices.EqualFunc(got, changes, func(a, b Change) bool {
		return a.Op == b.Op && a.Key == b.Key && string(a.Value) == string(b.Value) && a.Revision == b.Revision
	}) {
		t.Fatal("the batch did not read back as written")
	}
}

// TestDecodeTxnRecords checks what the decoder refuses in a record with
// transactions.
func TestDecodeTxnRecords(t *testing.T) {
	tests := []struct {
		name    string
		changes []Change
		mangle  func(p []byte) []byte
	}{
		{"first change continues a revision", batch(1, "a=1"), func(p []byte) []byte {
			p[3] |= opSameRev // kind, rev, count, then the first op
			return p
		}},
		{"one key twice at one revision", unit(1, "a=1", "a=2"), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := appendBatch(nil, tt.changes)
			if err != nil {
				t.Fatal(err)
			}
			p := b[frameHeader:]
			if tt.mangle != nil {
				p = tt.mangle(p)
			}
			if cs, err := decodeBatch(p); err == nil {
				t.Fatalf("decoded %+v, want an error", cs)
			}
		})
	}
}

// TestRecoverTxnAtChunkEdge recovers a log whose transaction straddles the
// 1024 changes that recovery applies at a time: it is applied and
// published whole, and the store goes on after it.
func TestRecoverTxnAtChunkEdge(t *testing.T) {
	dir := t.TempDir()
	var ops []string
	for i := range 1022 {
		ops = append(ops, fmt.Sprintf("k%d=%d", i, i))
	}
	var txn []string
	for i := range 5 {
		txn = append(txn, fmt.Sprintf("t%d=x", i))
	}
	craftSegment(t, dir, 1, slices.Concat(batch(1, ops...), unit(1023, txn...), batch(1024, "z=1")))
	p := &pubBatches{}
	l, err := Open(dir, FileOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s := New(Options{Log: l, Publisher: p})
	defer s.Close()
	if s.Rev() != 1024 {
		t.Fatalf("revision: got %d, want 1024", s.Rev())
	}
	for _, b := range p.batches {
		if b[0].Revision == 1023 && b[0].Key != "t0" || len(b) > 0 && b[len(b)-1].Revision == 1023 && b[len(b)-1].Key != "t4" {
			t.Fatalf("the transaction was published in parts: a batch of %d from %v to %v", len(b), b[0], b[len(b)-1])
		}
	}
	if rev, err := s.Set(t.Context(), "after", []byte(`1`)); err != nil || rev != 1025 {
		t.Fatalf("set after recovery: %d, %v", rev, err)
	}
}

// pubBatches is a Publisher that keeps each batch it is given.
type pubBatches struct{ batches [][]Change }

func (p *pubBatches) Publish(cs []Change) { p.batches = append(p.batches, slices.Clone(cs)) }
