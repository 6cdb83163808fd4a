package kv

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"iter"
	"strings"
	"time"
	"unsafe"

	"github.com/kvsdb/kvs/internal/codec"
)

// The file log's two formats, the log and the snapshot, are both sequences
// of frames:
//
//	length  uint32, little endian: the payload's length in bytes
//	crc     uint32, little endian: CRC-32C (Castagnoli) of the length's four
//	        bytes followed by the payload
//	payload
//
// A log record is one frame whose payload holds consecutive changes, all of
// them from one batch (a batch larger than frameSplit takes several frames,
// split between revisions, never inside one):
//
//	kind    byte: kindBatch
//	rev     uvarint: the revision of the first change of a key; the others
//	        follow
//	count   uvarint: the number of changes, at least 1
//	count times:
//	  op    byte: 1 set, 2 delete; plus opSameRev when the change has the
//	        revision of the one before it (the changes of a transaction
//	        share one revision), else the next revision; plus opLease when
//	        the change names a lease
//	  key   uvarint length, then the key
//	  value (a set only) uvarint length, then the value's compact JSON text
//	  lease (with opLease) uvarint: the lease a set attaches the key to,
//	        or the lease whose end deletes the key, then a byte: the
//	        reason (a delete only)
//	or a change of a lease, which takes no revision:
//	  op    byte: opGrant or opLeaseEnd
//	  id    uvarint: the lease
//	  ttl   (opGrant) uvarint: its TTL in milliseconds
//	  why   (opLeaseEnd) byte: the reason it ended; the deletes of its
//	        keys follow it in the frame, at the next revision
//
// A frame is written and checked whole, so a transaction, or the end of a
// lease with the deletes of its keys, is in the log entirely or, cut by a
// crash, not at all. A frame of changes of leases only has the revision
// its next change would have.
//
// A snapshot file is snapMagic, then a header frame:
//
//	kind    byte: kindSnapHeader
//	rev     uvarint: the revision the snapshot holds every change up to
//	count   uvarint: the number of entries
//
// then frames of entries, sorted by key, until count entries are read, and
// nothing after them:
//
//	kind    byte: kindSnapEntries
//	n       uvarint: the number of entries in this frame, at least 1
//	n times:
//	  key              uvarint length, then the key
//	  value            uvarint length, then the value
//	  revision         uvarint
//	  create revision  uvarint
//	  version          uvarint
//	  lease            uvarint (in a kindSnapEntriesLease frame only)
//
// A snapshot that holds leases has one more uvarint in its header, their
// number, and frames of leases between the header and the entries, with
// every entry in kindSnapEntriesLease frames:
//
//	kind    byte: kindSnapLeases
//	n       uvarint: the number of leases in this frame, at least 1
//	n times:
//	  id    uvarint
//	  ttl   uvarint: in milliseconds

const (
	frameHeader = codec.FrameHeader
	// maxFrame is the largest payload a frame may have.
	maxFrame = codec.MaxFrame
	// frameSplit is the payload size after which a log batch continues in
	// a new frame.
	frameSplit = 8 << 20
	// snapFrame is the payload size after which a snapshot continues in a
	// new frame.
	snapFrame = 64 << 10

	kindBatch            = 1
	opSameRev            = 0x80
	opLease              = 0x40
	opGrant              = 3
	opLeaseEnd           = 4
	kindSnapHeader       = 2
	kindSnapEntries      = 3
	kindSnapLeases       = 4
	kindSnapEntriesLease = 5

	snapMagic = "KVSSNAP\x01"
)

// errFrame reports a frame that cannot be read: cut short, too long for a
// frame, or failing its checksum. Whether that is a torn write or damage
// depends on where it is (see logEnd).
var errFrame = errors.New("kv: bad frame")

