package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/httpapi"
)

// watchTuning holds the timings of watch. The zero value of each field
// means its default.
type watchTuning struct {
	// backoffMin is the first reconnection delay, doubled after each
	// attempt that delivers nothing up to backoffMax. Zero means 100ms
	// and 5s.
	backoffMin, backoffMax time.Duration
	// idle is how long watch waits for a message before it takes the
	// connection for dead and reconnects. The server sends a progress
	// event at least every 10s and pings every 30s. Zero means 45s.
	idle time.Duration
}

// maxMessage bounds a feed message: a value of up to 256 MiB.
const maxMessage = 256 << 20

// Close codes of the change feed (DESIGN.md).
const (
	statusSlowConsumer = websocket.StatusCode(4408)
	statusCompacted    = websocket.StatusCode(4410)
)

func defineWatch(fs *flag.FlagSet) func(context.Context, *cli) error {
	key := fs.String("key", "", "watch only the key `K`")
	prefix := fs.String("prefix", "", "watch only the keys that start with `P`")
	from := fs.Int64("from", 0, "start at revision `R` (default: after the current revision)")
	asJSON := fs.Bool("json", false, "print each event as the server's JSON, one object per line")
	relist := fs.Bool("relist", false, "if the server no longer has the revision to resume from, list the current values and continue instead of exiting")
	return func(ctx context.Context, c *cli) error {
		set := given(fs)
		switch {
		case set["key"] && set["prefix"]:
			return usageErrorf("watch: give -key K or -prefix P, not both")
		case set["from"] && *from < 0:
			return usageErrorf("watch: -from %d: a revision is >= 0", *from)
		}
		if set["key"] {
			if err := checkKey("watch", *key); err != nil {
				return err
			}
		}
		if !utf8.ValidString(*prefix) {
			return usageErrorf("watch: -prefix is not valid UTF-8")
		}
		w := &watcher{
			c:      c,
			key:    *key,
			prefix: *prefix,
			json:   *asJSON,
			relist: *relist,
			out:    bufio.NewWriter(c.stdout),
			lo:     cmp.Or(c.tune.backoffMin, 100*time.Millisecond),
			hi:     cmp.Or(c.tune.backoffMax, 5*time.Second),
			idle:   cmp.Or(c.tune.idle, 45*time.Second),
		}
		if set["from"] {
			w.next = max(*from, 1)
		}
		return w.run(ctx)
	}
}

// watcher is one run of watch.
type watcher struct {
	c           *cli
	key, prefix string
	json        bool
	relist      bool
	out         *bufio.Writer
	lo, hi      time.Duration
	idle        time.Duration

	// next is the first revision not printed yet: every matching change
	// before it has been printed, or is known not to exist. 0 means
	// unknown yet.
	next int64
}

// run watches until ctx is done (nil: exit code 0), the history is
// compacted without -relist, or an error that retrying cannot fix.
func (w *watcher) run(ctx context.Context) error {
	if w.next == 0 {
		rev, err := w.revision(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return w.c.fail(err, "watch", false)
		}
		w.next = rev + 1
	}
	connected := false // once, so that failures are retried from then on
	attempt := 0       // reconnection attempts since the last message
	for {
		conn, err := w.dial(ctx)
		if ctx.Err() != nil {
			return nil
		}
		var ae *apiError
		switch {
		case errors.As(err, &ae) && ae.status == http.StatusGone:
			err = w.compacted(ctx, ae.body.Error)
			if err == nil || ctx.Err() != nil {
				continue
			}
			if !connected || !retryable(err) {
				return w.c.fail(err, "watch", false)
			}
			d := w.backoff(attempt)
			attempt++
			w.logf("listing the current values failed: %s; retrying in %v", strings.TrimPrefix(w.c.fail(err, "watch", false).Error(), "watch: "), d.Round(time.Millisecond))
			if !sleep(ctx, d) {
				return nil
			}
			continue
		case err != nil && (!connected || !retryable(err)):
			return w.c.fail(err, "watch", false)
		case err != nil:
			d := w.backoff(attempt)
			attempt++
			w.logf("%s; retrying in %v (from revision %d)", strings.TrimPrefix(w.c.fail(err, "watch", false).Error(), "watch: "), d.Round(time.Millisecond), w.next)
			if !sleep(ctx, d) {
				return nil
			}
			continue
		}

		if connected {
			w.logf("reconnected to kvsd at %s, resuming from revision %d", w.c.addr, w.next)
		} else {
			w.logf("watching kvsd at %s from revision %d (Ctrl-C to stop)", w.c.addr, w.next)
		}
		connected = true
		n, err := w.read(ctx, conn)
		conn.CloseNow()
		if ctx.Err() != nil {
			return nil
		}
		var ee *exitError
		if errors.As(err, &ee) {
			return err
		}
		if n > 0 {
			attempt = 0
		}
		var ce websocket.CloseError
		isClose := errors.As(err, &ce)
		if isClose {
			if r, ok := resumeFrom(ce.Reason); ok {
				w.next = max(w.next, r)
			}
		}
		var why string
		switch {
		case isClose && ce.Code == statusCompacted:
			err = w.compacted(ctx, ce.Reason)
			if err == nil || ctx.Err() != nil {
				continue
			}
			if !retryable(err) {
				return w.c.fail(err, "watch", false)
			}
			why = "listing the current values failed: " + strings.TrimPrefix(w.c.fail(err, "watch", false).Error(), "watch: ")
		case isClose && ce.Code == statusSlowConsumer:
			why = fmt.Sprintf("kvsd at %s closed the watch because it read too slowly (4408)", w.c.addr)
		case isClose && ce.Code == websocket.StatusGoingAway:
			why = fmt.Sprintf("kvsd at %s is shutting down (1001)", w.c.addr)
		case isClose:
			why = fmt.Sprintf("kvsd at %s closed the watch (%d %s)", w.c.addr, ce.Code, ce.Reason)
		default:
			why = fmt.Sprintf("lost the connection to kvsd at %s: %s", w.c.addr, readCause(err))
		}
		d := w.backoff(attempt)
		attempt++
		w.logf("%s; reconnecting in %v from revision %d", why, d.Round(time.Millisecond), w.next)
		if !sleep(ctx, d) {
			return nil
		}
	}
}

