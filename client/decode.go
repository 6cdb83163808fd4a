package client

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kvsdb/kvs/wire"
)

// The answers and events of kvsd are decoded without reflection by a small
// scanner that reads what kvsd writes: objects with plain ASCII member
// names, in any order. It checks the JSON it reads as encoding/json would;
// anything it does not handle (an escaped or non-ASCII member name, a
// member name in another letter case, a null where a number goes, nesting
// deeper than maxDepth) makes it give up, and encoding/json decodes the
// data instead, so its verdict and result stand. FuzzDecode checks that
// both agree.

// maxDepth bounds the nesting the scanner follows; encoding/json decides
// deeper values.
const maxDepth = 1000

type scanner struct {
	data []byte
	i    int
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }
func isHex(c byte) bool   { return isDigit(c) || c|0x20 >= 'a' && c|0x20 <= 'f' }

func (s *scanner) skipSpace() {
	for s.i < len(s.data) && isSpace(s.data[s.i]) {
		s.i++
	}
}

// expect consumes c.
func (s *scanner) expect(c byte) bool {
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// end reports whether only whitespace is left.
func (s *scanner) end() bool {
	s.skipSpace()
	return s.i == len(s.data)
}

// str scans a JSON string and returns its raw text, quotes included, and
// whether it holds escapes.
func (s *scanner) str() (raw []byte, escaped, ok bool) {
	d, i := s.data, s.i
	if i >= len(d) || d[i] != '"' {
		return nil, false, false
	}
	for i++; i < len(d); {
		switch c := d[i]; {
		case c == '"':
			raw = d[s.i : i+1]
			s.i = i + 1
			return raw, escaped, true
		case c == '\\':
			escaped = true
			if i+1 >= len(d) {
				return nil, false, false
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) || !isHex(d[i+2]) || !isHex(d[i+3]) || !isHex(d[i+4]) || !isHex(d[i+5]) {
					return nil, false, false
				}
				i += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default:
			i++
		}
	}
	return nil, false, false
}

// number scans a JSON number and returns its text.
func (s *scanner) number() ([]byte, bool) {
	d, i := s.data, s.i
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	default:
		return nil, false
	}
	if i < len(d) && d[i] == '.' {
		i++
		if i >= len(d) || !isDigit(d[i]) {
			return nil, false
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		if i >= len(d) || !isDigit(d[i]) {
			return nil, false
		}
		for i < len(d) && isDigit(d[i]) {
			i++
		}
	}
	n := d[s.i:i]
	s.i = i
	return n, true
}

// literal consumes word.
func (s *scanner) literal(word string) bool {
	if len(s.data)-s.i >= len(word) && string(s.data[s.i:s.i+len(word)]) == word {
		s.i += len(word)
		return true
	}
	return false
}

// value scans any JSON value and returns its raw text.
func (s *scanner) value() ([]byte, bool) {
	start := s.i
	if !s.skipValue(0) {
		return nil, false
	}
	return s.data[start:s.i], true
}

func (s *scanner) skipValue(depth int) bool {
	if s.i >= len(s.data) || depth > maxDepth {
		return false
	}
	switch s.data[s.i] {
	case '"':
		_, _, ok := s.str()
		return ok
	case '{':
		s.i++
		s.skipSpace()
		if s.expect('}') {
			return true
		}
		for {
			if _, _, ok := s.str(); !ok {
				return false
			}
			s.skipSpace()
			if !s.expect(':') {
				return false
			}
			s.skipSpace()
			if !s.skipValue(depth + 1) {
				return false
			}
			s.skipSpace()
			if s.expect('}') {
				return true
			}
			if !s.expect(',') {
				return false
			}
			s.skipSpace()
		}
	case '[':
		s.i++
		s.skipSpace()
		if s.expect(']') {
			return true
		}
		for {
			if !s.skipValue(depth + 1) {
				return false
			}
			s.skipSpace()
			if s.expect(']') {
				return true
			}
			if !s.expect(',') {
				return false
			}
			s.skipSpace()
		}
	case 't':
		return s.literal("true")
	case 'f':
		return s.literal("false")
	case 'n':
		return s.literal("null")
	}
	_, ok := s.number()
	return ok
}

// openObject consumes the '{' of an object.
func (s *scanner) openObject() bool {
	s.skipSpace()
	return s.expect('{')
}

// member reads the next member's name and its colon, leaving the scanner
// at the value; more is false at the end of the object (consumed). first
// says whether no member was read yet. The name is an ASCII name without
// escapes, or ok is false.
func (s *scanner) member(first bool) (name []byte, more, ok bool) {
	s.skipSpace()
	if s.expect('}') {
		return nil, false, true
	}
	if !first {
		if !s.expect(',') {
			return nil, false, false
		}
		s.skipSpace()
	}
	raw, escaped, ok := s.str()
	if !ok || escaped {
		return nil, false, false
	}
	name = raw[1 : len(raw)-1]
	for _, c := range name {
		if c >= utf8.RuneSelf {
			return nil, false, false
		}
	}
	s.skipSpace()
	if !s.expect(':') {
		return nil, false, false
	}
	s.skipSpace()
	return name, true, true
}

// object reads the members of the object at the scanner. For a member
// named exactly like one of fields it calls field, which reads the value;
// it skips the value of a member that matches none of them in any letter
// case, as encoding/json ignores it, and gives up on one that differs from
// a field only in case (encoding/json would take it for that field).
func (s *scanner) object(fields []string, field func(name []byte) bool) bool {
	if !s.openObject() {
		return false
	}
	for first := true; ; first = false {
		name, more, ok := s.member(first)
		switch {
		case !ok:
			return false
		case !more:
			return true
		case known(name, fields):
			ok = field(name)
		case unknown(name, fields...):
			_, ok = s.value()
		default:
			return false
		}
		if !ok {
			return false
		}
	}
}

// known reports whether name is one of fields, exactly.
func known(name []byte, fields []string) bool {
	for _, f := range fields {
		if string(name) == f {
			return true
		}
	}
	return false
}

// The fields of the decoded types, for object.
var (
	entryFields       = []string{"Key", "Value", "Revision", "CreateRevision", "Version", "Lease", "TTL"}
	writeResultFields = []string{"Key", "Revision", "Lease"}
	listFields        = []string{"Revision", "Entries"}
	eventFields       = []string{"Type", "Key", "Value", "Revision", "More", "Reason", "Lease"}
)

// unknown reports whether encoding/json would ignore a member called name
// in a struct with the given field names: it matches none of them, in any
// letter case. The scanner must skip such a member's value, and give up
// on a name that differs from a field's only in case.
func unknown(name []byte, fields ...string) bool {
	for _, f := range fields {
		if strings.EqualFold(string(name), f) {
			return false
		}
	}
	return true
}

// string decodes a JSON string value, or reports false for a null or a
// value of another type (which encoding/json then judges).
func (s *scanner) string() (string, bool) {
	raw, escaped, ok := s.str()
	if !ok {
		return "", false
	}
	in := raw[1 : len(raw)-1]
	if !escaped && utf8.Valid(in) {
		return string(in), true
	}
	var out string
	if json.Unmarshal(raw, &out) != nil {
		return "", false
	}
	return out, true
}

// int decodes a JSON number that is an int64.
func (s *scanner) int() (int64, bool) {
	n, ok := s.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(n), 10, 64)
	return v, err == nil
}

