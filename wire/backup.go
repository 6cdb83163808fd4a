package wire

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"strconv"
	"time"

	"github.com/kvsdb/kvs/internal/codec"
)

// BackupVersion is the version of the backup format that BackupWriter
// writes and BackupReader reads. Version 1 is the snapshot file of a kvsd
// data directory, whose framing this format shares.
//
// A backup is the magic "KVSSNAP" and the version (one byte), then frames:
//
//	length  uint32, little endian: the payload's length
//	crc     uint32, little endian: CRC-32C (Castagnoli) of the length's
//	        four bytes followed by the payload
//	payload
//
// The first frame is the header:
//
//	kind      byte 2
//	revision  uvarint: the backup holds every change up to this revision
//	          and none after it
//	created   uvarint: when it was taken, in Unix milliseconds
//	sections  uvarint: how many sections follow; for each, in the order
//	          their frames follow the header:
//	  kind    byte: the kind of the section's frames
//	  count   uvarint: how many items the section holds
//
// Each section is frames of its kind until its count of items is read.
// Version 2 knows two sections. The leases (kind 5), if there are any,
// sorted by ID, come first:
//
//	kind   byte 5
//	n      uvarint, at least 1: the leases in this frame
//	n times:
//	  id   uvarint: from 1 to 2^53 - 1
//	  ttl  uvarint: the TTL it was granted, in milliseconds
//
// The entries (kind 3), sorted by key, always come, last:
//
//	kind   byte 3
//	n      uvarint, at least 1: the entries in this frame
//	n times:
//	  key              uvarint length, then the key
//	  value            uvarint length, then the value's compact JSON text
//	  revision         uvarint
//	  create revision  uvarint
//	  version          uvarint
//	  lease            uvarint: its lease, one of the leases section's,
//	                   or 0, no lease
//
// The last frame is the end, and nothing follows it:
//
//	kind   byte 4
//	crc    uint32, little endian: CRC-32C of every byte before this frame
//
// Sections are how the format grows without breaking older backups: the
// leases came as a section (a backup without leases is what a kvs without
// them wrote, byte for byte, and reads), and a reader refuses a section it
// does not know, so that a backup is never restored without part of its
// state (a kvs without leases refuses one with them).
const BackupVersion = 2

const (
	backupMagic       = "KVSSNAP"
	backupKindHeader  = 2
	backupKindEntries = 3
	backupKindEnd     = 4
	backupKindLeases  = 5
	// backupMaxLeaseID is the largest lease ID.
	backupMaxLeaseID  = 1<<53 - 1
	backupFrameHeader = codec.FrameHeader
	// backupFrame is the payload size after which the writer starts a new
	// frame; backupMaxFrame the largest payload a reader takes.
	backupFrame    = 64 << 10
	backupMaxFrame = codec.MaxFrame
)

// ErrBadBackup is matched (errors.Is) by every *BackupError.
var ErrBadBackup = errors.New("wire: not a valid kvs backup")

// BackupError reports a backup that cannot be read: not a backup, of a
// format version or section this package does not know, cut short, or
// damaged.
type BackupError struct {
	// Offset is the byte offset of the problem in the file.
	Offset int64
	// Reason says what is wrong, for people.
	Reason string
}

func (e *BackupError) Error() string {
	return "at byte " + strconv.FormatInt(e.Offset, 10) + ": " + e.Reason
}

// Is reports whether target is ErrBadBackup.
func (e *BackupError) Is(target error) bool { return target == ErrBadBackup }

// BackupHeader is what a backup's header says.
type BackupHeader struct {
	// Revision is the revision the backup is at: it holds every change up
	// to it and none after it.
	Revision int64
	// Entries is the number of entries (keys).
	Entries int64
	// Created is when the backup was taken (kvsd's clock), to the
	// millisecond.
	Created time.Time
	// Leases is the number of leases.
	Leases int64
}

// BackupLease is a lease of a backup: its ID and the TTL it was granted.
// (A restore grants it its whole TTL again.)
type BackupLease struct {
	ID  int64
	TTL time.Duration
}

