package bus

import (
	"bytes"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"
	"weak"

	"github.com/kvsdb/kvs/kv"
)

// ErrUnsubscribed is the Err of a subscription ended by its own Close.
var ErrUnsubscribed = errors.New("bus: unsubscribed")

// Options configures a Hub. The zero value of every field means its
// default.
type Options struct {
	// History is how many changes the hub retains for resuming
	// subscribers. Zero means 100000.
	History int
	// HistoryBytes bounds the memory the retained changes take (their keys
	// and encodings): the oldest go first. Zero means 64 MiB.
	HistoryBytes int64
	// Buffer is each subscriber's queue length: a subscriber that falls
	// further behind is dropped. Zero means 1024.
	Buffer int
	// BufferBytes bounds the memory of the events one subscriber holds:
	// those queued to it, and those its transport received and has not
	// yet let go of (Subscription.Done), replayed ones included. The
	// events of a revision (a transaction's are charged together) that
	// would take a subscriber past it drop the subscriber with
	// kv.ErrSlowConsumer, before any of them, unless the subscriber holds
	// nothing. Zero means 16 MiB.
	BufferBytes int64
	// TotalBufferBytes bounds the memory of the events all subscribers
	// together hold, each event counted once however many hold it. The
	// events of a revision that would take the total past it drop the
	// subscriber they were for with kv.ErrSlowConsumer, before any of
	// them. Zero means 256 MiB.
	TotalBufferBytes int64
	// Encode appends the wire encoding of a change to b. It runs once per
	// change, whatever the number of subscribers. The events then carry
	// Data and not Change.Value, which Data holds, so that the history
	// keeps each value once. Nil leaves Event.Data empty.
	Encode func(b []byte, c *kv.Change) []byte
}

// Hub is the in-process change feed: the store's Publisher, a bounded
// history, and a registry of subscribers.
type Hub struct {
	encode     func(b []byte, c *kv.Change) []byte
	buffer     int
	maxBytes   int64
	subBytes   int64 // Options.BufferBytes
	totalBytes int64 // Options.TotalBufferBytes

	// held is the Bytes of the events that subscribers hold, each counted
	// once. It grows only under mu; Subscription.Done lowers it.
	held atomic.Int64

	// mu guards everything below.
	mu        sync.Mutex
	peak      int64 // the highest held seen
	hist      history
	compacted int64 // newest revision no longer retained, 0 if none
	last      int64 // revision of the last published change
	subs      map[*Subscription]struct{}
	closed    bool
	slow      uint64 // subscribers dropped with kv.ErrSlowConsumer
	// shared holds the events made of retained changes that share the
	// history's bytes (see event), by change and More, while they live:
	// every subscriber that replays or receives such a change gets the
	// same event, which then counts once towards the total. (A change
	// whose two events both live counts twice: the total errs high.)
	shared map[sharedKey]weak.Pointer[kv.Event]
}

var _ kv.Publisher = (*Hub)(nil)

// New returns an empty Hub.
func New(opts Options) *Hub {
	if opts.History <= 0 {
		opts.History = 100000
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 1024
	}
	if opts.HistoryBytes <= 0 {
		opts.HistoryBytes = 64 << 20
	}
	if opts.BufferBytes <= 0 {
		opts.BufferBytes = 16 << 20
	}
	if opts.TotalBufferBytes <= 0 {
		opts.TotalBufferBytes = 256 << 20
	}
	return &Hub{
		encode:     opts.Encode,
		buffer:     opts.Buffer,
		maxBytes:   opts.HistoryBytes,
		subBytes:   opts.BufferBytes,
		totalBytes: opts.TotalBufferBytes,
		hist:       newHistory(opts.History, opts.HistoryBytes),
		subs:       make(map[*Subscription]struct{}),
		shared:     make(map[sharedKey]weak.Pointer[kv.Event]),
	}
}

