package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/kvsdb/kvs/wire"
)

// Entry is a key's state: its value (compact JSON text, never null), the
// revision of its last change, the revision that created it, and its
// version (1 when created, +1 per set).
type Entry = wire.Entry

// List is a listing: the entries whose keys start with a prefix, sorted by
// key, exactly as they were at Revision.
type List = wire.List

// ReadOptions are the options of a read. Nil means the defaults.
type ReadOptions struct {
	// Local lets kvsd answer from its own state at once, sent as
	// consistency=local: with several kvsd sharing a Kafka topic, the
	// answer may then miss writes that another instance has already
	// acknowledged. False, the default, reads linearizably: the answer
	// holds every write acknowledged before the call.
	Local bool
}

// WriteOptions are the options of a set or delete. Nil means the defaults.
type WriteOptions struct {
	// IfRevision, when not nil, makes the change conditional: it is made
	// only if the key's revision is *IfRevision, where 0 means "only if
	// the key does not exist". Otherwise the call fails with an *Error
	// that matches ErrConditionFailed and holds the key's entry.
	IfRevision *int64
	// Lease, on a set, attaches the key to that lease (see Grant): the key
	// is deleted when the lease expires or is revoked. A set fails with an
	// *Error that matches ErrLeaseNotFound if the lease does not exist. A
	// set without it detaches the key from its lease.
	Lease int64
	// TTL, on a set and instead of Lease, gives the key a lease of its own
	// with this time to live (Write returns its ID).
	TTL time.Duration
}

// WriteResult is the answer to a set or a delete: the change's revision,
// and on a set with a lease the lease.
type WriteResult = wire.WriteResult

// String returns s as a JSON string value, to Set: String("Mumbai") is
// "Mumbai" with its quotes. Unlike json.Marshal it does not escape <, >
// and &, so the server stores the text as written.
func String(s string) json.RawMessage {
	return wire.AppendString(nil, s)
}

// query returns the query string of a read with opts.
func (o *ReadOptions) query() string {
	if o != nil && o.Local {
		return wire.ParamConsistency + "=" + wire.ConsistencyLocal
	}
	return ""
}

// checkKey rejects a key that the request could not carry as given.
func checkKey(op, key string) error {
	switch {
	case key == "":
		return fmt.Errorf("client: %s: %w: empty key", op, ErrInvalid)
	case !utf8.ValidString(key):
		return fmt.Errorf("client: %s: %w: key %q is not valid UTF-8", op, ErrInvalid, key)
	}
	return nil
}

// appendKeyBody appends {"Key":key, leaving the object open.
func appendKeyBody(b []byte, key string) []byte {
	b = append(b, `{"Key":`...)
	return wire.AppendString(b, key)
}

// Get returns the entry of key. It fails with an *Error that matches
// ErrNotFound when the key does not exist.
func (c *Client) Get(ctx context.Context, key string, opts *ReadOptions) (Entry, error) {
	if err := checkKey("get", key); err != nil {
		return Entry{}, err
	}
	bp := c.getBuf()
	defer c.putBuf(bp)
	*bp = append(appendKeyBody(*bp, key), '}')
	a, err := c.do(ctx, request{op: "get", key: key, method: http.MethodPost, path: wire.PathGet, query: opts.query(), body: *bp})
	if err != nil {
		return Entry{}, err
	}
	defer c.putBuf(a.buf)
	var e Entry
	if err := decodeEntry(a.data, &e); err != nil || len(e.Value) == 0 {
		return Entry{}, &ProtocolError{Op: "get", Status: http.StatusOK, Body: start(a.data)}
	}
	return e, nil
}

// Set sets key to value, the JSON text of any value but null (String makes
// one of a string), and returns the revision of the change.
func (c *Client) Set(ctx context.Context, key string, value json.RawMessage, opts *WriteOptions) (int64, error) {
	r, err := c.Write(ctx, key, value, opts)
	return r.Revision, err
}

// Write is Set, returning the whole answer: the revision and, with
// WriteOptions.Lease or TTL, the key's lease.
func (c *Client) Write(ctx context.Context, key string, value json.RawMessage, opts *WriteOptions) (WriteResult, error) {
	if err := checkKey("set", key); err != nil {
		return WriteResult{}, err
	}
	if opts != nil && opts.Lease != 0 && opts.TTL != 0 {
		return WriteResult{}, fmt.Errorf("client: set %q: %w: give a Lease or a TTL, not both", key, ErrInvalid)
	}
	switch v := bytes.TrimSpace(value); {
	case len(v) == 0:
		return WriteResult{}, fmt.Errorf("client: set %q: %w: no value", key, ErrInvalid)
	case string(v) == "null":
		return WriteResult{}, fmt.Errorf("client: set %q: %w: a value cannot be null; delete the key instead", key, ErrInvalid)
	case !json.Valid(v):
		return WriteResult{}, fmt.Errorf("client: set %q: %w: the value is not valid JSON", key, ErrInvalid)
	}
	bp := c.getBuf()
	defer c.putBuf(bp)
	b := append(appendKeyBody(*bp, key), `,"Value":`...)
	b = append(b, value...)
	if opts != nil && opts.Lease != 0 {
		b = append(b, `,"Lease":`...)
		b = strconv.AppendInt(b, opts.Lease, 10)
	}
	if opts != nil && opts.TTL != 0 {
		b = append(b, `,"TTL":"`...)
		b = append(b, time.Duration(opts.TTL).String()...)
		b = append(b, '"')
	}
	*bp = opts.appendCond(b)
	return c.writeResult(ctx, "set", key, wire.PathSet, *bp)
}

