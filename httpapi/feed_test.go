package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/hubfeed"
	"github.com/kvsdb/kvs/kv"
)

type feedEnv struct {
	srv   *httptest.Server
	store *kv.Store
	hub   *bus.Hub
	h     *httpapi.Handler
	ws    string // ws:// URL of /subscribe
}

func newFeedEnv(t *testing.T, bopts bus.Options, opts httpapi.Options) *feedEnv {
	t.Helper()
	return newFeedEnvSendBuffer(t, bopts, opts, 0)
}

// newFeedEnvSendBuffer is newFeedEnv whose server sets the send buffer of
// the connections it accepts to sndbuf bytes, when positive.
func newFeedEnvSendBuffer(t *testing.T, bopts bus.Options, opts httpapi.Options, sndbuf int) *feedEnv {
	t.Helper()
	bopts.Encode = httpapi.AppendEvent
	hub := bus.New(bopts)
	store := kv.New(kv.Options{Publisher: hub})
	opts.Store, opts.Feed = store, hubfeed.Feed{Hub: hub}
	h := httpapi.New(opts)
	srv := httptest.NewUnstartedServer(h)
	if sndbuf > 0 {
		srv.Listener = bufferListener{Listener: srv.Listener, write: sndbuf}
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		srv.Close()
		hub.Close()
		store.Close()
	})
	return &feedEnv{srv: srv, store: store, hub: hub, h: h, ws: "ws" + strings.TrimPrefix(srv.URL, "http") + "/subscribe"}
}

// bufferListener sets the send (write) and receive (read) buffers of the
// connections it accepts to so many bytes, those that are positive.
type bufferListener struct {
	net.Listener
	write, read int
}

func (l bufferListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	if l.write > 0 {
		err = tc.SetWriteBuffer(l.write)
	}
	if l.read > 0 && err == nil {
		err = tc.SetReadBuffer(l.read)
	}
	if err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// set writes key=value over HTTP and returns the acknowledged revision.
func (e *feedEnv) set(t testing.TB, key, value string) int64 {
	t.Helper()
	return e.post(t, "/set", `{"Key":`+strconv.Quote(key)+`,"Value":`+value+`}`)
}

// del deletes key over HTTP and returns the acknowledged revision.
func (e *feedEnv) del(t testing.TB, key string) int64 {
	t.Helper()
	return e.post(t, "/delete", `{"Key":`+strconv.Quote(key)+`}`)
}

func (e *feedEnv) post(t testing.TB, path, body string) int64 {
	t.Helper()
	resp, err := http.Post(e.srv.URL+path, "", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return 0
	}
	defer resp.Body.Close()
	var r httpapi.WriteResult
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || resp.StatusCode != 200 {
		t.Errorf("%s %s: status %d, %v", path, body, resp.StatusCode, err)
	}
	return r.Revision
}

type watcher struct {
	t *testing.T
	c *websocket.Conn
}

func (e *feedEnv) dial(t *testing.T, query string) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, e.ws+query, nil)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", query, err, resp)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &watcher{t, c}
}

// next reads one event, failing the test after d.
func (w *watcher) next(d time.Duration) (httpapi.Event, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	typ, data, err := w.c.Read(ctx)
	if err != nil {
		return httpapi.Event{}, err
	}
	if typ != websocket.MessageText {
		w.t.Fatalf("got a %v message, want text", typ)
	}
	var ev httpapi.Event
	if err := json.Unmarshal(data, &ev); err != nil {
		w.t.Fatalf("event %q: %v", data, err)
	}
	return ev, nil
}

// changes reads events until it has n set/delete events (skipping
// progress events). It fails after 30s without one (a hang guard: a busy
// machine may take longer than that for all n).
func (w *watcher) changes(n int) []httpapi.Event {
	w.t.Helper()
	var out []httpapi.Event
	deadline := time.Now().Add(30 * time.Second)
	for len(out) < n {
		ev, err := w.next(time.Until(deadline))
		if err != nil {
			w.t.Fatalf("after %d of %d events: %v", len(out), n, err)
		}
		if ev.Type != "progress" {
			out = append(out, ev)
			deadline = time.Now().Add(30 * time.Second)
		}
	}
	return out
}

func revisions(evs []httpapi.Event) []int64 {
	out := make([]int64, len(evs))
	for i, ev := range evs {
		out[i] = ev.Revision
	}
	return out
}

