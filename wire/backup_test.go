package wire_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/wire"
)

// testEntries returns n entries in key order, some with values large
// enough to take frames of their own.
func testEntries(n int) []wire.Entry {
	es := make([]wire.Entry, n)
	for i := range es {
		v := fmt.Sprintf(`{"n":%d}`, i)
		if i%97 == 5 {
			v = `"` + strings.Repeat("x", 70<<10) + `"`
		}
		es[i] = wire.Entry{
			Key:            fmt.Sprintf("key/%06d", i),
			Value:          json.RawMessage(v),
			Revision:       int64(2*i + 3),
			CreateRevision: int64(i + 1),
			Version:        int64(i%3 + 1),
		}
	}
	return es
}

// writeBackup returns the backup of es at rev.
func writeBackup(t testing.TB, es []wire.Entry, rev int64) ([]byte, wire.BackupInfo) {
	t.Helper()
	created := time.UnixMilli(1700000000123).UTC()
	return writeBackupAt(t, es, wire.BackupHeader{Revision: rev, Entries: int64(len(es)), Created: created})
}

// readBackup reads every entry of b.
func readBackup(b []byte) ([]wire.Entry, wire.BackupInfo, error) {
	es, _, info, err := readBackupLeases(b)
	return es, info, err
}

// readBackupLeases reads every entry and lease of b.
func readBackupLeases(b []byte) ([]wire.Entry, []wire.BackupLease, wire.BackupInfo, error) {
	br, err := wire.NewBackupReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, wire.BackupInfo{}, err
	}
	var es []wire.Entry
	for {
		e, err := br.Next()
		if err == io.EOF {
			return es, br.Leases(), br.Info(), nil
		}
		if err != nil {
			return es, br.Leases(), br.Info(), err
		}
		es = append(es, e)
	}
}

func TestBackupRoundTrip(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 500, 3000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			es := testEntries(n)
			rev := int64(2*n + 10)
			b, winfo := writeBackup(t, es, rev)
			got, info, err := readBackup(b)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(es) || (n > 0 && !reflect.DeepEqual(got, es)) {
				t.Fatalf("got %d entries, want %d, or they differ", len(got), len(es))
			}
			if info != winfo || info.Size != int64(len(b)) || info.Revision != rev || info.Entries != int64(n) ||
				!info.Created.Equal(time.UnixMilli(1700000000123)) {
				t.Fatalf("read info %+v, written %+v (%d bytes)", info, winfo, len(b))
			}
			vinfo, err := wire.VerifyBackup(bytes.NewReader(b))
			if err != nil || vinfo != info {
				t.Fatalf("VerifyBackup: %+v, %v; want %+v", vinfo, err, info)
			}
		})
	}
}

// TestBackupLeasesRoundTrip writes a backup with leases (more than a frame
// holds) whose entries name them, and reads it back.
func TestBackupLeasesRoundTrip(t *testing.T) {
	t.Parallel()
	es := testEntries(100)
	var ls []wire.BackupLease
	for i := range 5000 {
		ls = append(ls, wire.BackupLease{ID: int64(3*i + 1), TTL: time.Duration(i+1) * time.Second})
	}
	for i := range es {
		if i%3 == 0 {
			es[i].Lease = ls[i*40].ID
		}
	}
	b, winfo := writeBackupLeases(t, es, ls, wire.BackupHeader{Revision: 500, Entries: int64(len(es))})
	got, gotLeases, info, err := readBackupLeases(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, es) || !reflect.DeepEqual(gotLeases, ls) || info != winfo || info.Leases != 5000 {
		t.Fatalf("read %d entries, %d leases, %+v; wrote %+v", len(got), len(gotLeases), info, winfo)
	}
}

