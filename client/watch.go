package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"iter"
	"math/rand/v2"
	"time"

	"github.com/kvsdb/kvs/wire"
)

// WatchOptions configures a watch. The zero value of every field means
// its default: every key, from the changes after the watch starts.
type WatchOptions struct {
	// Key selects one key; Prefix the keys that start with it. Give one
	// or neither (every key).
	Key, Prefix string
	// From is the first revision to deliver. Zero means the one after the
	// server's current revision, which the watch reads first (so that a
	// connection lost before the first event resumes at the right place).
	From int64
	// Relist makes a watch whose revision the server no longer has (410,
	// 4410) list the watched keys and go on instead of ending with
	// ErrCompacted: it delivers an EventRelist event, then the listing as
	// set events at the listing's revision, then the changes after it.
	Relist bool
	// Progress makes the watch deliver progress events too: every
	// matching change up to their revision has been delivered.
	Progress bool

	// MinBackoff is the first wait before a reconnection, doubled after
	// each failed attempt up to MaxBackoff, and jittered down by up to a
	// half. Zero means 100ms and 5s.
	MinBackoff, MaxBackoff time.Duration
	// IdleTimeout is how long a connection may stay silent before the
	// watch takes it for dead and reconnects (kvsd sends a progress event
	// at least every 10s when nothing else happens). Zero means 45s.
	IdleTimeout time.Duration

	// OnConnect, when not nil, is called each time the watch has opened a
	// connection, with the revision it continues from.
	OnConnect func(next int64)
	// OnRetry, when not nil, is called before each wait to retry: after a
	// connection ended, an attempt to connect (or to list, with Relist)
	// failed, or, with Relist, before listing. If it returns an error,
	// the watch ends with that error instead. Nil means retry until the
	// context is done.
	OnRetry func(Retry) error
}

// Retry describes why a watch retries and when, for WatchOptions.OnRetry.
type Retry struct {
	// Err is why: the error that ended the connection or the attempt, or
	// a *CompactedError before a relist.
	Err error
	// Listing is true when the attempt that failed was the listing of a
	// relist.
	Listing bool
	// Connected is true when the watch has been connected before.
	Connected bool
	// Attempt counts the attempts since the last message, from 1.
	Attempt int
	// Delay is the wait before the next attempt.
	Delay time.Duration
	// Next is the revision the watch continues from.
	Next int64
}

// Watch returns the changes of the selected keys, in revision order, each
// exactly once: it resumes after any disconnect (the server restarting,
// closing a slow consumer, a lost connection) from where it stopped, with
// backoff, so that nothing is lost or repeated. The events of a
// transaction share a revision; all but the last have More set, and a
// watch that resumes in the middle of one delivers its other events only.
//
// The sequence ends with an error: ctx's when it is done; a
// *CompactedError (ErrCompacted) when the server no longer has the
// revision to resume from and Relist is not set; what OnRetry returned;
// or an error that retrying cannot fix (an *Error 4xx such as
// ErrUnauthorized or ErrInvalid, a ProtocolError of a server that is not
// kvsd). Breaking out of the loop ends the watch as well. Each range over
// the sequence is a new watch.
func (c *Client) Watch(ctx context.Context, opts WatchOptions) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		w := &watch{c: c, opts: opts, yield: yield, next: opts.From}
		w.opts.MinBackoff = cmp.Or(opts.MinBackoff, 100*time.Millisecond)
		w.opts.MaxBackoff = max(cmp.Or(opts.MaxBackoff, 5*time.Second), w.opts.MinBackoff)
		w.opts.IdleTimeout = cmp.Or(opts.IdleTimeout, 45*time.Second)
		if err := w.run(ctx); err != nil {
			yield(Event{}, err)
		}
	}
}

// watch is one run of a Watch sequence.
type watch struct {
	c     *Client
	opts  WatchOptions
	yield func(Event, error) bool

	// next is the first revision not delivered completely; 0 until
	// known. done counts the events of revision next already delivered
	// (a transaction interrupted by a lost connection).
	next int64
	done int

	connected bool
	attempt   int // failed attempts since the last message
}

// errStop ends a watch whose caller stopped iterating.
var errStop = errors.New("client: stop")

// run watches until ctx is done, the caller stops, or a final error, which
// it returns (nil when the caller stopped).
func (w *watch) run(ctx context.Context) error {
	if w.opts.Key != "" && w.opts.Prefix != "" {
		return fmt.Errorf("client: watch: %w: give Key or Prefix, not both", ErrInvalid)
	}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("client: watch: %w", context.Cause(ctx))
		}
		if w.next == 0 {
			rev, err := w.c.Revision(ctx, nil)
			if err != nil {
				if err := w.retry(ctx, err, false); err != nil {
					return err
				}
				continue
			}
			w.next = rev + 1
		}
		sub, err := w.c.Subscribe(ctx, SubscribeOptions{Key: w.opts.Key, Prefix: w.opts.Prefix, From: w.next})
		if err == nil {
			err = w.read(sub)
			sub.Close()
		}
		if errors.Is(err, errStop) {
			return nil
		}
		var ce *CompactedError
		if errors.As(err, &ce) {
			ce.Next = w.next
			if !w.opts.Relist {
				return err
			}
			if err := w.relist(ctx, err); err != nil {
				if errors.Is(err, errStop) {
					return nil
				}
				return err
			}
			continue
		}
		if err := w.retry(ctx, err, false); err != nil {
			return err
		}
	}
}