// Delete deletes key and returns the revision of the change. It fails with
// an *Error that matches ErrNotFound when the key does not exist (and
// IfRevision is not set).
func (c *Client) Delete(ctx context.Context, key string, opts *WriteOptions) (int64, error) {
	if err := checkKey("delete", key); err != nil {
		return 0, err
	}
	bp := c.getBuf()
	defer c.putBuf(bp)
	*bp = opts.appendCond(appendKeyBody(*bp, key))
	return c.write(ctx, "delete", key, wire.PathDelete, *bp)
}

// appendCond appends the condition of o, if any, and closes the object.
func (o *WriteOptions) appendCond(b []byte) []byte {
	if o != nil && o.IfRevision != nil {
		b = append(b, `,"IfRevision":`...)
		b = strconv.AppendInt(b, *o.IfRevision, 10)
	}
	return append(b, '}')
}

func (c *Client) write(ctx context.Context, op, key, path string, body []byte) (int64, error) {
	r, err := c.writeResult(ctx, op, key, path, body)
	return r.Revision, err
}

func (c *Client) writeResult(ctx context.Context, op, key, path string, body []byte) (WriteResult, error) {
	a, err := c.do(ctx, request{op: op, key: key, method: http.MethodPost, path: path, body: body})
	if err != nil {
		return WriteResult{}, err
	}
	defer c.putBuf(a.buf)
	var r wire.WriteResult
	if err := decodeWriteResult(a.data, &r); err != nil || r.Revision <= 0 {
		return WriteResult{}, &ProtocolError{Op: op, Status: http.StatusOK, Body: start(a.data)}
	}
	return r, nil
}

// List returns the entries whose keys start with prefix (every key when
// prefix is empty), sorted by key, as one consistent snapshot: exactly the
// changes up to List.Revision. A watch from List.Revision + 1 continues it
// without a gap.
func (c *Client) List(ctx context.Context, prefix string, opts *ReadOptions) (*List, error) {
	if !utf8.ValidString(prefix) {
		return nil, fmt.Errorf("client: list: %w: prefix %q is not valid UTF-8", ErrInvalid, prefix)
	}
	q := opts.query()
	if prefix != "" {
		q = joinQuery(q, wire.ParamPrefix+"="+url.QueryEscape(prefix))
	}
	a, err := c.do(ctx, request{op: "list", method: http.MethodGet, path: wire.PathList, query: q})
	if err != nil {
		return nil, err
	}
	// The entries' values point into the answer: it is theirs now.
	data := a.data
	if cap(data) <= 64<<10 {
		data = bytes.Clone(data)
		c.putBuf(a.buf)
	}
	l := new(List)
	if err := decodeList(data, l); err != nil || l.Entries == nil {
		return nil, &ProtocolError{Op: "list", Status: http.StatusOK, Body: start(data)}
	}
	return l, nil
}

// Revision returns the server's current revision: every change up to it
// has been applied, and a watch from Revision + 1 misses none after it.
func (c *Client) Revision(ctx context.Context, opts *ReadOptions) (int64, error) {
	req := request{op: "revision", method: http.MethodHead, path: wire.PathList, query: opts.query()}
	a, err := c.do(ctx, req)
	var e *Error
	if errors.As(err, &e) {
		// A HEAD answer has no body: ask again for the server's message.
		req.method = http.MethodGet
		if _, err2 := c.do(ctx, req); err2 != nil {
			var e2 *Error
			if errors.As(err2, &e2) && e2.Status == e.Status {
				err = e2
			}
		}
	}
	if err != nil {
		return 0, err
	}
	c.putBuf(a.buf)
	rev, err := strconv.ParseInt(a.header.Get(wire.RevisionHeader), 10, 64)
	if err != nil || rev < 0 {
		return 0, &ProtocolError{Op: "revision", Status: http.StatusOK, Body: "no " + wire.RevisionHeader + " header"}
	}
	return rev, nil
}

// Ready returns nil when the server is ready to serve current data (its
// /readyz answers 200), and otherwise why not: an *Error that matches
// ErrUnavailable with the server's reason (for example a Kafka broker out
// of reach), or the error of a server that did not answer.
func (c *Client) Ready(ctx context.Context) error {
	a, err := c.do(ctx, request{op: "ready", method: http.MethodGet, path: wire.PathReadyz})
	if err != nil {
		return err
	}
	c.putBuf(a.buf)
	return nil
}

// joinQuery joins two encoded query strings.
func joinQuery(a, b string) string {
	if a == "" {
		return b
	}
	return a + "&" + b
}