// frameReader reads frames from a stream, keeping the offset of each.
type frameReader struct {
	r   *bufio.Reader
	off int64 // offset of the next frame
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader {
	return &frameReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// next returns the payload of the next frame, valid until the following
// call, and its offset. At the end of the stream it returns io.EOF; for a
// frame that is cut short, too long or fails its checksum, errFrame
// (wrapped). Either way the offset is where the frame would start.
func (fr *frameReader) next() ([]byte, int64, error) {
	off := fr.off
	var h [frameHeader]byte
	n, err := io.ReadFull(fr.r, h[:])
	switch {
	case err == io.EOF:
		return nil, off, io.EOF
	case err == io.ErrUnexpectedEOF:
		return nil, off, fmt.Errorf("%w: header cut short after %d bytes", errFrame, n)
	case err != nil:
		return nil, off, err
	}
	size := binary.LittleEndian.Uint32(h[:])
	if size > maxFrame {
		return nil, off, fmt.Errorf("%w: length %d is over the limit", errFrame, size)
	}
	p, err := codec.ReadPayload(fr.r, fr.buf, size)
	if err == io.ErrUnexpectedEOF {
		return nil, off, fmt.Errorf("%w: %d of %d payload bytes", errFrame, len(p), size)
	} else if err != nil {
		return nil, off, err
	}
	fr.buf = p
	if binary.LittleEndian.Uint32(h[4:]) != codec.FrameCRC(h[:], p) {
		return nil, off, fmt.Errorf("%w: checksum mismatch", errFrame)
	}
	fr.off += frameHeader + int64(size)
	if cap(fr.buf) > frameSplit+snapFrame {
		fr.buf = nil // do not keep an unusually large buffer
	}
	return p, off, nil
}

// validFrameAt reports whether b holds, at its start, a whole frame that
// passes its checksum and decodes as a log record.
func validFrameAt(b []byte) bool {
	if len(b) < frameHeader {
		return false
	}
	size := binary.LittleEndian.Uint32(b)
	if size > maxFrame || uint64(len(b)-frameHeader) < uint64(size) {
		return false
	}
	p := b[frameHeader : frameHeader+int(size)]
	if binary.LittleEndian.Uint32(b[4:]) != codec.FrameCRC(b, p) {
		return false
	}
	_, err := decodeBatch(p)
	return err == nil
}

// The end of a log segment after its last valid record is one of these.
const (
	endClean   = iota // nothing, or zeros: space reserved for records
	endTorn           // the remains of one write cut short by a crash
	endDamaged        // a bad record with valid records after it
)

// logEnd tells what rest, the bytes of a segment from a bad frame to the
// end, is. Writes are sequential, and each waits for the one before to be
// durable, so a valid record after a bad one means damage, not a torn
// write.
func logEnd(rest []byte) int {
	n := len(rest) // the bytes up to the last one that is not zero
	for n > 0 && rest[n-1] == 0 {
		n--
	}
	if n == 0 {
		return endClean
	}
	// A valid frame cannot start among the zeros at the end: its header
	// would be zeros, which fail the checksum.
	for i := 1; i < n; i++ {
		if validFrameAt(rest[i:]) {
			return endDamaged
		}
	}
	return endTorn
}

// appendBatch appends changes to b as log records. Their revisions must
// be consecutive, but that the changes of a revision (a transaction) share
// it and come together, and that a change of a lease has the revision of
// the change before it (or the last one logged).
func appendBatch(b []byte, changes []Change) ([]byte, error) {
	for len(changes) > 0 {
		start := len(b)
		b = codec.BeginFrame(b)
		b = append(b, kindBatch)
		first := changes[0].Revision
		if isLeaseOp(&changes[0]) {
			first++
		}
		b = binary.AppendUvarint(b, uint64(first))
		// The count comes before the changes but is known only after
		// them: reserve the longest uvarint and close the gap after.
		var countAt int
		b, countAt = codec.ReserveCount(b)
		n := 0
		for n < len(changes) && (n == 0 || len(b)-start < frameSplit || sameRev(changes[n-1:n+1]) || isLeaseOp(&changes[n-1])) {
			c := &changes[n]
			if len(c.Key)+len(c.Value) > maxFrame-64 || len(b)-start+len(c.Key)+len(c.Value) > maxFrame-64 {
				return b, fmt.Errorf("kv: change of %q is too large for the log (%d bytes)", c.Key, len(c.Key)+len(c.Value))
			}
			switch c.Op {
			case OpGrant:
				b = append(b, opGrant)
				b = binary.AppendUvarint(b, uint64(c.Lease))
				b = binary.AppendUvarint(b, uint64(c.TTL/time.Millisecond))
				n++
				continue
			case OpLeaseEnd:
				b = append(b, opLeaseEnd)
				b = binary.AppendUvarint(b, uint64(c.Lease))
				b = append(b, byte(c.Reason))
				n++
				continue
			}
			op := byte(c.Op)
			if n > 0 && sameRev(changes[n-1:n+1]) {
				op |= opSameRev
			}
			if c.Lease != 0 {
				op |= opLease
			}
			b = append(b, op)
			b = binary.AppendUvarint(b, uint64(len(c.Key)))
			b = append(b, c.Key...)
			if c.Op == OpSet {
				b = binary.AppendUvarint(b, uint64(len(c.Value)))
				b = append(b, c.Value...)
			}
			if c.Lease != 0 {
				b = binary.AppendUvarint(b, uint64(c.Lease))
				if c.Op == OpDelete {
					b = append(b, byte(c.Reason))
				}
			}
			n++
		}
		b = codec.PutCount(b, countAt, uint64(n))
		codec.EndFrame(b, start)
		changes = changes[n:]
	}
	return b, nil
}

// sameRev reports whether the two changes of pair are changes of keys at
// one revision.
func sameRev(pair []Change) bool {
	return pair[0].Revision == pair[1].Revision && !isLeaseOp(&pair[0]) && !isLeaseOp(&pair[1])
}

// decodeBatch decodes a log record's payload. The changes own their keys
// and values: nothing refers to p.
func decodeBatch(p []byte) ([]Change, error) {
	changes, _, _, err := decodeFrame(p)
	return changes, err
}

// decodeFrame decodes a log record's payload, and returns the revision it
// starts at (its first change of a key has it) and the last revision it
// holds (first - 1 when it holds changes of leases only).
func decodeFrame(p []byte) (changes []Change, first, last int64, err error) {
	d := codec.Decoder{P: p}
	if k := d.Byte(); k != kindBatch {
		return nil, 0, 0, fmt.Errorf("record kind %d, want %d", k, kindBatch)
	}
	rev := d.Uvarint()
	count := d.Uvarint()
	if d.Err != nil {
		return nil, 0, 0, d.Err
	}
	// Each change takes at least 2 bytes: a bound on count that keeps a
	// damaged record from allocating much.
	if rev == 0 || rev > 1<<62 || count == 0 || count > uint64(len(d.P))/2 || rev+count > 1<<62 {
		return nil, 0, 0, fmt.Errorf("bad revision %d or count %d", rev, count)
	}
	changes = make([]Change, count)
	next := int64(rev)
	var unit map[string]bool // the keys of a transaction read so far
	for i := range changes {
		c := &changes[i]
		op := d.Byte()
		if op == opGrant || op == opLeaseEnd {
			c.Revision, unit = next-1, nil
			if err := decodeLeaseChange(&d, op, c, i); err != nil {
				return nil, 0, 0, err
			}
			continue
		}
		c.Op = Op(op &^ (opSameRev | opLease))
		c.Key = string(d.Bytes())
		if op&opSameRev == 0 {
			c.Revision, unit = next, nil
			next++
		} else if i == 0 || isLeaseOp(&changes[i-1]) {
			return nil, 0, 0, errors.New("a change continues a revision after no change of a key")
		} else {
			c.Revision = next - 1
			if unit == nil {
				unit = map[string]bool{changes[i-1].Key: true}
			}
			if d.Err == nil && unit[c.Key] {
				return nil, 0, 0, fmt.Errorf("change %d: key %q changes twice at revision %d", i, c.Key, c.Revision)
			}
			unit[c.Key] = true
		}
		if err := decodeKeyChange(&d, op, c, i); err != nil {
			return nil, 0, 0, err
		}
	}
	if len(d.P) > 0 {
		return nil, 0, 0, fmt.Errorf("%d bytes after the last change", len(d.P))
	}
	return changes, int64(rev), next - 1, nil
}

// decodeLeaseChange decodes the rest of c, change i of a record, a change
// of a lease whose op byte, opGrant or opLeaseEnd, d has read.
func decodeLeaseChange(d *codec.Decoder, op byte, c *Change, i int) error {
	id, v := d.Uvarint(), uint64(0)
	if op == opGrant {
		c.Op = OpGrant
		v = d.Uvarint()
		c.TTL = time.Duration(v) * time.Millisecond
	} else {
		c.Op = OpLeaseEnd
		c.Reason = Reason(d.Byte())
	}
	c.Lease = int64(id)
	switch {
	case d.Err != nil:
		return d.Err
	case id == 0 || id > MaxLeaseID:
		return fmt.Errorf("change %d: bad lease %d", i, id)
	case op == opGrant && (v == 0 || v > uint64(1<<62/time.Millisecond)):
		return fmt.Errorf("change %d: bad TTL of %d ms", i, v)
	case op == opLeaseEnd && c.Reason != ReasonExpired && c.Reason != ReasonRevoked:
		return fmt.Errorf("change %d: unknown reason %d", i, c.Reason)
	}
	return nil
}

// decodeKeyChange decodes the rest of c, change i of a record, a change of
// a key whose op byte and key d has read: its value and lease. It checks
// the whole change, the key too.
func decodeKeyChange(d *codec.Decoder, op byte, c *Change, i int) error {
	switch c.Op {
	case OpSet:
		c.Value = bytes.Clone(d.Bytes())
		if d.Err == nil && len(c.Value) == 0 {
			return fmt.Errorf("change %d: empty value", i)
		}
	case OpDelete:
	default:
		if d.Err == nil {
			return fmt.Errorf("change %d: unknown op %d", i, c.Op)
		}
	}
	if op&opLease != 0 {
		id := d.Uvarint()
		c.Lease = int64(id)
		if c.Op == OpDelete {
			c.Reason = Reason(d.Byte())
		}
		if d.Err == nil && (id == 0 || id > MaxLeaseID || c.Op == OpDelete && c.Reason != ReasonExpired && c.Reason != ReasonRevoked) {
			return fmt.Errorf("change %d: bad lease %d or reason %d", i, id, c.Reason)
		}
	}
	if d.Err != nil {
		return d.Err
	}
	if !ValidKey(c.Key) {
		return fmt.Errorf("change %d: invalid key %q", i, c.Key)
	}
	return nil
}

// writeSnapshot writes entries, sorted by key, and leases, consistent with
// rev, to w in the snapshot format. It stops early with errStopped once
// stop is closed.
func writeSnapshot(w io.Writer, entries []*Entry, leases []Lease, rev int64, stop <-chan struct{}) error {
	return writeSnapshotSeq(w, len(entries), func(yield func(Entry) bool) {
		for _, e := range entries {
			if !yield(*e) {
				return
			}
		}
	}, leases, rev, stop)
}

// writeSnapshotSeq writes the n entries that entries yields, sorted by key,
// and leases, consistent with rev, to w in the snapshot format, as
// writeSnapshot does.
func writeSnapshotSeq(w io.Writer, n int, entries iter.Seq[Entry], leases []Lease, rev int64, stop <-chan struct{}) error {
	sw := &snapWriter{bw: bufio.NewWriterSize(w, 1<<20), b: make([]byte, 0, snapFrame+4096)}
	if err := sw.header(n, leases, rev); err != nil {
		return err
	}
	written := 0
	for e := range entries {
		if err := sw.add(&e, stop); err != nil {
			return err
		}
		written++
	}
	if written != n {
		return fmt.Errorf("kv: snapshot of %d entries got %d", n, written)
	}
	if err := sw.flush(); err != nil {
		return err
	}
	return sw.bw.Flush()
}

// snapWriter writes a snapshot a frame at a time.
type snapWriter struct {
	bw      *bufio.Writer
	b       []byte // frames not yet written; the last one may be filling
	kind    byte   // the kind of the entries' frames
	inFrame int    // entries in the frame being filled, which starts b
	countAt int    // where that frame's count goes in b
}

// header writes the magic, the header of a snapshot of n entries and
// leases at rev, and the frames of the leases; the last frame stays in
// sw.b.
func (sw *snapWriter) header(n int, leases []Lease, rev int64) error {
	b := append(sw.b, snapMagic...)
	start := len(b)
	b = codec.BeginFrame(b)
	b = append(b, kindSnapHeader)
	b = binary.AppendUvarint(b, uint64(rev))
	b = binary.AppendUvarint(b, uint64(n))
	sw.kind = kindSnapEntries
	if len(leases) > 0 {
		b = binary.AppendUvarint(b, uint64(len(leases)))
		sw.kind = kindSnapEntriesLease
	}
	codec.EndFrame(b, start)
	for len(leases) > 0 {
		if _, err := sw.bw.Write(b); err != nil {
			return err
		}
		b = codec.BeginFrame(b[:0])
		b = append(b, kindSnapLeases)
		m := min(len(leases), snapFrame/20)
		b = binary.AppendUvarint(b, uint64(m))
		for _, l := range leases[:m] {
			b = binary.AppendUvarint(b, uint64(l.ID))
			b = binary.AppendUvarint(b, uint64(l.TTL/time.Millisecond))
		}
		codec.EndFrame(b, 0)
		leases = leases[m:]
	}
	sw.b = b
	return nil
}

// add adds e to the frame being filled, starting a new frame when there
// is none or the one being filled is full. It returns errStopped, before a
// new frame, once stop is closed.
func (sw *snapWriter) add(e *Entry, stop <-chan struct{}) error {
	if sw.inFrame > 0 && len(sw.b) >= snapFrame {
		if err := sw.flush(); err != nil {
			return err
		}
	}
	if sw.inFrame == 0 {
		select {
		case <-stop:
			return errStopped
		default:
		}
		if len(sw.b) > 0 {
			if err := sw.flush(); err != nil {
				return err
			}
		}
		sw.b = append(codec.BeginFrame(sw.b), sw.kind)
		sw.b, sw.countAt = codec.ReserveCount(sw.b)
	}
	sw.b = codec.AppendEntry(sw.b, e.Key, e.Value, e.Revision, e.CreateRevision, e.Version)
	if sw.kind == kindSnapEntriesLease {
		sw.b = binary.AppendUvarint(sw.b, uint64(e.Lease))
	}
	sw.inFrame++
	return nil
}

// flush ends the frame being filled, if any, and writes what sw.b holds.
func (sw *snapWriter) flush() error {
	if sw.inFrame > 0 {
		sw.b = codec.PutCount(sw.b, sw.countAt, uint64(sw.inFrame))
		codec.EndFrame(sw.b, 0)
		sw.inFrame = 0
	}
	_, err := sw.bw.Write(sw.b)
	sw.b = sw.b[:0]
	return err
}

var errStopped = errors.New("kv: stopped")

// snapshotError reports damage in a snapshot at a byte offset.
type snapshotError struct {
	off int64
	err error
}

func (e *snapshotError) Error() string { return e.err.Error() }

// snapEntries are the entries of a snapshot file, as readSnapshot checked
// them: the payloads of its entry frames, in order.
type snapEntries struct {
	frames [][]byte
	n      int
	kind   byte // of the frames: kindSnapEntriesLease when each names its lease
}

// all yields the entries, sorted by key. Their keys and values share the
// frames' bytes.
func (se *snapEntries) all() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		for _, p := range se.frames {
			d := codec.Decoder{P: p}
			d.Byte()
			for range d.Uvarint() {
				key, value := d.Bytes(), d.Bytes()
				r, cr, v := d.Uvarint(), d.Uvarint(), d.Uvarint()
				e := Entry{Value: value, Revision: int64(r), CreateRevision: int64(cr), Version: int64(v)}
				if se.kind == kindSnapEntriesLease {
					e.Lease = int64(d.Uvarint())
				}
				if len(key) > 0 {
					e.Key = unsafe.String(&key[0], len(key))
				}
				if !yield(e) {
					return
				}
			}
		}
	}
}

