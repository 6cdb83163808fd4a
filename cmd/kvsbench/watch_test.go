package main

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/client"
)

// fakeConn scripts one subscription of the fake feed.
type fakeConn struct {
	events []string // messages sent, in order
	// close, when not 0, closes the connection with this code and reason
	// after the events; otherwise it stays open until the client goes.
	close  websocket.StatusCode
	reason string
}

// fakeFeed serves /subscribe, answering the i-th subscription with
// conns[i]. It returns the server and, once the test is done with it, the
// from parameter and Authorization header of each subscription.
func fakeFeed(t *testing.T, conns []fakeConn) (*httptest.Server, func() (froms, auths []string)) {
	t.Helper()
	var (
		mu           sync.Mutex
		froms, auths []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		i := len(froms)
		froms = append(froms, r.URL.Query().Get("from"))
		auths = append(auths, r.Header.Get("Authorization"))
		mu.Unlock()
		if i >= len(conns) {
			http.Error(w, `{"error":"no more subscriptions in this script"}`, http.StatusServiceUnavailable)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for _, ev := range conns[i].events {
			if err := c.Write(r.Context(), websocket.MessageText, []byte(ev)); err != nil {
				return
			}
		}
		if conns[i].close != 0 {
			c.Close(conns[i].close, conns[i].reason)
			return
		}
		<-c.CloseRead(r.Context()).Done()
	}))
	t.Cleanup(srv.Close)
	return srv, func() ([]string, []string) {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(froms), slices.Clone(auths)
	}
}

