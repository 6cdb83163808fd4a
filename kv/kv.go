// Package kv provides the key-value store behind kvs: a sharded map of
// revisioned entries and the single write pipeline that every change goes
// through (submit, log, apply, acknowledge).
//
// A Store is safe for concurrent use. Reads never wait for writes to become
// durable; a write is visible to readers only after its log made it durable
// and the applier applied it, in revision order.
package kv

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvsdb/kvs/internal/codec"
)

// MaxKeyBytes is the longest key, in bytes, that the store accepts.
const MaxKeyBytes = codec.MaxKeyBytes

var (
	// ErrNotFound is returned for a key that does not exist.
	ErrNotFound = errors.New("kv: key not found")
	// ErrInvalidKey is returned for a key that is empty, longer than
	// MaxKeyBytes, not valid UTF-8, or holds a control character.
	ErrInvalidKey = errors.New("kv: invalid key")
	// ErrConflict is returned when a change's IfRevision condition does not
	// hold. The error is a *ConflictError that carries the current entry.
	ErrConflict = errors.New("kv: revision condition failed")
	// ErrUnavailable is returned when the log cannot take writes: it failed,
	// or the store is closed.
	ErrUnavailable = errors.New("kv: log unavailable")
)

// Entry is a key with its value and revisions. The Key and Value of an
// entry handed out by a Store share the store's memory and must not be
// modified; they never change.
type Entry struct {
	Key string
	// Value is the compact JSON text of the value, exactly as it was set.
	Value []byte
	// Revision is the revision of the entry's last change.
	Revision int64
	// CreateRevision is the revision of the set that created the entry.
	CreateRevision int64
	// Version counts the sets since the entry was created, starting at 1.
	Version int64
	// Lease is the lease the key is attached to, 0 for none: when the
	// lease ends, the key is deleted.
	Lease int64
}

// Op is the kind of a Change.
type Op uint8

// The kinds of change.
const (
	OpSet Op = iota + 1
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpSet:
		return "set"
	case OpDelete:
		return "delete"
	case OpGet:
		return "get"
	case OpGrant:
		return "grant"
	case OpLeaseEnd:
		return "lease-end"
	}
	return fmt.Sprintf("Op(%d)", uint8(o))
}

// Change is one mutation on its way through the write pipeline, and, once
// applied, one event of the change feed.
type Change struct {
	Op  Op
	Key string
	// Value is the compact JSON text to store; nil for a delete.
	Value []byte
	// Revision is given by the log: zero until the change is logged.
	Revision int64
	// Cond makes the change conditional: it applies only if the key's
	// current revision equals IfRevision, where 0 means "the key is absent".
	Cond       bool
	IfRevision int64
	// Lease is, on a set, the lease the key is attached to (0: none, and a
	// set without one detaches the key); on a delete that a lease's end
	// made, that lease; on a change of a lease (OpGrant, OpLeaseEnd), the
	// lease.
	Lease int64
	// TTL is the TTL of an OpGrant.
	TTL time.Duration
	// Reason is, on a delete that a lease's end made (and on OpLeaseEnd),
	// why the lease ended.
	Reason Reason
}

// ConflictError reports a failed IfRevision condition. errors.Is(err,
// ErrConflict) is true for it.
type ConflictError struct {
	// Current is the entry the condition was checked against, or nil when
	// the key was absent.
	Current *Entry
}

func (e *ConflictError) Error() string {
	if e.Current == nil {
		return "kv: revision condition failed: key is absent"
	}
	return fmt.Sprintf("kv: revision condition failed: key is at revision %d", e.Current.Revision)
}

// Is reports whether target is ErrConflict.
func (e *ConflictError) Is(target error) bool { return target == ErrConflict }

// ValidKey reports whether key is a valid key: 1 to MaxKeyBytes bytes of
// UTF-8 with no control characters (U+0000 to U+001F and U+007F).
func ValidKey(key string) bool { return codec.ValidKey(key) }