// entries returns the entries, each with its own copy of its bytes.
func (se *snapEntries) entries() []*Entry {
	out := make([]*Entry, 0, se.n)
	for e := range se.all() {
		e.Key, e.Value = strings.Clone(e.Key), bytes.Clone(e.Value)
		out = append(out, &e)
	}
	return out
}

// readSnapshot reads a snapshot written by writeSnapshot. It checks every
// frame, entry and lease: keys valid and in strictly increasing order,
// revisions within the snapshot's, lease IDs increasing, the counts, and
// nothing after the entries. A damaged snapshot is a *snapshotError with
// the offset of the damage. The entries it returns hold the frames'
// payloads, about the file's size.
func readSnapshot(r io.Reader) (*snapEntries, []Lease, int64, error) {
	fr := newFrameReader(r)
	h, err := readSnapHeader(fr)
	if err != nil {
		return nil, nil, 0, err
	}
	leases, err := readSnapLeases(fr, h.leases)
	if err != nil {
		return nil, nil, 0, err
	}
	se, err := readSnapEntries(fr, h)
	if err != nil {
		return nil, nil, 0, err
	}
	if _, err := fr.r.ReadByte(); err != io.EOF {
		if err != nil {
			return nil, nil, 0, err
		}
		return nil, nil, 0, badSnap(fr.off, "data after the last entry")
	}
	return se, leases, int64(h.rev), nil
}