// Publish appends changes, which must follow every change published
// before in revision order, to the history and queues them to every
// matching subscriber. The changes of one revision (a transaction) are
// consecutive and come in one call; a subscriber gets those it matches all
// together or none of them, and each but the last of them has More set.
// Publish never blocks: a subscriber whose queue cannot take a revision's
// events, or that they would take past a bound on memory, is dropped with
// kv.ErrSlowConsumer, before any of them.
func (h *Hub) Publish(changes []kv.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	var (
		p     publication
		match []int // the changes of a revision that a subscriber matches
	)
	for start := 0; start < len(changes); {
		rev := changes[start].Revision
		end := start + 1
		for end < len(changes) && changes[end].Revision == rev {
			end++
		}
		if rev <= h.last {
			panic("bus: publish out of revision order")
		}
		if len(h.subs) == 0 {
			for i := start; i < end; i++ {
				h.appendLocked(&changes[i])
			}
			start = end
			continue
		}
		p.reset(changes[start:end])
		for i := range p.changes {
			p.payloads[i], p.pins[i], p.places[i] = h.appendLocked(&p.changes[i])
			p.sizes[i] = eventBytes(&p.changes[i], p.payloads[i], p.pins[i])
		}
		for s := range h.subs {
			if rev < s.from {
				continue
			}
			match = match[:0]
			for i := range p.changes {
				if s.filter.match(p.changes[i].Key) {
					match = append(match, i)
				}
			}
			if len(match) > 0 {
				h.queueLocked(s, &p, match)
			}
		}
		h.settleLocked(&p)
		start = end
	}
}

// publication is the events of one revision that Publish queues: for each
// change, one with More set and one without, each made when a subscriber
// first needs it and then shared by every subscriber that does.
type publication struct {
	changes  []kv.Change
	payloads [][]byte // by change: see history.add
	pins     []int
	places   []place
	sizes    []int64     // by change: the Bytes of its events
	evs      []*kv.Event // by 2*change + more; nil until made
	queued   []int32     // by 2*change + more: the queues evs[i] went to
}

// reset readies p for the revision of changes, reusing its slices.
func (p *publication) reset(changes []kv.Change) {
	n := len(changes)
	p.changes = changes
	p.payloads = slices.Grow(p.payloads[:0], n)[:n]
	p.pins = slices.Grow(p.pins[:0], n)[:n]
	p.places = slices.Grow(p.places[:0], n)[:n]
	p.sizes = slices.Grow(p.sizes[:0], n)[:n]
	p.evs = slices.Grow(p.evs[:0], 2*n)[:2*n]
	clear(p.evs)
	p.queued = slices.Grow(p.queued[:0], 2*n)[:2*n]
	clear(p.queued)
}

// variant is the index in publication.evs of change i's event with or
// without More.
func variant(i int, more bool) int {
	if more {
		return 2*i + 1
	}
	return 2 * i
}

// queueLocked queues to s the events of the changes match (indexes into
// p.changes, in order) of one revision, all of them, or drops s: when its
// queue lacks room for them all, or they would take it or the total past
// their bounds. They are charged as a whole: to s, and to the total for
// those not made yet.
func (h *Hub) queueLocked(s *Subscription, p *publication, match []int) {
	// Only the hub sends on s.c, under mu: the room it sees can only grow
	// until it sends.
	if cap(s.c)-len(s.c) < len(match) {
		h.dropLocked(s, kv.ErrSlowConsumer)
		return
	}
	var need, fresh int64 // the events' Bytes; those of the ones to make
	for j, i := range match {
		need += p.sizes[i]
		if p.evs[variant(i, j < len(match)-1)] == nil {
			fresh += p.sizes[i]
		}
	}
	if !h.roomLocked(s, need) || fresh > 0 && !h.countLocked(fresh) {
		h.dropLocked(s, kv.ErrSlowConsumer)
		return
	}
	s.held.Add(need)
	for j, i := range match {
		more := j < len(match)-1
		v := variant(i, more)
		if p.evs[v] == nil {
			p.evs[v] = h.event(&p.changes[i], p.payloads[i], p.pins[i], p.places[i], more)
			// Hold it while Publish queues it, so that transports
			// letting go of it meanwhile never find it without
			// holders; the count of queues is added once, after.
			p.evs[v].Hold(publishing)
		}
		s.c <- p.evs[v]
		p.queued[v]++
	}
}

// settleLocked replaces Publish's hold on each event of p with the number
// of queues it went to, and stops counting those that every subscriber
// let go of already.
func (h *Hub) settleLocked(p *publication) {
	for v, ev := range p.evs {
		if ev != nil && ev.Hold(p.queued[v]-publishing) == 0 {
			h.held.Add(-ev.Bytes)
		}
	}
}

// publishing is the hold Publish keeps on an event while it queues it.
const publishing = 1 << 30

// eventOverhead is what an event takes beside its key and data: the
// struct, and a pointer to it in a queue.
const eventOverhead = int64(unsafe.Sizeof(kv.Event{})) + 8

// eventBytes is the Bytes of the event of c, whose payload (see
// history.add) lies in a block of capacity pin (see event).
func eventBytes(c *kv.Change, payload []byte, pin int) int64 {
	if shares(payload, pin) {
		return eventOverhead + int64(len(c.Key)+pin)
	}
	return eventOverhead + int64(len(c.Key)+len(payload))
}

