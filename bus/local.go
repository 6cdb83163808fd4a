package bus

import (
	"bytes"
	"errors"
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
	// yet let go of (Subscription.Done), replayed ones included. An event
	// that would take a subscriber past it drops the subscriber with
	// kv.ErrSlowConsumer, unless the subscriber holds nothing. Zero means
	// 16 MiB.
	BufferBytes int64
	// TotalBufferBytes bounds the memory of the events all subscribers
	// together hold, each event counted once however many hold it. An
	// event that would take the total past it drops the subscriber it was
	// for with kv.ErrSlowConsumer. Zero means 256 MiB.
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
	// shared holds the events made of retained changes that share the
	// history's bytes (see event), by revision, while they live: every
	// subscriber that replays or receives such a change gets the same
	// event, which then counts once towards the total.
	shared map[int64]weak.Pointer[kv.Event]
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
		shared:     make(map[int64]weak.Pointer[kv.Event]),
	}
}

// Publish appends changes, which must follow every change published
// before in revision order, to the history and queues them to every
// matching subscriber. It never blocks: a subscriber whose queue is full,
// or that the event would take past a bound on memory, is dropped with
// kv.ErrSlowConsumer.
func (h *Hub) Publish(changes []kv.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	for i := range changes {
		c := &changes[i]
		if c.Revision <= h.last {
			panic("bus: publish out of revision order")
		}
		payload, pin := h.appendLocked(c)
		var (
			ev      *kv.Event // made for the first subscriber that wants it
			counted bool      // ev counts towards the total
			queued  int32     // subscribers it was queued to
		)
		for s := range h.subs {
			if c.Revision < s.from || !s.filter.match(c.Key) {
				continue
			}
			if ev == nil {
				ev = h.event(c, payload, pin)
				// Hold it for the loop, so that transports letting go
				// of it meanwhile never find it without holders; the
				// count of subscribers is added once, after the loop.
				ev.Hold(publishing)
				counted = h.countLocked(ev.Bytes)
			}
			if !counted || !h.roomLocked(s, ev.Bytes) {
				h.dropLocked(s, kv.ErrSlowConsumer)
				continue
			}
			s.held.Add(ev.Bytes)
			select {
			case s.c <- ev:
				queued++
			default:
				s.held.Add(-ev.Bytes)
				h.dropLocked(s, kv.ErrSlowConsumer)
			}
		}
		if ev != nil && ev.Hold(queued-publishing) == 0 && counted {
			h.held.Add(-ev.Bytes) // every subscriber let go of it already
		}
	}
}

// publishing is the hold Publish keeps on an event while it queues it.
const publishing = 1 << 30

// eventOverhead is what an event takes beside its key and data: the
// struct, and a pointer to it in a queue.
const eventOverhead = int64(unsafe.Sizeof(kv.Event{})) + 8

// event returns the event of c, whose payload (see history.add) lies in a
// block of capacity pin. A payload that is at least half of its block
// shares the history's bytes, and the event holds the block; a smaller one
// is copied, so that a queued event never keeps a mostly unrelated block
// from being freed once the history drops it.
func (h *Hub) event(c *kv.Change, payload []byte, pin int) *kv.Event {
	ev := &kv.Event{Change: *c}
	ev.Value = nil // the payload holds it
	ev.Bytes = eventOverhead + int64(len(c.Key))
	if shares(payload, pin) {
		ev.Bytes += int64(pin)
		h.shared[c.Revision] = weak.Make(ev)
	} else {
		payload = bytes.Clone(payload)
		ev.Bytes += int64(len(payload))
	}
	h.setPayload(ev, payload)
	return ev
}

// shares reports whether an event shares the history's bytes: whether its
// payload is at least half of the block, of capacity pin, that holds it.
func shares(payload []byte, pin int) bool { return 2*len(payload) >= pin }

