package httpapi

import (
	"strconv"
	"unicode/utf8"

	"github.com/kvsdb/kvs/kv"
)

// The answers are built by appending to a byte slice: values are already
// JSON text and go out byte for byte, and nothing is HTML-escaped.

const hex = "0123456789abcdef"

// appendString appends s as a JSON string. It escapes what JSON requires
// (quote, backslash, control characters), U+2028 and U+2029 as
// encoding/json does, and replaces invalid UTF-8 with U+FFFD; it does not
// escape <, > or &.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += n
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += n
			start = i
			continue
		}
		i += n
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

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
