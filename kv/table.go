package kv

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"unsafe"
)

// A table holds one shard's entries, packed so that the garbage collector
// has next to nothing to scan or mark however many there are (see
// docs/design.md, Memory):
//
//   - Each entry is one record in a slab, a large []byte without pointers:
//     its key, its revisions and version as varints, and its value. A
//     record is written once and never changed: a set writes a new record
//     and a delete leaves the old one dead. Entries handed out share the
//     slab's bytes (Entry.Key and Entry.Value point into it), so a reader
//     keeps what it read however the table changes later, and holds the
//     slab alive for as long as it keeps them.
//   - The index is an open-addressing hash table of uint64 slots (linear
//     probing, no tombstones): 24 bits of the key's hash beside the
//     record's position, a slab ID and an offset in it.
//   - Dead records are reclaimed by moving the live records of the slab
//     with the fewest into the slab being filled, once dead bytes are a
//     quarter of the table's: the old slab is then dropped, and the
//     collector frees it once no reader holds a part of it. A slab whose
//     records are all dead is dropped at once.
//
// A table is not safe for concurrent use: the shard's lock guards it.
// Readers (get, positions) may share it; set, del and compaction need it
// alone.
type table struct {
	seed  maphash.Seed
	slots []uint64 // 0 = empty; else tag<<posBits | position
	n     int      // occupied slots

	slabs  []slab   // by ID; ID 0 is never used, so that no slot is 0
	free   []uint32 // IDs of dropped slabs, to use again
	active uint32   // the slab being filled, 0 = none
	used   int64    // bytes written to the slabs held
	live   int64    // bytes of live records
	alloc  int64    // capacity of the slabs held
	// compactAt is the dead bytes (used - live) below which compaction is
	// not tried again: set when a try found no slab worth moving.
	compactAt int64
}

// slab is a block of records.
type slab struct {
	b    []byte // the records written; never written again below len(b)
	live int64  // bytes of the live records in b
}

const (
	// slabMax is the capacity of a full-grown shared slab. A table's
	// first slabs are smaller, growing with it, so that a small shard
	// does not reserve much.
	slabMax = 256 << 10
	slabMin = 4 << 10
	// A record larger than bigRecord gets a slab of its own, dropped when
	// the record dies.
	bigRecord = slabMax / 4

	offBits = 20 // a position is slab ID << offBits | offset in the slab
	offMask = 1<<offBits - 1
	posBits = 40
	posMask = 1<<posBits - 1
	tagBits = 64 - posBits
	maxSlab = 1<<(posBits-offBits) - 1 // the largest slab ID
)

func tagOf(h uint64) uint64 { return h >> posBits }

// home returns the slot where a key whose tag is tag is looked for first:
// the tag scaled to the table's size. It needs no more of the hash, so
// the table grows without reading keys; past 2^24 slots, homes are spread
// out and probes grow longer.
func (t *table) home(tag uint64) int { return int(tag * uint64(len(t.slots)) >> tagBits) }

// find returns the slot that holds key, whose hash is h, and true; or the
// empty slot where it would go, and false. The table must have slots.
func (t *table) find(h uint64, key string) (int, bool) {
	tag := tagOf(h)
	for i := t.home(tag); ; {
		s := t.slots[i]
		if s == 0 {
			return i, false
		}
		if s>>posBits == tag {
			b := t.record(s & posMask)
			n, w := uvarint(b, 0)
			if string(b[w:w+int(n)]) == key {
				return i, true
			}
		}
		if i++; i == len(t.slots) {
			i = 0
		}
	}
}

// record returns the bytes from the record at pos to the end of its slab.
func (t *table) record(pos uint64) []byte {
	return t.slabs[pos>>offBits].b[pos&offMask:]
}

func (t *table) keyAt(pos uint64) []byte {
	b := t.record(pos)
	n, w := binary.Uvarint(b)
	return b[w : w+int(n)]
}

