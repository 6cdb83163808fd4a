package client_test

// End-to-end tests of the client against real kvsd processes on
// 127.0.0.1 (internal/kvstest).

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/wire"
)

// waitUntil polls cond every 10ms until it holds, failing the test after
// a minute (a hang guard).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recorder collects the events of a watch.
type recorder struct {
	mu     sync.Mutex
	events []client.Event
	err    error
	done   chan struct{}
}

// record runs a watch in the background until ctx is done.
func record(ctx context.Context, c *client.Client, opts client.WatchOptions) *recorder {
	r := &recorder{done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ev, err := range c.Watch(ctx, opts) {
			r.mu.Lock()
			if err != nil {
				r.err = err
			} else {
				r.events = append(r.events, ev)
			}
			r.mu.Unlock()
		}
	}()
	return r
}

func (r *recorder) last() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.events) == 0 {
		return 0
	}
	return r.events[len(r.events)-1].Revision
}

func (r *recorder) snapshot() ([]client.Event, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]client.Event(nil), r.events...), r.err
}

// checkFeed checks that events are in strictly increasing revision order,
// hold every acknowledged revision, and replay into exactly the listing.
func checkFeed(t *testing.T, events []client.Event, acked map[int64]bool, l *client.List) {
	t.Helper()
	state := map[string]string{}
	seen := map[int64]bool{}
	var last int64
	for _, ev := range events {
		if ev.Revision <= last {
			t.Fatalf("event %+v after revision %d: not in increasing order, or repeated", ev, last)
		}
		last = ev.Revision
		seen[ev.Revision] = true
		switch ev.Type {
		case wire.EventSet:
			state[ev.Key] = string(ev.Value)
		case wire.EventDelete:
			delete(state, ev.Key)
		default:
			t.Fatalf("unexpected event %+v", ev)
		}
	}
	for rev := range acked {
		if !seen[rev] {
			t.Errorf("acknowledged revision %d is not in the feed", rev)
		}
	}
	want := map[string]string{}
	for _, e := range l.Entries {
		want[e.Key] = string(e.Value)
	}
	if !reflect.DeepEqual(state, want) {
		t.Errorf("the feed replays into\n%v\nthe listing at revision %d is\n%v", state, l.Revision, want)
	}
}

// writer writes random changes under prefix until stopped, and records
// the revisions acknowledged. Writes that fail (kvsd restarting) are
// retried later.
type writer struct {
	c      *client.Client
	prefix string
	keys   int
	mu     sync.Mutex
	acked  map[int64]bool
	stop   chan struct{}
	done   chan struct{}
}

func startWriter(c *client.Client, prefix string, keys int, seed uint64) *writer {
	w := &writer{c: c, prefix: prefix, keys: keys, acked: map[int64]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		rng := rand.New(rand.NewPCG(seed, 1))
		ctx := context.Background()
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			key := w.prefix + strconv.Itoa(rng.IntN(w.keys))
			var rev int64
			var err error
			switch n := rng.IntN(10); {
			case n < 6:
				rev, err = c.Set(ctx, key, json.RawMessage(strconv.Itoa(i)), nil)
			case n < 8:
				rev, err = c.Delete(ctx, key, nil)
			default:
				// A compare-and-swap on what the key is now.
				e, gerr := c.Get(ctx, key, nil)
				if gerr != nil {
					err = gerr
					break
				}
				rev, err = c.Set(ctx, key, client.String("cas "+strconv.Itoa(i)), &client.WriteOptions{IfRevision: &e.Revision})
			}
			if err == nil {
				w.mu.Lock()
				w.acked[rev] = true
				w.mu.Unlock()
			} else if errors.Is(err, client.ErrUnreachable) || errors.Is(err, client.ErrUnavailable) {
				time.Sleep(5 * time.Millisecond) // kvsd is restarting
			}
		}
	}()
	return w
}

func (w *writer) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func (w *writer) finish() map[int64]bool {
	close(w.stop)
	<-w.done
	return w.acked
}

// restart stops kvsd, alternately with SIGTERM (subscribers get 1001) and
// SIGKILL (connections drop), and starts it again on the same address and
// data directory.
func restart(t *testing.T, srv *kvstest.Server, i int) *kvstest.Server {
	t.Helper()
	if i%2 == 0 {
		if code := srv.Stop(); code != 0 {
			t.Fatalf("kvsd exited %d on SIGTERM", code)
		}
	} else {
		srv.Kill()
	}
	return kvstest.Start(t, srv.Args...)
}