// bool decodes true or false.
func (s *scanner) bool() (bool, bool) {
	switch {
	case s.literal("true"):
		return true, true
	case s.literal("false"):
		return false, true
	}
	return false, false
}

// entry decodes an Entry object at the scanner. With owned set, Value may
// point into s.data, which the caller gives up; else it is copied.
func (s *scanner) entry(e *Entry, owned bool) bool {
	return s.object(entryFields, func(name []byte) (ok bool) {
		switch string(name) {
		case "Key":
			e.Key, ok = s.string()
		case "Value":
			var v []byte
			if v, ok = s.value(); ok && !owned {
				v = bytes.Clone(v)
			}
			e.Value = v
		case "Revision":
			e.Revision, ok = s.int()
		case "CreateRevision":
			e.CreateRevision, ok = s.int()
		case "Version":
			e.Version, ok = s.int()
		case "Lease":
			e.Lease, ok = s.int()
		case "TTL":
			e.TTL, ok = s.duration()
		}
		return ok
	})
}

// duration decodes a wire.Duration.
func (s *scanner) duration() (wire.Duration, bool) {
	v, ok := s.value()
	if !ok {
		return 0, false
	}
	d, err := wire.ParseDuration(v)
	return d, err == nil
}

// decodeEntry decodes an answer of /get. Value is a copy: data may be
// reused.
func decodeEntry(data []byte, e *Entry) error {
	s := scanner{data: data}
	if s.entry(e, false) && s.end() {
		return nil
	}
	*e = Entry{}
	return json.Unmarshal(data, e)
}

