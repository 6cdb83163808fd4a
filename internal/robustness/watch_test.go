package robustness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// watchItem is what a watcher received: an event, a progress event, or
// the end of a connection.
type watchItem struct {
	Kind  string // "set", "delete", "progress" or "closed"
	Key   string
	Value string
	Rev   int64
	// More: another event of the same revision follows.
	More bool
	At   int64 // when it was received
	Node int
	// A closed connection's close status (-1: none, 410: refused before
	// the upgrade) and reason.
	Code   int
	Reason string
}

// watcher is a subscriber of /subscribe that resumes after every
// disconnect from the revision after the last one it received, on the same
// node or, roaming, on another.
type watcher struct {
	name string
	// key, or else prefix ("": every key), is what it watches.
	key, prefix string
	c           *cluster
	clock       clock
	node        int
	roam        bool
	// rcvbuf, when positive, is the socket's receive buffer, so that
	// kvsd's writes to a watcher that stops reading stall soon (Linux
	// would grow it to many MiB).
	rcvbuf int
	// pause, when set, makes the watcher stop reading until each context
	// sent on it is done (a subscriber that stops reading).
	pause chan context.Context
	// inject, when set, changes what the watcher records (the checker's
	// own tests inject defects with it).
	inject func(items []watchItem, it watchItem) []watchItem

	mu    sync.Mutex
	items []watchItem
	// last is the revision up to which it has every matching change: a
	// revision counts once its last event (without More) came, so that a
	// connection lost inside one resumes from its start.
	last  int64
	conns int
	gap   bool // refused for a gap (410, 4410): it stopped
}

func (w *watcher) matches(key string) bool {
	if w.key != "" {
		return key == w.key
	}
	return strings.HasPrefix(key, w.prefix)
}

func (w *watcher) record(it watchItem) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if it.Kind == "progress" || (it.Kind == "set" || it.Kind == "delete") && !it.More {
		w.last = max(w.last, it.Rev)
	}
	if it.Kind == "closed" && (it.Code == 410 || it.Code == 4410) {
		w.gap = true
	}
	if w.inject != nil {
		w.items = w.inject(w.items, it)
		return
	}
	w.items = append(w.items, it)
}

func (w *watcher) position() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

func (w *watcher) received() []watchItem {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]watchItem(nil), w.items...)
}

// closes returns how many of its connections were closed with code.
func (w *watcher) closes(code int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, it := range w.items {
		if it.Kind == "closed" && it.Code == code {
			n++
		}
	}
	return n
}

// progressEvents returns how many progress events it received.
func (w *watcher) progressEvents() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, it := range w.items {
		if it.Kind == "progress" {
			n++
		}
	}
	return n
}

// run watches until ctx is done.
func (w *watcher) run(ctx context.Context) {
	hc := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{Timeout: time.Second}).DialContext}}
	if w.rcvbuf > 0 {
		hc = kvstest.SmallReceiveBuffer(w.rcvbuf)
	}
	for ctx.Err() == nil && !w.stopped() {
		base := w.c.nodes[w.node].url()
		if base != "" {
			w.connect(ctx, hc, base)
		}
		if ctx.Err() != nil {
			return
		}
		if w.roam && len(w.c.nodes) > 1 {
			w.node = (w.node + 1) % len(w.c.nodes)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// connect subscribes on one node from the revision after the last one
// received, and records what arrives until the connection ends.
func (w *watcher) connect(ctx context.Context, hc *http.Client, base string) {
	q := url.Values{"from": {strconv.FormatInt(w.position()+1, 10)}}
	if w.key != "" {
		q.Set("key", w.key)
	} else if w.prefix != "" {
		q.Set("prefix", w.prefix)
	}
	u := "ws" + strings.TrimPrefix(base, "http") + "/subscribe?" + q.Encode()
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	conn, resp, err := websocket.Dial(dctx, u, &websocket.DialOptions{HTTPClient: hc})
	cancel()
	if err != nil {
		if resp != nil && resp.StatusCode == http.StatusGone {
			w.record(watchItem{Kind: "closed", Code: http.StatusGone, Reason: "410 before the upgrade", At: w.clock.now(), Node: w.node})
		}
		return
	}
	defer conn.CloseNow()
	conn.SetReadLimit(1 << 20)
	w.mu.Lock()
	w.conns++
	w.mu.Unlock()
	for {
		if w.pause != nil {
			select {
			case stop := <-w.pause:
				select {
				case <-ctx.Done():
					return
				case <-stop.Done():
				}
			default:
			}
		}
		_, data, err := conn.Read(ctx)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			it := watchItem{Kind: "closed", Code: int(websocket.CloseStatus(err)), Reason: err.Error(), At: w.clock.now(), Node: w.node}
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				it.Reason = ce.Reason
			}
			w.record(it)
			return
		}
		var ev struct {
			Type     string
			Key      string
			Value    json.RawMessage
			Revision int64
			More     bool
		}
		if err := json.Unmarshal(data, &ev); err != nil {
			w.record(watchItem{Kind: "closed", Code: -1, Reason: fmt.Sprintf("malformed event %q: %v", data, err), At: w.clock.now(), Node: w.node})
			return
		}
		w.record(watchItem{Kind: ev.Type, Key: ev.Key, Value: string(ev.Value), Rev: ev.Revision, More: ev.More, At: w.clock.now(), Node: w.node})
	}
}

// stopped reports whether the watcher stopped: a client that finds its
// revision gone from the history must list again, and a watcher records it
// as a gap.
func (w *watcher) stopped() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gap
}

// waitFor waits until the watcher has every change up to rev.
func (w *watcher) waitFor(ctx context.Context, rev int64) error {
	for w.position() < rev {
		if w.stopped() {
			return fmt.Errorf("%s: stopped at revision %d after a gap, want %d", w.name, w.position(), rev)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: at revision %d, want %d: %w", w.name, w.position(), rev, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}
