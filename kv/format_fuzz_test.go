package kv

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"testing"
	"time"
)

// readRecords decodes every record of a log, stopping at the first bad one.
func readRecords(b []byte) ([][]Change, error) {
	fr := newFrameReader(bytes.NewReader(b))
	var all [][]Change
	for {
		p, _, err := fr.next()
		if err == io.EOF {
			return all, nil
		}
		if err != nil {
			return all, err
		}
		cs, err := decodeBatch(p)
		if err != nil {
			return all, err
		}
		all = append(all, cs)
	}
}

// FuzzDecodeRecord feeds arbitrary bytes to the log's record reader and
// decoder (seeds in testdata/fuzz/FuzzDecodeRecord). They must not panic,
// whatever decodes must encode back to the same changes, record by record
// (transactions included), and the scan of a log's end must not panic
// either.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(appendTestBatch(f, []Change{
		{Op: OpSet, Key: "a", Value: []byte(`1`), Revision: 7},
		{Op: OpDelete, Key: "b", Revision: 7},
		{Op: OpSet, Key: "c", Value: []byte(`"x"`), Revision: 8},
	}))
	f.Add(appendTestBatch(f, []Change{
		{Op: OpGrant, Lease: 5, TTL: time.Second, Revision: 8},
		{Op: OpSet, Key: "a", Value: []byte(`1`), Lease: 5, Revision: 9},
		{Op: OpLeaseEnd, Lease: 5, Reason: ReasonExpired, Revision: 9},
		{Op: OpDelete, Key: "a", Lease: 5, Reason: ReasonExpired, Revision: 10},
	}))
	f.Fuzz(func(t *testing.T, data []byte) {
		logEnd(data)
		records, _ := readRecords(data)
		if len(records) == 0 {
			return
		}
		var b []byte
		for _, changes := range records {
			var err error
			if b, err = appendBatch(b, changes); err != nil {
				t.Fatalf("encoding decoded changes: %v", err)
			}
		}
		again, err := readRecords(b)
		if err != nil {
			t.Fatalf("decoding re-encoded changes: %v", err)
		}
		if !reflect.DeepEqual(again, records) {
			t.Fatalf("round trip: got %+v, want %+v", again, records)
		}
	})
}

func appendTestBatch(tb testing.TB, changes []Change) []byte {
	tb.Helper()
	b, err := appendBatch(nil, changes)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzReadSnapshot feeds arbitrary bytes to the snapshot reader (seeds in
// testdata/fuzz/FuzzReadSnapshot). It must not panic; it must report damage
// as a snapshotError; and what it reads must write and read back the same.
func FuzzReadSnapshot(f *testing.F) {
	var seed bytes.Buffer
	if err := writeSnapshot(&seed, []*Entry{{Key: "a", Value: []byte(`1`), Revision: 2, CreateRevision: 1, Version: 2, Lease: 4}},
		[]Lease{{ID: 4, TTL: time.Second}, {ID: 9, TTL: time.Minute}}, 3, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(seed.Bytes())
	f.Fuzz(func(t *testing.T, data []byte) {
		se, leases, rev, err := readSnapshot(bytes.NewReader(data))
		if err != nil {
			var se *snapshotError
			if !errors.As(err, &se) || se.off < 0 || se.off > int64(len(data)) {
				t.Fatalf("error %v: want a snapshotError within the data", err)
			}
			return
		}
		entries := se.entries()
		var b bytes.Buffer
		if err := writeSnapshotSeq(&b, se.n, se.all(), leases, rev, nil); err != nil {
			t.Fatal(err)
		}
		se2, leases2, rev2, err := readSnapshot(&b)
		if err != nil {
			t.Fatalf("reading a written snapshot: %v", err)
		}
		if again := se2.entries(); rev2 != rev || !reflect.DeepEqual(again, entries) || !reflect.DeepEqual(leases2, leases) {
			t.Fatalf("round trip: got %d %v %v, want %d %v %v", rev2, again, leases2, rev, entries, leases)
		}
	})
}
