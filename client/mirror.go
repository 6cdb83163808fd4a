package client

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kvsdb/kvs/wire"
)

// MirrorOptions configures a Mirror. The zero value of every field means
// its default: every key.
type MirrorOptions struct {
	// Prefix selects the keys that start with it. Empty means every key.
	Prefix string
	// OnChange, when not nil, is called after each change of the mirror:
	// its first listing, each revision applied, and each listing again.
	// It runs on the mirror's goroutine, so the mirror waits for it.
	OnChange func(Change)
	// MinBackoff, MaxBackoff, IdleTimeout and OnRetry are those of the
	// mirror's watch (see WatchOptions); OnRetry also sees the failures
	// of listing again.
	MinBackoff, MaxBackoff, IdleTimeout time.Duration
	OnRetry                             func(Retry) error
}

// Change is one change of a Mirror.
type Change struct {
	// Revision is the mirror's revision after the change.
	Revision int64
	// Events are the changes of one revision (several for a
	// transaction), in order. Nil when the mirror was listed (Reset).
	Events []Event
	// Reset is true when the mirror was replaced by a listing: its first,
	// or a new one after the server no longer had the revision to resume
	// from.
	Reset bool
}

// Mirror keeps a local copy of the keys under a prefix, up to date: it
// lists them, then follows the change feed from the listing's revision + 1.
// At any time it is exactly the server's state at its Revision (the events
// of a transaction are applied together), and it moves forward only. Its
// methods are safe for concurrent use.
//
// Entries keep the Revision of their last change; CreateRevision and
// Version are those of the listing, counted on from there as kvsd does.
// They keep their Lease, with TTL zero: the time left on a lease changes
// with keep-alives, which the feed does not carry; TTL asks the server.
type Mirror struct {
	c      *Client
	opts   MirrorOptions
	cancel context.CancelFunc
	done   chan struct{} // closed when the goroutine returns

	// mu guards the fields below.
	mu      sync.RWMutex
	rev     int64
	entries map[string]Entry
	changed chan struct{} // closed at each change, then replaced
	err     error         // why the mirror stopped following, once done
}

// Mirror lists the keys under opts.Prefix and returns a Mirror of them,
// which then follows the change feed until ctx is done, Close is called or
// an error that retrying cannot fix (see Err). It fails if the first
// listing fails.
func (c *Client) Mirror(ctx context.Context, opts MirrorOptions) (*Mirror, error) {
	opts.MinBackoff = cmp.Or(opts.MinBackoff, 100*time.Millisecond)
	opts.MaxBackoff = max(cmp.Or(opts.MaxBackoff, 5*time.Second), opts.MinBackoff)
	l, err := c.List(ctx, opts.Prefix, nil)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Mirror{c: c, opts: opts, cancel: cancel, done: make(chan struct{}), changed: make(chan struct{})}
	m.reset(l)
	go m.run(ctx)
	return m, nil
}

// run follows the feed, and lists again whenever the server no longer has
// the revision to resume from.
func (m *Mirror) run(ctx context.Context) {
	defer close(m.done)
	err := m.follow(ctx)
	if ctx.Err() != nil {
		err = nil // stopped by its owner
	}
	m.mu.Lock()
	m.err = err
	close(m.changed) // wake WaitRevision
	m.changed = nil
	m.mu.Unlock()
}

func (m *Mirror) follow(ctx context.Context) error {
	for {
		var batch []Event
		for ev, err := range m.c.Watch(ctx, WatchOptions{
			Prefix:     m.opts.Prefix,
			From:       m.Revision() + 1,
			Progress:   true,
			MinBackoff: m.opts.MinBackoff,
			MaxBackoff: m.opts.MaxBackoff,
			OnRetry:    m.opts.OnRetry,
		}) {
			switch {
			case errors.Is(err, ErrCompacted):
				batch = nil
				if err := m.relist(ctx, err); err != nil {
					return err
				}
			case err != nil:
				return err
			case ev.Type == wire.EventProgress:
				m.advance(ev.Revision)
			default:
				batch = append(batch, ev)
				if !ev.More {
					m.apply(batch)
					batch = nil
				}
			}
		}
	}
}

// relist lists again, retrying with backoff.
func (m *Mirror) relist(ctx context.Context, why error) error {
	attempt := 0
	for {
		l, err := m.c.List(ctx, m.opts.Prefix, nil)
		if err == nil {
			m.reset(l)
			return nil
		}
		if ctx.Err() != nil || !Retryable(err) {
			return err
		}
		d := backoff(attempt, m.opts.MinBackoff, m.opts.MaxBackoff, rand.Int64N)
		attempt++
		if m.opts.OnRetry != nil {
			if err := m.opts.OnRetry(Retry{Err: err, Listing: true, Connected: true, Attempt: attempt, Delay: d, Next: m.Revision() + 1}); err != nil {
				return err
			}
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("client: mirror: relisting after %v: %w", why, ctx.Err())
		}
	}
}