// TestBackupDamage checks that every cut and every flipped bit of a
// backup is refused with a *BackupError.
func TestBackupDamage(t *testing.T) {
	t.Parallel()
	es := testEntries(3)
	es[1].Value = json.RawMessage(`"short"`) // keep the file small
	b, _ := writeBackup(t, es, 9)
	for cut := range len(b) {
		_, err := wire.VerifyBackup(bytes.NewReader(b[:cut]))
		if !errors.Is(err, wire.ErrBadBackup) {
			t.Fatalf("cut at %d of %d: got %v, want ErrBadBackup", cut, len(b), err)
		}
		if cut > 8 && !strings.Contains(err.Error(), "truncated") {
			t.Fatalf("cut at %d of %d: %v does not say truncated", cut, len(b), err)
		}
	}
	for i := range len(b) * 8 {
		d := bytes.Clone(b)
		d[i/8] ^= 1 << (i % 8)
		if _, err := wire.VerifyBackup(bytes.NewReader(d)); !errors.Is(err, wire.ErrBadBackup) {
			t.Fatalf("bit %d flipped: got %v, want ErrBadBackup", i, err)
		}
	}
	if _, err := wire.VerifyBackup(bytes.NewReader(append(bytes.Clone(b), 0))); err == nil ||
		!strings.Contains(err.Error(), "data after the end") {
		t.Fatalf("a byte after the end: got %v", err)
	}
	// A frame dropped, or one repeated, with every checksum intact but
	// the whole file's.
	big, _ := writeBackup(t, testEntries(500), 2000)
	frames := splitFrames(t, big)
	if len(frames) < 5 {
		t.Fatalf("%d frames, want a header, several of entries and the end", len(frames))
	}
	join := func(fs ...[]byte) []byte { return append([]byte("KVSSNAP\x02"), bytes.Join(fs, nil)...) }
	n := len(frames)
	for name, d := range map[string][]byte{
		"a frame dropped":  join(append(slicesClone(frames[:2]), frames[3:]...)...),
		"a frame repeated": join(append(slicesClone(frames[:3]), frames[2:]...)...),
		"frames swapped":   join(append(slicesClone(frames[:2]), append([][]byte{frames[3], frames[2]}, frames[4:]...)...)...),
		"the end dropped":  join(frames[:n-1]...),
	} {
		if _, err := wire.VerifyBackup(bytes.NewReader(d)); !errors.Is(err, wire.ErrBadBackup) {
			t.Errorf("%s: got %v, want ErrBadBackup", name, err)
		}
	}
}

func slicesClone(fs [][]byte) [][]byte { return append([][]byte(nil), fs...) }

// splitFrames returns the frames of b after the magic.
func splitFrames(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var fs [][]byte
	for p := b[8:]; len(p) > 0; {
		n := 8 + int(binary.LittleEndian.Uint32(p))
		fs = append(fs, p[:n])
		p = p[n:]
	}
	return fs
}

func TestBackupVersion(t *testing.T) {
	t.Parallel()
	b, _ := writeBackup(t, testEntries(2), 5)
	tests := []struct {
		name    string
		version byte
		want    string
	}{
		{"newer", 3, "format version 3: this kvs reads version 2"},
		{"data directory snapshot", 1, "format version 1 is a kvsd data directory's snapshot"},
		{"zero", 0, "format version 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := bytes.Clone(b)
			d[7] = tt.version
			_, err := wire.VerifyBackup(bytes.NewReader(d))
			if !errors.Is(err, wire.ErrBadBackup) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an ErrBadBackup saying %q", err, tt.want)
			}
		})
	}
	for _, tt := range []struct{ name, data, want string }{
		{"empty", "", "empty"},
		{"other file", "hello, world", "not a kvs backup"},
		{"magic cut", "KVSS", "ends early"},
	} {
		_, err := wire.VerifyBackup(strings.NewReader(tt.data))
		if !errors.Is(err, wire.ErrBadBackup) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want an ErrBadBackup saying %q", tt.name, err, tt.want)
		}
	}
}

// frame returns payload as a frame.
func frame(payload []byte) []byte {
	b := binary.LittleEndian.AppendUint32(nil, uint32(len(payload)))
	crc := crc32.Update(crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)), crc32.MakeTable(crc32.Castagnoli), payload)
	b = binary.LittleEndian.AppendUint32(b, crc)
	return append(b, payload...)
}