// feedClient returns a client of srv with the given token.
func feedClient(t *testing.T, srv *httptest.Server, token string) *client.Client {
	t.Helper()
	c, err := client.New(srv.URL, client.Options{Token: token, Timeout: 10 * time.Second, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func set(rev int64) string {
	return fmt.Sprintf(`{"Type":"set","Key":"p/k1","Value":"v","Revision":%d}`, rev)
}
func progress(rev int64) string { return fmt.Sprintf(`{"Type":"progress","Revision":%d}`, rev) }

func TestSubscriber(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		resume     bool
		conns      []fakeConn
		acked      []int64
		waitFor    int64 // revision to wait for; 0 = the last acknowledged
		wantFroms  []string
		want       verdict
		wantErrs   map[string]int64
		reconnects int64
	}{
		{
			name:      "in order",
			conns:     []fakeConn{{events: []string{set(1), set(2), `{"Type":"delete","Key":"p/k2","Revision":3}`}}},
			acked:     []int64{1, 2, 3},
			wantFroms: []string{""},
			want:      verdict{Expected: 3, Delivered: 3},
		},
		{
			name:   "slow consumer close, resumed",
			resume: true,
			conns: []fakeConn{
				{events: []string{set(1), set(2)}, close: 4408, reason: "slow consumer, resume from 3"},
				{events: []string{set(3), set(4)}},
			},
			acked:      []int64{1, 2, 3, 4},
			wantFroms:  []string{"", "3"},
			want:       verdict{Expected: 4, Delivered: 4},
			wantErrs:   map[string]int64{"feed: slow consumer (4408)": 1},
			reconnects: 1,
		},
		{
			name:   "slow consumer close, resumed after a progress event",
			resume: true,
			conns: []fakeConn{
				{events: []string{set(1), progress(7)}, close: 4408, reason: "slow consumer, resume from 8"},
				{events: []string{set(8)}},
			},
			acked:      []int64{1, 8},
			wantFroms:  []string{"", "8"},
			want:       verdict{Expected: 2, Delivered: 2},
			wantErrs:   map[string]int64{"feed: slow consumer (4408)": 1},
			reconnects: 1,
		},
		{
			name: "slow consumer close, not resumed: only what came before is expected",
			conns: []fakeConn{
				{events: []string{set(1), set(2)}, close: 4408, reason: "slow consumer, resume from 3"},
			},
			acked:     []int64{1, 2, 3, 4},
			wantFroms: []string{""},
			want:      verdict{Expected: 2, Delivered: 2},
			wantErrs:  map[string]int64{"feed: slow consumer (4408)": 1},
		},
		{
			name:   "server names the wrong resume revision",
			resume: true,
			conns: []fakeConn{
				{events: []string{set(1), set(2)}, close: 4408, reason: "slow consumer, resume from 5"},
				{events: []string{set(3), set(4)}},
			},
			acked:      []int64{1, 2, 3, 4},
			wantFroms:  []string{"", "3"},
			want:       verdict{Expected: 4, Delivered: 4},
			wantErrs:   map[string]int64{"feed: slow consumer (4408)": 1, "feed: wrong resume revision": 1},
			reconnects: 1,
		},
		{
			name:      "lost, duplicated and reordered events",
			conns:     []fakeConn{{events: []string{set(1), set(3), set(3), set(2), set(5), progress(6)}}},
			acked:     []int64{1, 2, 3, 4, 5},
			wantFroms: []string{""},
			want:      verdict{Expected: 5, Delivered: 5, Lost: 1, Duplicated: 1, Reordered: 1},
		},
		{
			name:      "server going away",
			conns:     []fakeConn{{events: []string{set(1)}, close: websocket.StatusGoingAway, reason: "server shutting down, resume from 2"}},
			acked:     []int64{1, 2},
			wantFroms: []string{""},
			want:      verdict{Expected: 1, Delivered: 1},
			wantErrs:  map[string]int64{"feed: server going away (1001)": 1},
		},
		{
			name: "bad events",
			conns: []fakeConn{{events: []string{
				set(1),
				`{"Type":"set","Key":"other/k","Value":1,"Revision":2}`,
				`{"Type":"frobnicate","Revision":3}`,
				`not json`,
				progress(0),
				progress(4),
			}}},
			acked:     []int64{1},
			waitFor:   4,
			wantFroms: []string{""},
			want:      verdict{Expected: 1, Delivered: 1},
			wantErrs: map[string]int64{
				"feed: event for a key outside the prefix":      1,
				"feed: unknown event type":                      1,
				"feed: bad event":                               1,
				"feed: progress revision below a delivered one": 1,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, seen := fakeFeed(t, tt.conns)
			f := &watchRun{acks: newAckLog(), prefix: "p/", kvs: feedClient(t, srv, "tok"), resume: tt.resume}
			for _, r := range tt.acked {
				f.acks.add(r, time.Now())
			}
			s := newSubscriber(f)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() {
				defer close(done)
				s.run(ctx, 0, func() {})
			}()
			target := tt.waitFor
			if target == 0 {
				target = slices.Max(tt.acked)
			}
			hang := time.After(30 * time.Second) // a hang guard, not a speed check
			for !caughtUp([]*subscriber{s}, target) {
				select {
				case <-hang:
					t.Fatalf("subscriber did not catch up with revision %d: seen %d", target, s.seen.Load())
				case <-time.After(time.Millisecond):
				}
			}
			cancel()
			<-done

			want := ackedUpTo(f.acks.sorted(), target)
			if s.cut {
				want = ackedUpTo(want, s.seen.Load())
			}
			if got := s.check.verify(want); got != tt.want {
				t.Errorf("verdict: got %+v, want %+v", got, tt.want)
			}
			gotErrs, _ := errorMaps(s.errs)
			if tt.wantErrs == nil {
				tt.wantErrs = map[string]int64{}
			}
			if !maps.Equal(gotErrs, tt.wantErrs) {
				t.Errorf("errors: got %v, want %v", gotErrs, tt.wantErrs)
			}
			if s.reconnects != tt.reconnects {
				t.Errorf("reconnects: got %d, want %d", s.reconnects, tt.reconnects)
			}
			froms, auths := seen()
			if !slices.Equal(froms, tt.wantFroms) {
				t.Errorf("from of each subscription: got %q, want %q", froms, tt.wantFroms)
			}
			for _, a := range auths {
				if a != "Bearer tok" {
					t.Errorf("Authorization header: got %q, want %q", a, "Bearer tok")
				}
			}
			s.settle()
			if got, want := s.hist.count(), uint64(tt.want.Delivered-tt.want.Unexpected); got != want {
				t.Errorf("latencies recorded: got %d, want %d (one per delivery of an acknowledged revision)", got, want)
			}
		})
	}
}

func TestSubscriberDialError(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusGone)
		w.Write([]byte(`{"error":"history compacted"}`))
	}))
	t.Cleanup(srv.Close)
	f := &watchRun{acks: newAckLog(), prefix: "p/", kvs: feedClient(t, srv, "")}
	s := newSubscriber(f)
	dialed := false
	s.run(t.Context(), 5, func() { dialed = true })
	if !dialed || s.connected || !s.ended.Load() {
		t.Fatalf("after a refused subscription: dialed %v, connected %v, ended %v; want true, false, true", dialed, s.connected, s.ended.Load())
	}
	got, samples := errorMaps(s.errs)
	if want := map[string]int64{"subscribe: http 410": 1}; !maps.Equal(got, want) {
		t.Errorf("errors: got %v, want %v", got, want)
	}
	if samples["subscribe: http 410"] != "history compacted" {
		t.Errorf("error sample: got %q, want the server's error message", samples["subscribe: http 410"])
	}
}