// get sets *e to key's entry, whose Key and Value share the slab's bytes,
// and reports whether there is one.
func (t *table) get(h uint64, key string, e *Entry) bool {
	if t.n == 0 {
		return false
	}
	i, ok := t.find(h, key)
	if ok {
		readRecord(t.record(t.slots[i]&posMask), e)
	}
	return ok
}

// set makes e key's entry, in place of the one it has, if any, and
// returns the lease of the entry it replaced (0 for none). The table
// copies e's bytes: e is not kept.
func (t *table) set(h uint64, e *Entry) (oldLease int64) {
	if len(t.slots) == 0 || (t.n+1)*5 > len(t.slots)*4 {
		t.resize(max(16, len(t.slots)*3/2))
	}
	i, ok := t.find(h, e.Key)
	old := t.slots[i]
	if ok {
		oldLease = recordLease(t.record(old & posMask))
	}
	t.slots[i] = tagOf(h)<<posBits | t.append(e)
	if ok {
		t.kill(old & posMask)
	} else {
		t.n++
	}
	t.maybeCompact()
	return oldLease
}

// del removes key's entry and reports whether it had one, and its lease.
func (t *table) del(h uint64, key string) (oldLease int64, ok bool) {
	if t.n == 0 {
		return 0, false
	}
	i, ok := t.find(h, key)
	if !ok {
		return 0, false
	}
	oldLease = recordLease(t.record(t.slots[i] & posMask))
	t.kill(t.slots[i] & posMask)
	t.removeSlot(i)
	t.n--
	if t.n == 0 {
		// Every record is dead: their slabs went as they died (see kill
		// and room), but for the one being filled.
		t.slots = nil
		if t.active != 0 {
			t.drop(t.active)
			t.active = 0
		}
		return oldLease, true
	}
	if len(t.slots) > 64 && t.n*4 < len(t.slots) {
		t.resize(t.n * 2)
	}
	t.maybeCompact()
	return oldLease, true
}

// removeSlot empties slot i and moves back the slots after it that would
// no longer be found (backward-shift deletion).
func (t *table) removeSlot(i int) {
	n := len(t.slots)
	for j := i; ; {
		if j++; j == n {
			j = 0
		}
		s := t.slots[j]
		if s == 0 {
			break
		}
		// s may move to i unless its home lies cyclically in (i, j].
		h := t.home(s >> posBits)
		if i <= j && (h <= i || h > j) || i > j && h <= i && h > j {
			t.slots[i] = s
			i = j
		}
	}
	t.slots[i] = 0
}

// resize moves the slots into a table of size slots.
func (t *table) resize(size int) {
	old := t.slots
	t.slots = make([]uint64, size)
	for _, s := range old {
		if s != 0 {
			i := t.home(s >> posBits)
			for t.slots[i] != 0 {
				if i++; i == size {
					i = 0
				}
			}
			t.slots[i] = s
		}
	}
}

// reserve sizes the index for n more keys, two thirds full, where
// lookups of missing keys (every insert) take few probes.
func (t *table) reserve(n int) {
	if want := (t.n + n) * 3 / 2; want > len(t.slots) {
		t.resize(want + 1)
	}
}

// append writes e's record and returns its position.
func (t *table) append(e *Entry) uint64 {
	n := recordLen(e)
	id, off := t.room(n)
	s := &t.slabs[id]
	s.b = appendRecord(s.b, e)
	s.live += int64(n)
	t.used += int64(n)
	t.live += int64(n)
	return uint64(id)<<offBits | uint64(off)
}

// appendRaw copies the record rec and returns its new position.
func (t *table) appendRaw(rec []byte) uint64 {
	id, off := t.room(len(rec))
	s := &t.slabs[id]
	s.b = append(s.b, rec...)
	s.live += int64(len(rec))
	t.used += int64(len(rec))
	t.live += int64(len(rec))
	return uint64(id)<<offBits | uint64(off)
}