// assemble returns a version 2 backup of the given frame payloads, with
// correct checksums and the end frame.
func assemble(payloads ...[]byte) []byte {
	b := []byte("KVSSNAP\x02")
	for _, p := range payloads {
		b = append(b, frame(p)...)
	}
	sum := crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli))
	return append(b, frame(binary.LittleEndian.AppendUint32([]byte{4}, sum))...)
}

// header returns a header payload at rev with the given sections (kind,
// count pairs).
func header(rev uint64, sections ...uint64) []byte {
	b := []byte{2}
	b = binary.AppendUvarint(b, rev)
	b = binary.AppendUvarint(b, 1700000000000)
	b = binary.AppendUvarint(b, uint64(len(sections)/2))
	for i := 0; i < len(sections); i += 2 {
		b = append(b, byte(sections[i]))
		b = binary.AppendUvarint(b, sections[i+1])
	}
	return b
}

// entries returns an entries payload.
func entries(es ...[]any) []byte {
	b := []byte{3}
	b = binary.AppendUvarint(b, uint64(len(es)))
	for _, e := range es {
		for _, f := range e {
			switch f := f.(type) {
			case string:
				b = binary.AppendUvarint(b, uint64(len(f)))
				b = append(b, f...)
			case int:
				b = binary.AppendUvarint(b, uint64(f))
			}
		}
	}
	return b
}

// leases returns a leases payload: ID, TTL in milliseconds, pairs.
func leases(pairs ...uint64) []byte {
	b := []byte{5}
	b = binary.AppendUvarint(b, uint64(len(pairs)/2))
	for _, v := range pairs {
		b = binary.AppendUvarint(b, v)
	}
	return b
}

