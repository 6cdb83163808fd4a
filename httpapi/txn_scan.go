package httpapi

import "encoding/json"

// scanTxnBody splits a /txn body into b as json.Unmarshal would, without
// reflection (which took most of a transaction's time), for the usual body:
// an object whose member names, and those of its conditions and
// operations, are ASCII without escapes. It reports false for anything
// else, and the caller falls back to json.Unmarshal, whose verdict (and
// error message) then stands. Every value it keeps, and every member it
// skips, is checked with json.Valid; the raw members point into data.
func scanTxnBody(data []byte, b *txnBody) bool {
	end, ok := scanObject(data, skipSpace(data, 0), false, func(name, v []byte) bool {
		var list *[]txnOpBody
		switch {
		case asciiEqualFold(name, "if"):
			return scanArray(v, &b.If, func(obj []byte, c *txnCondBody) bool {
				end, ok := scanObject(obj, 0, true, func(name, v []byte) bool {
					switch {
					case asciiEqualFold(name, "key"):
						c.Key = v
					case asciiEqualFold(name, "compare"):
						c.Compare = v
					case asciiEqualFold(name, "revision"):
						c.Revision = v
					case asciiEqualFold(name, "exists"):
						c.Exists = v
					case asciiEqualFold(name, "value"):
						c.Value = v
					}
					return true
				})
				return ok && end == len(obj)
			})
		case asciiEqualFold(name, "then"):
			list = &b.Then
		case asciiEqualFold(name, "else"):
			list = &b.Else
		default:
			return json.Valid(v) // a member kvs ignores
		}
		return scanArray(v, list, func(obj []byte, op *txnOpBody) bool {
			end, ok := scanObject(obj, 0, true, func(name, v []byte) bool {
				switch {
				case asciiEqualFold(name, "op"):
					op.Op = v
				case asciiEqualFold(name, "key"):
					op.Key = v
				case asciiEqualFold(name, "value"):
					op.Value = v
				case asciiEqualFold(name, "lease"):
					op.Lease = v
				}
				return true
			})
			return ok && end == len(obj)
		})
	})
	return ok && skipSpace(data, end) == len(data)
}

// scanObject reads the object that starts at data[i] and calls member for
// each member, with its name and raw value, checked with json.Valid (an
// object or array only when deep is set: else member checks it). It
// returns the end of the object, and false for anything it does not take
// (see scanTxnBody) or when member returns false.
func scanObject(data []byte, i int, deep bool, member func(name, value []byte) bool) (int, bool) {
	if i == len(data) || data[i] != '{' {
		return i, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, true
	}
	for {
		if i == len(data) || data[i] != '"' {
			return i, false
		}
		j := i + 1
		for ; j < len(data) && data[j] != '"'; j++ {
			if c := data[j]; c == '\\' || c < 0x20 || c >= 0x80 {
				return i, false
			}
		}
		if j == len(data) {
			return i, false
		}
		name := data[i+1 : j]
		i = skipSpace(data, j+1)
		if i == len(data) || data[i] != ':' {
			return i, false
		}
		i = skipSpace(data, i+1)
		end := skipValue(data, i)
		if end <= i {
			return i, false
		}
		v := data[i:end]
		if (deep || v[0] != '{' && v[0] != '[') && !json.Valid(v) {
			return i, false
		}
		if !member(name, v) {
			return i, false
		}
		i = skipSpace(data, end)
		if i == len(data) {
			return i, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return i + 1, true
		default:
			return i, false
		}
	}
}

// scanArray sets *out to the elements of v, a JSON array of objects (or
// null, which sets it to nil), each read by elem; an element that is null
// is a zero T, as json.Unmarshal makes it. Any other value is not taken:
// scanArray then reports false.
func scanArray[T any](v []byte, out *[]T, elem func(obj []byte, t *T) bool) bool {
	if string(v) == "null" {
		*out = nil
		return true
	}
	if v[0] != '[' {
		return false
	}
	list := []T{}
	i := skipSpace(v, 1)
	if i < len(v) && v[i] == ']' {
		*out = list
		return i+1 == len(v)
	}
	for {
		end := skipValue(v, i)
		if end <= i {
			return false
		}
		var t T
		switch e := v[i:end]; {
		case string(e) == "null":
		case e[0] == '{':
			if !elem(e, &t) {
				return false
			}
		default:
			return false
		}
		list = append(list, t)
		i = skipSpace(v, end)
		if i == len(v) {
			return false
		}
		switch v[i] {
		case ',':
			i = skipSpace(v, i+1)
		case ']':
			*out = list
			return i+1 == len(v)
		default:
			return false
		}
	}
}
