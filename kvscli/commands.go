package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kvsdb/kvs/httpapi"
)

func defineGet(fs *flag.FlagSet) func(context.Context, *cli) error {
	key := fs.String("key", "", "get the key `K`")
	all := fs.Bool("all", false, "list every key and its value")
	prefix := fs.String("prefix", "", "with -all, list only the keys that start with `P`")
	asJSON := fs.Bool("json", false, "print the server's JSON answer")
	return func(ctx context.Context, c *cli) error {
		set := given(fs)
		switch {
		case *all && set["key"]:
			return usageErrorf("get: give -key K or -all, not both")
		case set["prefix"] && !*all:
			return usageErrorf("get: -prefix lists keys: use -all -prefix %s", *prefix)
		case *all:
			return c.getAll(ctx, *prefix, *asJSON)
		case !set["key"]:
			return usageErrorf("get: give -key K, or -all to list every key\nusage: kvscli [global flags] get -key K | -all [-prefix P] [-json]")
		}
		if err := checkKey("get", *key); err != nil {
			return err
		}
		_, body, err := c.call(ctx, http.MethodPost, "/get", nil, httpapi.WriteRequest{Key: *key})
		var ae *apiError
		if errors.As(err, &ae) && ae.status == http.StatusNotFound && ae.body.Error != "" {
			return &exitError{exitFailed, fmt.Sprintf("get: key %q not found at kvsd %s", *key, c.addr)}
		}
		if err != nil {
			return c.fail(err, "get", false)
		}
		if *asJSON {
			return c.writeOut(withNewline(body))
		}
		var e httpapi.Entry
		if err := json.Unmarshal(body, &e); err != nil || len(e.Value) == 0 {
			return c.notKVS("get", body)
		}
		return c.writeOut(append([]byte(plainValue(e.Value)), '\n'))
	}
}

