package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kvsdb/kvs/kv"
)

// statusError is a client error with the status it is answered with.
type statusError struct {
	code int
	msg  string
}

func (e *statusError) Error() string { return e.msg }

func badRequest(msg string) error { return &statusError{http.StatusBadRequest, msg} }

// body is a request body as the client sent it: JSON members are matched
// case-insensitively by encoding/json, and kept raw so that each can be
// checked before it is decoded.
type body struct {
	Key        json.RawMessage
	Value      json.RawMessage
	IfRevision json.RawMessage
	Lease      json.RawMessage
	TTL        json.RawMessage
}

// request is a decoded and validated request.
type request struct {
	key   string
	value []byte // compact JSON; nil when the request had none
	cond  bool
	ifRev int64
	lease int64         // a set's lease, 0 for none
	ttl   time.Duration // a set's own lease's TTL, 0 for none
}

// decodeBody decodes a request body. needValue says whether Value is
// required (set) or ignored (get, delete); a set may also have a Lease or a
// TTL, at most maxTTL.
func decodeBody(data []byte, needValue bool, maxValue int, maxTTL time.Duration) (request, error) {
	var req request
	if len(bytes.TrimSpace(data)) == 0 {
		return req, badRequest(`empty request body: send a JSON object such as {"Key":"k"}`)
	}
	var b body
	if !scanBody(data, &b) {
		var slow body // escapes to the heap, which b need not
		if err := json.Unmarshal(data, &slow); err != nil {
			return req, badRequest("malformed JSON: " + jsonErrorText(err))
		}
		b = slow
	}
	key, err := decodeKey(b.Key)
	if err != nil {
		return req, err
	}
	req.key = key
	if needValue {
		if req.value, err = decodeValue(b.Value, maxValue); err != nil {
			return req, err
		}
		if req.lease, err = decodeLeaseID(b.Lease, "Lease", false); err != nil {
			return req, err
		}
		if len(b.TTL) > 0 {
			if req.lease != 0 {
				return req, badRequest(`give "Lease" or "TTL", not both: "TTL" grants the key a lease of its own`)
			}
			if req.ttl, err = decodeTTL(b.TTL, maxTTL); err != nil {
				return req, err
			}
		}
	}
	if req.cond, req.ifRev, err = decodeIfRevision(b.IfRevision); err != nil {
		return req, err
	}
	return req, nil
}

func jsonErrorText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return se.Error() + " at offset " + strconv.FormatInt(se.Offset, 10)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "the body must be a JSON object, not " + te.Value
		}
		return te.Field + " must not be " + te.Value
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func decodeKey(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", badRequest(`missing "Key"`)
	}
	if raw[0] != '"' {
		return "", badRequest(`"Key" must be a JSON string`)
	}
	if !utf8.Valid(raw) {
		return "", badRequest("key is not valid UTF-8")
	}
	var key string
	if bytes.IndexByte(raw, '\\') < 0 {
		key = string(raw[1 : len(raw)-1])
	} else if err := json.Unmarshal(raw, &key); err != nil {
		return "", badRequest("malformed key: " + jsonErrorText(err))
	} else if strings.Count(key, "\uFFFD") > replacementChars(raw) {
		// The decoder turned an escaped lone surrogate ("\ud800") into
		// U+FFFD: the key would not be the one the client sent.
		return "", badRequest(`key holds a \u escape of a lone surrogate, which is not a character`)
	}
	return key, checkKey(key)
}

// replacementChars counts the U+FFFD characters that raw, a JSON string,
// holds literally or as the escape \ufffd.
func replacementChars(raw []byte) int {
	n := bytes.Count(raw, []byte("\uFFFD"))
	for i := 0; i+6 <= len(raw); i++ {
		if raw[i] == '\\' {
			if raw[i+1] == 'u' && strings.EqualFold(string(raw[i+2:i+6]), "fffd") {
				n++
			}
			i++ // the escaped character cannot start an escape
		}
	}
	return n
}

// checkKey explains why key is not a valid key, if it is not.
func checkKey(key string) error {
	if kv.ValidKey(key) {
		return nil
	}
	switch {
	case key == "":
		return badRequest("key must not be empty")
	case len(key) > kv.MaxKeyBytes:
		return badRequest("key is longer than " + strconv.Itoa(kv.MaxKeyBytes) + " bytes")
	case !utf8.ValidString(key):
		return badRequest("key is not valid UTF-8")
	}
	return badRequest("key must not contain control characters")
}