// snapHeader is what a snapshot's header says.
type snapHeader struct {
	rev     uint64 // the revision the snapshot holds
	entries uint64 // the number of entries
	leases  uint64 // the number of leases
	kind    byte   // the kind of the entries' frames
}

// badSnap returns the *snapshotError of damage at off.
func badSnap(off int64, format string, args ...any) error {
	return &snapshotError{off, fmt.Errorf(format, args...)}
}

// readSnapHeader reads a snapshot's magic and header frame.
func readSnapHeader(fr *frameReader) (snapHeader, error) {
	var magic [len(snapMagic)]byte
	if _, err := io.ReadFull(fr.r, magic[:]); err != nil || string(magic[:]) != snapMagic {
		return snapHeader{}, &snapshotError{0, errors.New("not a kvs snapshot (bad magic)")}
	}
	fr.off = int64(len(snapMagic))
	p, off, err := fr.next()
	if err != nil {
		return snapHeader{}, badSnap(off, "header: %v", unexpectedEOF(err))
	}
	d := codec.Decoder{P: p}
	kind := d.Byte()
	h := snapHeader{rev: d.Uvarint(), entries: d.Uvarint(), kind: kindSnapEntries}
	if len(d.P) > 0 {
		if h.leases = d.Uvarint(); h.leases == 0 {
			return snapHeader{}, badSnap(off, "bad header")
		}
	}
	if d.Err != nil || kind != kindSnapHeader || len(d.P) != 0 || h.rev > 1<<62 {
		return snapHeader{}, badSnap(off, "bad header")
	}
	if h.leases > 0 {
		h.kind = kindSnapEntriesLease
	}
	return h, nil
}

