package kv

import (
	"errors"
	"strconv"
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
}

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
