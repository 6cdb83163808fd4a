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
type Subscription struct {
	hub    *Hub
	filter Filter
	from   int64  // the first revision it may receive
	replay replay // retained changes from `from` on, at subscription time
	c      chan *kv.Event
	once   sync.Once // closes c
	err    atomic.Pointer[error]
}

// Replay yields the retained events that the subscription asked for, in
// revision order. Deliver them before anything received from C: every
// event on C has a higher revision. Each event yielded is a new one. The
// subscription holds the history's bytes they need until Replay has
// yielded them all; after that, Replay yields nothing.
func (s *Subscription) Replay() iter.Seq[*kv.Event] { return s.replay.events() }

// C returns the channel of live events. Only the hub closes it: when the
// subscriber is too slow, the hub closes, or Close is called. Err then says
// which.
func (s *Subscription) C() <-chan *kv.Event { return s.c }

// Err returns nil while the subscription is live, then why it ended:
// kv.ErrSlowConsumer, kv.ErrFeedClosed, or ErrUnsubscribed. Err is set
// before C is closed, so a receiver can stop at once without draining C.
func (s *Subscription) Err() error {
	if p := s.err.Load(); p != nil {
		return *p
	}
	return nil
}

// From returns the first revision the subscription may receive.
func (s *Subscription) From() int64 { return s.from }

// Close unsubscribes. It is safe to call more than once, and after the hub
// dropped the subscription.
func (s *Subscription) Close() {
	h := s.hub
	h.mu.Lock()
	h.dropLocked(s, ErrUnsubscribed)
	h.mu.Unlock()
}