// event returns the event of c, with More set or not, whose payload (see
// history.add) lies at pl in a block of capacity pin. A payload that is at
// least half of its block shares the history's bytes, and the event holds
// the block; a smaller one is copied, so that a queued event never keeps a
// mostly unrelated block from being freed once the history drops it.
func (h *Hub) event(c *kv.Change, payload []byte, pin int, pl place, more bool) *kv.Event {
	ev := &kv.Event{Change: *c, More: more}
	ev.Value = nil // the payload holds it
	ev.Bytes = eventBytes(c, payload, pin)
	if shares(payload, pin) {
		if c.Revision > h.compacted { // still retained
			h.shared[sharedKey{pl, more}] = weak.Make(ev)
		}
	} else {
		payload = bytes.Clone(payload)
	}
	h.setPayload(ev, payload)
	return ev
}

// shares reports whether an event shares the history's bytes: whether its
// payload is at least half of the block, of capacity pin, that holds it.
func shares(payload []byte, pin int) bool { return 2*len(payload) >= pin }

// place names a retained change by where its bytes lie in the history.
type place struct {
	block int64
	off   int
}

// sharedKey names the event of a retained change, with More set or not,
// in Hub.shared.
type sharedKey struct {
	place
	more bool
}

// dropOldestLocked drops the oldest retained revision, all its changes; it
// is compacted then.
func (h *Hub) dropOldestLocked() {
	rev := h.hist.at(0).rev
	for h.hist.n > 0 && h.hist.at(0).rev == rev {
		h.dropChangeLocked()
	}
	h.compacted = max(h.compacted, rev)
}

// dropChangeLocked drops the oldest retained change.
func (h *Hub) dropChangeLocked() {
	if len(h.shared) > 0 {
		r := h.hist.at(0)
		pl := place{r.block, r.off}
		delete(h.shared, sharedKey{pl, false})
		delete(h.shared, sharedKey{pl, true})
	}
	h.hist.dropOldest()
}

// roomLocked reports whether s may hold n more bytes: whether it holds
// nothing yet, or what it holds and n stay within BufferBytes.
func (h *Hub) roomLocked(s *Subscription, n int64) bool {
	held := s.held.Load()
	return held == 0 || held+n <= h.subBytes
}

// countLocked counts n more bytes towards the total, if that stays within
// TotalBufferBytes, and reports whether it did. Only countLocked raises
// the total, under mu, so that it can only have fallen since it read it.
func (h *Hub) countLocked(n int64) bool {
	total := h.held.Load() + n
	if total > h.totalBytes {
		return false
	}
	h.held.Add(n)
	h.peak = max(h.peak, total)
	return true
}

// Replay chunks: whole revisions, at most maxChunk events and about
// chunkBytes (or one larger revision), taken after scanning at most about
// maxScan retained changes (so that a filter that matches little holds the
// lock for a bounded time).
const (
	maxChunk   = 256
	chunkBytes = 64 << 10
	maxScan    = 4096
)

// fetch returns the next chunk of s's replay (see Subscription.Replay),
// charged to s, and whether more may follow. A chunk holds whole
// revisions, and each is charged as a whole: the first revision that does
// not fit ends the chunk, or, when it is the first, drops s.
func (h *Hub) fetch(s *Subscription) ([]*kv.Event, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, live := h.subs[s]; !live || s.next > s.end {
		return nil, false
	}
	if s.next <= h.compacted {
		// The history dropped a change before the replay reached it.
		h.dropLocked(s, kv.ErrSlowConsumer)
		return nil, false
	}
	picks, copied, i, ok := h.pickLocked(s)
	if !ok {
		return nil, false
	}
	if i < h.hist.n {
		s.next = h.hist.at(i).rev
	} else {
		s.next = s.end + 1
	}
	if len(picks) == 0 {
		return nil, s.next <= s.end
	}
	return h.chunk(picks, copied), s.next <= s.end
}

// replayPick is a retained change that a replay chunk delivers.
type replayPick struct {
	r     *retained
	more  bool
	ev    *kv.Event // the shared event, or nil: a copy to make
	first bool      // ev had no holder before this replay's
}