// room returns the slab, and the offset in it, where n bytes go without
// the slab growing: a slab of its own for a big record, else the active
// slab, or a new one when that is full.
func (t *table) room(n int) (uint32, int) {
	if n > bigRecord {
		return t.newSlab(n), 0
	}
	if t.active != 0 {
		if s := &t.slabs[t.active]; cap(s.b)-len(s.b) >= n {
			return t.active, len(s.b)
		}
	}
	// The slab being filled is full: if none of its records lives, it
	// goes now (kill leaves it while it is filled).
	if t.active != 0 && t.slabs[t.active].live == 0 {
		t.drop(t.active)
	}
	// The next slab is an eighth of what the table holds, so that what it
	// reserves beyond its records stays small, within slabMin..slabMax.
	size := slabMin
	for size < slabMax && int64(size) < t.used/8 {
		size *= 2
	}
	t.active = t.newSlab(max(size, n))
	return t.active, 0
}

func (t *table) newSlab(size int) uint32 {
	var id uint32
	if k := len(t.free); k > 0 {
		id, t.free = t.free[k-1], t.free[:k-1]
	} else {
		if len(t.slabs) == 0 {
			t.slabs = append(t.slabs, slab{}) // ID 0 is never used
		}
		if len(t.slabs) > maxSlab {
			panic(fmt.Sprintf("kv: a shard holds %d slabs, the most it can: use more shards", maxSlab))
		}
		id = uint32(len(t.slabs))
		t.slabs = append(t.slabs, slab{})
	}
	t.slabs[id] = slab{b: make([]byte, 0, size)}
	t.alloc += int64(size)
	return id
}

// kill records that the record at pos is dead, and drops its slab if no
// record in it lives and it is not being filled.
func (t *table) kill(pos uint64) {
	id := uint32(pos >> offBits)
	s := &t.slabs[id]
	n := readRecord(s.b[pos&offMask:], nil)
	s.live -= int64(n)
	t.live -= int64(n)
	if s.live == 0 && id != t.active {
		t.drop(id)
	}
}

// drop releases slab id: the collector frees it once no reader holds it.
func (t *table) drop(id uint32) {
	s := &t.slabs[id]
	t.used -= int64(len(s.b))
	t.live -= s.live
	t.alloc -= int64(cap(s.b))
	*s = slab{}
	t.free = append(t.free, id)
}

// maybeCompact moves the live records of the sealed slab with the fewest
// into the active slab, and drops it, once dead bytes are at least a
// quarter of the bytes written and a full slab's worth. One slab a call
// bounds the time a writer holds the shard.
func (t *table) maybeCompact() {
	dead := t.used - t.live
	if t.n == 0 || dead < slabMax || dead*4 < t.used || dead < t.compactAt {
		return
	}
	var victim uint32
	best := 0.75 // a slab at most three quarters live is worth moving
	for id := 1; id < len(t.slabs); id++ {
		s := &t.slabs[id]
		if uint32(id) == t.active || len(s.b) == 0 {
			continue
		}
		if r := float64(s.live) / float64(len(s.b)); r <= best {
			victim, best = uint32(id), r
		}
	}
	if victim == 0 {
		// The dead bytes are in the active slab or spread thin: try again
		// once a slab's worth more has died.
		t.compactAt = dead + slabMax
		return
	}
	t.compactAt = 0
	t.relocate(victim)
}

// relocate moves slab id's live records to the active slab and drops it.
func (t *table) relocate(id uint32) {
	b := t.slabs[id].b
	for off := 0; off < len(b); {
		n := readRecord(b[off:], nil)
		pos := uint64(id)<<offBits | uint64(off)
		key := keyOf(b[off:])
		tag := tagOf(maphash.Bytes(t.seed, key))
		for i := t.home(tag); t.slots[i] != 0; {
			if s := t.slots[i]; s&posMask == pos {
				t.slots[i] = s&^posMask | t.appendRaw(b[off:off+n])
				break
			}
			if i++; i == len(t.slots) {
				i = 0
			}
		}
		off += n
	}
	t.drop(id)
}

