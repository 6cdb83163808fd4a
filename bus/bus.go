// Package bus carries the change feed: Hub fans applied changes out to
// subscribers in revision order, and keeps a bounded history so that a
// subscriber can resume from a revision after a disconnect. Kafka is the
// log that several kvsd instances share: a kv.Replicated log kept in one
// partition of a Kafka topic.
//
// Hub and Subscription are safe for concurrent use. Publishing never
// blocks: a subscriber whose queue is full is dropped with
// kv.ErrSlowConsumer, and resumes from the revision it missed.
package bus

import (
	"iter"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/kvsdb/kvs/kv"
)

// Filter selects the keys a subscription receives.
type Filter struct {
	// Key, when not empty, selects that key alone.
	Key string
	// Prefix, when Key is empty, selects the keys that start with it; ""
	// selects every key.
	Prefix string
}

func (f Filter) match(key string) bool {
	if f.Key != "" {
		return key == f.Key
	}
	return strings.HasPrefix(key, f.Prefix)
}

func (f Filter) matchBytes(key []byte) bool {
	if f.Key != "" {
		return string(key) == f.Key
	}
	return len(key) >= len(f.Prefix) && string(key[:len(f.Prefix)]) == f.Prefix
}

// Subscription is one subscriber's view of the feed: the retained events it
// asked for (Replay), then every later matching event on C, each once and in
// revision order.
//
// The memory of the events a subscription holds (queued on C, or received
// and not yet Done) counts against the hub's bounds (Options.BufferBytes,
// Options.TotalBufferBytes) until Done is called for each.
type Subscription struct {
	hub    *Hub
	filter Filter
	from   int64 // the first revision it may receive
	c      chan *kv.Event
	once   sync.Once // closes c
	err    atomic.Pointer[error]
	held   atomic.Int64 // Bytes of the events it holds

	// next and end delimit the replay still to come: the retained changes
	// from next to end that match filter. Guarded by hub.mu.
	next, end int64
}

// Replay yields the retained events that the subscription asked for, in
// revision order, in chunks of whole revisions: at most 256 events and
// about 64 KiB, or one larger revision. Within a revision, each event but
// the last has More set, as on C. Deliver them before anything received
// from C: every event on C has a higher revision. Call Done for the events
// of a chunk before asking for the next one (a chunk is taken only when
// the bounds leave room for it, each revision charged as a whole). Each
// event yielded is a new one.
//
// Replay reads the history as it goes, so it holds one chunk at a time. It
// stops early, between revisions, when the subscription ends: when the
// history dropped a revision before Replay reached it, Err is
// kv.ErrSlowConsumer (the subscriber read more slowly than the history
// moved on). After Replay has yielded everything, it yields nothing.
func (s *Subscription) Replay() iter.Seq[[]*kv.Event] {
	return func(yield func([]*kv.Event) bool) {
		for {
			chunk, more := s.hub.fetch(s)
			if len(chunk) > 0 && !yield(chunk) {
				return
			}
			if !more {
				return
			}
		}
	}
}

// C returns the channel of live events. Only the hub closes it: when the
// subscriber is too slow, the hub closes, or Close is called. Err then says
// which.
func (s *Subscription) C() <-chan *kv.Event { return s.c }

// Done tells the subscription that its holder no longer holds ev, an event
// received from Replay or C: it was written, or given up. Call it once for
// each event received.
func (s *Subscription) Done(ev *kv.Event) {
	s.held.Add(-ev.Bytes)
	if ev.Release() {
		s.hub.held.Add(-ev.Bytes)
	}
}

// Err returns nil while the subscription is live, then why it ended:
// kv.ErrSlowConsumer, kv.ErrFeedClosed, ErrUnsubscribed, or a
// *kv.CompactedError. Err is set before C is closed, so a receiver can stop
// at once without draining C.
func (s *Subscription) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// From returns the first revision the subscription may receive.
func (s *Subscription) From() int64 { return s.from }

// Close unsubscribes, and lets go of the events still queued on C. It is
// safe to call more than once, and after the hub dropped the subscription.
func (s *Subscription) Close() {
	s.Unsubscribe()
	for ev := range s.c { // closed by dropLocked
		s.Done(ev)
	}
}

// Unsubscribe ends the subscription, as Close does, but leaves the events
// still queued on C to their receiver, which calls Done for each: for a
// subscription ended from another goroutine than the one that receives,
// which then knows, once C is drained, that it holds nothing.
func (s *Subscription) Unsubscribe() {
	h := s.hub
	h.mu.Lock()
	h.dropLocked(s, ErrUnsubscribed)
	h.mu.Unlock()
}