// TestBackupEntries checks the entries that a reader refuses although every
// checksum holds: what a faulty writer could produce.
func TestBackupEntries(t *testing.T) {
	t.Parallel()
	ok := []any{"a", `1`, 3, 2, 2, 0}
	tests := []struct {
		name string
		file []byte
		want string // "" for a valid backup
	}{
		{"valid", assemble(header(5, 3, 1), entries(ok)), ""},
		{"empty", assemble(header(0, 3, 0)), ""},
		{"invalid key", assemble(header(5, 3, 1), entries([]any{"a\nb", `1`, 3, 2, 2, 0})), "invalid key"},
		{"empty key", assemble(header(5, 3, 1), entries([]any{"", `1`, 3, 2, 2, 0})), "invalid key"},
		{"long key", assemble(header(5, 3, 1), entries([]any{strings.Repeat("k", 1025), `1`, 3, 2, 2, 0})), "invalid key"},
		{"bad UTF-8 key", assemble(header(5, 3, 1), entries([]any{"a\xff", `1`, 3, 2, 2, 0})), "invalid key"},
		{"keys out of order", assemble(header(5, 3, 2), entries([]any{"b", `1`, 3, 2, 2, 0}, ok)), "out of order"},
		{"key twice", assemble(header(5, 3, 2), entries(ok, ok)), "out of order"},
		{"null", assemble(header(5, 3, 1), entries([]any{"a", `null`, 3, 2, 2, 0})), "other than null"},
		{"not JSON", assemble(header(5, 3, 1), entries([]any{"a", `{`, 3, 2, 2, 0})), "other than null"},
		{"not compact", assemble(header(5, 3, 1), entries([]any{"a", `[1, 2]`, 3, 2, 2, 0})), "not compact"},
		{"revision after the backup's", assemble(header(5, 3, 1), entries([]any{"a", `1`, 6, 2, 2, 0})), "bad revisions"},
		{"created after changed", assemble(header(5, 3, 1), entries([]any{"a", `1`, 3, 4, 1, 0})), "bad revisions"},
		{"create revision 0", assemble(header(5, 3, 1), entries([]any{"a", `1`, 3, 0, 1, 0})), "bad revisions"},
		{"version 0", assemble(header(5, 3, 1), entries([]any{"a", `1`, 3, 2, 0, 0})), "bad revisions"},
		{"more versions than revisions", assemble(header(5, 3, 1), entries([]any{"a", `1`, 3, 2, 3, 0})), "bad revisions"},
		{"a lease", assemble(header(5, 3, 1), entries([]any{"a", `1`, 3, 2, 2, 7})), "which the backup does not hold"},
		{"leases", assemble(header(5, 5, 2, 3, 2), leases(4, 1000, 7, 30000), entries([]any{"a", `1`, 3, 2, 2, 7}, []any{"b", `1`, 3, 2, 2, 0})), ""},
		{"a lease not in the section", assemble(header(5, 5, 1, 3, 1), leases(4, 1000), entries([]any{"a", `1`, 3, 2, 2, 7})), "which the backup does not hold"},
		{"leases out of order", assemble(header(5, 5, 2, 3, 0), leases(7, 1000, 4, 1000)), "out of range or order"},
		{"a lease twice", assemble(header(5, 5, 2, 3, 0), leases(7, 1000, 7, 1000)), "out of range or order"},
		{"lease 0", assemble(header(5, 5, 1, 3, 0), leases(0, 1000)), "out of range or order"},
		{"a lease of 2^53", assemble(header(5, 5, 1, 3, 0), leases(1<<53, 1000)), "out of range or order"},
		{"a TTL of 0", assemble(header(5, 5, 1, 3, 0), leases(4, 0)), "TTL of 0 ms"},
		{"fewer leases", assemble(header(5, 5, 2, 3, 0), leases(4, 1000)), "bad frame of leases, after 1 of 2"},
		{"more leases", assemble(header(5, 5, 1, 3, 0), leases(4, 1000, 5, 1000)), "bad frame of leases"},
		{"leases after the entries", assemble(header(5, 3, 0, 5, 1), leases(4, 1000)), "a section after the entries"},
		{"two lease sections", assemble(header(5, 5, 1, 5, 1, 3, 0), leases(4, 1000), leases(5, 1000)), "a second section of leases"},
		{"an empty lease section", assemble(header(5, 5, 0, 3, 0)), "a second section of leases, or 0 leases"},
		{"fewer entries", assemble(header(5, 3, 2), entries(ok)), "ends after 1 of the 2 entries"},
		{"more entries", assemble(header(5, 3, 1), entries(ok, []any{"b", `1`, 3, 2, 2, 0})), "bad frame of entries"},
		{"bytes after the entries", assemble(header(5, 3, 1), append(entries(ok), 0)), "after the last entry of a frame"},
		{"an unknown section", assemble(header(5, 6, 1, 3, 1), []byte{6, 1, 0}, entries(ok)), "section of kind 6"},
		{"no entries section", assemble(header(5)), "bad header"},
		{"two entries sections", assemble(header(5, 3, 0, 3, 0)), "a section after the entries"},
		{"header kind", assemble(append([]byte{3}, header(5, 3, 0)[1:]...)), "bad header"},
		{"bytes after the header", assemble(append(header(5, 3, 0), 0)), "bad header"},
		{"an entry cut", assemble(header(5, 3, 1), entries([]any{"a", `1`, 3})), "entry 0"},
		{"empty frame of entries", assemble(header(5, 3, 1), entries(), entries(ok)), "bad frame of entries"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := wire.VerifyBackup(bytes.NewReader(tt.file))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("got %v, want a valid backup", err)
			case tt.want != "" && (!errors.Is(err, wire.ErrBadBackup) || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an ErrBadBackup saying %q", err, tt.want)
			}
		})
	}
	// The end frame's checksum covers everything before it.
	b := assemble(header(5, 3, 1), entries(ok))
	b[len(b)-1] ^= 1
	fs := b[:len(b)-13]
	b = append(fs, frame(append([]byte{4}, b[len(b)-4:]...))...)
	if _, err := wire.VerifyBackup(bytes.NewReader(b)); err == nil || !strings.Contains(err.Error(), "checksum of the whole file") {
		t.Fatalf("a wrong whole-file checksum: got %v", err)
	}
}