// decodeWriteResult decodes an answer of /set or /delete.
func decodeWriteResult(data []byte, r *wire.WriteResult) error {
	s := scanner{data: data}
	if s.writeResult(r) && s.end() {
		return nil
	}
	*r = wire.WriteResult{}
	return json.Unmarshal(data, r)
}

func (s *scanner) writeResult(r *wire.WriteResult) bool {
	return s.object(writeResultFields, func(name []byte) (ok bool) {
		switch string(name) {
		case "Key":
			r.Key, ok = s.string()
		case "Revision":
			r.Revision, ok = s.int()
		case "Lease":
			r.Lease, ok = s.int()
		}
		return ok
	})
}

// decodeList decodes an answer of /list. data is the caller's to give up:
// the Values point into it.
func decodeList(data []byte, l *List) error {
	s := scanner{data: data}
	if s.list(l) && s.end() {
		return nil
	}
	*l = List{}
	return json.Unmarshal(data, l)
}

func (s *scanner) list(l *List) bool {
	return s.object(listFields, func(name []byte) (ok bool) {
		switch string(name) {
		case "Revision":
			l.Revision, ok = s.int()
		case "Entries":
			ok = s.entries(l)
		}
		return ok
	})
}

func (s *scanner) entries(l *List) bool {
	if l.Entries != nil || !s.expect('[') {
		// A second "Entries" (which encoding/json decodes into the
		// entries of the first), null, or not an array: encoding/json
		// decides.
		return false
	}
	l.Entries = l.Entries[:0]
	s.skipSpace()
	if s.expect(']') {
		if l.Entries == nil {
			l.Entries = []Entry{}
		}
		return true
	}
	for {
		var e Entry
		if !s.entry(&e, true) {
			return false
		}
		l.Entries = append(l.Entries, e)
		s.skipSpace()
		if s.expect(']') {
			return true
		}
		if !s.expect(',') {
			return false
		}
	}
}

// decodeEvent decodes a message of the change feed. Value is a copy: data
// may be reused.
func decodeEvent(data []byte, ev *Event) error {
	s := scanner{data: data}
	if s.event(ev) && s.end() {
		return nil
	}
	*ev = Event{}
	return json.Unmarshal(data, ev)
}

func (s *scanner) event(ev *Event) bool {
	return s.object(eventFields, func(name []byte) (ok bool) {
		switch string(name) {
		case "Type":
			start := s.i
			var raw []byte
			if raw, _, ok = s.str(); ok {
				switch string(raw) { // the usual types, without allocating
				case `"set"`:
					ev.Type = wire.EventSet
				case `"delete"`:
					ev.Type = wire.EventDelete
				case `"progress"`:
					ev.Type = wire.EventProgress
				default:
					s.i = start
					ev.Type, ok = s.string()
				}
			}
		case "Key":
			ev.Key, ok = s.string()
		case "Value":
			var v []byte
			if v, ok = s.value(); ok {
				ev.Value = bytes.Clone(v)
			}
		case "Revision":
			ev.Revision, ok = s.int()
		case "More":
			ev.More, ok = s.bool()
		case "Reason":
			ev.Reason, ok = s.string()
		case "Lease":
			ev.Lease, ok = s.int()
		}
		return ok
	})
}
