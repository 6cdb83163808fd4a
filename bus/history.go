package bus

import (
	"iter"
	"slices"
	"sort"

	"github.com/kvsdb/kvs/kv"
)

// history is the hub's retained feed. Each change's key and payload (its
// encoding, or its value when the hub does not encode) are packed into
// large byte blocks, and a ring of pointer-free records indexes them, so
// that the garbage collector has nothing to scan in it however many changes
// it holds. (With an event, a key and a buffer per change, marking the
// history was most of the collector's work under a write load.)
type history struct {
	ring    []record // oldest at head
	head, n int
	bytes   int64 // what the retained changes take, by record.size

	// blocks[i] is block number first+i. Only the last one is filled; the
	// others are never written again, so events may share their bytes.
	blocks    [][]byte
	first     int64
	blockSize int
}

// record locates one retained change: its key, then its payload, are
// block[off:end] of block number block.
type record struct {
	rev    int64
	block  int64
	off    int
	end    int
	keyLen int
	op     kv.Op
}

// recordOverhead is about what a record takes beside its bytes.
const recordOverhead = 48

func (r *record) size() int64 { return int64(r.end-r.off) + recordOverhead }

func newHistory(changes int, maxBytes int64) history {
	return history{
		ring:      make([]record, changes),
		blockSize: int(min(max(maxBytes/16, 4<<10), 1<<20)),
	}
}

// at returns the i-th oldest record.
func (h *history) at(i int) *record { return &h.ring[(h.head+i)%len(h.ring)] }

// add retains c, which the caller made room for (see Hub.appendLocked), and
// returns its payload: encode's encoding of it, or its value when encode
// is nil. The payload's bytes are never written again.
func (h *history) add(c *kv.Change, encode func([]byte, *kv.Change) []byte) []byte {
	need := len(c.Key) + len(c.Value)
	if encode != nil {
		need += 64 // about what the encoding adds to the key and value
	}
	for {
		blk := h.fill(need)
		off := len(blk)
		b := append(blk, c.Key...)
		if encode != nil {
			b = encode(b, c)
		} else {
			b = append(b, c.Value...)
		}
		if len(b) > cap(blk) {
			// The guess was short and append moved the bytes: encode
			// again into a block that has room.
			need = len(b) - off
			h.seal()
			continue
		}
		h.blocks[len(h.blocks)-1] = b
		r := record{rev: c.Revision, block: h.first + int64(len(h.blocks)) - 1, off: off, end: len(b), keyLen: len(c.Key), op: c.Op}
		*h.at(h.n) = r
		h.n++
		h.bytes += r.size()
		return b[off+r.keyLen : r.end : r.end]
	}
}

// fill returns the block being filled, with room for need more bytes.
func (h *history) fill(need int) []byte {
	if len(h.blocks) > 0 {
		if blk := h.blocks[len(h.blocks)-1]; cap(blk)-len(blk) >= need {
			return blk
		}
		h.seal()
	}
	h.blocks = append(h.blocks, make([]byte, 0, max(h.blockSize, need)))
	return h.blocks[len(h.blocks)-1]
}

// seal ends the block being filled: the next change starts a new one. A
// block that no record uses is dropped.
func (h *history) seal() {
	last := len(h.blocks) - 1
	if h.n == 0 || h.at(h.n-1).block < h.first+int64(last) {
		h.blocks[last] = nil
		h.blocks = h.blocks[:last]
		return
	}
	h.blocks[last] = slices.Clip(h.blocks[last])
}

// dropOldest forgets the oldest change, and the blocks that no record uses
// any more but the one being filled.
func (h *history) dropOldest() {
	h.bytes -= h.at(0).size()
	h.head = (h.head + 1) % len(h.ring)
	h.n--
	keep := h.first + int64(len(h.blocks)) - 1
	if h.n > 0 {
		keep = h.at(0).block
	}
	for h.first < keep {
		h.blocks[0] = nil
		h.blocks = h.blocks[1:]
		h.first++
	}
}

// replay returns the records of the changes from revision from on that
// match f, with the blocks that hold them.
func (h *history) replay(f Filter, from int64, encoded bool) replay {
	var rp replay
	for i := sort.Search(h.n, func(i int) bool { return h.at(i).rev >= from }); i < h.n; i++ {
		r := h.at(i)
		if f.matchBytes(h.key(r)) {
			rp.records = append(rp.records, *r)
		}
	}
	if len(rp.records) > 0 {
		rp.first = rp.records[0].block
		rp.blocks = slices.Clone(h.blocks[rp.first-h.first:])
		rp.encoded = encoded
	}
	return rp
}

func (h *history) key(r *record) []byte {
	return h.blocks[r.block-h.first][r.off : r.off+r.keyLen]
}

// replay is the retained part of the feed a subscription asked for.
type replay struct {
	records []record
	blocks  [][]byte // blocks[i] is block number first+i
	first   int64
	encoded bool // payloads are Event.Data, not Change.Value
}

// events yields the replayed changes as events, each its own.
func (rp *replay) events() iter.Seq[*kv.Event] {
	return func(yield func(*kv.Event) bool) {
		for i := range rp.records {
			r := &rp.records[i]
			blk := rp.blocks[r.block-rp.first]
			ev := &kv.Event{Change: kv.Change{
				Op:       r.op,
				Key:      string(blk[r.off : r.off+r.keyLen]),
				Revision: r.rev,
			}}
			payload := blk[r.off+r.keyLen : r.end : r.end]
			if rp.encoded {
				ev.Data = payload
			} else if r.op == kv.OpSet {
				ev.Value = payload
			}
			if !yield(ev) {
				return
			}
		}
	}
}