// positions appends the position of every entry to dst, each with shard
// in its top bits.
func (t *table) positions(dst []viewRef, shard uint64) []viewRef {
	for _, s := range t.slots {
		if s != 0 {
			dst = append(dst, viewRef{ref: shard<<posBits | s&posMask})
		}
	}
	return dst
}

// positionsWithPrefix appends the position of every entry whose key starts
// with prefix to dst, like positions.
func (t *table) positionsWithPrefix(dst []viewRef, shard uint64, prefix string) []viewRef {
	for _, s := range t.slots {
		if s != 0 {
			if k := t.keyAt(s & posMask); len(k) >= len(prefix) && string(k[:len(prefix)]) == prefix {
				dst = append(dst, viewRef{ref: shard<<posBits | s&posMask})
			}
		}
	}
	return dst
}

// slabBytes returns the records of each slab, by ID.
func (t *table) slabBytes() [][]byte {
	bs := make([][]byte, len(t.slabs))
	for i := range t.slabs {
		bs[i] = t.slabs[i].b
	}
	return bs
}

// A record is an entry in a slab:
//
//	uvarint(len(Key)) Key
//	uvarint(Revision) uvarint(Revision-CreateRevision) uvarint(Version)
//	uvarint(Lease) uvarint(len(Value)) Value
//
// The key comes first, for lookups and sorting; small numbers take one
// byte each (a key without a lease: one byte for it).

func recordLen(e *Entry) int {
	return uvarintLen(uint64(len(e.Key))) + len(e.Key) +
		uvarintLen(uint64(e.Revision)) + uvarintLen(uint64(e.Revision-e.CreateRevision)) + uvarintLen(uint64(e.Version)) +
		uvarintLen(uint64(e.Lease)) + uvarintLen(uint64(len(e.Value))) + len(e.Value)
}

func appendRecord(b []byte, e *Entry) []byte {
	b = binary.AppendUvarint(b, uint64(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.AppendUvarint(b, uint64(e.Revision))
	b = binary.AppendUvarint(b, uint64(e.Revision-e.CreateRevision))
	b = binary.AppendUvarint(b, uint64(e.Version))
	b = binary.AppendUvarint(b, uint64(e.Lease))
	b = binary.AppendUvarint(b, uint64(len(e.Value)))
	return append(b, e.Value...)
}

// readRecord decodes the record at the start of b, which a table wrote,
// into *e, unless e is nil, and returns its length. The entry's Key and
// Value share b's bytes; Value's capacity ends with it, so that appending
// to it copies.
func readRecord(b []byte, e *Entry) int {
	kn, i := uvarint(b, 0)
	k := i
	i += int(kn)
	rev, i := uvarint(b, i)
	age, i := uvarint(b, i)
	ver, i := uvarint(b, i)
	lease, i := uvarint(b, i)
	vn, i := uvarint(b, i)
	if e != nil {
		e.Key = ""
		if kn > 0 {
			e.Key = unsafe.String(&b[k], int(kn))
		}
		e.Value = b[i : i+int(vn) : i+int(vn)]
		e.Revision, e.CreateRevision, e.Version = int64(rev), int64(rev-age), int64(ver)
		e.Lease = int64(lease)
	}
	return i + int(vn)
}

// recordLease returns the lease of the record at the start of b.
func recordLease(b []byte) int64 {
	kn, i := uvarint(b, 0)
	i += int(kn)
	for range 3 { // the revision, its age and the version
		_, i = uvarint(b, i)
	}
	lease, _ := uvarint(b, i)
	return int64(lease)
}

// uvarint decodes the uvarint at b[i:], which a table wrote, and returns
// it and the index after it. Most are one byte.
func uvarint(b []byte, i int) (uint64, int) {
	if c := b[i]; c < 0x80 {
		return uint64(c), i + 1
	}
	x, n := binary.Uvarint(b[i:])
	return x, i + n
}

// keyOf returns the key of the record at the start of b.
func keyOf(b []byte) []byte {
	n, w := binary.Uvarint(b)
	return b[w : w+int(n)]
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}
