package main_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// faultProxy sits between the browser and kvsd and breaks the connection
// on demand: it drops every connection, refuses new ones, closes the next
// feeds with a given code, or silences the feeds while keeping them open.
// It records each request it sees.
type faultProxy struct {
	URL string

	t     *testing.T
	srv   *http.Server
	proxy *httputil.ReverseProxy

	// mu guards everything below.
	mu     sync.Mutex
	down   bool                   // refuse new connections
	conns  map[*proxyConn]bool    // open client connections
	closes []websocket.StatusCode // close codes for the next /subscribe requests
	log    []string               // "METHOD /path?query -> status"
}

type connKey struct{}

func newFaultProxy(t *testing.T, target string) *faultProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &faultProxy{URL: "http://" + ln.Addr().String(), t: t, conns: make(map[*proxyConn]bool)}
	u := &url.URL{Scheme: "http", Host: target}
	p.proxy = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // kvsd checks that a feed's Origin is its Host
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	p.srv = &http.Server{
		Handler: p,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	go p.srv.Serve(&proxyListener{Listener: ln, p: p})
	t.Cleanup(func() {
		p.srv.Close()
		p.cut()
	})
	return p
}

func (p *faultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	var code websocket.StatusCode
	if r.URL.Path == "/subscribe" && len(p.closes) > 0 {
		code, p.closes = p.closes[0], p.closes[1:]
	}
	i := len(p.log)
	p.log = append(p.log, r.Method+" "+r.URL.RequestURI())
	p.mu.Unlock()
	if code != 0 {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		p.record(i, " -> closed "+strconv.Itoa(int(code)))
		c.Close(code, "closed by the test")
		return
	}
	if r.URL.Path == "/subscribe" {
		p.markFeed(r)
	}
	sw := &statusWriter{ResponseWriter: w}
	p.proxy.ServeHTTP(sw, r)
	if sw.code != 0 { // an upgraded connection writes its 101 itself
		p.record(i, " -> "+strconv.Itoa(sw.code))
	}
}

func (p *faultProxy) record(i int, s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log[i] += s
}

// requests returns the requests seen from mark on, and the next mark.
func (p *faultProxy) requests(mark int) ([]string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.log[mark:]...), len(p.log)
}

// setDown makes the proxy refuse (accept and close) new connections.
func (p *faultProxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// cut closes every open connection, feeds included, as a network failure
// would.
func (p *faultProxy) cut() {
	p.mu.Lock()
	conns := p.conns
	p.conns = make(map[*proxyConn]bool)
	p.mu.Unlock()
	for c := range conns {
		c.Conn.Close()
	}
}

// closeNextFeed makes the next /subscribe request get a WebSocket that the
// proxy closes at once with code.
func (p *faultProxy) closeNextFeed(code websocket.StatusCode) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closes = append(p.closes, code)
}

// silenceFeeds keeps the open feeds open but drops everything kvsd sends
// on them, as a dead network path does. New connections work.
func (p *faultProxy) silenceFeeds() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c, feed := range p.conns {
		if feed {
			c.silent.Store(true)
		}
	}
}

type proxyListener struct {
	net.Listener
	p *faultProxy
}

func (l *proxyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.p.mu.Lock()
		down := l.p.down
		pc := &proxyConn{Conn: c}
		if !down {
			l.p.conns[pc] = false
		}
		l.p.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		return pc, nil
	}
}

// proxyConn is a client connection of the proxy.
type proxyConn struct {
	net.Conn
	silent atomic.Bool
}

func (c *proxyConn) Write(b []byte) (int, error) {
	if c.silent.Load() {
		return len(b), nil
	}
	return c.Conn.Write(b)
}

// statusWriter records the status of a response; Unwrap lets the reverse
// proxy hijack the connection for a WebSocket.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// markFeed marks the connection of r as carrying a feed.
func (p *faultProxy) markFeed(r *http.Request) {
	c, _ := r.Context().Value(connKey{}).(*proxyConn)
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.conns[c]; ok {
		p.conns[c] = true
	}
}

// subscribes returns the /subscribe requests among reqs.
func subscribes(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if strings.HasPrefix(r, "GET /subscribe") {
			out = append(out, r)
		}
	}
	return out
}

