package httpapi

import (
	"strconv"
	"time"

	"github.com/kvsdb/kvs/kv"
	"github.com/kvsdb/kvs/wire"
)

// The answers are built by appending to a byte slice: values are already
// JSON text and go out byte for byte, and nothing is HTML-escaped.

// appendString appends s as a JSON string (wire.AppendString).
func appendString(b []byte, s string) []byte { return wire.AppendString(b, s) }

// leaseTTL returns the time left until a lease expires, and false if it
// has (see kv.Store.LeaseRemaining).
type leaseTTL func(id int64) (time.Duration, bool)

// appendEntry appends e as the Entry wire type, with the time left until
// its lease expires as ttl tells it.
func appendEntry(b []byte, e *kv.Entry, ttl leaseTTL) []byte {
	b = append(b, `{"Key":`...)
	b = appendString(b, e.Key)
	return append(appendEntryMembers(b, e, ttl), '}')
}

// appendEntry appends e as the Entry wire type, with its lease's TTL.
func (h *Handler) appendEntry(b []byte, e *kv.Entry) []byte {
	return appendEntry(b, e, h.store.LeaseRemaining)
}

// appendEntryMembers appends the members of e after its key: its lease
// and the time left on it when it has one (a TTL of 0 when ttl finds the
// lease expired, its key about to be deleted).
func appendEntryMembers(b []byte, e *kv.Entry, ttl leaseTTL) []byte {
	b = appendEntryCore(b, e)
	if e.Lease == 0 {
		return b
	}
	b = append(b, `,"Lease":`...)
	b = strconv.AppendInt(b, e.Lease, 10)
	if ttl != nil {
		left, _ := ttl(e.Lease)
		b = append(b, `,"TTL":"`...)
		b = append(b, wire.Duration(left).String()...)
		b = append(b, '"')
	}
	return b
}

// appendEntryCore appends the members of e after its key but its lease.
func appendEntryCore(b []byte, e *kv.Entry) []byte {
	b = append(b, `,"Value":`...)
	b = append(b, e.Value...)
	b = append(b, `,"Revision":`...)
	b = strconv.AppendInt(b, e.Revision, 10)
	b = append(b, `,"CreateRevision":`...)
	b = strconv.AppendInt(b, e.CreateRevision, 10)
	b = append(b, `,"Version":`...)
	return strconv.AppendInt(b, e.Version, 10)
}

// appendWriteResult appends the WriteResult wire type.
func appendWriteResult(b []byte, key string, rev, lease int64) []byte {
	b = append(b, `{"Key":`...)
	b = appendString(b, key)
	b = append(b, `,"Revision":`...)
	b = strconv.AppendInt(b, rev, 10)
	if lease != 0 {
		b = append(b, `,"Lease":`...)
		b = strconv.AppendInt(b, lease, 10)
	}
	return append(b, '}')
}

// appendError appends the Error wire type, with the lease's TTL in the
// current entry.
func (h *Handler) appendError(b []byte, msg string, conflict bool, cur *kv.Entry) []byte {
	return appendErrorTTL(b, msg, conflict, cur, h.store.LeaseRemaining)
}

// appendError appends the Error wire type. With conflict set it always
// has a Current member, null when cur is nil.
func appendError(b []byte, msg string, conflict bool, cur *kv.Entry) []byte {
	return appendErrorTTL(b, msg, conflict, cur, nil)
}

func appendErrorTTL(b []byte, msg string, conflict bool, cur *kv.Entry, ttl leaseTTL) []byte {
	b = append(b, `{"error":`...)
	b = appendString(b, msg)
	if conflict {
		b = append(b, `,"Current":`...)
		if cur == nil {
			b = append(b, "null"...)
		} else {
			b = appendEntry(b, cur, ttl)
		}
	}
	return append(b, '}')
}

// AppendEvent appends the feed event for an applied change: its Event wire
// type, encoded once and sent as is to every subscriber.
func AppendEvent(b []byte, c *kv.Change) []byte {
	b = append(b, `{"Type":"`...)
	b = append(b, c.Op.String()...)
	b = append(b, `","Key":`...)
	b = appendString(b, c.Key)
	if c.Op == kv.OpSet {
		b = append(b, `,"Value":`...)
		b = append(b, c.Value...)
	}
	b = append(b, `,"Revision":`...)
	b = strconv.AppendInt(b, c.Revision, 10)
	if c.Reason != kv.ReasonNone {
		b = append(b, `,"Reason":"`...)
		b = append(b, c.Reason.String()...)
		b = append(b, '"')
	}
	if c.Lease != 0 {
		b = append(b, `,"Lease":`...)
		b = strconv.AppendInt(b, c.Lease, 10)
	}
	return append(b, '}')
}

// appendProgress appends a progress event.
func appendProgress(b []byte, rev int64) []byte {
	b = append(b, `{"Type":"progress","Revision":`...)
	b = strconv.AppendInt(b, rev, 10)
	return append(b, '}')
}
