package client_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/wire"
)

// feedStep serves one subscription of a fakeFeed.
type feedStep func(ctx context.Context, c *websocket.Conn)

// fakeFeed serves /subscribe with scripted steps, one per accepted connection,
// and /list with a fixed answer.
type fakeFeed struct {
	t     *testing.T
	rev   int64  // the revision of HEAD /list
	list  string // the body of GET /list
	steps []feedStep
	// refuse, when set, answers a subscription from a revision with a
	// status and body instead.
	refuse func(from string) (int, string)

	mu       sync.Mutex
	froms    []string // the from of each subscription
	accepted int      // subscriptions accepted: the next step's index
}

func (f *fakeFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case wire.PathList:
		w.Header().Set(wire.RevisionHeader, strconv.FormatInt(f.rev, 10))
		if r.Method == http.MethodGet {
			w.Write([]byte(f.list))
		}
		return
	case wire.PathSubscribe:
	default:
		http.NotFound(w, r)
		return
	}
	from := r.URL.Query().Get("from")
	f.mu.Lock()
	f.froms = append(f.froms, from)
	f.mu.Unlock()
	if f.refuse != nil {
		if code, body := f.refuse(from); code != 0 {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			w.Write([]byte(body))
			return
		}
	}
	f.mu.Lock()
	n := f.accepted
	f.accepted++
	f.mu.Unlock()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	if n >= len(f.steps) {
		<-r.Context().Done() // nothing more to say
		return
	}
	f.steps[n](r.Context(), c)
}

func (f *fakeFeed) Froms() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.froms...)
}

func send(ctx context.Context, c *websocket.Conn, events ...string) {
	for _, e := range events {
		if err := c.Write(ctx, websocket.MessageText, []byte(e)); err != nil {
			return
		}
	}
}

// fast are the timings of the tests' watches.
var fast = client.WatchOptions{MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}

// collect runs a watch with opts until it ends or n events, and returns the
// events as "REV TYPE KEY VALUE" (+ "+" when More) and the final error.
func collect(t *testing.T, c *client.Client, opts client.WatchOptions, n int) ([]string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var got []string
	for ev, err := range c.Watch(ctx, opts) {
		if err != nil {
			return got, err
		}
		s := fmt.Sprintf("%d %s %s %s", ev.Revision, ev.Type, ev.Key, ev.Value)
		if ev.More {
			s += " +"
		}
		got = append(got, s)
		if len(got) == n {
			return got, nil
		}
	}
	return got, nil
}

// TestWatchResumes checks that a watch resumes from the right revision
// after each way a connection ends, delivers each event once (also the
// events of a transaction cut by a lost connection), and ends on a 4410.
func TestWatchResumes(t *testing.T) {
	t.Parallel()
	f := &fakeFeed{t: t, steps: []feedStep{
		func(ctx context.Context, c *websocket.Conn) {
			send(ctx, c, `{"Type":"set","Key":"a","Value":1,"Revision":5}`,
				`{"Type":"set","Key":"b","Value":2,"Revision":6,"More":true}`)
			// The connection drops in the middle of revision 6.
		},
		func(ctx context.Context, c *websocket.Conn) {
			send(ctx, c, `{"Type":"set","Key":"b","Value":2,"Revision":6,"More":true}`,
				`{"Type":"delete","Key":"a","Revision":6}`,
				`{"Type":"set","Key":"c","Value":3,"Revision":7}`)
			c.Close(wire.CloseSlowConsumer, wire.ResumeReason("slow consumer", 8))
		},
		func(ctx context.Context, c *websocket.Conn) {
			send(ctx, c, `{"Type":"progress","Revision":10}`)
			c.Close(wire.CloseGoingAway, wire.ResumeReason("server shutting down", 11))
		},
		func(ctx context.Context, c *websocket.Conn) {
			send(ctx, c, `{"Type":"set","Key":"d","Value":{"x":[1]},"Revision":11}`)
			c.Close(wire.CloseCompacted, wire.CompactedReason(40))
		},
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, client.Options{})
	opts := fast
	opts.From = 5
	var connects []int64
	var retries []string
	opts.OnConnect = func(next int64) { connects = append(connects, next) }
	opts.OnRetry = func(r client.Retry) error {
		var ce *client.CloseError
		switch {
		case errors.As(r.Err, &ce):
			retries = append(retries, fmt.Sprintf("close %d from %d", ce.Code, r.Next))
		case errors.Is(r.Err, client.ErrUnreachable):
			retries = append(retries, fmt.Sprintf("lost from %d", r.Next))
		default:
			retries = append(retries, fmt.Sprintf("%v from %d", r.Err, r.Next))
		}
		return nil
	}
	got, err := collect(t, c, opts, -1)
	want := []string{"5 set a 1", "6 set b 2 +", "6 delete a ", "7 set c 3", `11 set d {"x":[1]}`}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got events\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var ce *client.CompactedError
	if !errors.Is(err, client.ErrCompacted) || !errors.As(err, &ce) || ce.Next != 12 || ce.Oldest != 40 {
		t.Errorf("got error %v (%+v), want ErrCompacted at 12, oldest 40", err, ce)
	}
	if got, want := f.Froms(), []string{"5", "6", "8", "11"}; strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("subscribed from %q, want %q", got, want)
	}
	if got, want := fmt.Sprint(connects), "[5 6 8 11]"; got != want {
		t.Errorf("OnConnect got %s, want %s", got, want)
	}
	if got, want := strings.Join(retries, "; "), "lost from 6; close 4408 from 8; close 1001 from 11"; got != want {
		t.Errorf("OnRetry got %q, want %q", got, want)
	}
}