// readSnapLeases reads the frames of a snapshot's n leases.
func readSnapLeases(fr *frameReader, n uint64) ([]Lease, error) {
	var leases []Lease
	if n > 0 {
		leases = make([]Lease, 0, min(n, 1<<16))
	}
	for uint64(len(leases)) < n {
		p, off, err := fr.next()
		if err != nil {
			return nil, badSnap(off, "after %d of %d leases: %v", len(leases), n, unexpectedEOF(err))
		}
		d := codec.Decoder{P: p}
		kind, m := d.Byte(), d.Uvarint()
		if d.Err != nil || kind != kindSnapLeases || m == 0 || m > n-uint64(len(leases)) {
			return nil, badSnap(off, "bad leases frame")
		}
		for range m {
			id, ttl := d.Uvarint(), d.Uvarint()
			switch {
			case d.Err != nil:
				return nil, badSnap(off, "lease %d: %v", len(leases), d.Err)
			case id == 0 || id > MaxLeaseID || len(leases) > 0 && int64(id) <= leases[len(leases)-1].ID:
				return nil, badSnap(off, "lease %d: bad or unordered ID %d", len(leases), id)
			case ttl == 0 || ttl > uint64(1<<62/time.Millisecond):
				return nil, badSnap(off, "lease %d: bad TTL of %d ms", id, ttl)
			}
			leases = append(leases, Lease{ID: int64(id), TTL: time.Duration(ttl) * time.Millisecond})
		}
		if len(d.P) != 0 {
			return nil, badSnap(off, "%d bytes after the last lease of a frame", len(d.P))
		}
	}
	return leases, nil
}