// writers runs n goroutines that set keys until stop is closed or each
// made max sets, and returns every acknowledged revision.
type writeLog struct {
	mu    sync.Mutex
	revs  []int64
	value map[int64]string // revision -> key=value
}

func (e *feedEnv) write(t *testing.T, n, max int, stop <-chan struct{}) *writeLog {
	wl := &writeLog{value: make(map[int64]string)}
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; i < max; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d/k%d", w, i%7)
				val := strconv.Itoa(w*100000 + i)
				rev := e.set(t, key, val)
				wl.mu.Lock()
				wl.revs = append(wl.revs, rev)
				wl.value[rev] = key + "=" + val
				wl.mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(wl.revs)
	return wl
}

func checkEvents(t *testing.T, who string, got []httpapi.Event, wl *writeLog) {
	t.Helper()
	if !slices.Equal(revisions(got), wl.revs) {
		t.Fatalf("%s: got revisions %v, want exactly the acknowledged %v", who, short(revisions(got)), short(wl.revs))
	}
	for _, ev := range got {
		if kvs := ev.Key + "=" + string(ev.Value); kvs != wl.value[ev.Revision] {
			t.Fatalf("%s: revision %d is %s, want %s", who, ev.Revision, kvs, wl.value[ev.Revision])
		}
	}
}

func short(r []int64) string {
	if len(r) <= 12 {
		return fmt.Sprint(r)
	}
	return fmt.Sprintf("%v ... %v (%d)", r[:6], r[len(r)-6:], len(r))
}

// Guarantee 1: every subscriber gets every change (broadcast, never shared).
func TestFeedBroadcastsToEverySubscriber(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	const subs = 12
	ws := make([]*watcher, subs)
	for i := range ws {
		ws[i] = e.dial(t, "")
	}
	wl := e.write(t, 4, 50, nil)
	for i, w := range ws {
		checkEvents(t, fmt.Sprintf("subscriber %d", i), w.changes(len(wl.revs)), wl)
	}
}