// decodeValue checks a raw value and returns its compact form.
func decodeValue(raw json.RawMessage, maxValue int) ([]byte, error) {
	if len(raw) == 0 {
		return nil, badRequest(`missing "Value"`)
	}
	if string(raw) == "null" {
		return nil, badRequest("value must not be null: use /delete to remove a key")
	}
	if !utf8.Valid(raw) {
		return nil, badRequest("value is not valid UTF-8")
	}
	v := bytes.Clone(raw) // raw may point into a reused buffer
	if bytes.ContainsAny(raw, " \t\r\n") {
		var buf bytes.Buffer
		buf.Grow(len(raw))
		if err := json.Compact(&buf, raw); err != nil {
			return nil, badRequest("malformed value: " + jsonErrorText(err))
		}
		v = buf.Bytes()
	}
	if len(v) > maxValue {
		return nil, &statusError{http.StatusRequestEntityTooLarge,
			"value is " + strconv.Itoa(len(v)) + " bytes, over the limit of " + strconv.Itoa(maxValue)}
	}
	return v, nil
}

func decodeIfRevision(raw json.RawMessage) (bool, int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return false, 0, nil
	}
	rev, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || rev < 0 {
		return false, 0, badRequest(`"IfRevision" must be a non-negative integer`)
	}
	return true, rev, nil
}

// parseQuery parses r's query string. A malformed one is a 400: url.URL's
// Query would drop the malformed parameters and carry on without them.
func parseQuery(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, badRequest("malformed query string: " + err.Error())
	}
	return q, nil
}

// queryRequest reads key and IfRevision from the query string, matching
// parameter names case-insensitively like JSON members.
func queryRequest(r *http.Request) (request, error) {
	var req request
	var haveKey bool
	q, err := parseQuery(r)
	if err != nil {
		return req, err
	}
	var haveIf bool
	for name, vals := range q {
		var seen *bool
		switch {
		case strings.EqualFold(name, "key"):
			seen = &haveKey
			req.key = vals[0]
		case strings.EqualFold(name, "ifrevision"):
			seen = &haveIf
			var err error
			if req.cond, req.ifRev, err = decodeIfRevision(json.RawMessage(vals[0])); err != nil {
				return req, err
			}
		default:
			continue
		}
		if *seen || len(vals) > 1 {
			return req, badRequest("parameter " + strconv.Quote(name) + " given more than once")
		}
		*seen = true
	}
	if !haveKey {
		return req, badRequest(`missing key: pass ?key=K or a JSON body such as {"Key":"k"}`)
	}
	return req, checkKey(req.key)
}

// scanBody splits data into the members of body as json.Unmarshal would,
// without reflection, for the usual request: one object whose member names
// are ASCII without escapes. It reports false for anything else, and the
// caller falls back to json.Unmarshal, whose verdict (and error message)
// then stands. Every member's value is checked with json.Valid; the raw
// members point into data.
func scanBody(data []byte, b *body) bool {
	end, ok := scanObject(data, skipSpace(data, 0), true, func(name, v []byte) bool {
		switch {
		case asciiEqualFold(name, "key"):
			b.Key = v
		case asciiEqualFold(name, "value"):
			b.Value = v
		case asciiEqualFold(name, "ifrevision"):
			b.IfRevision = v
		case asciiEqualFold(name, "lease"):
			b.Lease = v
		case asciiEqualFold(name, "ttl"):
			b.TTL = v
		}
		return true
	})
	return ok && skipSpace(data, end) == len(data)
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the JSON value that starts at i, roughly:
// the caller checks the value with json.Valid. It returns i when there is
// no value there.
func skipValue(data []byte, i int) int {
	if i == len(data) {
		return i
	}
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(data); j++ {
			switch data[j] {
			case '"':
				j = skipString(data, j) - 1
				if j < 0 {
					return i
				}
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return i
	}
	j := i
	for j < len(data) && !strings.ContainsRune(",}] \t\r\n", rune(data[j])) {
		j++
	}
	return j
}

// skipString returns the end of the string that starts at i, or 0 if it
// does not end.
func skipString(data []byte, i int) int {
	for j := i + 1; j < len(data); j++ {
		switch data[j] {
		case '"':
			return j + 1
		case '\\':
			j++
		}
	}
	return 0
}

// asciiEqualFold reports whether name, which is ASCII, equals the
// lower-case word ignoring case.
func asciiEqualFold(name []byte, word string) bool {
	if len(name) != len(word) {
		return false
	}
	for i := range name {
		if c := name[i] | 0x20; c != word[i] {
			return false
		}
	}
	return true
}
