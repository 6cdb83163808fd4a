// Package codec is the binary encoding that kv's data files (log records
// and snapshots) and wire's backups share: frames, each a length and a
// CRC-32C before its payload; counts written into a frame once its items
// are known; a decoder of a payload's parts; and which keys are valid. It
// uses the standard library only, so that kv and wire, which may import
// nothing else, can both use it. It holds no state: everything in it is
// safe for concurrent use.
package codec

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"slices"
	"unicode/utf8"
)

const (
	// FrameHeader is the size of a frame's header: the payload's length,
	// then its checksum, each a little-endian uint32.
	FrameHeader = 8
	// MaxFrame is the largest payload a frame may have.
	MaxFrame = 1 << 30
	// MaxKeyBytes is the longest valid key, in bytes.
	MaxKeyBytes = 1024
)

// Castagnoli is the CRC-32C table of every checksum of the formats.
var Castagnoli = crc32.MakeTable(crc32.Castagnoli)

// FrameCRC returns the checksum of a frame with the given header and
// payload: the CRC-32C of the header's first four bytes (the length)
// followed by the payload.
func FrameCRC(header, payload []byte) uint32 {
	return crc32.Update(crc32.Checksum(header[:4], Castagnoli), Castagnoli, payload)
}

// BeginFrame appends a frame header to b, to be completed by EndFrame once
// the payload has been appended after it.
func BeginFrame(b []byte) []byte { return append(b, make([]byte, FrameHeader)...) }

// EndFrame completes the header of the frame that starts at start in b and
// runs to its end.
func EndFrame(b []byte, start int) {
	h, p := b[start:start+FrameHeader], b[start+FrameHeader:]
	binary.LittleEndian.PutUint32(h, uint32(len(p)))
	binary.LittleEndian.PutUint32(h[4:], FrameCRC(h, p))
}

// ReserveCount appends room for a count that is known only once the items
// after it are appended, and returns b and where the count goes, for
// PutCount.
func ReserveCount(b []byte) ([]byte, int) {
	return append(b, make([]byte, binary.MaxVarintLen64)...), len(b)
}

// PutCount writes n as a uvarint at at, reserved by ReserveCount, and
// closes the rest of the gap, moving what follows.
func PutCount(b []byte, at int, n uint64) []byte {
	var cnt [binary.MaxVarintLen64]byte
	cn := binary.PutUvarint(cnt[:], n)
	copy(b[at:], cnt[:cn])
	return append(b[:at+cn], b[at+binary.MaxVarintLen64:]...)
}

// AppendEntry appends an entry as snapshots and backups hold it: its key
// and its value, each a uvarint length and then its bytes, and its
// revision, create revision and version, each a uvarint.
func AppendEntry(b []byte, key string, value []byte, rev, createRev, version int64) []byte {
	b = binary.AppendUvarint(b, uint64(len(key)))
	b = append(b, key...)
	b = binary.AppendUvarint(b, uint64(len(value)))
	b = append(b, value...)
	b = binary.AppendUvarint(b, uint64(rev))
	b = binary.AppendUvarint(b, uint64(createRev))
	return binary.AppendUvarint(b, uint64(version))
}

// ReadPayload reads a payload of size bytes from r into buf's array and
// returns it. It grows the array as the bytes arrive, a MiB at a time, so
// that a damaged length allocates no more than the data there is. When r
// ends first, it returns the bytes read and io.ErrUnexpectedEOF.
func ReadPayload(r io.Reader, buf []byte, size uint32) ([]byte, error) {
	p := buf[:0]
	for len(p) < int(size) {
		n := min(int(size)-len(p), 1<<20)
		p = slices.Grow(p, n)
		got, err := io.ReadFull(r, p[len(p):len(p)+n])
		p = p[:len(p)+got]
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return p, io.ErrUnexpectedEOF
		} else if err != nil {
			return p, err
		}
	}
	return p, nil
}

// Decoder reads the parts of a payload, P, from its start. The first
// failure sticks in Err: after it every read returns zero.
type Decoder struct {
	P   []byte
	Err error
}

var (
	errShort   = errors.New("payload cut short")
	errUvarint = errors.New("bad number")
)

// Byte returns the next byte.
func (d *Decoder) Byte() byte {
	if d.Err != nil || len(d.P) == 0 {
		d.Err = errShort
		return 0
	}
	b := d.P[0]
	d.P = d.P[1:]
	return b
}

// Uvarint returns the next uvarint.
func (d *Decoder) Uvarint() uint64 {
	if d.Err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.P)
	if n <= 0 {
		d.Err = errUvarint
		return 0
	}
	d.P = d.P[n:]
	return v
}

// Bytes returns the next length-prefixed bytes (a uvarint length, then
// the bytes), a slice of P with no room to append.
func (d *Decoder) Bytes() []byte {
	n := d.Uvarint()
	if d.Err != nil {
		return nil
	}
	if n > uint64(len(d.P)) {
		d.Err = errShort
		return nil
	}
	b := d.P[:n:n]
	d.P = d.P[n:]
	return b
}

// ValidKey reports whether key is a valid key: 1 to MaxKeyBytes bytes of
// UTF-8 with no control characters (U+0000 to U+001F and U+007F).
func ValidKey(key string) bool {
	if len(key) == 0 || len(key) > MaxKeyBytes {
		return false
	}
	for i := 0; i < len(key); {
		c := key[i]
		if c < utf8.RuneSelf {
			if c < 0x20 || c == 0x7f {
				return false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(key[i:])
		if r == utf8.RuneError && n == 1 {
			return false
		}
		i += n
	}
	return true
}