// revision returns the current revision of the server, that of a listing
// of the watched keys (its header alone: HEAD).
func (w *watcher) revision(ctx context.Context) (int64, error) {
	q := url.Values{}
	if p := cmp.Or(w.key, w.prefix); p != "" {
		q.Set("prefix", p)
	}
	hdr, _, err := w.c.call(ctx, http.MethodHead, "/getall", q, nil)
	var ae *apiError
	if errors.As(err, &ae) {
		// A HEAD answer has no body: ask again for the error message.
		_, _, err = w.c.call(ctx, http.MethodGet, "/getall", q, nil)
		if err == nil {
			err = ae
		}
	}
	if err != nil {
		return 0, err
	}
	rev, err := strconv.ParseInt(hdr.Get(httpapi.RevisionHeader), 10, 64)
	if err != nil || rev < 0 {
		return 0, &exitError{exitServer, fmt.Sprintf("watch: the server at %s did not send %s in its /getall answer, as kvsd does; check -server-address",
			w.c.addr, httpapi.RevisionHeader)}
	}
	return rev, nil
}

// dial opens the feed from revision w.next.
func (w *watcher) dial(ctx context.Context) (*websocket.Conn, error) {
	q := url.Values{"from": {strconv.FormatInt(w.next, 10)}}
	switch {
	case w.key != "":
		q.Set("key", w.key)
	case w.prefix != "":
		q.Set("prefix", w.prefix)
	}
	dctx, cancel := w.c.withTimeout(ctx)
	defer cancel()
	conn, resp, err := websocket.Dial(dctx, w.c.endpoint("/subscribe", q).String(), &websocket.DialOptions{
		HTTPClient: w.c.client(),
		HTTPHeader: w.c.header(),
	})
	if err == nil {
		conn.SetReadLimit(maxMessage)
		return conn, nil
	}
	if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
		var body []byte
		if resp.Body != nil {
			body, _ = io.ReadAll(io.LimitReader(resp.Body, 1024))
		}
		return nil, newAPIError(resp.StatusCode, body)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, &transportError{err: err, timedOut: errors.Is(context.Cause(dctx), errTimeout)}
}

// read prints the events of conn until it ends, and returns the number of
// messages it got and why it ended. An *exitError means stop.
func (w *watcher) read(ctx context.Context, conn *websocket.Conn) (int, error) {
	n := 0
	for {
		rctx, cancel := context.WithTimeout(ctx, w.idle)
		typ, data, err := conn.Read(rctx)
		idle := errors.Is(rctx.Err(), context.DeadlineExceeded)
		cancel()
		if err != nil {
			if idle && ctx.Err() == nil {
				err = fmt.Errorf("no message for %v", w.idle)
			}
			return n, err
		}
		if typ != websocket.MessageText {
			continue
		}
		var ev httpapi.Event
		// A progress event at 0 comes from a store that has had no change.
		if err := json.Unmarshal(data, &ev); err != nil || ev.Type == "" || ev.Revision < 0 || ev.Revision == 0 && ev.Type != "progress" {
			return n, fmt.Errorf("a message that is not a kvs event: %.100q", data)
		}
		n++
		if ev.Type == "progress" {
			w.next = max(w.next, ev.Revision+1)
			continue
		}
		if ev.Revision < w.next {
			continue // printed already; the server never resends, but a seam must not repeat
		}
		if err := w.print(data, &ev); err != nil {
			return n, err
		}
		w.next = ev.Revision + 1
	}
}