// dropOldestLocked drops the oldest retained change.
func (h *Hub) dropOldestLocked() {
	if len(h.shared) > 0 {
		delete(h.shared, h.hist.at(0).rev)
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

// chargeLocked counts n more bytes against s, and against the total when
// first (the event had no holder yet), and reports whether the bounds
// allow it; when they do not, it counts nothing.
func (h *Hub) chargeLocked(s *Subscription, n int64, first bool) bool {
	if !h.roomLocked(s, n) || first && !h.countLocked(n) {
		return false
	}
	s.held.Add(n)
	return true
}

// Replay chunks: at most maxChunk events and about chunkBytes, taken
// after scanning at most maxScan retained changes (so that a filter that
// matches little holds the lock for a bounded time).
const (
	maxChunk   = 256
	chunkBytes = 64 << 10
	maxScan    = 4096
)

// fetch returns the next chunk of s's replay (see Subscription.Replay),
// charged to s, and whether more may follow.
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
	hist := &h.hist
	type pick struct {
		r  *record
		ev *kv.Event // the shared event, or nil: a copy to make
	}
	var (
		picks  []pick
		sum    int64 // Bytes of picks
		copied int   // bytes of the payloads to copy
	)
	i := hist.search(s.next)
	for scanned := 0; i < hist.n && scanned < maxScan; i, scanned = i+1, scanned+1 {
		r := hist.at(i)
		if r.rev > s.end {
			i = hist.n
			break
		}
		if !s.filter.matchBytes(hist.key(r)) {
			continue
		}
		payload, pin := hist.payload(r)
		p := pick{r: r}
		n := eventOverhead + int64(r.keyLen) + int64(len(payload))
		if shares(payload, pin) {
			p.ev = h.sharedEvent(r, payload, pin)
			n = p.ev.Bytes
		}
		if len(picks) > 0 && (len(picks) == maxChunk || sum+n > chunkBytes) {
			break
		}
		first := true
		if p.ev != nil {
			first = p.ev.Hold(1) == 1
		}
		if !h.chargeLocked(s, n, first) {
			if p.ev != nil {
				p.ev.Release()
			}
			if len(picks) == 0 {
				// What s holds already leaves no room for the next
				// event: it is too far behind.
				h.dropLocked(s, kv.ErrSlowConsumer)
				return nil, false
			}
			break
		}
		picks = append(picks, p)
		sum += n
		if p.ev == nil {
			copied += len(payload)
		}
	}
	if i < hist.n {
		s.next = hist.at(i).rev
	} else {
		s.next = s.end + 1
	}
	if len(picks) == 0 {
		return nil, s.next <= s.end
	}
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
		ev.Op, ev.Key, ev.Revision = p.r.op, string(hist.key(p.r)), p.r.rev
		ev.Bytes = eventOverhead + int64(len(ev.Key)+len(payload))
		h.setPayload(ev, buf[len(buf)-len(payload):len(buf):len(buf)])
		ev.Hold(1)
		chunk[j] = ev
	}
	return chunk, s.next <= s.end
}

// sharedEvent returns the event of the retained change r, whose payload
// shares the history's bytes, made once for every subscriber while it
// lives.
func (h *Hub) sharedEvent(r *record, payload []byte, pin int) *kv.Event {
	if ev := h.shared[r.rev].Value(); ev != nil {
		return ev
	}
	ev := &kv.Event{Change: kv.Change{Op: r.op, Key: string(h.hist.key(r)), Revision: r.rev}}
	ev.Bytes = eventOverhead + int64(len(ev.Key)+pin)
	h.setPayload(ev, payload)
	h.shared[r.rev] = weak.Make(ev)
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

// appendLocked retains c, dropping the oldest changes to make room, and
// returns its payload and the capacity of its block (see history.add).
func (h *Hub) appendLocked(c *kv.Change) ([]byte, int) {
	if h.hist.n == len(h.hist.ring) {
		h.compacted = h.hist.at(0).rev
		h.dropOldestLocked()
	}
	payload, pin := h.hist.add(c, h.encode)
	for h.hist.n > 1 && h.hist.bytes > h.maxBytes {
		h.compacted = h.hist.at(0).rev
		h.dropOldestLocked()
	}
	h.last = c.Revision
	return payload, pin
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
		h.dropOldestLocked()
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
	s.err.Store(&err)
	s.once.Do(func() { close(s.c) })
}