// TestWatchRelist checks relist mode: a 410 lists the keys again, and the
// watch goes on from the listing's revision + 1.
func TestWatchRelist(t *testing.T) {
	t.Parallel()
	f := &fakeFeed{t: t, rev: 20,
		list: `{"Revision":20,"Entries":[{"Key":"a","Value":1,"Revision":3,"CreateRevision":1,"Version":2},{"Key":"ab","Value":"x","Revision":20,"CreateRevision":20,"Version":1}]}`,
		refuse: func(from string) (int, string) {
			if from == "1" {
				return 410, `{"error":"history compacted: revision 1 is no longer retained, the oldest is 15: list with /getall and subscribe from its Kvs-Revision + 1"}`
			}
			return 0, ""
		},
		steps: []feedStep{
			func(ctx context.Context, c *websocket.Conn) {
				send(ctx, c, `{"Type":"delete","Key":"a","Revision":21}`)
			},
			func(ctx context.Context, c *websocket.Conn) {
				send(ctx, c, `{"Type":"delete","Key":"a","Revision":21}`)
			},
		},
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, client.Options{})

	opts := fast
	opts.From = 1
	_, err := collect(t, c, opts, -1)
	var ce *client.CompactedError
	if !errors.As(err, &ce) || ce.Next != 1 || ce.Oldest != 15 {
		t.Errorf("without relist: got %v, want ErrCompacted at 1, oldest 15", err)
	}

	opts.Relist = true
	opts.Key = "a"
	got, err := collect(t, c, opts, 3)
	want := []string{"20 relist   +", "20 set a 1", "21 delete a "}
	if err != nil || strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("relist of a key: got %q, %v; want %q", got, err, want)
	}
	opts.Key = ""
	got, _ = collect(t, c, opts, 4)
	want = []string{"20 relist   +", "20 set a 1 +", `20 set ab "x"`, "21 delete a "}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("relist: got %q, want %q", got, want)
	}
	if got := f.Froms(); got[len(got)-1] != "21" {
		t.Errorf("subscribed from %q, want the last from 21", got)
	}
}