// findLease reports whether leases, sorted by ID, hold id.
func findLease(leases []BackupLease, id int64) bool {
	_, ok := slices.BinarySearchFunc(leases, id, func(l BackupLease, id int64) int {
		switch {
		case l.ID < id:
			return -1
		case l.ID > id:
			return 1
		}
		return 0
	})
	return ok
}

// BackupInfo describes a whole backup, once read or written.
type BackupInfo struct {
	BackupHeader
	// Size is the backup's length in bytes.
	Size int64
	// Checksum is the CRC-32C of the backup up to its end frame, which
	// holds it.
	Checksum uint32
}

// BackupWriter writes a backup: NewBackupWriter writes the header, Add
// each entry in key order, and Close the end. It writes a frame at a time
// (about 64 KiB) to the underlying writer. It is not safe for concurrent
// use.
type BackupWriter struct {
	w       io.Writer
	leases  []BackupLease
	left    int64 // entries still to add
	buf     []byte
	n       int // entries in the frame in buf
	countAt int // where the frame's entry count goes in buf
	prev    string
	info    BackupInfo
	err     error
}

// NewBackupWriter writes the magic and the header of a backup of
// h.Entries entries at h.Revision to w, and returns the writer of its
// entries.
func NewBackupWriter(w io.Writer, h BackupHeader) (*BackupWriter, error) {
	if h.Revision < 0 || h.Entries < 0 {
		return nil, errors.New("wire: backup header with a negative revision or count")
	}
	return NewBackupWriterLeases(w, h, nil)
}

// NewBackupWriterLeases is NewBackupWriter for a backup that holds leases
// besides its entries: leases, sorted by ID (h.Leases is their number).
func NewBackupWriterLeases(w io.Writer, h BackupHeader, leases []BackupLease) (*BackupWriter, error) {
	if h.Revision < 0 || h.Entries < 0 {
		return nil, errors.New("wire: backup header with a negative revision or count")
	}
	h.Leases = int64(len(leases))
	for i, l := range leases {
		switch {
		case l.ID < 1 || l.ID > backupMaxLeaseID || i > 0 && l.ID <= leases[i-1].ID:
			return nil, fmt.Errorf("wire: backup: lease %d: IDs must be from 1 to 2^53 - 1, increasing", l.ID)
		case l.TTL < time.Millisecond || l.TTL%time.Millisecond != 0:
			return nil, fmt.Errorf("wire: backup: lease %d: TTL %v, not a whole number of milliseconds", l.ID, l.TTL)
		}
	}
	bw := &BackupWriter{w: w, left: h.Entries, leases: leases, buf: make([]byte, 0, backupFrame+4096)}
	bw.info.BackupHeader = h
	b := append(bw.buf, backupMagic...)
	b = append(b, BackupVersion)
	start := len(b)
	b = codec.BeginFrame(b)
	b = append(b, backupKindHeader)
	b = binary.AppendUvarint(b, uint64(h.Revision))
	var created uint64
	if !h.Created.IsZero() {
		created = uint64(max(h.Created.UnixMilli(), 0))
	}
	b = binary.AppendUvarint(b, created)
	if len(leases) > 0 {
		b = binary.AppendUvarint(b, 2) // two sections: the leases, the entries
		b = append(b, backupKindLeases)
		b = binary.AppendUvarint(b, uint64(len(leases)))
	} else {
		b = binary.AppendUvarint(b, 1) // one section: the entries
	}
	b = append(b, backupKindEntries)
	b = binary.AppendUvarint(b, uint64(h.Entries))
	codec.EndFrame(b, start)
	bw.buf = b
	if err := bw.flush(); err != nil {
		return nil, err
	}
	for len(leases) > 0 {
		n := min(len(leases), backupFrame/20)
		b := codec.BeginFrame(bw.buf[:0])
		b = append(b, backupKindLeases)
		b = binary.AppendUvarint(b, uint64(n))
		for _, l := range leases[:n] {
			b = binary.AppendUvarint(b, uint64(l.ID))
			b = binary.AppendUvarint(b, uint64(l.TTL/time.Millisecond))
		}
		codec.EndFrame(b, 0)
		bw.buf = b
		if err := bw.flush(); err != nil {
			return nil, err
		}
		leases = leases[n:]
	}
	return bw, nil
}