// reset replaces the mirror with a listing.
func (m *Mirror) reset(l *List) {
	entries := make(map[string]Entry, len(l.Entries))
	for _, e := range l.Entries {
		// The time left on a lease changes with keep-alives, which the
		// feed does not carry: the mirror keeps the lease, not its TTL.
		e.TTL = 0
		entries[e.Key] = e
	}
	m.mu.Lock()
	m.entries = entries
	m.rev = l.Revision
	m.notifyLocked()
	m.mu.Unlock()
	if m.opts.OnChange != nil {
		m.opts.OnChange(Change{Revision: l.Revision, Reset: true})
	}
}

// apply applies the events of one revision.
func (m *Mirror) apply(evs []Event) {
	rev := evs[len(evs)-1].Revision
	m.mu.Lock()
	if rev <= m.rev {
		m.mu.Unlock()
		return
	}
	for _, ev := range evs {
		switch ev.Type {
		case wire.EventSet:
			e := Entry{Key: ev.Key, Value: ev.Value, Revision: ev.Revision, CreateRevision: ev.Revision, Version: 1, Lease: ev.Lease}
			if old, ok := m.entries[ev.Key]; ok {
				e.CreateRevision, e.Version = old.CreateRevision, old.Version+1
			}
			m.entries[ev.Key] = e
		case wire.EventDelete:
			delete(m.entries, ev.Key)
		}
	}
	m.rev = rev
	m.notifyLocked()
	m.mu.Unlock()
	if m.opts.OnChange != nil {
		m.opts.OnChange(Change{Revision: rev, Events: evs})
	}
}

// advance moves the revision to rev after a progress event: nothing under
// the prefix changed up to it.
func (m *Mirror) advance(rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev > m.rev {
		m.rev = rev
		m.notifyLocked()
	}
}

// notifyLocked wakes the waiters of WaitRevision.
func (m *Mirror) notifyLocked() {
	if m.changed != nil {
		close(m.changed)
		m.changed = make(chan struct{})
	}
}

// Revision returns the revision the mirror is at: it holds exactly the
// changes up to it.
func (m *Mirror) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev
}

// Get returns the entry of key, and false if the key does not exist at the
// mirror's revision.
func (m *Mirror) Get(key string) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.entries[key]
	return e, ok
}

// Len returns the number of keys.
func (m *Mirror) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.entries)
}

// List returns a copy of the mirror as a listing: its entries sorted by
// key, and its revision. It is what Client.List would have answered at that
// revision.
func (m *Mirror) List() *List {
	m.mu.RLock()
	l := &List{Revision: m.rev, Entries: make([]Entry, 0, len(m.entries))}
	for _, e := range m.entries {
		l.Entries = append(l.Entries, e)
	}
	m.mu.RUnlock()
	slices.SortFunc(l.Entries, func(a, b Entry) int { return strings.Compare(a.Key, b.Key) })
	return l
}

// TTL returns the lease of key in the mirror and the time left on it, as
// the server tells it now (a lease that expired or was revoked, whose
// key's delete has not reached the mirror yet, has 0 left). It fails with
// an *Error that matches ErrNotFound for a key not in the mirror, or one
// without a lease.
func (m *Mirror) TTL(ctx context.Context, key string) (lease int64, left time.Duration, err error) {
	e, ok := m.Get(key)
	if !ok || e.Lease == 0 {
		return 0, 0, &Error{Op: "mirror ttl", Key: key, Status: http.StatusNotFound, Message: "key not found, or it has no lease"}
	}
	l, err := m.c.TimeToLive(ctx, e.Lease, nil)
	if errors.Is(err, ErrLeaseNotFound) {
		return e.Lease, 0, nil
	}
	if err != nil {
		return e.Lease, 0, err
	}
	return e.Lease, time.Duration(l.TTL), nil
}

// WaitRevision blocks until the mirror has reached revision rev, for
// example that of a Set, so that the mirror shows it. It fails when ctx is
// done first, or the mirror stopped (with Err, or nil after Close).
func (m *Mirror) WaitRevision(ctx context.Context, rev int64) error {
	for {
		m.mu.RLock()
		cur, ch, err := m.rev, m.changed, m.err
		m.mu.RUnlock()
		switch {
		case cur >= rev:
			return nil
		case ch == nil:
			return fmt.Errorf("client: mirror stopped at revision %d before %d: %w", cur, rev, cmp.Or(err, errClosed))
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("client: mirror at revision %d, waiting for %d: %w", cur, rev, context.Cause(ctx))
		}
	}
}

// Done returns a channel that is closed when the mirror stops following
// the feed.
func (m *Mirror) Done() <-chan struct{} { return m.done }

// Err returns why the mirror stopped following the feed: nil while it
// follows, and after Close or the end of its context; an error that
// retrying cannot fix otherwise (ErrUnauthorized, what OnRetry returned,
// ...). The mirror keeps its last state.
func (m *Mirror) Err() error {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.err
}

// Close stops following the feed and waits for the mirror's goroutine to
// return. The mirror keeps its last state.
func (m *Mirror) Close() error {
	m.cancel()
	<-m.done
	return nil
}