func TestBackupWriterMisuse(t *testing.T) {
	t.Parallel()
	a := wire.Entry{Key: "a", Value: json.RawMessage(`1`), Revision: 1, CreateRevision: 1, Version: 1}
	b := a
	b.Key = "b"
	tests := []struct {
		name  string
		count int64
		add   []wire.Entry
	}{
		{"out of order", 2, []wire.Entry{b, a}},
		{"too many", 1, []wire.Entry{a, b}},
		{"too few", 2, []wire.Entry{a}},
		{"a lease it does not hold", 1, []wire.Entry{{Key: "a", Value: json.RawMessage(`1`), Revision: 1, CreateRevision: 1, Version: 1, Lease: 9}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bw, err := wire.NewBackupWriter(io.Discard, wire.BackupHeader{Revision: 1, Entries: tt.count})
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.add {
				err = errors.Join(err, bw.Add(&tt.add[i]))
			}
			if err = errors.Join(err, bw.Close()); err == nil {
				t.Fatal("got no error")
			}
		})
	}
}

// FuzzReadBackup checks that the reader never panics on any input, and
// that what it accepts is a backup it would write again the same way.
func FuzzReadBackup(f *testing.F) {
	b, _ := writeBackup(f, testEntries(3)[:2], 9)
	f.Add(b)
	f.Add(assemble(header(5, 3, 1), entries([]any{"a", `1`, 3, 2, 2, 0})))
	f.Add([]byte("KVSSNAP\x02"))
	f.Add(assemble(header(5, 5, 2, 3, 2), leases(4, 1000, 7, 30000), entries([]any{"a", `1`, 3, 2, 2, 7}, []any{"b", `1`, 3, 2, 2, 0})))
	f.Fuzz(func(t *testing.T, data []byte) {
		checkRoundTrip(t, data)
	})
}

// FuzzBackupPayloads builds backups from a header and an entries payload
// with correct checksums, so that the fuzzer reaches the decoding of
// entries past the checksums.
func FuzzBackupPayloads(f *testing.F) {
	f.Add(header(5, 3, 1), entries([]any{"a", `1`, 3, 2, 2, 0}))
	f.Add(header(9, 3, 2), entries([]any{"a", `{"x":[1,"y"]}`, 3, 2, 2, 0}, []any{"b", `"s"`, 9, 1, 4, 0}))
	f.Add(header(5, 6, 1, 3, 0), []byte{6, 1, 0})
	f.Add(header(5, 5, 1, 3, 0), leases(4, 1000))
	f.Fuzz(func(t *testing.T, hdr, payload []byte) {
		checkRoundTrip(t, assemble(hdr, payload))
	})
}

func checkRoundTrip(t *testing.T, data []byte) {
	es, ls, info, err := readBackupLeases(data)
	if err != nil {
		var be *wire.BackupError
		if !errors.As(err, &be) {
			t.Fatalf("an error that is not a *BackupError: %v", err)
		}
		return
	}
	if info.Size != int64(len(data)) {
		t.Fatalf("accepted %d bytes, info says %d", len(data), info.Size)
	}
	again, winfo := writeBackupLeases(t, es, ls, info.BackupHeader)
	es2, ls2, info2, err := readBackupLeases(again)
	if err != nil {
		t.Fatalf("a backup written from an accepted one is refused: %v", err)
	}
	if info2 != winfo || info2.BackupHeader != info.BackupHeader || len(es2) != len(es) || (len(es) > 0 && !reflect.DeepEqual(es, es2)) ||
		!reflect.DeepEqual(ls, ls2) {
		t.Fatalf("rewritten: %+v, %d entries; read %+v, %d entries", info2, len(es2), info, len(es))
	}
}

func writeBackupAt(t testing.TB, es []wire.Entry, h wire.BackupHeader) ([]byte, wire.BackupInfo) {
	t.Helper()
	return writeBackupLeases(t, es, nil, h)
}

func writeBackupLeases(t testing.TB, es []wire.Entry, ls []wire.BackupLease, h wire.BackupHeader) ([]byte, wire.BackupInfo) {
	t.Helper()
	var buf bytes.Buffer
	bw, err := wire.NewBackupWriterLeases(&buf, h, ls)
	if err != nil {
		t.Fatal(err)
	}
	for i := range es {
		if err := bw.Add(&es[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), bw.Info()
}