// print writes one event to stdout: data as is with -json, else a line.
func (w *watcher) print(data []byte, ev *httpapi.Event) error {
	if w.json {
		w.out.Write(data)
	} else {
		w.out.WriteString(strconv.FormatInt(ev.Revision, 10))
		w.out.WriteByte('\t')
		w.out.WriteString(ev.Type)
		if ev.Key != "" || ev.Type == "set" || ev.Type == "delete" {
			w.out.WriteByte('\t')
			w.out.WriteString(ev.Key)
		}
		if len(ev.Value) > 0 {
			w.out.WriteByte('\t')
			w.out.WriteString(lineValue(ev.Value))
		}
	}
	w.out.WriteByte('\n')
	if err := w.out.Flush(); err != nil {
		return &exitError{exitFailed, fmt.Sprintf("watch: writing the output: %v", err)}
	}
	return nil
}

// compacted handles a server that no longer has revision w.next: without
// -relist it is the end (an *exitError, code 1); with -relist it prints the
// current values and moves w.next past them, or returns why it could not
// list them.
func (w *watcher) compacted(ctx context.Context, msg string) error {
	if !w.relist {
		why, skip := msg, ""
		if m := oldestRe.FindStringSubmatch(msg); m != nil {
			why = "history compacted: the oldest it has is " + m[1]
			skip = ", or with -from " + m[1] + " to skip them"
		}
		return &exitError{exitFailed, fmt.Sprintf("watch: kvsd at %s no longer has the changes from revision %d on (%s), so this watch cannot show them: run it again with -relist to list the current values and continue%s",
			w.c.addr, w.next, why, skip)}
	}
	w.logf("kvsd at %s no longer has the changes from revision %d on; listing the current values", w.c.addr, w.next)
	q := url.Values{}
	if p := cmp.Or(w.key, w.prefix); p != "" {
		q.Set("prefix", p)
	}
	hdr, body, err := w.c.call(ctx, http.MethodGet, "/getall", q, nil)
	if err != nil {
		return err
	}
	rev, err := strconv.ParseInt(hdr.Get(httpapi.RevisionHeader), 10, 64)
	var m map[string]json.RawMessage
	if err != nil || json.Unmarshal(body, &m) != nil {
		return w.c.notKVS("watch -relist", body)
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		if w.key == "" || k == w.key {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	evs := []httpapi.Event{{Type: "relist", Revision: rev}}
	for _, k := range keys {
		evs = append(evs, httpapi.Event{Type: "set", Key: k, Value: m[k], Revision: rev})
	}
	for i := range evs {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(&evs[i]); err != nil {
			return err
		}
		if err := w.print(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), &evs[i]); err != nil {
			return err
		}
	}
	w.next = rev + 1
	return nil
}

func (w *watcher) backoff(attempt int) time.Duration {
	return backoffDelay(attempt, w.lo, w.hi, rand.Int64N)
}

func (w *watcher) logf(format string, args ...any) {
	fmt.Fprintf(w.c.stderr, "kvscli: watch: "+format+"\n", args...)
}

// readCause explains why reading the feed failed.
func readCause(err error) string {
	var se *os.SyscallError
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed"
	case errors.As(err, &se):
		return se.Err.Error()
	}
	return err.Error()
}

// retryable reports whether a failed connection attempt may succeed later.
func retryable(err error) bool {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.status >= 500 || ae.status == http.StatusRequestTimeout || ae.status == http.StatusTooManyRequests
	}
	var te *transportError
	return errors.As(err, &te)
}

// oldestRe finds the oldest retained revision in a 410 message or a 4410
// close reason ("... the oldest is 4: ...", "..., oldest retained revision 4").
var oldestRe = regexp.MustCompile(`oldest\D*?(\d+)`)

// resumeFrom reads the revision from a close reason "..., resume from R".
func resumeFrom(reason string) (int64, bool) {
	const marker = "resume from "
	i := strings.LastIndex(reason, marker)
	if i < 0 {
		return 0, false
	}
	r, err := strconv.ParseInt(reason[i+len(marker):], 10, 64)
	return r, err == nil && r > 0
}

// sleep waits for d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
