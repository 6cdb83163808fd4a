package bus

import (
	"sort"

	"github.com/kvsdb/kvs/kv"
)

// history is the hub's retained feed. Each change's key and payload (its
// encoding, or its value when the hub does not encode) are packed into
// large byte blocks, and a ring of pointer-free retained values indexes
// them, so that the garbage collector has nothing to scan in it however
// many changes it holds. (With an event, a key and a buffer per change, marking the
// history was most of the collector's work under a write load.)
type history struct {
	ring    []retained // oldest at head
	head, n int
	bytes   int64 // what the retained changes take, by retained.size

	// blocks[i] is block number first+i. Only the last one is filled; the
	// others are never written again, so events may share their bytes.
	blocks    [][]byte
	first     int64
	blockSize int
}

// retained locates one retained change: its key, then its payload, are
// block[off:end] of block number block.
type retained struct {
	rev    int64
	block  int64
	off    int
	end    int
	keyLen int
	// spare is the unused end of the block, counted with the block's last
	// retained change so that the bytes bound holds what the blocks take.
	spare int
	op    kv.Op
}

// retainedOverhead is about what a retained change takes beside its bytes.
const retainedOverhead = 56

func (r *retained) size() int64 { return int64(r.end-r.off+r.spare) + retainedOverhead }

// newHistory returns a history of at most changes changes and about
// maxBytes bytes.
func newHistory(changes int, maxBytes int64) history {
	return history{
		ring:      make([]retained, min(int64(changes), maxBytes/retainedOverhead+1)),
		blockSize: int(min(max(maxBytes/16, 4<<10), 1<<20)),
	}
}

// at returns the i-th oldest retained change.
func (h *history) at(i int) *retained { return &h.ring[(h.head+i)%len(h.ring)] }

// add retains c, which the caller made room for (see Hub.appendLocked), and
// returns its payload: encode's encoding of it, or its value when encode
// is nil; and the capacity of the block that holds the payload, which a
// slice of the payload keeps from being freed. The payload's bytes are
// never written again.
func (h *history) add(c *kv.Change, encode func([]byte, *kv.Change) []byte) ([]byte, int) {
	if h.n == len(h.ring) {
		panic("bus: history add without room")
	}
	need := len(c.Key) + len(c.Value)
	if encode != nil {
		need += len(c.Key) + 64 // the encoding quotes the key again
	}
	blk := h.fill(need)
	off := len(blk)
	b := append(blk[off:off:cap(blk)], c.Key...)
	if encode != nil {
		b = encode(b, c)
	} else {
		b = append(b, c.Value...)
	}
	if len(b) <= cap(blk)-off {
		h.blocks[len(h.blocks)-1] = blk[:off+len(b)]
	} else {
		// The guess was short and append moved the change to a new
		// array: it becomes the block being filled.
		h.push(b)
		off = 0
	}
	r := retained{rev: c.Revision, block: h.first + int64(len(h.blocks)) - 1, off: off, end: off + len(b), keyLen: len(c.Key), op: c.Op}
	*h.at(h.n) = r
	h.n++
	h.bytes += r.size()
	return b[r.keyLen:len(b):len(b)], cap(h.blocks[len(h.blocks)-1])
}

// fill returns the block being filled, with room for need more bytes. A
// change of more than a quarter of a block gets a block of its own size,
// so that no block is left mostly empty.
func (h *history) fill(need int) []byte {
	if len(h.blocks) > 0 {
		if blk := h.blocks[len(h.blocks)-1]; cap(blk)-len(blk) >= need {
			return blk
		}
	}
	size := h.blockSize
	if need > size/4 {
		size = need
	}
	h.push(make([]byte, 0, size))
	return h.blocks[len(h.blocks)-1]
}

// push makes b the block being filled. The block filled until then is
// dropped if no retained change uses it; otherwise its unused end is
// counted with its last retained change, so that the bytes bound holds what the blocks take.
func (h *history) push(b []byte) {
	if last := len(h.blocks) - 1; last >= 0 {
		if h.n == 0 || h.at(h.n-1).block < h.first+int64(last) {
			h.blocks[last] = nil
			h.blocks = h.blocks[:last]
		} else {
			spare := cap(h.blocks[last]) - len(h.blocks[last])
			h.at(h.n - 1).spare += spare
			h.bytes += int64(spare)
		}
	}
	h.blocks = append(h.blocks, b)
}

// dropOldest forgets the oldest change, and the blocks that no retained change
// uses any more but the one being filled.
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

func (h *history) key(r *retained) []byte {
	return h.blocks[r.block-h.first][r.off : r.off+r.keyLen]
}

// payload returns r's payload and the capacity of the block that holds it.
func (h *history) payload(r *retained) ([]byte, int) {
	blk := h.blocks[r.block-h.first]
	return blk[r.off+r.keyLen : r.end : r.end], cap(blk)
}

// search returns the index of the oldest retained change at or after rev.
func (h *history) search(rev int64) int {
	return sort.Search(h.n, func(i int) bool { return h.at(i).rev >= rev })
}