// readSnapEntries reads the frames of a snapshot's entries, which h
// describes, and checks each entry.
func readSnapEntries(fr *frameReader, h snapHeader) (*snapEntries, error) {
	se := &snapEntries{kind: h.kind}
	var prev []byte
	for uint64(se.n) < h.entries {
		fr.buf = nil // the frame is kept: read the next into a new buffer
		p, off, err := fr.next()
		if err != nil {
			return nil, badSnap(off, "after %d of %d entries: %v", se.n, h.entries, unexpectedEOF(err))
		}
		d := codec.Decoder{P: p}
		kind, n := d.Byte(), d.Uvarint()
		if d.Err != nil || kind != h.kind || n == 0 || n > h.entries-uint64(se.n) {
			return nil, badSnap(off, "bad entries frame")
		}
		for range n {
			key, value := d.Bytes(), d.Bytes()
			r, cr, v := d.Uvarint(), d.Uvarint(), d.Uvarint()
			var lease uint64
			if h.kind == kindSnapEntriesLease {
				lease = d.Uvarint()
			}
			switch {
			case d.Err != nil:
				return nil, badSnap(off, "entry %d: %v", se.n, d.Err)
			case !ValidKey(string(key)):
				return nil, badSnap(off, "entry %d: invalid key %q", se.n, key)
			case se.n > 0 && bytes.Compare(key, prev) <= 0:
				return nil, badSnap(off, "entry %d: key %q out of order", se.n, key)
			case len(value) == 0:
				return nil, badSnap(off, "entry %q: empty value", key)
			case cr == 0 || cr > r || r > h.rev || v == 0 || v > r-cr+1:
				return nil, badSnap(off, "entry %q: bad revisions %d/%d/%d", key, r, cr, v)
			case lease > MaxLeaseID:
				return nil, badSnap(off, "entry %q: bad lease %d", key, lease)
			}
			prev = key
			se.n++
		}
		if len(d.P) != 0 {
			return nil, badSnap(off, "%d bytes after the last entry of a frame", len(d.P))
		}
		se.frames = append(se.frames, p)
	}
	return se, nil
}

func unexpectedEOF(err error) error {
	if err == io.EOF {
		return errors.New("file ends early")
	}
	return err
}
