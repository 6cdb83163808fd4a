package kv

import (
	"errors"
	"strconv"
	"sync/atomic"
)

// The change feed's vocabulary lives here, beside Change, so that the feed
// (package bus) and its transports (package httpapi) share it without
// importing each other.

var (
	// ErrCompacted is returned for a subscription from a revision the feed
	// no longer retains. The error is a *CompactedError.
	ErrCompacted = errors.New("kv: revision compacted")
	// ErrSlowConsumer is the Err of a subscription that fell behind by more
	// than its queue and was dropped.
	ErrSlowConsumer = errors.New("kv: slow consumer")
	// ErrFeedClosed is the Err of a subscription whose feed shut down.
	ErrFeedClosed = errors.New("kv: feed closed")
)

// Event is an applied change as the change feed carries it. Events are
// shared by every subscriber and must not be modified.
type Event struct {
	Change
	// Data is the event's wire encoding, made once when it is published.
	// A feed that makes it may leave Change.Value nil: Data holds it.
	Data []byte
	// More is set on an event that the same subscriber's stream follows
	// with another event of the same revision (a transaction): the
	// revision is complete at the first event without it. Data does not
	// say it; the transport adds it.
	More bool
	// Bytes is the memory the event holds: its key, Data and whatever
	// else Data keeps from being freed. A feed that bounds the memory its
	// subscribers hold counts it while a subscriber holds the event (see
	// Hold). Zero for a feed that does not count.
	Bytes int64

	holders atomic.Int32
}

// Hold records n more holders of e (a subscriber's queue, or its transport
// until it has written e; n may be negative) and returns how many it has.
func (e *Event) Hold(n int32) int32 { return e.holders.Add(n) }

// Release records that a holder let go of e and reports whether it was the
// last one.
func (e *Event) Release() bool { return e.holders.Add(-1) == 0 }

// CompactedError reports a subscription from a revision older than the
// feed's history. errors.Is(err, ErrCompacted) is true for it.
type CompactedError struct {
	// Oldest is the oldest revision the feed can still deliver.
	Oldest int64
}

func (e *CompactedError) Error() string {
	return "kv: revision compacted: oldest retained revision is " + strconv.FormatInt(e.Oldest, 10)
}

// Is reports whether target is ErrCompacted.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }
