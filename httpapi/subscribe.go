package httpapi

import (
	"context"
	"encoding/base64"
	"errors"
	"io"
	"iter"
	"math/rand/v2"
	"net/http"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/kv"
	"github.com/kvsdb/kvs/wire"
)

// Close codes of the change feed, beside websocket.StatusGoingAway (1001)
// on shutdown.
const (
	// StatusSlowConsumer closes a subscriber that fell behind by more than
	// its queue; the reason is "slow consumer, resume from <R>".
	StatusSlowConsumer websocket.StatusCode = wire.CloseSlowConsumer
	// StatusCompacted closes a subscriber whose next revision is no longer
	// retained; the reason names the oldest retained revision.
	StatusCompacted websocket.StatusCode = wire.CloseCompacted
	// StatusSessionEnded closes a subscriber whose login session (the
	// cookie of POST /login) expired or was ended by POST /logout.
	StatusSessionEnded websocket.StatusCode = wire.CloseSessionEnded
)

// Feed is the change feed that /subscribe serves.
type Feed interface {
	// Subscribe registers a subscriber for key (when not empty) or for
	// the keys that start with prefix, from revision from on (from <= 0:
	// the next change), until ctx is done: the feed then closes the
	// subscription's live channel, and the caller calls Done for the
	// events still on it too. It returns the subscription and the first
	// revision it may deliver. It fails with a *kv.CompactedError when from
	// is no longer retained.
	Subscribe(ctx context.Context, key, prefix string, from int64) (Subscription, int64, error)
	// Rev returns the last published revision: every matching change up
	// to it is already in each live subscription's events.
	Rev() int64
}

// Subscription is one subscriber of a Feed.
type Subscription interface {
	// Events returns the retained events to deliver first, in chunks
	// (the events of a chunk are Done before the next is asked for), and
	// the channel of the live events that follow them, closed when the
	// subscription ends.
	Events() (replay iter.Seq[[]*kv.Event], live <-chan *kv.Event)
	// Done tells the feed that an event received from Events is written
	// or given up, so that its memory no longer counts against the
	// subscriber's bounds. It is called once for each event.
	Done(*kv.Event)
	// Err says why the subscription ended (kv.ErrSlowConsumer,
	// kv.ErrFeedClosed, ...), or nil while it is live.
	Err() error
}

// subscribe serves GET /subscribe: the change feed over WebSocket.
func (h *Handler) subscribe(w http.ResponseWriter, r *http.Request) {
	if h.feed == nil {
		h.writeError(w, r, &statusError{http.StatusNotFound, "this server has no change feed"})
		return
	}
	if !isUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		h.writeError(w, r, &statusError{http.StatusUpgradeRequired,
			"/subscribe is a WebSocket endpoint: connect with a WebSocket client (kvscli watch, websocat)"})
		return
	}
	if err := checkHandshake(w, r); err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := checkOrigin(r, h.origins); err != nil {
		h.writeError(w, r, err)
		return
	}
	key, prefix, from, err := feedParams(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	if err := h.track(); err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, errTooManySubscribers) {
			code = http.StatusTooManyRequests
			w.Header().Set("Retry-After", "1")
		}
		h.writeError(w, r, &statusError{code, err.Error()})
		return
	}
	defer h.untrack()

	subCtx, unsubscribe := context.WithCancel(context.Background())
	sub, first, err := h.feed.Subscribe(subCtx, key, prefix, from)
	if err != nil {
		unsubscribe()
		var ce *kv.CompactedError
		switch {
		case errors.As(err, &ce):
			h.writeError(w, r, &statusError{http.StatusGone, "history compacted: revision " +
				strconv.FormatInt(from, 10) + " is no longer retained, the oldest is " +
				strconv.FormatInt(ce.Oldest, 10) + ": list with /getall and subscribe from its Kvs-Revision + 1"})
		case errors.Is(err, kv.ErrFeedClosed):
			h.writeError(w, r, &statusError{http.StatusServiceUnavailable, errShuttingDown.Error()})
		default:
			h.writeError(w, r, err)
		}
		return
	}
	// The subscription ends before untrack: once Shutdown has returned, no
	// subscriber holds an event or a place in the feed.
	defer func() {
		unsubscribe()
		_, live := sub.Events()
		for ev := range live { // closed once the feed has seen ctx done
			sub.Done(ev)
		}
	}()

	// Hijacking clears the server's read and write deadlines: subscribers
	// live longer than any server timeout.
	cw := &corkWriter{ResponseWriter: w, timeout: h.writeTimeout}
	c, err := websocket.Accept(cw, r, &websocket.AcceptOptions{OriginPatterns: h.origins})
	if err != nil {
		return // Accept has answered the client
	}
	defer c.CloseNow()
	h.serveFeed(c, cw.conn, sub, first, h.feedSession(r))
}

// A burst, written with one system call, holds at most maxBurst events
// and about burstBytes of them; an event of directBytes or more is not
// copied into it but written on its own, from the feed's bytes.
const (
	maxBurst    = 256
	burstBytes  = 64 << 10
	directBytes = 32 << 10
)

// serveFeed writes sub's events to c until the subscription or the
// connection ends, or sess (when not nil) expires or is revoked, then
// closes c with a code that says why and where to resume. Events already
// queued are written together, as one burst: one system call for many
// events when the subscriber is behind. A burst ends, and the feed stops,
// only between revisions: the events of a transaction are written
// together, so that "resume from R" always starts at a whole revision.
func (h *Handler) serveFeed(c *websocket.Conn, cc *corkConn, sub Subscription, first int64, sess *session) {
	ctx, cancel := context.WithCancel(h.base)
	var wg sync.WaitGroup
	defer wg.Wait()    // 3. for the reader and the pinger to return
	defer c.CloseNow() // 2. which ends the reader
	defer cancel()     // 1. which ends the pinger
	wg.Go(func() { h.discardReads(ctx, cancel, c) })
	wg.Go(func() { h.ping(ctx, cancel, c) })

	replay, live := sub.Events()
	f := stream{h: h, c: c, cc: cc, sub: sub, live: live, pos: first - 1}
	defer f.let()
	if !f.replay(ctx, replay) {
		return
	}

	progress := time.NewTimer(h.jitter())
	defer progress.Stop()
	var expired <-chan time.Time
	if sess != nil {
		t := time.NewTimer(time.Until(sess.exp))
		defer t.Stop()
		expired = t.C
	}
	var lastSent time.Time // of the last burst of events
	for {
		select {
		case ev, ok := <-live:
			if !f.sendLive(ev, ok) {
				return
			}
			lastSent = time.Now()
		case <-progress.C:
			if sess != nil && h.auth.isRevoked(sess.id) {
				h.closeSession(c, f.pos, "ended by /logout")
				return
			}
			// Not idle: wait until a progress interval after the last
			// event (moving the timer at each event would cost more).
			if wait := time.Until(lastSent.Add(h.jitter())); wait > h.progressInterval/8 {
				progress.Reset(wait)
				continue
			}
			if !f.sendProgress() {
				return
			}
			progress.Reset(h.jitter())
		case <-expired:
			h.closeSession(c, f.pos, "expired")
			return
		case <-ctx.Done():
			if h.base.Err() != nil {
				h.closeFeed(c, kv.ErrFeedClosed, f.pos)
			}
			return
		}
	}
}

// replay writes the replay's chunks, a burst each. It reports false when
// the feed must stop: ctx is done (it closes the connection if kvsd is
// shutting down) or the connection failed.
func (f *stream) replay(ctx context.Context, replay iter.Seq[[]*kv.Event]) bool {
	for chunk := range replay {
		f.held = append(f.held, chunk...)
		if ctx.Err() != nil {
			if f.h.base.Err() != nil {
				f.h.closeFeed(f.c, kv.ErrFeedClosed, f.pos)
			}
			return false
		}
		f.cc.cork()
		for _, ev := range chunk {
			if !f.add(ev) {
				return false
			}
		}
		if !f.flush() {
			return false
		}
	}
	return true
}

// sendLive writes ev, received from the live channel (ok false: it was
// closed), with what is queued after it, as one burst that ends with a
// revision. It reports false when the feed must stop: the subscription
// ended (it closes the connection saying why) or the connection failed.
func (f *stream) sendLive(ev *kv.Event, ok bool) bool {
	f.cc.cork()
	if ok {
		f.held = append(f.held, ev)
		if f.sub.Err() != nil {
			ok = false
		} else if ok = f.add(ev); ok {
			ok = f.addQueued() && f.finishRevision()
		}
	}
	if !f.flush() {
		return false
	}
	if !ok {
		f.h.closeFeed(f.c, f.sub.Err(), f.pos)
	}
	return ok
}

// sendProgress writes the events queued up to the feed's revision, then a
// progress event that says the client has every change up to it. It
// reports false when the feed must stop, as sendLive.
func (f *stream) sendProgress() bool {
	rev := f.h.feed.Rev()
	f.cc.cork()
	ok := true
	for ok {
		before := f.pos
		ok = f.addQueued() && f.finishRevision()
		if f.pos == before {
			break
		}
		if ok && !f.flush() {
			return false
		}
		f.cc.cork()
	}
	if ok {
		f.pos = max(f.pos, rev)
		f.buf = appendProgress(f.buf[:0], f.pos)
		ok = f.write(f.buf, false)
	}
	if !f.flush() {
		return false
	}
	if !ok {
		f.h.closeFeed(f.c, f.sub.Err(), f.pos)
		return false
	}
	f.h.metrics.progressSent.Add(1)
	return true
}

