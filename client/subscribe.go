package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync/atomic"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/wire"
)

// Event is one change of the change feed, or a progress event. Types are
// wire.EventSet, wire.EventDelete, wire.EventProgress, and EventRelist in a
// watch with WatchOptions.Relist.
type Event = wire.Event

// EventRelist is the type of the event that a watch with
// WatchOptions.Relist delivers when the server no longer has the revision
// to resume from: the set events that follow it, up to the first without
// More, are every watched key as it is at the relist event's Revision, and
// the keys they do not name no longer exist.
const EventRelist = "relist"

// maxEvent bounds the size of one event of the feed.
const maxEvent = 256 << 20

// SubscribeOptions selects the changes of a subscription. The zero value
// means every key, from the changes after the subscription starts.
type SubscribeOptions struct {
	// Key selects one key; Prefix the keys that start with it. Give one
	// or neither (every key).
	Key, Prefix string
	// From is the first revision to deliver: the server replays what it
	// retained from From on, then goes on live. Zero means only the
	// changes after the subscription starts.
	From int64
}

// query returns the query string of /subscribe.
func (o SubscribeOptions) query() string {
	q := url.Values{}
	switch {
	case o.Key != "":
		q.Set(wire.ParamKey, o.Key)
	case o.Prefix != "":
		q.Set(wire.ParamPrefix, o.Prefix)
	}
	if o.From > 0 {
		q.Set(wire.ParamFrom, strconv.FormatInt(o.From, 10))
	}
	return q.Encode()
}

// Subscription is one connection to the change feed. It does not
// reconnect: Watch does, on top of it. Its methods are not safe for
// concurrent use, except Close.
type Subscription struct {
	c      *Client
	conn   *websocket.Conn
	ctx    context.Context
	stop   func() bool // stops closing conn when ctx is done
	buf    []byte      // the message being read
	ev     Event       // the event being decoded
	next   int64       // the revision after the last event, for a 4410
	closed atomic.Bool // by Close
	// idle, when set, is why the connection was closed: no message in
	// time (set by Watch).
	idle atomic.Pointer[error]
}

// Subscribe opens a connection to the change feed. It fails with a
// *CompactedError (ErrCompacted) when the server no longer has revision
// opts.From, with an *Error for other refusals (400 for bad options, 401,
// 429 with too many subscribers), and with an *UnreachableError when the
// server does not answer within Options.Timeout. The subscription ends when
// ctx is done or Close is called.
func (c *Client) Subscribe(ctx context.Context, opts SubscribeOptions) (*Subscription, error) {
	switch {
	case opts.Key != "" && opts.Prefix != "":
		return nil, fmt.Errorf("client: subscribe: %w: give Key or Prefix, not both", ErrInvalid)
	case opts.From < 0:
		return nil, fmt.Errorf("client: subscribe: %w: From %d is negative", ErrInvalid, opts.From)
	}
	if opts.Key != "" {
		if err := checkKey("subscribe", opts.Key); err != nil {
			return nil, err
		}
	}
	dctx, cancel := c.withTimeout(ctx)
	defer cancel()
	u := c.base + wire.PathSubscribe
	if q := opts.query(); q != "" {
		u += "?" + q
	}
	conn, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: c.hc, HTTPHeader: c.header})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			var body []byte
			if resp.Body != nil {
				body, _ = io.ReadAll(io.LimitReader(resp.Body, 4<<10))
			}
			err := c.answerError(request{op: "subscribe", key: opts.Key, method: http.MethodGet}, resp.StatusCode, body)
			var e *Error
			if errors.As(err, &e) && e.Status == http.StatusGone {
				oldest, _ := wire.ParseOldest(e.Message)
				return nil, &CompactedError{Next: max(opts.From, 1), Oldest: oldest, Message: e.Message}
			}
			return nil, err
		}
		return nil, c.transportError(ctx, dctx, "subscribe", err)
	}
	conn.SetReadLimit(maxEvent)
	s := &Subscription{c: c, conn: conn, ctx: ctx, next: max(opts.From, 1)}
	s.stop = context.AfterFunc(ctx, func() { conn.CloseNow() })
	return s, nil
}

// errClosed is what Next returns after Close.
var errClosed = errors.New("client: subscription closed")

// Next blocks until the next event and returns it. It returns an error
// when the subscription ends: the context's error when it was done, a
// *CloseError when the server closed the feed (Resume then says where to
// resume: wire.CloseSlowConsumer, wire.CloseGoingAway), a *CompactedError
// (ErrCompacted) on a 4410 close, and an *UnreachableError (Op "read")
// when the connection was lost. A message that is not an event is a
// *ProtocolError (Status 101); the subscription goes on if Next is called
// again. The
// Event's Value is its own: it stays valid after the next call.
func (s *Subscription) Next() (Event, error) {
	for {
		typ, r, err := s.conn.Reader(context.Background())
		if err == nil {
			s.buf, err = readAll(r, s.buf[:0])
		}
		if err != nil {
			return Event{}, s.readError(err)
		}
		if typ != websocket.MessageText {
			continue
		}
		// Decoded into s.ev, which does not escape for each event.
		ev := &s.ev
		*ev = Event{}
		// A progress event at 0 comes from a store with no change yet.
		if err := decodeEvent(s.buf, ev); err != nil || ev.Type == "" || ev.Revision < 0 || ev.Revision == 0 && ev.Type != wire.EventProgress {
			return Event{}, &ProtocolError{Op: "subscribe", Status: http.StatusSwitchingProtocols, Body: start(s.buf)}
		}
		if cap(s.buf) > 1<<20 {
			s.buf = nil // do not keep a large value's buffer
		}
		if ev.Type != wire.EventProgress || ev.Revision >= s.next {
			s.next = ev.Revision + 1
		}
		return *ev, nil
	}
}

// readError explains why reading the feed failed.
func (s *Subscription) readError(err error) error {
	var ce websocket.CloseError
	switch {
	case errors.As(err, &ce):
		return newCloseError(int(ce.Code), ce.Reason, s.next)
	case s.ctx.Err() != nil:
		return fmt.Errorf("client: subscribe: %w", context.Cause(s.ctx))
	case s.closed.Load():
		return errClosed
	}
	if p := s.idle.Load(); p != nil {
		err = *p
	}
	return &UnreachableError{Op: "read", Addr: s.c.addr, Err: err}
}

// Close ends the subscription; a Next in progress returns. It does not
// wait for the server.
func (s *Subscription) Close() error {
	s.closed.Store(true)
	s.stop()
	s.conn.CloseNow()
	return nil
}

// closeIdle closes the connection because no message came for too long.
func (s *Subscription) closeIdle(why error) {
	s.idle.Store(&why)
	s.conn.CloseNow()
}