// TestWatchAcrossRestarts checks the watch iterator against a kvsd with the
// file backend that restarts, cleanly and killed, while a writer writes:
// every acknowledged change comes once, in order, and the feed replays into
// the final listing.
func TestWatchAcrossRestarts(t *testing.T) {
	t.Parallel()
	srv := kvstest.Start(t, "-backend", "file", "-data", t.TempDir(), "-addr", kvstest.FreeAddr(t))
	c := newClient(t, srv.Addr, client.Options{Timeout: 5 * time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var retries sync.Map
	rec := record(ctx, c, client.WatchOptions{Prefix: "w/", From: 1, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		OnRetry: func(r client.Retry) error {
			var ce *client.CloseError
			if errors.As(r.Err, &ce) {
				retries.Store(ce.Code, true)
			} else if errors.Is(r.Err, client.ErrUnreachable) {
				retries.Store("lost", true)
			}
			return nil
		}})
	w := startWriter(c, "w/", 20, 1)
	for i := range 4 {
		n := w.count()
		waitUntil(t, "writes", func() bool { return w.count() >= n+100 })
		srv = restart(t, srv, i)
	}
	n := w.count()
	waitUntil(t, "writes after the last restart", func() bool { return w.count() >= n+100 })
	acked := w.finish()
	l, err := c.List(t.Context(), "w/", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the watch to catch up", func() bool { return rec.last() >= l.Revision || len(l.Entries) == 0 })
	cancel()
	<-rec.done
	events, err := rec.snapshot()
	if !errors.Is(err, context.Canceled) {
		t.Errorf("the watch ended with %v, want the context's end", err)
	}
	checkFeed(t, events, acked, l)
	if _, ok := retries.Load(wire.CloseGoingAway); !ok {
		t.Errorf("the watch never met a 1001 close")
	}
	if _, ok := retries.Load("lost"); !ok {
		t.Errorf("the watch never lost its connection")
	}
	t.Logf("%d events, %d acknowledged writes, %d restarts", len(events), len(acked), 4)
}

// TestWatchSlowConsumer checks that a watch that falls behind, closed by
// kvsd with 4408 again and again (a subscriber buffer of 1), resumes each
// time and delivers every change once, in order.
func TestWatchSlowConsumer(t *testing.T) {
	t.Parallel()
	srv := kvstest.Start(t, "-backend", "memory", "-subscriber-buffer", "1")
	c := newClient(t, srv.Addr, client.Options{Timeout: 10 * time.Second})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var closes sync.Map // code -> count
	count := func(code int) int {
		n, _ := closes.Load(code)
		v, _ := n.(int)
		return v
	}
	var mu sync.Mutex
	rec := record(ctx, c, client.WatchOptions{Prefix: "s/", From: 1, MinBackoff: time.Millisecond, MaxBackoff: 10 * time.Millisecond,
		OnRetry: func(r client.Retry) error {
			var ce *client.CloseError
			if errors.As(r.Err, &ce) {
				mu.Lock()
				closes.Store(ce.Code, count(ce.Code)+1)
				mu.Unlock()
			}
			return nil
		}})
	var writers []*writer
	for i := range 4 {
		writers = append(writers, startWriter(c, "s/", 50, uint64(i)))
	}
	waitUntil(t, "three 4408 closes", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return count(wire.CloseSlowConsumer) >= 3
	})
	acked := map[int64]bool{}
	for _, w := range writers {
		for rev := range w.finish() {
			acked[rev] = true
		}
	}
	l, err := c.List(t.Context(), "s/", nil)
	if err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the watch to catch up", func() bool { return rec.last() >= l.Revision })
	cancel()
	<-rec.done
	events, _ := rec.snapshot()
	checkFeed(t, events, acked, l)
	// The memory backend numbers changes 1, 2, 3, ...: all of them came.
	if int64(len(events)) != l.Revision {
		t.Errorf("%d events up to revision %d", len(events), l.Revision)
	}
	mu.Lock()
	t.Logf("%d events, %d closes with 4408", len(events), count(wire.CloseSlowConsumer))
	mu.Unlock()
}

// TestWatchCompacted checks a watch from a revision that a kvsd with a
// small -history no longer has: ErrCompacted, or with Relist the current
// values and then the live changes.
func TestWatchCompacted(t *testing.T) {
	t.Parallel()
	srv := kvstest.Start(t, "-backend", "memory", "-history", "5")
	c := newClient(t, srv.Addr, client.Options{})
	for i := range 20 {
		if _, err := c.Set(t.Context(), "k"+strconv.Itoa(i%4), json.RawMessage(strconv.Itoa(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	for _, err := range c.Watch(t.Context(), client.WatchOptions{From: 2}) {
		var ce *client.CompactedError
		if !errors.Is(err, client.ErrCompacted) || !errors.As(err, &ce) || ce.Next != 2 || ce.Oldest != 16 {
			t.Errorf("without relist: got %v (%+v), want ErrCompacted at 2, oldest 16", err, ce)
		}
		break
	}

	var got []string
	for ev, err := range c.Watch(t.Context(), client.WatchOptions{From: 2, Relist: true, Prefix: "k"}) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprintf("%d %s %s %s %v", ev.Revision, ev.Type, ev.Key, ev.Value, ev.More))
		if ev.Type == client.EventRelist {
			continue
		}
		if ev.Revision == 20 && !ev.More {
			if _, err := c.Set(t.Context(), "k9", json.RawMessage("99"), nil); err != nil {
				t.Fatal(err)
			}
		}
		if ev.Revision == 21 {
			break
		}
	}
	want := []string{"20 relist   true", "20 set k0 16 true", "20 set k1 17 true", "20 set k2 18 true", "20 set k3 19 false", "21 set k9 99 false"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("with relist: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTokenAndTLS checks calls and watches against a kvsd with -token over
// HTTPS, and the errors without the CA or the token.
func TestTokenAndTLS(t *testing.T) {
	t.Parallel()
	certs := kvstest.WriteCerts(t)
	const token = "a-long-enough-test-token-0123456789"
	srv := kvstest.Start(t, "-backend", "memory", "-tls-cert", certs.Cert, "-tls-key", certs.Key, "-token", token)
	ctx := t.Context()

	c := newClient(t, srv.URL, client.Options{Token: token, CAFile: certs.CA, Timeout: 10 * time.Second})
	rev, err := c.Set(ctx, "tls/a", client.String("secret"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if e, err := c.Get(ctx, "tls/a", nil); err != nil || string(e.Value) != `"secret"` {
		t.Errorf("get: %+v, %v", e, err)
	}
	if l, err := c.List(ctx, "tls/", nil); err != nil || len(l.Entries) != 1 || l.Revision != rev {
		t.Errorf("list: %+v, %v", l, err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Errorf("ready: %v", err)
	}
	for ev, err := range c.Watch(ctx, client.WatchOptions{From: rev}) {
		if err != nil || ev.Key != "tls/a" || ev.Revision != rev {
			t.Errorf("watch: %+v, %v", ev, err)
		}
		break
	}

	noCA := newClient(t, srv.URL, client.Options{Token: token})
	_, err = noCA.Get(ctx, "tls/a", nil)
	var uae x509.UnknownAuthorityError
	if !errors.Is(err, client.ErrUnreachable) || !errors.As(err, &uae) {
		t.Errorf("without the CA: got %v, want ErrUnreachable from an unknown authority", err)
	}
	for _, tok := range []string{"", "wrong-token"} {
		bad := newClient(t, srv.URL, client.Options{Token: tok, CAFile: certs.CA})
		if _, err := bad.Get(ctx, "tls/a", nil); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("token %q: get: got %v", tok, err)
		}
		for _, err := range bad.Watch(ctx, client.WatchOptions{}) {
			if !errors.Is(err, client.ErrUnauthorized) {
				t.Errorf("token %q: watch: got %v", tok, err)
			}
			break
		}
		for _, err := range bad.Watch(ctx, client.WatchOptions{From: 1}) {
			if !errors.Is(err, client.ErrUnauthorized) {
				t.Errorf("token %q: watch from 1: got %v", tok, err)
			}
			break
		}
	}
}

// TestMirrorMatchesList checks that a mirror equals /list at its revision
// after random writes by two writers and restarts of kvsd, killed and
// clean.
func TestMirrorMatchesList(t *testing.T) {
	t.Parallel()
	srv := kvstest.Start(t, "-backend", "file", "-data", t.TempDir(), "-addr", kvstest.FreeAddr(t))
	c := newClient(t, srv.Addr, client.Options{Timeout: 5 * time.Second})
	for i := range 30 {
		if _, err := c.Set(t.Context(), "m/"+strconv.Itoa(i), json.RawMessage(strconv.Itoa(i)), nil); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var changes []client.Change
	m, err := c.Mirror(t.Context(), client.MirrorOptions{Prefix: "m/", MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		OnChange: func(ch client.Change) {
			mu.Lock()
			changes = append(changes, ch)
			mu.Unlock()
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()

	check := func(when string) {
		t.Helper()
		l, err := c.List(t.Context(), "m/", nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		if err := m.WaitRevision(ctx, l.Revision); err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if got := m.List(); !reflect.DeepEqual(got, l) {
			t.Fatalf("%s: the mirror at revision %d is\n%+v\n/list says\n%+v", when, got.Revision, got.Entries, l.Entries)
		}
	}
	check("at the start")
	for i := range 4 {
		w1, w2 := startWriter(c, "m/", 40, uint64(2*i)), startWriter(c, "m/", 40, uint64(2*i+1))
		waitUntil(t, "writes", func() bool { return w1.count()+w2.count() >= 150 })
		srv = restart(t, srv, i)
		waitUntil(t, "writes after a restart", func() bool { return w1.count()+w2.count() >= 300 })
		w1.finish()
		w2.finish()
		check(fmt.Sprintf("after restart %d", i+1))
	}
	if err := m.Err(); err != nil {
		t.Errorf("mirror: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(changes); i++ {
		if changes[i].Revision <= changes[i-1].Revision && !changes[i].Reset {
			t.Fatalf("change %d at revision %d after %d", i, changes[i].Revision, changes[i-1].Revision)
		}
	}
	if !changes[0].Reset {
		t.Errorf("the first change is not the listing: %+v", changes[0])
	}
}