// pickLocked picks the retained changes of s's next chunk, from s.next
// on, whole revisions at a time, and charges them to s. It returns them,
// the bytes of the payloads to copy, the history index to go on from,
// and false when it dropped s: the first revision did not fit in what s
// may hold.
func (h *Hub) pickLocked(s *Subscription) (picks []replayPick, copied int, i int, ok bool) {
	hist := &h.hist
	var sum int64                        // Bytes of picks
	i, scanned := hist.search(s.next), 0 // s.next starts a revision
	for i < hist.n && scanned < maxScan {
		rev := hist.at(i).rev
		if rev > s.end {
			return picks, copied, hist.n, true
		}
		// The changes of rev that s matches, and their Bytes.
		start, j := len(picks), i
		var n int64
		for ; j < hist.n && hist.at(j).rev == rev; j++ {
			if r := hist.at(j); s.filter.matchBytes(hist.key(r)) {
				picks = append(picks, replayPick{r: r})
				payload, pin := hist.payload(r)
				n += retainedEventBytes(r, payload, pin)
			}
		}
		scanned += j - i
		if start == len(picks) {
			i = j
			continue
		}
		if start > 0 && (len(picks) > maxChunk || sum+n > chunkBytes) {
			return picks[:start], copied, i, true
		}
		copies, charged := h.chargeLocked(s, picks[start:], n)
		if !charged {
			if start == 0 {
				// What s holds already leaves no room for the next
				// revision: it is too far behind.
				h.dropLocked(s, kv.ErrSlowConsumer)
				return nil, 0, i, false
			}
			return picks[:start], copied, i, true
		}
		sum += n
		copied += int(copies)
		i = j
	}
	return picks, copied, i, true
}

// chargeLocked charges unit, the picks of one revision whose events are of
// n Bytes, to s and to the hub's bound, sharing the events that can share
// the history's bytes. It returns the bytes of payload to copy for the
// others, or false, charging nothing, when s or the hub has no room.
func (h *Hub) chargeLocked(s *Subscription, unit []replayPick, n int64) (int64, bool) {
	hist := &h.hist
	var fresh, copies int64 // Bytes not counted yet; bytes to copy
	for k := range unit {
		p := &unit[k]
		p.more = k < len(unit)-1
		payload, pin := hist.payload(p.r)
		if !shares(payload, pin) {
			fresh += retainedEventBytes(p.r, payload, pin)
			copies += int64(len(payload))
			continue
		}
		p.ev = h.sharedEvent(p.r, payload, pin, p.more)
		if p.first = p.ev.Hold(1) == 1; p.first {
			fresh += p.ev.Bytes
		}
	}
	if !h.roomLocked(s, n) || fresh > 0 && !h.countLocked(fresh) {
		for _, p := range unit {
			// One that had holders counts already: if they let go of it
			// meanwhile, this hold was the last.
			if p.ev != nil && p.ev.Release() && !p.first {
				h.held.Add(-p.ev.Bytes)
			}
		}
		return 0, false
	}
	s.held.Add(n)
	return copies, true
}

// chunk makes the events of picks: the shared ones as they are, the others
// copies of the history's payloads (copied bytes in all), in one buffer.
func (h *Hub) chunk(picks []replayPick, copied int) []*kv.Event {
	hist := &h.hist
	chunk := make([]*kv.Event, len(picks))
	evs := make([]kv.Event, len(picks)) // for the copies
	buf := make([]byte, 0, copied)
	for j, p := range picks {
		if p.ev != nil {
			chunk[j] = p.ev
			continue
		}
		payload, _ := hist.payload(p.r)
		buf = append(buf, payload...)
		ev := &evs[j]
		ev.Op, ev.Key, ev.Revision, ev.More = p.r.op, string(hist.key(p.r)), p.r.rev, p.more
		ev.Bytes = eventOverhead + int64(len(ev.Key)+len(payload))
		h.setPayload(ev, buf[len(buf)-len(payload):len(buf):len(buf)])
		ev.Hold(1)
		chunk[j] = ev
	}
	return chunk
}

// retainedEventBytes is the Bytes of an event of the retained change r, whose
// payload lies in a block of capacity pin (see eventBytes).
func retainedEventBytes(r *retained, payload []byte, pin int) int64 {
	if shares(payload, pin) {
		return eventOverhead + int64(r.keyLen+pin)
	}
	return eventOverhead + int64(r.keyLen+len(payload))
}

// sharedEvent returns the event, with More set or not, of the retained
// change r, whose payload shares the history's bytes: made once for every
// subscriber while it lives.
func (h *Hub) sharedEvent(r *retained, payload []byte, pin int, more bool) *kv.Event {
	key := sharedKey{place{r.block, r.off}, more}
	if ev := h.shared[key].Value(); ev != nil {
		return ev
	}
	ev := &kv.Event{Change: kv.Change{Op: r.op, Key: string(h.hist.key(r)), Revision: r.rev}, More: more}
	ev.Bytes = retainedEventBytes(r, payload, pin)
	h.setPayload(ev, payload)
	h.shared[key] = weak.Make(ev)
	return ev
}