func (c *cli) getAll(ctx context.Context, prefix string, asJSON bool) error {
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	_, body, err := c.call(ctx, http.MethodGet, "/getall", q, nil)
	if err != nil {
		return c.fail(err, "get", false)
	}
	if asJSON {
		return c.writeOut(withNewline(body))
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(body, &m); err != nil {
		return c.notKVS("get", body)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out bytes.Buffer
	for _, k := range keys {
		out.WriteString(k)
		out.WriteByte('\t')
		out.WriteString(lineValue(m[k]))
		out.WriteByte('\n')
	}
	return c.writeOut(out.Bytes())
}

func defineSet(fs *flag.FlagSet) func(context.Context, *cli) error {
	key := fs.String("key", "", "set the key `K`")
	value := fs.String("value", "", "to the value `V`, a string unless -json-value")
	jsonValue := fs.Bool("json-value", false, "parse -value as JSON (a number, true, an object, ...)")
	ifRev := fs.Int64("if-revision", 0, "set only if the key's revision is `R`; 0: only if the key does not exist")
	return func(ctx context.Context, c *cli) error {
		set := given(fs)
		if !set["key"] || !set["value"] {
			return usageErrorf("set: give -key K and -value V\nusage: kvscli [global flags] set -key K -value V [-json-value] [-if-revision R]")
		}
		if err := checkKey("set", *key); err != nil {
			return err
		}
		req := httpapi.WriteRequest{Key: *key}
		if *jsonValue {
			v := []byte(*value)
			switch {
			case !json.Valid(v):
				return usageErrorf("set: -value %q is not valid JSON; without -json-value it is stored as a string", *value)
			case string(bytes.TrimSpace(v)) == "null":
				return usageErrorf("set: -value null: a value cannot be null; use del to remove a key")
			}
			req.Value = v
		} else {
			if !utf8.ValidString(*value) {
				return usageErrorf("set: -value is not valid UTF-8")
			}
			req.Value = jsonString(*value)
		}
		if set["if-revision"] {
			if *ifRev < 0 {
				return usageErrorf("set: -if-revision %d: a revision is >= 0", *ifRev)
			}
			req.IfRevision = ifRev
		}
		return c.write(ctx, "set", "/set", req)
	}
}

func defineDel(fs *flag.FlagSet) func(context.Context, *cli) error {
	key := fs.String("key", "", "delete the key `K`")
	ifRev := fs.Int64("if-revision", 0, "delete only if the key's revision is `R`")
	return func(ctx context.Context, c *cli) error {
		set := given(fs)
		if !set["key"] {
			return usageErrorf("del: give -key K\nusage: kvscli [global flags] del -key K [-if-revision R]")
		}
		if err := checkKey("del", *key); err != nil {
			return err
		}
		req := httpapi.WriteRequest{Key: *key}
		if set["if-revision"] {
			if *ifRev < 0 {
				return usageErrorf("del: -if-revision %d: a revision is >= 0", *ifRev)
			}
			req.IfRevision = ifRev
		}
		return c.write(ctx, "del", "/delete", req)
	}
}

// write sends a set or delete and prints the revision of the change.
func (c *cli) write(ctx context.Context, what, path string, req httpapi.WriteRequest) error {
	_, body, err := c.call(ctx, http.MethodPost, path, nil, req)
	var ae *apiError
	if errors.As(err, &ae) && ae.body.Error != "" {
		switch ae.status {
		case http.StatusNotFound:
			return &exitError{exitFailed, fmt.Sprintf("%s: key %q not found at kvsd %s", what, req.Key, c.addr)}
		case http.StatusConflict:
			want := int64(-1)
			if req.IfRevision != nil {
				want = *req.IfRevision
			}
			return &exitError{exitFailed, what + ": " + conflictMessage(req.Key, want, ae.body.Current)}
		}
	}
	if err != nil {
		return c.fail(err, what, true)
	}
	var res httpapi.WriteResult
	if err := json.Unmarshal(body, &res); err != nil || res.Revision <= 0 {
		return c.notKVS(what, body)
	}
	return c.writeOut(strconv.AppendInt(nil, res.Revision, 10), '\n')
}

// conflictMessage explains a failed -if-revision condition.
func conflictMessage(key string, want int64, cur *httpapi.Entry) string {
	switch {
	case cur == nil:
		return fmt.Sprintf("condition failed: key %q does not exist, so its revision is not %d", key, want)
	case want == 0:
		return fmt.Sprintf("condition failed: key %q exists (revision %d), and -if-revision 0 means only if it does not", key, cur.Revision)
	default:
		return fmt.Sprintf("condition failed: key %q is at revision %d, not %d; get it again, and retry with -if-revision %d if your change still applies",
			key, cur.Revision, want, cur.Revision)
	}
}

// checkKey rejects what the server would reject, or what encoding/json
// would silently change (invalid UTF-8).
func checkKey(what, key string) error {
	switch {
	case key == "":
		return usageErrorf("%s: -key is empty", what)
	case !utf8.ValidString(key):
		return usageErrorf("%s: -key is not valid UTF-8", what)
	}
	return nil
}

// notKVS reports a 2xx answer that is not what kvsd sends.
func (c *cli) notKVS(what string, body []byte) error {
	s := strings.TrimSpace(string(body))
	if len(s) > 100 {
		s = s[:100] + "..."
	}
	return &exitError{exitServer, fmt.Sprintf("%s: the server at %s answered %q, not as kvsd does; check -server-address", what, c.addr, s)}
}

// writeOut writes the parts to stdout.
func (c *cli) writeOut(b []byte, more ...byte) error {
	w := bufio.NewWriter(c.stdout)
	w.Write(b)
	w.Write(more)
	if err := w.Flush(); err != nil {
		return &exitError{exitFailed, fmt.Sprintf("writing the output: %v", err)}
	}
	return nil
}

func withNewline(b []byte) []byte {
	if len(b) == 0 || b[len(b)-1] != '\n' {
		b = append(b, '\n')
	}
	return b
}

// jsonString returns s as a JSON string, without escaping <, > and &, so
// that the server stores the text a user would write.
func jsonString(s string) json.RawMessage {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(s) // a valid UTF-8 string always encodes
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

// plainValue returns how get prints a value: a JSON string as its text,
// any other JSON value as stored.
func plainValue(raw json.RawMessage) string {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	}
	return string(raw)
}

// lineValue is plainValue for line-per-entry output: a string that holds
// a control character (a tab, a newline) stays JSON, so that it takes one
// field of one line.
func lineValue(raw json.RawMessage) string {
	s := plainValue(raw)
	if len(raw) > 0 && raw[0] == '"' && strings.ContainsFunc(s, isControl) {
		return string(raw)
	}
	return s
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