// Add appends an entry. Entries must come in strictly increasing key
// order, as many as the header said.
func (bw *BackupWriter) Add(e *Entry) error {
	if bw.err != nil {
		return bw.err
	}
	switch {
	case bw.left == 0:
		bw.err = errors.New("wire: backup: more entries than the header says")
	case bw.info.Entries-bw.left > 0 && e.Key <= bw.prev:
		bw.err = fmt.Errorf("wire: backup: key %q after %q: keys must increase", e.Key, bw.prev)
	case e.Lease != 0 && !findLease(bw.leases, e.Lease):
		bw.err = fmt.Errorf("wire: backup: key %q names lease %d, which the header does not list", e.Key, e.Lease)
	}
	if bw.err != nil {
		return bw.err
	}
	if bw.n > 0 && len(bw.buf) >= backupFrame {
		if err := bw.endFrame(); err != nil {
			return err
		}
	}
	if bw.n == 0 {
		bw.buf = append(codec.BeginFrame(bw.buf), backupKindEntries)
		bw.buf, bw.countAt = codec.ReserveCount(bw.buf)
	}
	b := codec.AppendEntry(bw.buf, e.Key, e.Value, e.Revision, e.CreateRevision, e.Version)
	bw.buf = binary.AppendUvarint(b, uint64(e.Lease))
	bw.n++
	bw.left--
	bw.prev = e.Key
	return nil
}

// endFrame completes the frame of entries in buf and writes it.
func (bw *BackupWriter) endFrame() error {
	bw.buf = codec.PutCount(bw.buf, bw.countAt, uint64(bw.n))
	codec.EndFrame(bw.buf, 0)
	bw.n = 0
	return bw.flush()
}

// flush writes buf and counts it in the checksum.
func (bw *BackupWriter) flush() error {
	bw.info.Checksum = crc32.Update(bw.info.Checksum, codec.Castagnoli, bw.buf)
	n, err := bw.w.Write(bw.buf)
	bw.info.Size += int64(n)
	bw.buf = bw.buf[:0]
	if err != nil {
		bw.err = err
	}
	return err
}

// Close writes the last frame of entries and the end of the backup. It
// fails if fewer entries were added than the header said. It does not
// close the underlying writer.
func (bw *BackupWriter) Close() error {
	if bw.err != nil {
		return bw.err
	}
	if bw.left != 0 {
		bw.err = fmt.Errorf("wire: backup: %d entries missing", bw.left)
		return bw.err
	}
	if bw.n > 0 {
		if err := bw.endFrame(); err != nil {
			return err
		}
	}
	sum := bw.info.Checksum
	b := codec.BeginFrame(bw.buf[:0])
	b = append(b, backupKindEnd)
	b = binary.LittleEndian.AppendUint32(b, sum)
	codec.EndFrame(b, 0)
	bw.buf = b
	err := bw.flush()
	bw.info.Checksum = sum
	bw.err = errors.New("wire: backup: closed")
	return err
}

// Info returns what was written: the header, and once Close has returned
// nil, the size and checksum.
func (bw *BackupWriter) Info() BackupInfo { return bw.info }

// BackupReader reads a backup and checks all of it: the magic, the format
// version, the checksum of every frame and of the whole, the number of
// leases and entries, each lease (IDs increasing, TTLs of a millisecond or
// more), each entry (a valid key, in increasing order; a compact JSON
// value other than null; revisions within the backup's: 1 <= create
// revision <= revision <= the backup's revision, and 1 <= version <=
// revision - create revision + 1; a lease of the backup's or none), and
// that nothing follows the end. What is wrong is a *BackupError. It is not
// safe for concurrent use.
type BackupReader struct {
	r      *bufio.Reader
	leases []BackupLease
	off    int64  // offset of the next byte to read
	sum    uint32 // CRC-32C of the bytes before off
	info   BackupInfo
	read   int64 // entries returned

	// The frame being read.
	frameOff int64
	p        []byte // its entries not yet read
	inFrame  uint64 // their number
	prev     string
	compact  bytes.Buffer
	buf      []byte
	err      error
}

