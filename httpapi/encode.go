package httpapi

import (
	"strconv"

	"github.com/kvsdb/kvs/kv"
	"github.com/kvsdb/kvs/wire"
)

// The answers are built by appending to a byte slice: values are already
// JSON text and go out byte for byte, and nothing is HTML-escaped.

// appendString appends s as a JSON string (wire.AppendString).
func appendString(b []byte, s string) []byte { return wire.AppendString(b, s) }

// appendEntry appends e as the Entry wire type.
func appendEntry(b []byte, e *kv.Entry) []byte {
	b = append(b, `{"Key":`...)
	b = appendString(b, e.Key)
	return append(appendEntryMembers(b, e), '}')
}

// appendEntryMembers appends the members of e after its key.
func appendEntryMembers(b []byte, e *kv.Entry) []byte {
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
func appendWriteResult(b []byte, key string, rev int64) []byte {
	b = append(b, `{"Key":`...)
	b = appendString(b, key)
	b = append(b, `,"Revision":`...)
	b = strconv.AppendInt(b, rev, 10)
	return append(b, '}')
}

// appendError appends the Error wire type. With conflict set it always
// has a Current member, null when cur is nil.
func appendError(b []byte, msg string, conflict bool, cur *kv.Entry) []byte {
	b = append(b, `{"error":`...)
	b = appendString(b, msg)
	if conflict {
		b = append(b, `,"Current":`...)
		if cur == nil {
			b = append(b, "null"...)
		} else {
			b = appendEntry(b, cur)
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
	return append(b, '}')
}

// appendProgress appends a progress event.
func appendProgress(b []byte, rev int64) []byte {
	b = append(b, `{"Type":"progress","Revision":`...)
	b = strconv.AppendInt(b, rev, 10)
	return append(b, '}')
}
