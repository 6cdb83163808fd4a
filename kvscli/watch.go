package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/wire"
)

// watchTuning holds the timings of watch. The zero value of each field
// means its default (that of client.WatchOptions).
type watchTuning struct {
	// backoffMin is the first reconnection delay, doubled after each
	// attempt that delivers nothing up to backoffMax.
	backoffMin, backoffMax time.Duration
	// idle is how long watch waits for a message before it takes the
	// connection for dead and reconnects.
	idle time.Duration
}

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
		c.interruptCode.Store(exitOK)
		w := &watcher{c: c, json: *asJSON, out: bufio.NewWriter(c.stdout)}
		w.opts = client.WatchOptions{
			Key:         *key,
			Prefix:      *prefix,
			Relist:      *relist,
			MinBackoff:  c.tune.backoffMin,
			MaxBackoff:  c.tune.backoffMax,
			IdleTimeout: c.tune.idle,
			OnConnect:   w.connected,
			OnRetry:     w.retry,
		}
		if set["from"] {
			w.opts.From = max(*from, 1)
		}
		return w.run(ctx)
	}
}

// watcher is one run of watch.
type watcher struct {
	c    *cli
	opts client.WatchOptions
	json bool
	out  *bufio.Writer

	wasConnected bool
	// relisting is set from the relist event to the end of the listing,
	// whose set events are printed at the relist's revision.
	relisting bool
}

// run watches until ctx is done (nil: exit code 0), the history is
// compacted without -relist, or an error that retrying cannot fix.
func (w *watcher) run(ctx context.Context) error {
	for ev, err := range w.c.kvs.Watch(ctx, w.opts) {
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return w.end(err)
		}
		if err := w.print(&ev); err != nil {
			return err
		}
	}
	return nil
}

// end turns the error that ended the watch into an exit.
func (w *watcher) end(err error) error {
	var (
		ee *exitError
		ce *client.CompactedError
	)
	switch {
	case errors.As(err, &ee):
		return err
	case errors.As(err, &ce):
		why, skip := ce.Message, ""
		if ce.Oldest > 0 {
			o := strconv.FormatInt(ce.Oldest, 10)
			why = "history compacted: the oldest it has is " + o
			skip = ", or with -from " + o + " to skip them"
		}
		return &exitError{exitFailed, fmt.Sprintf("watch: kvsd at %s no longer has the changes from revision %d on (%s), so this watch cannot show them: run it again with -relist to list the current values and continue%s",
			w.c.addr, ce.Next, why, skip)}
	}
	return w.c.fail(err, "watch", false)
}

// connected reports a new connection on stderr.
func (w *watcher) connected(next int64) {
	if w.wasConnected {
		w.logf("reconnected to kvsd at %s, resuming from revision %d", w.c.addr, next)
	} else {
		w.logf("watching kvsd at %s from revision %d (Ctrl-C to stop)", w.c.addr, next)
	}
	w.wasConnected = true
}

// retry reports on stderr why the watch reconnects (or lists again), and
// ends it when it never connected: a failure to connect at the start is an
// error, with exit code 3.
func (w *watcher) retry(r client.Retry) error {
	var (
		ce   *client.CompactedError
		clo  *client.CloseError
		ue   *client.UnreachableError
		pe   *client.ProtocolError
		addr = w.c.addr
	)
	if errors.As(r.Err, &ce) {
		w.logf("kvsd at %s no longer has the changes from revision %d on; listing the current values", addr, r.Next)
		return nil
	}
	if !r.Connected {
		return w.c.fail(r.Err, "watch", false)
	}
	delay := r.Delay.Round(time.Millisecond)
	switch {
	case r.Listing:
		w.logf("listing the current values failed: %s; retrying in %v", w.failText(r.Err), delay)
	case errors.As(r.Err, &clo):
		var why string
		switch clo.Code {
		case wire.CloseSlowConsumer:
			why = fmt.Sprintf("kvsd at %s closed the watch because it read too slowly (4408)", addr)
		case wire.CloseGoingAway:
			why = fmt.Sprintf("kvsd at %s is shutting down (1001)", addr)
		default:
			why = fmt.Sprintf("kvsd at %s closed the watch (%d %s)", addr, clo.Code, clo.Reason)
		}
		w.logf("%s; reconnecting in %v from revision %d", why, delay, r.Next)
	case errors.As(r.Err, &ue) && ue.Op == "read":
		w.logf("lost the connection to kvsd at %s: %s; reconnecting in %v from revision %d", addr, readCause(ue.Err), delay, r.Next)
	case errors.As(r.Err, &pe) && pe.Status == http.StatusSwitchingProtocols:
		w.logf("lost the connection to kvsd at %s: a message that is not a kvs event: %q; reconnecting in %v from revision %d", addr, pe.Body, delay, r.Next)
	default:
		w.logf("%s; retrying in %v (from revision %d)", w.failText(r.Err), delay, r.Next)
	}
	return nil
}

// failText is the message of an error, without the command's name.
func (w *watcher) failText(err error) string {
	return strings.TrimPrefix(w.c.fail(err, "watch", false).Error(), "watch: ")
}

// print writes one event to stdout: the server's JSON with -json, else a
// line. The events of a relisting (the relist event and the set events of
// the listing) are printed without More.
func (w *watcher) print(ev *client.Event) error {
	more := ev.More
	if ev.Type == client.EventRelist || w.relisting {
		w.relisting = ev.More
		ev.More = false
	}
	if w.json {
		w.out.Write(encodeJSON(ev))
	} else {
		w.out.WriteString(strconv.FormatInt(ev.Revision, 10))
		w.out.WriteByte('\t')
		w.out.WriteString(ev.Type)
		if ev.Type != client.EventRelist {
			w.out.WriteByte('\t')
			w.out.WriteString(ev.Key)
		}
		if len(ev.Value) > 0 {
			w.out.WriteByte('\t')
			w.out.WriteString(lineValue(ev.Value))
		}
		w.out.WriteByte('\n')
	}
	ev.More = more
	if err := w.out.Flush(); err != nil {
		return &exitError{exitFailed, fmt.Sprintf("watch: writing the output: %v", err)}
	}
	return nil
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