// setPayload makes payload ev's Data, or its Value when the hub does not
// encode.
func (h *Hub) setPayload(ev *kv.Event, payload []byte) {
	if h.encode != nil {
		ev.Data = payload
	} else if ev.Op == kv.OpSet {
		ev.Value = payload
	}
}

// appendLocked retains c, dropping the oldest revisions to make room, and
// returns its payload, the capacity of its block (see history.add) and its
// place. A revision is dropped whole, but for one larger than the whole
// history, which loses its first changes: it is compacted then, so no
// subscription can start there.
func (h *Hub) appendLocked(c *kv.Change) ([]byte, int, place) {
	if h.hist.n == len(h.hist.ring) {
		h.dropOldestLocked()
	}
	payload, pin := h.hist.add(c, h.encode)
	r := h.hist.at(h.hist.n - 1)
	pl := place{r.block, r.off}
	for h.hist.n > 1 && h.hist.bytes > h.maxBytes && h.hist.at(0).rev < c.Revision {
		h.dropOldestLocked()
	}
	h.last = c.Revision
	return payload, pin, pl
}

// StartAfter tells a hub that has published nothing yet that the feed
// continues after rev, the revision an earlier run of the store reached
// (see kv.Recovery.Rev). The changes up to rev are not retained: a
// subscription from rev or earlier fails with a *kv.CompactedError, and the
// next change published must follow rev. It panics if a change was already
// published.
func (h *Hub) StartAfter(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.last != 0 || h.hist.n != 0 {
		panic("bus: StartAfter after a publish")
	}
	h.compacted, h.last = rev, rev
}

// Forget tells the hub that the changes up to rev can no longer be
// delivered (a Kafka log found them compacted away): it drops the retained
// changes up to rev, a subscription from rev or earlier then fails with a
// *kv.CompactedError, and so does every live subscription that may have
// wanted one of them (live, or in the rest of its replay): it ends with
// that error rather than skip them. The next change published must follow
// rev.
func (h *Hub) Forget(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.hist.n > 0 && h.hist.at(0).rev <= rev {
		h.dropChangeLocked()
	}
	for s := range h.subs {
		if rev > h.last && s.from <= rev || s.next <= min(rev, s.end) {
			h.dropLocked(s, &kv.CompactedError{Oldest: rev + 1})
		}
	}
	h.compacted = max(h.compacted, rev)
	h.last = max(h.last, rev)
}

// Subscribe registers a subscriber for the changes that match f, from
// revision from on; from <= 0 means from the next change published. It
// returns a *kv.CompactedError when from is older than the history, and
// kv.ErrFeedClosed after Close.
func (h *Hub) Subscribe(f Filter, from int64) (*Subscription, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, kv.ErrFeedClosed
	}
	if from <= 0 {
		from = h.last + 1
	}
	if from <= h.compacted {
		return nil, &kv.CompactedError{Oldest: h.compacted + 1}
	}
	s := &Subscription{hub: h, filter: f, from: from, c: make(chan *kv.Event, h.buffer), next: from, end: h.last}
	h.subs[s] = struct{}{}
	return s, nil
}

// Rev returns the revision of the last published change. Every matching
// change up to it is already in a live subscription's Replay or queue.
func (h *Hub) Rev() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.last
}

// Buffered returns the memory that the events subscribers hold take now
// (each event counted once: see Options.TotalBufferBytes), and the most it
// took so far.
func (h *Hub) Buffered() (now, peak int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.held.Load(), h.peak
}

// SlowConsumers returns how many subscribers the hub dropped so far for
// falling behind (kv.ErrSlowConsumer). It counts them when they are
// dropped, not when they learn it: one that stopped reading learns it only
// when it reads again.
func (h *Hub) SlowConsumers() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.slow
}

// Len returns the number of live subscriptions.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}

// Close ends every subscription with kv.ErrFeedClosed and refuses new ones.
// Later publishes are ignored.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for s := range h.subs {
		h.dropLocked(s, kv.ErrFeedClosed)
	}
}

func (h *Hub) dropLocked(s *Subscription, err error) {
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	if errors.Is(err, kv.ErrSlowConsumer) {
		h.slow++
	}
	s.err.Store(&err)
	s.once.Do(func() { close(s.c) })
}