// TestSubscriberLatency checks the latency of each delivery against the
// acknowledgement of its set, including events that arrive before the
// setter has read the answer (counted as 0) and events never acknowledged
// (no latency).
func TestSubscriberLatency(t *testing.T) {
	t.Parallel()
	f := &watchRun{acks: newAckLog()}
	s := newSubscriber(f)
	base := f.acks.base
	f.acks.add(1, base.Add(1000))
	s.deliver(1, 3500)            // acked before: 2500 ns
	s.deliver(2, 4000)            // not acked yet: pending
	f.acks.add(2, base.Add(4600)) // acked after its delivery
	s.deliver(3, 5000)            // never acked
	f.acks.add(4, base.Add(6000))
	s.deliver(4, 6000) // same instant: 0, not early
	s.settle()
	if got := s.hist.count(); got != 3 {
		t.Fatalf("latencies recorded: got %d, want 3", got)
	}
	if got := s.early; got != 1 {
		t.Errorf("early deliveries: got %d, want 1", got)
	}
	if got := s.hist.max; got != 2500 {
		t.Errorf("max latency: got %d, want 2500", got)
	}
	if got := s.hist.min; got != 0 {
		t.Errorf("min latency: got %d, want 0", got)
	}
	if v := s.check.verify(f.acks.sorted()); v != (verdict{Expected: 3, Delivered: 4, Unexpected: 1}) {
		t.Errorf("verdict: got %+v, want 1 unexpected", v)
	}
}

func TestAckLog(t *testing.T) {
	t.Parallel()
	a := newAckLog()
	for _, r := range []int64{5, 2, 9, 2} {
		a.add(r, a.base.Add(time.Duration(r)))
	}
	if got := a.sorted(); !slices.Equal(got, []int64{2, 5, 9}) {
		t.Errorf("sorted: got %v, want [2 5 9]", got)
	}
	if a.last() != 9 || a.dups != 1 {
		t.Errorf("last, dups: got %d, %d, want 9, 1", a.last(), a.dups)
	}
	if at, ok := a.get(5); !ok || at != 5 {
		t.Errorf("get(5): got %d, %v, want 5, true", at, ok)
	}
	if _, ok := a.get(3); ok {
		t.Errorf("get(3): got ok for a revision never acknowledged")
	}
}

// TestKeptUp: a sweep's step kept up with its rate when the setter made
// nine in ten of the sets that fell due in its duration, however long the
// last of them took to answer.
func TestKeptUp(t *testing.T) {
	tests := []struct {
		name     string
		ops      int64
		seconds  float64
		rate     float64
		duration time.Duration
		total    int64
		want     bool
	}{
		{"every set, a slow last answer", 25, 0.782, 50, 500 * time.Millisecond, 0, true},
		{"nine in ten", 23, 0.6, 50, 500 * time.Millisecond, 0, true},
		{"fell behind", 22, 0.782, 50, 500 * time.Millisecond, 0, false},
		{"a total below the rate's", 10, 2, 50, time.Second, 10, true},
		{"no duration: the rate", 90, 1, 100, 0, 90, true},
		{"no duration, too slow", 89, 1, 100, 0, 89, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := keptUp(tt.ops, tt.seconds, tt.rate, tt.duration, tt.total); got != tt.want {
				t.Fatalf("keptUp(%d sets in %gs, %g/s for %v, total %d) = %v, want %v", tt.ops, tt.seconds, tt.rate, tt.duration, tt.total, got, tt.want)
			}
		})
	}
}