// stream is one subscriber's writing side. Between cork and flush, its
// writes only fill a buffer, but for large events.
type stream struct {
	h     *Handler
	c     *websocket.Conn
	cc    *corkConn
	sub   Subscription
	live  <-chan *kv.Event // sub's live events
	pos   int64            // the revision up to which the client has every matching change
	more  bool             // the last event added has More: its revision goes on
	buf   []byte           // for progress events
	held  []*kv.Event      // received and not yet Done: written since the last flush
	burst int              // bytes of events copied into the corked buffer since the last flush
}

// add writes ev into the corked buffer, or on its own when it is large,
// with "More":true when it has More. It reports false when the connection
// failed.
func (f *stream) add(ev *kv.Event) bool {
	f.more = ev.More
	if !f.write(ev.Data, ev.More) {
		return false
	}
	if !ev.More {
		f.pos = ev.Revision
	}
	f.h.metrics.eventsSent.Add(1)
	return true
}

// finishRevision adds the rest of the revision of the last event added,
// if it goes on. The hub queues a revision's events together, so they are
// queued already, or being queued; the feed ends only between revisions.
// It reports false when the subscription has ended or the connection
// failed.
func (f *stream) finishRevision() bool {
	for f.more {
		ev, ok := <-f.live
		if !ok {
			return false
		}
		f.held = append(f.held, ev)
		if !f.add(ev) {
			return false
		}
	}
	return true
}

// write adds data as one text message to the corked buffer, with
// "More":true when more, or writes it at once, after what the buffer
// holds, when it is of directBytes or more, so that it is never copied.
// The frame is written here rather than by coder/websocket, whose Write
// costs more than the system call it leads to when an event goes to many
// subscribers; the library still writes the control frames (ping, pong,
// close), each in one piece through the same corkConn, so that frames
// never interleave. It reports false when the connection failed.
func (f *stream) write(data []byte, more bool) bool {
	if len(data) >= directBytes {
		return f.cc.writeTextDirect(data, more) == nil
	}
	if more {
		f.cc.writeTextMore(data)
	} else {
		f.cc.writeText(data)
	}
	f.burst += len(data)
	return true
}

// addQueued adds the events already queued, up to a burst, which ends
// only with a revision (see finishRevision). It reports false when the
// subscription has ended or the connection failed.
func (f *stream) addQueued() bool {
	for len(f.held) < maxBurst && f.burst < burstBytes {
		select {
		case ev, ok := <-f.live:
			if !ok {
				return false
			}
			f.held = append(f.held, ev)
			if f.sub.Err() != nil && !f.more || !f.add(ev) {
				return false
			}
		default:
			return true
		}
	}
	return true
}

// flush sends what the burst wrote, bounded by the write timeout, and
// lets go of its events.
func (f *stream) flush() bool {
	err := f.cc.flush()
	f.let()
	f.burst = 0
	return err == nil
}

// let tells the subscription that the events of the burst are written or
// given up.
func (f *stream) let() {
	for i, ev := range f.held {
		f.sub.Done(ev)
		f.held[i] = nil
	}
	f.held = f.held[:0]
}

// closeFeed closes c for the reason err, telling the client where to resume.
func (h *Handler) closeFeed(c *websocket.Conn, err error, pos int64) {
	switch {
	case errors.Is(err, kv.ErrSlowConsumer):
		h.metrics.slowCloses.Add(1)
		c.Close(StatusSlowConsumer, wire.ResumeReason("slow consumer", pos+1))
	case errors.Is(err, kv.ErrCompacted):
		var ce *kv.CompactedError
		errors.As(err, &ce)
		c.Close(StatusCompacted, wire.CompactedReason(ce.Oldest))
	case errors.Is(err, kv.ErrFeedClosed):
		c.Close(wire.CloseGoingAway, wire.ResumeReason("server shutting down", pos+1))
	default:
		c.Close(websocket.StatusInternalError, wire.ResumeReason("feed ended", pos+1))
	}
}

// closeSession closes c because the login session that authorized it has
// ended (how).
func (h *Handler) closeSession(c *websocket.Conn, pos int64, how string) {
	c.Close(StatusSessionEnded, wire.ResumeReason("session "+how+": log in again", pos+1))
}

// discardReads reads and drops whatever the client sends, so that control
// frames (pong, close) are handled. A client that talks on the feed
// affects nobody, itself included. It cancels the feed when the
// connection ends.
func (h *Handler) discardReads(ctx context.Context, cancel context.CancelFunc, c *websocket.Conn) {
	defer cancel()
	c.SetReadLimit(4 << 10)
	for {
		_, r, err := c.Reader(context.WithoutCancel(ctx))
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, r); err != nil {
			return
		}
	}
}

