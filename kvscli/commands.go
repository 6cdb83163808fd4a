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
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/wire"
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
		e, err := c.kvs.Get(ctx, *key, nil)
		if errors.Is(err, client.ErrNotFound) {
			return &exitError{exitFailed, fmt.Sprintf("get: key %q not found at kvsd %s", *key, c.addr)}
		}
		if err != nil {
			return c.fail(err, "get", false)
		}
		if *asJSON {
			return c.writeOut(encodeJSON(&e))
		}
		return c.writeOut(append([]byte(plainValue(e.Value)), '\n'))
	}
}

// getAll prints the keys that start with prefix: key<TAB>value lines, or
// with asJSON the object {"key": value, ...} that /getall answers.
func (c *cli) getAll(ctx context.Context, prefix string, asJSON bool) error {
	if !utf8.ValidString(prefix) {
		return usageErrorf("get: -prefix is not valid UTF-8")
	}
	l, err := c.kvs.List(ctx, prefix, nil)
	if err != nil {
		return c.fail(err, "get", false)
	}
	var out []byte
	if asJSON {
		out = append(out, '{')
		for i, e := range l.Entries {
			if i > 0 {
				out = append(out, ',')
			}
			out = wire.AppendString(out, e.Key)
			out = append(out, ':')
			out = append(out, e.Value...)
		}
		return c.writeOut(append(out, "}\n"...))
	}
	for _, e := range l.Entries {
		out = append(out, e.Key...)
		out = append(out, '\t')
		out = append(out, lineValue(e.Value)...)
		out = append(out, '\n')
	}
	return c.writeOut(out)
}

func defineSet(fs *flag.FlagSet) func(context.Context, *cli) error {
	key := fs.String("key", "", "set the key `K`")
	value := fs.String("value", "", "to the value `V`, a string unless -json-value")
	jsonValue := fs.Bool("json-value", false, "parse -value as JSON (a number, true, an object, ...)")
	ifRev := fs.Int64("if-revision", 0, "set only if the key's revision is `R`; 0: only if the key does not exist")
	lease := fs.Int64("lease", 0, "attach the key to the lease `ID`")
	ttl := fs.String("ttl", "", "give the key a lease of its own with the TTL `D` (30s, 1m30s, or seconds)")
	return func(ctx context.Context, c *cli) error {
		set := given(fs)
		if !set["key"] || !set["value"] {
			return usageErrorf("set: give -key K and -value V\nusage: kvscli [global flags] set -key K -value V [-json-value] [-if-revision R] [-lease ID | -ttl D]")
		}
		if set["lease"] && set["ttl"] {
			return usageErrorf("set: give -lease ID or -ttl D, not both: -ttl grants the key a lease of its own")
		}
		if set["lease"] && (*lease < 1 || *lease > 1<<53-1) {
			return usageErrorf("set: -lease %d: a lease ID is an integer from 1 to 2^53-1", *lease)
		}
		var d time.Duration
		if set["ttl"] {
			var err error
			if d, err = parseTTL(*ttl); err != nil {
				return usageErrorf("set: -ttl %q: give a duration such as 30s or 1m30s, or a number of seconds", *ttl)
			}
		}
		if err := checkKey("set", *key); err != nil {
			return err
		}
		var v json.RawMessage
		if *jsonValue {
			v = []byte(*value)
			switch {
			case !json.Valid(v):
				return usageErrorf("set: -value %q is not valid JSON; without -json-value it is stored as a string", *value)
			case string(bytes.TrimSpace(v)) == "null":
				return usageErrorf("set: -value null: a value cannot be null; use del to remove a key")
			}
		} else {
			if !utf8.ValidString(*value) {
				return usageErrorf("set: -value is not valid UTF-8")
			}
			v = client.String(*value)
		}
		opts, err := writeOptions("set", set["if-revision"], *ifRev)
		if err != nil {
			return err
		}
		if set["lease"] || set["ttl"] {
			if opts == nil {
				opts = &client.WriteOptions{}
			}
			opts.Lease, opts.TTL = *lease, d
		}
		r, err := c.kvs.Write(ctx, *key, v, opts)
		if errors.Is(err, client.ErrLeaseNotFound) {
			return &exitError{exitFailed, fmt.Sprintf("set: lease %d not found at kvsd %s: never granted, revoked, or expired", *lease, c.addr)}
		}
		return c.wrote(err, "set", *key, opts, r.Revision)
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
		opts, err := writeOptions("del", set["if-revision"], *ifRev)
		if err != nil {
			return err
		}
		rev, err := c.kvs.Delete(ctx, *key, opts)
		return c.wrote(err, "del", *key, opts, rev)
	}
}

func defineHealth(fs *flag.FlagSet) func(context.Context, *cli) error {
	return func(ctx context.Context, c *cli) error {
		err := c.kvs.Ready(ctx)
		var e *client.Error
		if errors.As(err, &e) && e.Status == http.StatusServiceUnavailable {
			return &exitError{exitServer, fmt.Sprintf("health: kvsd at %s is not ready: %s; see its logs",
				c.addr, strings.TrimPrefix(e.Message, "not ready: "))}
		}
		if err != nil {
			return c.fail(err, "health", false)
		}
		return c.writeOut([]byte("ready\n"))
	}
}

// writeOptions returns the options of a set or del: with -if-revision R
// (given), a condition.
func writeOptions(what string, given bool, rev int64) (*client.WriteOptions, error) {
	if !given {
		return nil, nil
	}
	if rev < 0 {
		return nil, usageErrorf("%s: -if-revision %d: a revision is >= 0", what, rev)
	}
	return &client.WriteOptions{IfRevision: &rev}, nil
}

// wrote reports the outcome of a set or delete: the revision of the
// change, or why there is none.
func (c *cli) wrote(err error, what, key string, opts *client.WriteOptions, rev int64) error {
	var e *client.Error
	switch {
	case errors.Is(err, client.ErrNotFound):
		return &exitError{exitFailed, fmt.Sprintf("%s: key %q not found at kvsd %s", what, key, c.addr)}
	case errors.Is(err, client.ErrConditionFailed) && errors.As(err, &e):
		want := int64(-1)
		if opts != nil && opts.IfRevision != nil {
			want = *opts.IfRevision
		}
		return &exitError{exitFailed, what + ": " + conflictMessage(key, want, e.Current)}
	case err != nil:
		return c.fail(err, what, true)
	}
	return c.writeOut(strconv.AppendInt(nil, rev, 10), '\n')
}

// conflictMessage explains a failed -if-revision condition.
func conflictMessage(key string, want int64, cur *client.Entry) string {
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

// encodeJSON returns v as JSON, as kvsd writes it (<, > and & as they
// are), with a final newline.
func encodeJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.Encode(v) // the wire types always encode
	return buf.Bytes()
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