// NewBackupReader reads the magic and the header of the backup in r.
func NewBackupReader(r io.Reader) (*BackupReader, error) {
	br := &BackupReader{r: bufio.NewReaderSize(r, 64<<10)}
	var magic [len(backupMagic) + 1]byte
	n, err := io.ReadFull(br.r, magic[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, err
	}
	m := min(n, len(backupMagic))
	switch version := magic[len(backupMagic)]; {
	case n == 0:
		return nil, br.bad(0, "the file is empty: not a kvs backup")
	case string(magic[:m]) != backupMagic[:m]:
		return nil, br.bad(0, "not a kvs backup: it does not start with %q", backupMagic)
	case n < len(magic):
		return nil, br.bad(int64(n), "the file ends early (truncated?) after %d bytes", n)
	case version == 1:
		return nil, br.bad(int64(len(backupMagic)), "format version 1 is a kvsd data directory's snapshot, not a backup: "+
			"take backups with kvscli snapshot save (GET /snapshot), which writes version %d", BackupVersion)
	case version != BackupVersion:
		return nil, br.bad(int64(len(backupMagic)), "format version %d: this kvs reads version %d; "+
			"read it with the kvs release that wrote it", version, BackupVersion)
	}
	br.sum = crc32.Update(0, codec.Castagnoli, magic[:])
	br.off = int64(len(magic))
	nleases, err := br.readHeader()
	if err != nil {
		return nil, err
	}
	if err := br.readLeases(nleases); err != nil {
		return nil, err
	}
	return br, nil
}

// readHeader reads the header frame: the revision, when it was taken and
// the sections. It returns the number of leases.
func (br *BackupReader) readHeader() (uint64, error) {
	p, off, err := br.frame()
	if err != nil {
		return 0, err
	}
	d := codec.Decoder{P: p}
	kind, rev, created, nsec := d.Byte(), d.Uvarint(), d.Uvarint(), d.Uvarint()
	if d.Err != nil || kind != backupKindHeader || rev > 1<<62 || created > 1<<62 {
		return 0, br.bad(off, "bad header")
	}
	br.info.Revision = int64(rev)
	if created > 0 {
		br.info.Created = time.UnixMilli(int64(created)).UTC()
	}
	entries, leases := false, false
	var nleases uint64
	for range nsec {
		k, count := d.Byte(), d.Uvarint()
		switch {
		case d.Err != nil:
			return 0, br.bad(off, "bad header")
		case k != backupKindEntries && k != backupKindLeases:
			return 0, br.bad(off, "a section of kind %d, which this kvs does not know: "+
				"the backup was written by a newer kvs; restore it with that version", k)
		case entries:
			return 0, br.bad(off, "bad header: a section after the entries")
		case k == backupKindLeases && (leases || count == 0 || count > backupMaxLeaseID):
			return 0, br.bad(off, "bad header: a second section of leases, or %d leases", count)
		case count > 1<<62:
			return 0, br.bad(off, "bad header: %d entries", count)
		}
		if k == backupKindLeases {
			leases, nleases = true, count
			continue
		}
		entries = true
		br.info.Entries = int64(count)
	}
	if !entries || len(d.P) != 0 {
		return 0, br.bad(off, "bad header")
	}
	return nleases, nil
}

// readLeases reads the frames of the section of nleases leases.
func (br *BackupReader) readLeases(nleases uint64) error {
	br.info.Leases = int64(nleases)
	if nleases > 0 {
		br.leases = make([]BackupLease, 0, min(nleases, 1<<16))
	}
	for uint64(len(br.leases)) < nleases {
		p, off, err := br.frame()
		if err != nil {
			return err
		}
		d := codec.Decoder{P: p}
		kind, n := d.Byte(), d.Uvarint()
		if d.Err != nil || kind != backupKindLeases || n == 0 || n > nleases-uint64(len(br.leases)) {
			return br.bad(off, "damaged: a bad frame of leases, after %d of %d", len(br.leases), nleases)
		}
		for range n {
			id, ttl := d.Uvarint(), d.Uvarint()
			ls := br.leases
			switch {
			case d.Err != nil:
				return br.bad(off, "damaged: lease %d: %v", len(ls), d.Err)
			case id == 0 || id > backupMaxLeaseID || len(ls) > 0 && int64(id) <= ls[len(ls)-1].ID:
				return br.bad(off, "lease %d: ID %d, out of range or order", len(ls), id)
			case ttl == 0 || ttl > uint64(1<<62/time.Millisecond):
				return br.bad(off, "lease %d: TTL of %d ms", id, ttl)
			}
			br.leases = append(ls, BackupLease{ID: int64(id), TTL: time.Duration(ttl) * time.Millisecond})
		}
		if len(d.P) != 0 {
			return br.bad(off, "damaged: %d bytes after the last lease of a frame", len(d.P))
		}
	}
	return nil
}

// Leases returns the backup's leases, sorted by ID.
func (br *BackupReader) Leases() []BackupLease { return br.leases }

// Header returns what the backup's header says.
func (br *BackupReader) Header() BackupHeader { return br.info.BackupHeader }

// Info returns the backup's header, and once Next has returned io.EOF, its
// size and checksum.
func (br *BackupReader) Info() BackupInfo { return br.info }

func (br *BackupReader) bad(off int64, format string, args ...any) error {
	br.err = &BackupError{Offset: off, Reason: fmt.Sprintf(format, args...)}
	return br.err
}

// frame reads the next frame and returns its payload, valid until the next
// call, and its offset.
func (br *BackupReader) frame() ([]byte, int64, error) {
	off := br.off
	var h [backupFrameHeader]byte
	_, err := io.ReadFull(br.r, h[:])
	switch {
	case err == io.EOF:
		return nil, off, br.bad(off, "the file ends early (truncated?)%s", br.where())
	case err == io.ErrUnexpectedEOF:
		return nil, off, br.bad(off, "the file ends early (truncated?) in a frame's header%s", br.where())
	case err != nil:
		br.err = err
		return nil, off, err
	}
	size := binary.LittleEndian.Uint32(h[:])
	if size > backupMaxFrame {
		return nil, off, br.bad(off, "damaged: a frame of %d bytes, over the limit", size)
	}
	p, err := codec.ReadPayload(br.r, br.buf, size)
	if err == io.ErrUnexpectedEOF {
		return nil, off, br.bad(off, "the file ends early (truncated?) in a frame: %d of its %d bytes%s", len(p), size, br.where())
	} else if err != nil {
		br.err = err
		return nil, off, err
	}
	if cap(p) <= 4<<20 {
		br.buf = p
	}
	if binary.LittleEndian.Uint32(h[4:]) != codec.FrameCRC(h[:], p) {
		return nil, off, br.bad(off, "damaged: a frame fails its checksum")
	}
	br.sum = crc32.Update(crc32.Update(br.sum, codec.Castagnoli, h[:]), codec.Castagnoli, p)
	br.off += backupFrameHeader + int64(size)
	return p, off, nil
}

// where says how far the entries got, for messages.
func (br *BackupReader) where() string {
	if br.off <= int64(len(backupMagic))+1 {
		return ""
	}
	return fmt.Sprintf(", after %d of %d entries", br.read, br.info.Entries)
}

// Next returns the next entry. It returns io.EOF after the last one, once
// the end of the backup is read and checked; any other error is final.
// The entry's Key and Value are the caller's.
func (br *BackupReader) Next() (Entry, error) {
	if br.err != nil {
		return Entry{}, br.err
	}
	if br.inFrame == 0 {
		if br.read == br.info.Entries {
			if err := br.end(); err != nil {
				return Entry{}, err
			}
			br.err = io.EOF
			return Entry{}, io.EOF
		}
		p, off, err := br.frame()
		if err != nil {
			return Entry{}, err
		}
		d := codec.Decoder{P: p}
		kind, n := d.Byte(), d.Uvarint()
		if kind == backupKindEnd {
			return Entry{}, br.bad(off, "damaged: the backup ends after %d of the %d entries its header names", br.read, br.info.Entries)
		}
		if d.Err != nil || kind != backupKindEntries || n == 0 || n > uint64(br.info.Entries-br.read) {
			return Entry{}, br.bad(off, "damaged: a bad frame of entries%s", br.where())
		}
		br.frameOff, br.p, br.inFrame = off, d.P, n
	}
	d := codec.Decoder{P: br.p}
	key, value := d.Bytes(), d.Bytes()
	k := string(key) // the entry's Key, once checked
	r, cr, v, lease := d.Uvarint(), d.Uvarint(), d.Uvarint(), d.Uvarint()
	off := br.frameOff
	switch {
	case d.Err != nil:
		return Entry{}, br.bad(off, "damaged: entry %d: %v", br.read, d.Err)
	case !codec.ValidKey(k):
		return Entry{}, br.bad(off, "entry %d: invalid key %q", br.read, key)
	case br.read > 0 && k <= br.prev:
		return Entry{}, br.bad(off, "entry %d: key %q after %q: out of order", br.read, key, br.prev)
	case cr == 0 || cr > r || r > uint64(br.info.Revision) || v == 0 || v > r-cr+1:
		return Entry{}, br.bad(off, "entry %q: bad revisions %d, %d, version %d in a backup at revision %d", key, r, cr, v, br.info.Revision)
	case lease != 0 && (lease > backupMaxLeaseID || !findLease(br.leases, int64(lease))):
		return Entry{}, br.bad(off, "entry %q: lease %d, which the backup does not hold", key, lease)
	}
	if err := br.checkValue(value); err != "" {
		return Entry{}, br.bad(off, "entry %q: %s", key, err)
	}
	br.p = d.P
	br.inFrame--
	if br.inFrame == 0 && len(br.p) != 0 {
		return Entry{}, br.bad(off, "damaged: %d bytes after the last entry of a frame", len(br.p))
	}
	br.read++
	e := Entry{
		Key:            k,
		Value:          bytes.Clone(value),
		Revision:       int64(r),
		CreateRevision: int64(cr),
		Version:        int64(v),
		Lease:          int64(lease),
	}
	br.prev = e.Key
	return e, nil
}

// checkValue returns what is wrong with a value, or "".
func (br *BackupReader) checkValue(v []byte) string {
	if !json.Valid(v) || string(v) == "null" {
		return "the value is not a JSON value other than null"
	}
	br.compact.Reset()
	json.Compact(&br.compact, v)
	if !bytes.Equal(br.compact.Bytes(), v) {
		return "the value is not compact JSON"
	}
	if br.compact.Cap() > 4<<20 {
		br.compact = bytes.Buffer{}
	}
	return ""
}

// end reads the end frame and checks the whole backup's checksum and that
// nothing follows.
func (br *BackupReader) end() error {
	sum := br.sum
	p, off, err := br.frame()
	if err != nil {
		return err
	}
	d := codec.Decoder{P: p}
	kind := d.Byte()
	if d.Err != nil || kind != backupKindEnd || len(d.P) != 4 {
		return br.bad(off, "damaged: a bad end frame after the last entry")
	}
	if got := binary.LittleEndian.Uint32(d.P); got != sum {
		return br.bad(off, "damaged: the checksum of the whole file is %08x, its end says %08x", sum, got)
	}
	if _, err := br.r.ReadByte(); err != io.EOF {
		if err != nil {
			br.err = err
			return err
		}
		return br.bad(br.off, "data after the end of the backup")
	}
	br.info.Size, br.info.Checksum = br.off, sum
	return nil
}

// VerifyBackup reads the whole backup in r, checking all of it (see
// BackupReader), and describes it.
func VerifyBackup(r io.Reader) (BackupInfo, error) {
	br, err := NewBackupReader(r)
	if err != nil {
		return BackupInfo{}, err
	}
	for {
		if _, err := br.Next(); err == io.EOF {
			return br.Info(), nil
		} else if err != nil {
			return br.Info(), err
		}
	}
}