// Guarantee 1: pushed by the server, without any message from the client.
func TestFeedNeedsNoClientMessage(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	w := e.dial(t, "") // never writes anything on the socket
	rev := e.set(t, "City", `"Ahmedabad"`)
	ev, err := w.next(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	want := httpapi.Event{Type: "set", Key: "City", Value: json.RawMessage(`"Ahmedabad"`), Revision: rev}
	if ev.Type != want.Type || ev.Key != want.Key || string(ev.Value) != string(want.Value) || ev.Revision != want.Revision {
		t.Fatalf("got %+v, want %+v", ev, want)
	}
	e.del(t, "City")
	if ev, err := w.next(10 * time.Second); err != nil || ev.Type != "delete" || ev.Key != "City" || ev.Value != nil {
		t.Fatalf("got %+v %v, want a delete of City without a value", ev, err)
	}
}

// Guarantee 1: strict revision order, exactly once, under concurrent writers.
func TestFeedStrictRevisionOrder(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	w := e.dial(t, "")
	wl := e.write(t, 8, 40, nil)
	got := w.changes(len(wl.revs))
	for i := 1; i < len(got); i++ {
		if got[i].Revision <= got[i-1].Revision {
			t.Fatalf("revision %d after %d", got[i].Revision, got[i-1].Revision)
		}
	}
	checkEvents(t, "subscriber", got, wl)
}

// Guarantee 2: from=R replays history, then continues live, with no gap
// and no duplicate at the seam, while writers are running.
func TestFeedResumeFromRevisionWhileWriting(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	all := e.dial(t, "?from=1")
	stop := make(chan struct{})
	var wl *writeLog
	done := make(chan struct{})
	go func() {
		wl = e.write(t, 4, 1<<30, stop)
		close(done)
	}()
	// Subscribe at several points mid-stream.
	type late struct {
		w    *watcher
		from int64
	}
	var lates []late
	for range 5 {
		time.Sleep(30 * time.Millisecond)
		from := e.store.Rev() - 3
		if from < 1 {
			from = 1
		}
		lates = append(lates, late{e.dial(t, "?from="+strconv.FormatInt(from, 10)), from})
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	<-done
	checkEvents(t, "from=1", all.changes(len(wl.revs)), wl)
	for _, l := range lates {
		want := &writeLog{value: wl.value}
		for _, r := range wl.revs {
			if r >= l.from {
				want.revs = append(want.revs, r)
			}
		}
		checkEvents(t, fmt.Sprintf("from=%d", l.from), l.w.changes(len(want.revs)), want)
	}
}

// Guarantee 2: a from older than the history window is refused with HTTP
// 410 before the upgrade, naming the oldest retained revision.
func TestFeedFromOlderThanHistoryIs410(t *testing.T) {
	e := newFeedEnv(t, bus.Options{History: 10}, httpapi.Options{})
	for i := range 30 {
		e.set(t, "k", strconv.Itoa(i))
	}
	for _, from := range []string{"1", "5", "20"} {
		a := wsGet(t, e, "?from="+from)
		if a.code != http.StatusGone || !strings.Contains(a.body, "the oldest is 21") {
			t.Fatalf("from=%s: got %d %s, want 410 naming 21", from, a.code, a.body)
		}
	}
	w := e.dial(t, "?from=21")
	if got := revisions(w.changes(10)); !slices.Equal(got, []int64{21, 22, 23, 24, 25, 26, 27, 28, 29, 30}) {
		t.Fatalf("from=21: got %v", got)
	}
}

// wsGet sends a WebSocket upgrade request by hand, to see answers given
// before the upgrade.
func wsGet(t *testing.T, e *feedEnv, query string) answer {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.srv.URL+"/subscribe"+query, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

func TestFeedFilters(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	byKey := e.dial(t, "?key=app/a")
	byPrefix := e.dial(t, "?prefix=app/")
	everything := e.dial(t, "?prefix=")
	e.set(t, "app/a", "1")
	e.set(t, "other", "2")
	e.set(t, "app/b", "3")
	e.set(t, "app/a", "4")
	e.set(t, "app", "5")
	e.del(t, "app/a")
	keys := func(evs []httpapi.Event) string {
		var s []string
		for _, ev := range evs {
			s = append(s, fmt.Sprintf("%s:%s@%d", ev.Type, ev.Key, ev.Revision))
		}
		return strings.Join(s, " ")
	}
	if got, want := keys(byKey.changes(3)), "set:app/a@1 set:app/a@4 delete:app/a@6"; got != want {
		t.Errorf("key=app/a: got %s, want %s", got, want)
	}
	if got, want := keys(byPrefix.changes(4)), "set:app/a@1 set:app/b@3 set:app/a@4 delete:app/a@6"; got != want {
		t.Errorf("prefix=app/: got %s, want %s", got, want)
	}
	if got := everything.changes(6); len(got) != 6 {
		t.Errorf("prefix= (all): got %d events, want 6", len(got))
	}
	// A filtered subscriber also resumes by revision.
	late := e.dial(t, "?key=app/a&from=2")
	if got, want := keys(late.changes(2)), "set:app/a@4 delete:app/a@6"; got != want {
		t.Errorf("key=app/a&from=2: got %s, want %s", got, want)
	}
}

// Guarantee 3: a subscriber that falls behind by more than its queue is
// closed with 4408 and the revision to resume from; writers and other
// subscribers never wait for it.
func TestFeedSlowConsumer(t *testing.T) {
	e := newFeedEnv(t, bus.Options{Buffer: 64}, httpapi.Options{WriteTimeout: time.Minute})
	// The slow subscriber reads nothing until the writers are done, through
	// a socket receive buffer too small to absorb the writes (Linux would
	// grow it to 32 MiB), so that the server's writes to it stall.
	slow := e.dialSlow(t, "") // a receive buffer of 128 KiB
	fast := e.dial(t, "")
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	const n = 400 // 25 MiB of events: more than the socket buffers hold
	var fastGot []httpapi.Event
	fastDone := make(chan struct{})
	go func() {
		defer close(fastDone)
		fastGot = fast.changes(n)
	}()
	var revs []int64
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		for range n {
			revs = append(revs, e.set(t, "big", big))
		}
	}()
	select {
	case <-wrote:
	case <-time.After(2 * time.Minute): // a hang guard, not a speed check
		t.Fatal("writers blocked behind a subscriber that does not read")
	}
	<-fastDone // the fast subscriber has every acknowledged write
	if !slices.Equal(revisions(fastGot), revs) {
		t.Fatalf("fast subscriber: got %s, want %s", short(revisions(fastGot)), short(revs))
	}
	var got []int64
	var err error
	for {
		var ev httpapi.Event
		ev, err = slow.next(20 * time.Second)
		if err != nil {
			break
		}
		got = append(got, ev.Revision)
	}
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != httpapi.StatusSlowConsumer {
		t.Fatalf("slow subscriber: got %v after %d events, want close 4408", err, len(got))
	}
	resume := int64(1)
	if len(got) > 0 {
		resume = got[len(got)-1] + 1
	}
	if want := "slow consumer, resume from " + strconv.FormatInt(resume, 10); ce.Reason != want {
		t.Fatalf("close reason %q, want %q", ce.Reason, want)
	}
	if len(got) >= n {
		t.Fatalf("slow subscriber got all %d events before being closed", len(got))
	}
	// Resuming where the close said loses and repeats nothing.
	again := e.dial(t, "?from="+strconv.FormatInt(resume, 10))
	rest := again.changes(n - len(got))
	if all := append(got, revisions(rest)...); !slices.Equal(all, revs) {
		t.Fatalf("before and after resume: got %s, want %s", short(all), short(revs))
	}
}

// Guarantee 4: an idle subscriber gets progress events, at most one
// ProgressInterval apart, carrying the current revision, even when its
// filter matches nothing that changed.
func TestFeedProgressEvents(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{ProgressInterval: 200 * time.Millisecond})
	w := e.dial(t, "?key=quiet")
	e.set(t, "noisy", "1")
	rev := e.set(t, "noisy", "2")
	// A progress event may come between the two sets (a busy machine
	// makes them slowly), at the first one's revision.
	var ev httpapi.Event
	for ev.Revision != rev {
		var err error
		if ev, err = w.next(5 * time.Second); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "progress" || ev.Key != "" || ev.Revision > rev {
			t.Fatalf("got %+v, want progress up to revision %d", ev, rev)
		}
	}
	start := time.Now()
	for i := range 3 {
		ev, err := w.next(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type != "progress" || ev.Key != "" || ev.Revision != rev {
			t.Fatalf("event %d: got %+v, want progress at revision %d", i, ev, rev)
		}
	}
	// Three progress events take at least 3 × 3/4 of the interval.
	if el := time.Since(start); el < 3*150*time.Millisecond {
		t.Fatalf("3 progress events in %v: sent faster than the interval allows", el)
	}
}

// Guarantee 4: the server pings, so that a dead peer is detected.
func TestFeedPings(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{PingInterval: 50 * time.Millisecond})
	var pings atomic.Int64
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.ws, &websocket.DialOptions{
		OnPingReceived: func(context.Context, []byte) bool { pings.Add(1); return true },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	go func() {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return
			}
		}
	}()
	for pings.Load() < 3 {
		select {
		case <-ctx.Done():
			t.Fatalf("got %d pings in 10s, want 3", pings.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	// A peer that stops answering pings is dropped: its subscription ends.
	before := e.hub.Len()
	c.CloseNow()
	for e.hub.Len() >= before {
		select {
		case <-ctx.Done():
			t.Fatal("dead subscriber was not dropped")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Guarantee 5: on shutdown every subscriber is closed with 1001 and the
// next revision.
func TestFeedShutdownGoingAway(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	a, b := e.dial(t, ""), e.dial(t, "?key=k1")
	e.set(t, "k1", "1")
	e.set(t, "k2", "2")
	e.set(t, "k3", "3")
	a.changes(3)
	b.changes(1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.h.Shutdown(ctx) }()
	for name, w := range map[string]*watcher{"all": a, "key=k1": b} {
		var err error
		for err == nil {
			_, err = w.next(10 * time.Second)
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
			t.Fatalf("%s: got %v, want close 1001", name, err)
		}
		// b saw only k1@1, but it is current up to what it was sent or told.
		if name == "all" && ce.Reason != "server shutting down, resume from 4" {
			t.Fatalf("%s: reason %q, want resume from 4", name, ce.Reason)
		}
		if !strings.HasPrefix(ce.Reason, "server shutting down, resume from ") {
			t.Fatalf("%s: reason %q", name, ce.Reason)
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if a := wsGet(t, e, ""); a.code != http.StatusServiceUnavailable {
		t.Fatalf("subscribe after shutdown: got %d %s, want 503", a.code, a.body)
	}
}

// A reconnect soak: writers run for a few seconds; one subscriber drops
// and resumes with from = last + 1 about every 100 ms, 10 times at least. What it received,
// concatenated, equals the continuous subscriber's events and the list of
// acknowledged writes, exactly.
func TestFeedReconnectSoak(t *testing.T) {
	// Progress events wake the steady reader once the writers are done.
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{ProgressInterval: 200 * time.Millisecond})
	steady := e.dial(t, "?from=1")
	stop := make(chan struct{})
	var wl *writeLog
	done := make(chan struct{})
	go func() {
		wl = e.write(t, 4, 1<<30, stop)
		close(done)
	}()
	// The steady subscriber reads all along, as a continuous watcher does.
	var steadyGot []httpapi.Event
	steadyDone := make(chan error, 1)
	go func() {
		for {
			ev, err := steady.next(time.Minute)
			if err != nil {
				steadyDone <- err
				return
			}
			if ev.Type != "progress" {
				steadyGot = append(steadyGot, ev)
			}
			select {
			case <-done:
				if ev.Revision >= wl.revs[len(wl.revs)-1] {
					steadyDone <- nil
					return
				}
			default:
			}
		}
	}()
	var got []httpapi.Event
	next := int64(1)
	reconnects := 0
	// 3 s and 10 reconnects at least: a busy machine dials slowly.
	began := time.Now()
	for time.Since(began) < 3*time.Second || reconnects < 10 {
		if time.Since(began) > 2*time.Minute { // a hang guard
			t.Fatalf("only %d reconnects in 2 minutes", reconnects)
		}
		w := e.dial(t, "?from="+strconv.FormatInt(next, 10))
		until := time.Now().Add(100 * time.Millisecond)
		for time.Now().Before(until) {
			ev, err := w.next(time.Until(until))
			if err != nil {
				break
			}
			if ev.Type == "progress" {
				continue
			}
			got = append(got, ev)
			next = ev.Revision + 1
		}
		w.c.CloseNow()
		reconnects++
	}
	close(stop)
	<-done
	// Catch up on the rest.
	w := e.dial(t, "?from="+strconv.FormatInt(next, 10))
	want := 0
	for _, r := range wl.revs {
		if r >= next {
			want++
		}
	}
	got = append(got, w.changes(want)...)
	checkEvents(t, "reconnecting subscriber", got, wl)
	if err := <-steadyDone; err != nil {
		t.Fatalf("steady subscriber: %v after %d events", err, len(steadyGot))
	}
	checkEvents(t, "steady subscriber", steadyGot, wl)
	t.Logf("%d writes, %d reconnects", len(wl.revs), reconnects)
}

// List-then-watch: /getall, then /subscribe?from=Kvs-Revision+1, under
// concurrent writes, reproduces the final state exactly.
func TestListThenWatch(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		var wg sync.WaitGroup
		for w := range 3 {
			wg.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("k%d", (w*7+i)%20)
					if i%5 == 4 {
						http.Post(e.srv.URL+"/delete", "", strings.NewReader(`{"Key":"`+key+`"}`))
					} else {
						e.set(t, key, strconv.Itoa(i))
					}
				}
			})
		}
		wg.Wait()
		close(done)
	}()
	time.Sleep(100 * time.Millisecond)
	list := func() (map[string]string, int64) {
		a := do(t, "GET", e.srv.URL+"/getall", "")
		var m map[string]json.RawMessage
		if err := json.Unmarshal([]byte(a.body), &m); err != nil {
			t.Fatal(err)
		}
		state := make(map[string]string)
		for k, v := range m {
			state[k] = string(v)
		}
		rev, err := strconv.ParseInt(a.header.Get(httpapi.RevisionHeader), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return state, rev
	}
	state, rev := list()
	w := e.dial(t, "?from="+strconv.FormatInt(rev+1, 10))
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-done
	final, finalRev := list()
	for rev < finalRev {
		ev, err := w.next(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == "progress" {
			continue
		}
		if ev.Revision <= rev {
			t.Fatalf("event at %d after %d", ev.Revision, rev)
		}
		rev = ev.Revision
		if ev.Type == "delete" {
			delete(state, ev.Key)
		} else {
			state[ev.Key] = string(ev.Value)
		}
	}
	if !maps.Equal(state, final) {
		t.Fatalf("listed state + events up to %d differs from the final listing", finalRev)
	}
}

// A client that sends data on its socket breaks nothing, for itself or
// anyone else.
func TestFeedClientSendingDataBreaksNothing(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	chatty, quiet := e.dial(t, ""), e.dial(t, "")
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for i := range 5 {
		if err := chatty.c.Write(ctx, websocket.MessageText, []byte(`{"hello":`+strconv.Itoa(i)+`}`)); err != nil {
			t.Fatal(err)
		}
		if err := chatty.c.Write(ctx, websocket.MessageBinary, []byte{0, 1, 2}); err != nil {
			t.Fatal(err)
		}
	}
	wl := e.write(t, 2, 20, nil)
	checkEvents(t, "quiet", quiet.changes(len(wl.revs)), wl)
	checkEvents(t, "chatty", chatty.changes(len(wl.revs)), wl)
}

func TestFeedBadParameters(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	tests := []struct {
		query, want string
	}{
		{"?key=a&prefix=b", "not both"},
		{"?from=-1", "from must be"},
		{"?from=abc", "from must be"},
		{"?from=1.5", "from must be"},
		{"?from=99999999999999999999", "from must be"},
		{"?key=", "bad key"},
		{"?key=a%00", "bad key"},
		{"?prefix=%0a", "bad prefix"},
		{"?key=" + strings.Repeat("k", 1025), "bad key"},
		{"?topic=x", "unknown parameter"},
		{"?key=a&key=b", "more than once"},
	}
	for _, tt := range tests {
		a := wsGet(t, e, tt.query)
		if a.code != 400 || !strings.Contains(a.body, tt.want) || a.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: got %d %s, want 400 JSON mentioning %q", tt.query, a.code, a.body, tt.want)
		}
	}
	a := do(t, "GET", e.srv.URL+"/subscribe", "")
	if a.code != http.StatusUpgradeRequired || !strings.Contains(a.body, `"error"`) || a.header.Get("Upgrade") != "websocket" {
		t.Errorf("without upgrade headers: got %d %s, want 426 JSON", a.code, a.body)
	}
	// The server still serves subscribers.
	w := e.dial(t, "")
	e.set(t, "a", "1")
	w.changes(1)
}

// TestFeedFromFuture: a from beyond the current revision waits for it.
func TestFeedFromFuture(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	w := e.dial(t, "?from=3")
	for i := range 4 {
		e.set(t, "k", strconv.Itoa(i))
	}
	if got := revisions(w.changes(2)); !slices.Equal(got, []int64{3, 4}) {
		t.Fatalf("got %v, want [3 4]", got)
	}
}

// Guarantee 5 also holds for a subscriber still receiving its replay: it
// is closed with 1001 and where to resume, without first being sent the
// rest of the history.
func TestFeedShutdownDuringReplay(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	value := `"` + strings.Repeat("v", 8<<10) + `"`
	const n = 1000
	for range n {
		e.set(t, "k", value)
	}
	w := e.dial(t, "?from=1")
	var last int64
	for range 10 {
		ev, err := w.next(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		last = ev.Revision
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a hang guard
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.h.Shutdown(ctx) }()
	for {
		ev, err := w.next(10 * time.Second)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
				t.Fatalf("got %v after revision %d, want close 1001", err, last)
			}
			if want := "server shutting down, resume from " + strconv.FormatInt(last+1, 10); ce.Reason != want {
				t.Fatalf("reason %q, want %q", ce.Reason, want)
			}
			break
		}
		if ev.Revision != last+1 {
			t.Fatalf("revision %d after %d", ev.Revision, last)
		}
		last = ev.Revision
		time.Sleep(time.Millisecond) // a slow reader
	}
	if last == n {
		t.Fatalf("the whole replay (%d events) was sent before the close", n)
	}
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestFeedFrameLengths sends events whose messages are just below and
// above each WebSocket payload length form (7, 16 and 64 bits), which
// the feed frames itself, and reads them with a real client.
func TestFeedFrameLengths(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	w := e.dial(t, "")
	sizes := []int{60, 125, 126, 127, 65535, 65536, 70000}
	for i, size := range sizes {
		rev := strconv.Itoa(i + 1)
		base := len(`{"Type":"set","Key":"k","Value":"","Revision":` + rev + `}`)
		e.set(t, "k", `"`+strings.Repeat("x", size-base)+`"`)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		typ, data, err := w.c.Read(ctx)
		cancel()
		if err != nil || typ != websocket.MessageText {
			t.Fatalf("message of %d bytes: %v %v", size, typ, err)
		}
		if len(data) != size || !json.Valid(data) {
			t.Fatalf("got a message of %d bytes (valid JSON: %v), want %d", len(data), json.Valid(data), size)
		}
	}
}