// TestWatchEnds checks the ways a watch ends: an error retrying cannot fix,
// OnRetry, the caller's context, and the caller breaking the loop.
func TestWatchEnds(t *testing.T) {
	t.Parallel()
	f := &fakeFeed{t: t, rev: 7, refuse: func(from string) (int, string) {
		if from == "99" {
			return 400, `{"error":"bad from"}`
		}
		if from == "98" {
			return 503, `{"error":"busy"}`
		}
		return 0, ""
	}, steps: []feedStep{
		func(ctx context.Context, c *websocket.Conn) {
			send(ctx, c, `{"Type":"set","Key":"k","Value":1,"Revision":8}`)
		},
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, client.Options{})

	opts := fast
	opts.From = 99
	var e *client.Error
	if _, err := collect(t, c, opts, -1); !errors.As(err, &e) || e.Status != 400 || e.Message != "bad from" {
		t.Errorf("400: got %v", err)
	}

	opts.From = 98
	stop := errors.New("enough")
	attempts := 0
	opts.OnRetry = func(r client.Retry) error {
		attempts = r.Attempt
		if r.Attempt == 3 {
			return stop
		}
		return nil
	}
	if _, err := collect(t, c, opts, -1); !errors.Is(err, stop) || attempts != 3 {
		t.Errorf("OnRetry: got %v after %d attempts", err, attempts)
	}

	// From 0: after the current revision, read first.
	opts = fast
	got, err := collect(t, c, opts, 1)
	if err != nil || len(got) != 1 || got[0] != "8 set k 1" || f.Froms()[len(f.Froms())-1] != "8" {
		t.Errorf("from the current revision: got %q, %v, subscriptions %q", got, err, f.Froms())
	}

	// Cancelled while waiting to retry.
	opts.From = 98
	opts.MinBackoff, opts.MaxBackoff = time.Hour, time.Hour
	ctx, cancel := context.WithCancel(t.Context())
	opts.OnRetry = func(client.Retry) error { cancel(); return nil }
	start := time.Now()
	for _, err := range c.Watch(ctx, opts) {
		if !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled: got %v", err)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancelled: took %v", d)
	}
}

// TestWatchIdle checks that a connection that stays silent longer than
// IdleTimeout is taken for dead: the watch reconnects.
func TestWatchIdle(t *testing.T) {
	t.Parallel()
	f := &fakeFeed{t: t, steps: []feedStep{
		func(ctx context.Context, c *websocket.Conn) { <-ctx.Done() },
	}}
	// Every later connection sends the event: a busy machine may hold
	// one past the 50ms too, and the watch then connects again.
	for range 20 {
		f.steps = append(f.steps, func(ctx context.Context, c *websocket.Conn) {
			send(ctx, c, `{"Type":"set","Key":"k","Value":1,"Revision":3}`)
		})
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, client.Options{})
	opts := fast
	opts.From, opts.IdleTimeout = 3, 50*time.Millisecond
	var why error
	opts.OnRetry = func(r client.Retry) error { why = r.Err; return nil }
	got, err := collect(t, c, opts, 1)
	if err != nil || len(got) != 1 || !errors.Is(why, client.ErrUnreachable) || !strings.Contains(why.Error(), "no message for 50ms") {
		t.Errorf("got %q, %v; retried for %v", got, err, why)
	}
}

// TestListThenWatch checks list-then-watch against the real API while
// others write: the watch continues the listing, every change once.
func TestListThenWatch(t *testing.T) {
	t.Parallel()
	srv := newServer(t, bus.Options{}, httpapi.Options{})
	c := newClient(t, srv.Addr, client.Options{})
	for i := range 10 {
		srv.set(t, "app/"+strconv.Itoa(i), strconv.Itoa(i))
	}
	srv.set(t, "other", "0")
	l, err := c.List(t.Context(), "app/", nil)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			srv.set(t, "app/"+strconv.Itoa(i%10), strconv.Itoa(100+i))
			srv.set(t, "other", strconv.Itoa(i))
		}
	}()
	state := map[string]string{}
	for _, e := range l.Entries {
		state[e.Key] = string(e.Value)
	}
	last := l.Revision
	count := 0
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	for ev, err := range c.Watch(ctx, client.WatchOptions{Prefix: "app/", From: l.Revision + 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if ev.Revision <= last || !strings.HasPrefix(ev.Key, "app/") {
			t.Fatalf("event %+v after revision %d", ev, last)
		}
		last = ev.Revision
		state[ev.Key] = string(ev.Value)
		if count++; count == n {
			break
		}
	}
	<-done
	final, err := c.List(t.Context(), "app/", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range final.Entries {
		if state[e.Key] != string(e.Value) {
			t.Errorf("%s: watched %s, listed %s", e.Key, state[e.Key], e.Value)
		}
	}
}

// newHTTPServer serves h on 127.0.0.1 for the test and returns its URL.
func newHTTPServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