// read delivers the events of sub until it ends, and returns why.
func (w *watch) read(sub *Subscription) error {
	w.connected = true
	if w.opts.OnConnect != nil {
		w.opts.OnConnect(w.next)
	}
	idle := w.opts.IdleTimeout
	timer := time.AfterFunc(idle, func() { sub.closeIdle(fmt.Errorf("no message for %v", idle)) })
	defer timer.Stop()
	pos := 0 // events of revision w.next seen on this connection
	for {
		ev, err := sub.Next()
		if err != nil {
			var ce *CloseError
			if errors.As(err, &ce) && ce.Resume > w.next {
				// The server sent everything before Resume.
				w.next, w.done = ce.Resume, 0
			}
			return err
		}
		timer.Reset(idle)
		w.attempt = 0
		if ev.Type == wire.EventProgress {
			if ev.Revision >= w.next {
				w.next, w.done, pos = ev.Revision+1, 0, 0
			}
			if w.opts.Progress && !w.yield(ev, nil) {
				return errStop
			}
			continue
		}
		if ev.Revision < w.next {
			continue // delivered before: the server never resends, but a seam must not repeat
		}
		if ev.Revision > w.next {
			w.next, w.done, pos = ev.Revision, 0, 0
		}
		pos++
		if pos > w.done {
			w.done++
			if !w.yield(ev, nil) {
				return errStop
			}
		}
		if !ev.More {
			w.next, w.done, pos = ev.Revision+1, 0, 0
		}
	}
}

// relist lists the watched keys after the server said (why) that it no
// longer has revision w.next, delivers the listing, and moves w.next past
// it. It retries a failed listing like a failed connection.
func (w *watch) relist(ctx context.Context, why error) error {
	if err := w.notify(Retry{Err: why, Next: w.next, Connected: w.connected}); err != nil {
		return err
	}
	for {
		prefix := cmp.Or(w.opts.Key, w.opts.Prefix)
		l, err := w.c.List(ctx, prefix, nil)
		if err != nil {
			if err := w.retry(ctx, err, true); err != nil {
				return err
			}
			continue
		}
		var sets []Entry
		for _, e := range l.Entries {
			if w.opts.Key == "" || e.Key == w.opts.Key {
				sets = append(sets, e)
			}
		}
		if !w.yield(Event{Type: EventRelist, Revision: l.Revision, More: len(sets) > 0}, nil) {
			return errStop
		}
		for i, e := range sets {
			if !w.yield(Event{Type: wire.EventSet, Key: e.Key, Value: e.Value, Revision: l.Revision, More: i < len(sets)-1}, nil) {
				return errStop
			}
		}
		w.next, w.done = l.Revision+1, 0
		return nil
	}
}

// retry waits before the next attempt after err, or returns the error that
// ends the watch: err itself when retrying cannot fix it, what OnRetry
// returned, or ctx's error.
func (w *watch) retry(ctx context.Context, err error, listing bool) error {
	if ctx.Err() != nil {
		return fmt.Errorf("client: watch: %w", context.Cause(ctx))
	}
	if !Retryable(err) {
		return err
	}
	d := backoff(w.attempt, w.opts.MinBackoff, w.opts.MaxBackoff, rand.Int64N)
	w.attempt++
	if err := w.notify(Retry{Err: err, Listing: listing, Connected: w.connected, Attempt: w.attempt, Delay: d, Next: w.next}); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("client: watch: %w", context.Cause(ctx))
	}
}

func (w *watch) notify(r Retry) error {
	if w.opts.OnRetry == nil {
		return nil
	}
	return w.opts.OnRetry(r)
}

// Retryable reports whether the call or watch that failed with err may
// succeed if tried again: the server did not answer, closed the feed, was
// unavailable or overloaded (5xx, 408, 429).
func Retryable(err error) bool {
	var (
		e  *Error
		pe *ProtocolError
		ue *UnreachableError
		ce *CloseError
	)
	switch {
	case errors.As(err, &e):
		return e.Temporary()
	case errors.As(err, &pe):
		return pe.Status >= 500 || pe.Status == 408 || pe.Status == 429 || pe.Status == 101
	case errors.As(err, &ue), errors.As(err, &ce):
		return true
	}
	return false
}

// backoff returns how long to wait before attempt n (from 0): doubling from
// lo, capped at hi, and jittered down by up to a half, so that clients
// disconnected together do not return together. rnd(k) returns a number
// in [0, k).
func backoff(n int, lo, hi time.Duration, rnd func(int64) int64) time.Duration {
	d := hi
	if n < 32 && lo<<n < hi && lo<<n > 0 {
		d = lo << n
	}
	return d - time.Duration(rnd(int64(d/2)+1))
}
