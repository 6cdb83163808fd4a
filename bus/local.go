package bus

import (
	"errors"
	"sync"

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
	// Encode appends the wire encoding of a change to b. It runs once per
	// change, whatever the number of subscribers. The events then carry
	// Data and not Change.Value, which Data holds, so that the history
	// keeps each value once. Nil leaves Event.Data empty.
	Encode func(b []byte, c *kv.Change) []byte
}

// Hub is the in-process change feed: the store's Publisher, a bounded
// history, and a registry of subscribers.
type Hub struct {
	encode   func(b []byte, c *kv.Change) []byte
	buffer   int
	maxBytes int64

	// mu guards everything below.
	mu        sync.Mutex
	hist      history
	compacted int64 // newest revision no longer retained, 0 if none
	last      int64 // revision of the last published change
	subs      map[*Subscription]struct{}
	closed    bool
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
	return &Hub{
		encode:   opts.Encode,
		buffer:   opts.Buffer,
		maxBytes: opts.HistoryBytes,
		hist:     newHistory(opts.History, opts.HistoryBytes),
		subs:     make(map[*Subscription]struct{}),
	}
}

// Publish appends changes, which must follow every change published
// before in revision order, to the history and queues them to every
// matching subscriber. The changes of one revision (a transaction) are
// consecutive and come in one call; a subscriber gets those it matches all
// together or none of them, and each but the last of them has More set.
// Publish never blocks: a subscriber whose queue cannot take a revision's
// events is dropped with kv.ErrSlowConsumer, before any of them.
func (h *Hub) Publish(changes []kv.Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	p := publication{h: h, changes: changes}
	if len(h.subs) > 0 {
		p.payloads = make([][]byte, len(changes))
	}
	var match []int // the changes of a revision that a subscriber matches
	for start := 0; start < len(changes); {
		rev := changes[start].Revision
		end := start + 1
		for end < len(changes) && changes[end].Revision == rev {
			end++
		}
		if rev <= h.last {
			panic("bus: publish out of revision order")
		}
		for i := start; i < end; i++ {
			payload := h.appendLocked(&changes[i])
			if p.payloads != nil {
				p.payloads[i] = payload
			}
		}
		for s := range h.subs {
			if rev < s.from {
				continue
			}
			match = match[:0]
			for i := start; i < end; i++ {
				if s.filter.match(changes[i].Key) {
					match = append(match, i)
				}
			}
			if len(match) == 0 {
				continue
			}
			// Only the hub sends on s.c, under mu: the room it sees can
			// only grow until it sends.
			if cap(s.c)-len(s.c) < len(match) {
				h.dropLocked(s, kv.ErrSlowConsumer)
				continue
			}
			for j, i := range match {
				s.c <- p.event(i, j < len(match)-1)
			}
		}
		start = end
	}
}

// publication makes the events of one Publish, once each, shared by the
// subscribers: an event with More set and one without, each made when a
// subscriber first needs it.
type publication struct {
	h          *Hub
	changes    []kv.Change
	payloads   [][]byte
	last, more []kv.Event // by change; made when first needed
}

func (p *publication) event(i int, more bool) *kv.Event {
	evs := &p.last
	if more {
		evs = &p.more
	}
	if *evs == nil {
		*evs = make([]kv.Event, len(p.changes))
	}
	ev := &(*evs)[i]
	if ev.Revision == 0 {
		ev.Change, ev.More = p.changes[i], more
		if p.h.encode != nil {
			ev.Value, ev.Data = nil, p.payloads[i] // Data holds the value
		}
	}
	return ev
}

// appendLocked retains c, dropping the oldest revisions to make room, and
// returns its payload (see history.add). A revision is dropped whole, but
// for one larger than the whole history, which loses its first changes:
// it is compacted then, so no subscription can start there.
func (h *Hub) appendLocked(c *kv.Change) []byte {
	if h.hist.n == len(h.hist.ring) {
		h.dropOldestLocked()
	}
	payload := h.hist.add(c, h.encode)
	for h.hist.n > 1 && h.hist.bytes > h.maxBytes && h.hist.at(0).rev < c.Revision {
		h.dropOldestLocked()
	}
	h.last = c.Revision
	return payload
}

// dropOldestLocked drops the oldest retained revision, all its changes.
func (h *Hub) dropOldestLocked() {
	rev := h.hist.at(0).rev
	for h.hist.n > 0 && h.hist.at(0).rev == rev {
		h.hist.dropOldest()
	}
	h.compacted = rev
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
// wanted one of them: it ends with that error rather than skip them. The
// next change published must follow rev.
func (h *Hub) Forget(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for h.hist.n > 0 && h.hist.at(0).rev <= rev {
		h.hist.dropOldest()
	}
	if rev > h.last {
		for s := range h.subs {
			if s.from <= rev {
				h.dropLocked(s, &kv.CompactedError{Oldest: rev + 1})
			}
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
	s := &Subscription{hub: h, filter: f, from: from, c: make(chan *kv.Event, h.buffer)}
	s.replay = h.hist.replay(f, from, h.encode != nil)
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