// ping checks that the client is alive, and cancels the feed when it is not.
func (h *Handler) ping(ctx context.Context, cancel context.CancelFunc, c *websocket.Conn) {
	t := time.NewTicker(h.pingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			pctx, pcancel := context.WithTimeout(ctx, h.writeTimeout)
			err := c.Ping(pctx)
			pcancel()
			if err != nil && ctx.Err() == nil {
				cancel()
				return
			}
		}
	}
}

// jitter returns the time until the next progress event: between 3/4 of
// the progress interval and the interval itself.
func (h *Handler) jitter() time.Duration {
	d := h.progressInterval
	return d - time.Duration(rand.Int64N(int64(d/4)+1))
}

var (
	errShuttingDown       = errors.New("server is shutting down")
	errTooManySubscribers = errors.New("too many subscribers: try again later")
)

// track registers a running subscriber, unless the handler is shutting
// down or has MaxSubscribers already. Call untrack when it ends.
func (h *Handler) track() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.shutdown:
		return errShuttingDown
	case h.nsubs >= h.maxSubs:
		return errTooManySubscribers
	}
	h.nsubs++
	h.subs.Add(1)
	return nil
}

func (h *Handler) untrack() {
	h.mu.Lock()
	h.nsubs--
	h.mu.Unlock()
	h.subs.Done()
}

// Shutdown closes every subscriber with 1001 (going away) and the revision
// to resume from, refuses new ones, and waits for their handlers to return
// or ctx to be done. http.Server.Shutdown does not wait for WebSocket
// connections: call this beside it.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.shutdown = true
	h.mu.Unlock()
	h.cancelBase()
	done := make(chan struct{})
	go func() {
		h.subs.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// checkHandshake checks the rest of a WebSocket handshake as
// websocket.Accept does, so that a bad one gets a JSON error rather than
// the library's plain text.
func checkHandshake(w http.ResponseWriter, r *http.Request) error {
	if !r.ProtoAtLeast(1, 1) {
		return &statusError{http.StatusUpgradeRequired, "a WebSocket handshake needs HTTP/1.1, not " + r.Proto}
	}
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		w.Header().Set("Sec-WebSocket-Version", "13")
		return badRequest("unsupported WebSocket version " + strconv.Quote(r.Header.Get("Sec-WebSocket-Version")) + ": only 13 is")
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 {
		return badRequest("a WebSocket handshake needs one Sec-WebSocket-Key header")
	}
	if k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(keys[0])); err != nil || len(k) != 16 {
		return badRequest("Sec-WebSocket-Key must be 16 bytes in base64")
	}
	return nil
}

// checkOrigin allows a handshake without an Origin header (not from a
// browser), from the server's own origin, or from an origin that matches
// one of patterns, as websocket.Accept does; any other gets 403.
func checkOrigin(r *http.Request, patterns []string) error {
	origin := r.Header.Get("Origin")
	if origin == "" || originAllowed(r, origin, patterns) {
		return nil
	}
	return &statusError{http.StatusForbidden, "cross-origin WebSocket handshake from " + strconv.Quote(origin) +
		" refused: kvsd allows its own origin and those in -allowed-origins"}
}

// ValidOriginPattern reports whether p is a valid pattern for
// Options.OriginPatterns.
func ValidOriginPattern(p string) bool {
	_, err := path.Match(p, "")
	return p != "" && err == nil
}

func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// feedParams reads and checks the query of /subscribe.
func feedParams(r *http.Request) (key, prefix string, from int64, err error) {
	q, err := parseQuery(r)
	if err != nil {
		return "", "", 0, err
	}
	for name := range q {
		switch name {
		case "key", "prefix", "from":
		default:
			return "", "", 0, badRequest("unknown parameter " + strconv.Quote(name) + ": /subscribe takes key, prefix and from")
		}
		if len(q[name]) > 1 {
			return "", "", 0, badRequest("parameter " + name + " given more than once")
		}
	}
	if q.Has("key") && q.Has("prefix") {
		return "", "", 0, badRequest("give key or prefix, not both")
	}
	if q.Has("key") {
		key = q.Get("key")
		if err := checkKey(key); err != nil {
			return "", "", 0, badRequest("bad key: " + err.Error())
		}
	}
	if prefix = q.Get("prefix"); prefix != "" {
		if err := checkKey(prefix); err != nil {
			return "", "", 0, badRequest("bad prefix: " + err.Error())
		}
	}
	if q.Has("from") {
		from, err = strconv.ParseInt(q.Get("from"), 10, 64)
		if err != nil || from < 0 {
			return "", "", 0, badRequest("from must be a revision: an integer >= 0")
		}
		from = max(from, 1) // from=0: from the first revision
	}
	return key, prefix, from, nil
}