func count(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

// TestConsoleReconnect breaks the page's connection in each way the feed
// can end, and checks that the page resumes from the revision after the
// last one it applied, or lists again when it must, and that the table
// stays exact.
func TestConsoleReconnect(t *testing.T) {
	b := startBrowser(t)
	srv := kvstest.Start(t, "-backend", "memory", "-history", "8")
	p := newFaultProxy(t, srv.Addr)
	setKey(t, srv.URL, "a", `1`)
	setKey(t, srv.URL, "b", `2`)

	b.open(p.URL + "/")
	b.waitFor("the page to go live", `document.body.dataset.state === 'live'`)
	b.waitTable("the listing", serverTable(t, srv.URL))
	_, mark := p.requests(0)

	// resumed checks that since mark the page subscribed only from from
	// and did not list again; it returns the next mark.
	resumed := func(what string, from int64, minSubscribes int) int {
		t.Helper()
		reqs, next := p.requests(mark)
		subs := subscribes(reqs)
		if len(subs) < minSubscribes {
			t.Errorf("%s: got subscriptions %q, want at least %d", what, subs, minSubscribes)
		}
		want := "GET /subscribe?from=" + strconv.FormatInt(from, 10)
		for _, s := range subs {
			if s != want && !strings.HasPrefix(s, want+" ") {
				t.Errorf("%s: got %q, want %s: resume after the last revision applied", what, s, want)
			}
		}
		if n := count(reqs, "GET /list"); n != 0 {
			t.Errorf("%s: the page listed again (%d times) instead of resuming: %q", what, n, reqs)
		}
		return next
	}

	t.Log("step: dropped connection")
	p.setDown(true)
	p.cut()
	b.waitFor("the page to notice", `document.body.dataset.state !== 'live'`)
	rev := setKey(t, srv.URL, "c", `3`) // while the page is away
	p.setDown(false)
	b.waitFor("the page to come back", `document.body.dataset.state === 'live' && document.body.dataset.rev === '`+strconv.FormatInt(rev, 10)+`'`)
	b.waitTable("after a dropped connection", serverTable(t, srv.URL))
	mark = resumed("after a dropped connection", rev, 1)

	for _, tt := range []struct {
		name string
		code websocket.StatusCode
	}{
		{"4408 slow consumer", 4408},
		{"1001 going away", websocket.StatusGoingAway},
	} {
		t.Log("step: " + tt.name)
		from := rev + 1
		p.closeNextFeed(tt.code)
		p.cut()
		rev = setKey(t, srv.URL, "d", strconv.FormatInt(from, 10))
		b.waitFor("the page to come back", `document.body.dataset.state === 'live' && document.body.dataset.rev === '`+strconv.FormatInt(rev, 10)+`'`)
		b.waitTable("after "+tt.name, serverTable(t, srv.URL))
		reqs, _ := p.requests(mark)
		if want := "GET /subscribe?from=" + strconv.FormatInt(from, 10) + " -> closed " + strconv.Itoa(int(tt.code)); count(reqs, want) != 1 {
			t.Errorf("after %s: the page did not meet the closed feed (%s): %q", tt.name, want, reqs)
		}
		mark = resumed("after "+tt.name, from, 2)
	}

	var reqs []string
	t.Log("step: 4410 compacted")
	lists := b.lists()
	p.closeNextFeed(4410)
	p.cut()
	b.waitFor("the page to list again", `document.body.dataset.lists === '`+strconv.Itoa(lists+1)+`' && document.body.dataset.state === 'live'`)
	rev = setKey(t, srv.URL, "e", `5`)
	b.waitFor("the page to follow", `document.body.dataset.rev === '`+strconv.FormatInt(rev, 10)+`'`)
	b.waitTable("after 4410", serverTable(t, srv.URL))
	reqs, mark = p.requests(mark)
	if got, want := subscribes(reqs), "GET /subscribe?from="+strconv.FormatInt(rev, 10); len(got) < 2 || got[len(got)-1] != want {
		t.Errorf("after 4410: got subscriptions %q, want the last one %q: from the listing's revision + 1", got, want)
	}
	if n := count(reqs, "GET /list"); n != 1 {
		t.Errorf("after 4410: the page listed %d times, want 1: %q", n, reqs)
	}

	t.Log("step: history compacted while away (410)")
	lists = b.lists()
	p.setDown(true)
	p.cut()
	b.waitFor("the page to notice", `document.body.dataset.state !== 'live'`)
	deleteKey(t, srv.URL, "a")
	for i := range 10 { // more than -history 8
		setKey(t, srv.URL, "k"+strconv.Itoa(i), strconv.Itoa(i))
	}
	p.setDown(false)
	b.waitFor("the page to list again", `document.body.dataset.lists === '`+strconv.Itoa(lists+1)+`' && document.body.dataset.state === 'live'`)
	b.waitTable("after 410", serverTable(t, srv.URL))
	reqs, mark = p.requests(mark)
	if n := count(reqs, "GET /subscribe?from="+strconv.FormatInt(rev+1, 10)+" -> 410"); n < 1 {
		t.Errorf("after 410: the page never met the compacted history: %q", reqs)
	}

	t.Log("step: silent feed")
	p.silenceFeeds()
	b.str(`String(window.kvsConsoleIdleMs = 1500)`)
	rev = setKey(t, srv.URL, "silent", `"sent on a dead path"`)
	b.waitFor("the page to reconnect", `document.body.dataset.rev === '`+strconv.FormatInt(rev, 10)+`'`)
	b.waitTable("after a silent feed", serverTable(t, srv.URL))
	b.str(`String(window.kvsConsoleIdleMs = 0)`)
	b.checkClean()
}
