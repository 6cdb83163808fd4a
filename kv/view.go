package kv

import (
	"bytes"
	"iter"
	"slices"
	"strings"
)

// A View is a read-only snapshot of a Store's entries: those whose keys
// start with a prefix, at one revision, sorted by key. It is what Snapshot
// returns without an *Entry per key: it holds the position of each entry
// in the store's slabs (16 bytes a key, with 8 bytes of its key for
// sorting), the entries changed while it was
// taken, and, while it is kept, the slabs that hold its entries, which
// the store may replace meanwhile. A view of every key (prefix "") holds
// the leases at its revision too. A View is safe for concurrent use.
type View struct {
	rev    int64
	leases []Lease    // prefix "" only: every lease at rev, sorted by ID
	slabs  [][][]byte // by shard, by slab ID
	refs   []viewRef  // the entries not in extra, sorted by key
	extra  []*Entry   // the entries of keys changed while the view was taken, sorted by key
}

// viewRef locates an entry of a View: ref is shard<<posBits | position;
// pre holds 8 bytes of its key (see View.sort).
type viewRef struct{ pre, ref uint64 }

// View returns the entries whose keys start with prefix, and the revision
// they are consistent with: they hold exactly the changes up to and
// including Rev. Like Snapshot, it never blocks writers for longer than one
// shard takes to copy (a copy of its index, for prefix "", else of the
// positions of the keys with the prefix).
func (s *Store) View(prefix string) *View {
	rec := &recorder{prefix: prefix}
	s.recMu.Lock()
	s.recorders[rec] = struct{}{}
	s.recMu.Unlock()

	v := &View{slabs: make([][][]byte, len(s.shards))}
	if prefix == "" {
		v.refs = make([]viewRef, 0, s.Len()+len(s.shards)*16)
	}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.RLock()
		if prefix == "" {
			v.refs = sh.t.positions(v.refs, uint64(i))
		} else {
			v.refs = sh.t.positionsWithPrefix(v.refs, uint64(i), prefix)
		}
		v.slabs[i] = sh.t.slabBytes()
		sh.mu.RUnlock()
	}

	s.recMu.Lock()
	delete(s.recorders, rec)
	v.rev = s.rev.Load()
	if prefix == "" {
		v.leases = s.snapshotLeasesLocked()
	}
	s.recMu.Unlock()

	// Keys changed during the copy may have been read before or after
	// their change: take their state at rev from the recorder instead.
	if len(rec.final) > 0 {
		kept := v.refs[:0]
		for _, r := range v.refs {
			if _, changed := rec.final[string(v.key(r.ref))]; !changed {
				kept = append(kept, r)
			}
		}
		v.refs = kept
		for _, e := range rec.final {
			if e != nil {
				v.extra = append(v.extra, e)
			}
		}
		slices.SortFunc(v.extra, func(a, b *Entry) int { return strings.Compare(a.Key, b.Key) })
	}
	v.sort()
	return v
}

// Rev returns the revision the view is consistent with.
func (v *View) Rev() int64 { return v.rev }

// Leases returns, for a view of every key, every lease at the view's
// revision (expired ones too, while their keys are not deleted), sorted by
// ID, with its ID and TTL; nil for a view of a prefix.
func (v *View) Leases() []Lease { return v.leases }

// Len returns the number of entries in the view.
func (v *View) Len() int { return len(v.refs) + len(v.extra) }

// All yields the view's entries, sorted by key. Each Entry's Key and
// Value never change, and may be kept.
func (v *View) All() iter.Seq[Entry] {
	return func(yield func(Entry) bool) {
		refs, extra := v.refs, v.extra
		for len(refs) > 0 || len(extra) > 0 {
			var e Entry
			if len(extra) == 0 || len(refs) > 0 && string(v.key(refs[0].ref)) < extra[0].Key {
				readRecord(v.record(refs[0].ref), &e)
				refs = refs[1:]
			} else {
				e = *extra[0]
				extra = extra[1:]
			}
			if !yield(e) {
				return
			}
		}
	}
}

// Entries returns the view's entries as a slice, sorted by key, each with
// its own *Entry (one allocation for all of them).
func (v *View) Entries() []*Entry {
	all := make([]Entry, 0, v.Len())
	out := make([]*Entry, 0, v.Len())
	for e := range v.All() {
		all = append(all, e)
		out = append(out, &all[len(all)-1])
	}
	return out
}

// record returns the bytes from the record at ref to the end of its slab.
func (v *View) record(ref uint64) []byte {
	pos := ref & posMask
	return v.slabs[ref>>posBits][pos>>offBits][pos&offMask:]
}

func (v *View) key(ref uint64) []byte { return keyOf(v.record(ref)) }

// sort sorts refs by key. Keys often share a long prefix (a namespace, or
// padded numbers), and a comparison that reads two keys from the slabs is
// two cache misses: so each ref is sorted by the 8 bytes of its key after
// the prefix that all keys share, big-endian in an integer, and keys are
// read only when those are equal.
func (v *View) sort() {
	if len(v.refs) < 2 {
		return
	}
	first := v.key(v.refs[0].ref)
	common := len(first)
	for _, r := range v.refs[1:] {
		k := v.key(r.ref)
		n := min(common, len(k))
		i := 0
		for i < n && k[i] == first[i] {
			i++
		}
		common = i
	}
	for i := range v.refs {
		var pre uint64
		k := v.key(v.refs[i].ref)[common:]
		for j := range 8 {
			pre <<= 8
			if j < len(k) {
				pre |= uint64(k[j])
			}
		}
		v.refs[i].pre = pre
	}
	slices.SortFunc(v.refs, func(a, b viewRef) int {
		switch {
		case a.pre < b.pre:
			return -1
		case a.pre > b.pre:
			return 1
		}
		return bytes.Compare(v.key(a.ref)[common:], v.key(b.ref)[common:])
	})
}
