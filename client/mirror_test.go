package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"reflect"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/httpapi"
)

// proxy forwards TCP connections to a target, and can cut them all and
// refuse new ones, to break a client's connections at will.
type proxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newProxy(t *testing.T, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() {
		ln.Close()
		p.setDown(true)
	})
	go p.serve()
	return p
}

func (p *proxy) Addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c], p.conns[up] = true, true
		p.mu.Unlock()
		go func() { io.Copy(up, c); up.Close() }()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

// setDown cuts every connection and, with down, refuses new ones.
func (p *proxy) setDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

// TestMirrorRelists checks that a mirror whose watch cannot resume (the
// server's history no longer reaches its revision) lists again, and then
// equals the listing and follows on.
func TestMirrorRelists(t *testing.T) {
	t.Parallel()
	srv := newServer(t, bus.Options{History: 5}, httpapi.Options{})
	p := newProxy(t, srv.Addr)
	c := newClient(t, p.Addr(), client.Options{Timeout: 5 * time.Second})
	for i := range 10 {
		srv.set(t, "m/"+strconv.Itoa(i), strconv.Itoa(i))
	}
	// OnChange runs after WaitRevision's waiters are woken, so the test
	// waits for the listings it counts rather than reading a count.
	resets := make(chan int64, 10)
	m, err := c.Mirror(t.Context(), client.MirrorOptions{Prefix: "m/", MinBackoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond,
		OnChange: func(ch client.Change) {
			if ch.Reset {
				resets <- ch.Revision
			}
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.WaitRevision(t.Context(), 10); err != nil {
		t.Fatal(err)
	}

	p.setDown(true) // the mirror is cut off while 20 changes happen
	for i := range 20 {
		srv.set(t, "m/"+strconv.Itoa(i%7), strconv.Itoa(100+i))
	}
	if _, err := srv.Store.Delete(t.Context(), "m/9"); err != nil {
		t.Fatal(err)
	}
	p.setDown(false)

	l, err := c.List(t.Context(), "m/", nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	if err := m.WaitRevision(ctx, l.Revision); err != nil {
		t.Fatal(err)
	}
	if got := m.List(); !reflect.DeepEqual(got, l) {
		t.Errorf("mirror\n%+v\nlisting\n%+v", got, l)
	}
	// Two listings: the first, and one after the history was gone.
	for i := range 2 {
		select {
		case <-resets:
		case <-ctx.Done():
			t.Fatalf("listings: got %d, want 2 (the first, and one after the history was gone)", i)
		}
	}

	// And it follows on.
	rev := srv.set(t, "m/new", `"after"`)
	if err := m.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if e, ok := m.Get("m/new"); !ok || string(e.Value) != `"after"` || e.Version != 1 || e.CreateRevision != rev {
		t.Errorf("m/new: %+v, %v", e, ok)
	}
	select {
	case r := <-resets:
		t.Errorf("a third listing, at revision %d: want 2", r)
	default:
	}
}

// TestMirrorTransactions checks that a mirror applies the events of one
// revision together, only once the last (without More) has come, also when
// the connection drops in the middle.
func TestMirrorTransactions(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	f := &fakeFeed{t: t, rev: 4,
		list: `{"Revision":4,"Entries":[{"Key":"a","Value":1,"Revision":2,"CreateRevision":1,"Version":2}]}`,
		steps: []feedStep{
			func(ctx context.Context, c *websocket.Conn) {
				send(ctx, c, `{"Type":"set","Key":"a","Value":10,"Revision":5,"More":true}`)
				<-release // the first half of revision 5, then the connection drops
			},
			func(ctx context.Context, c *websocket.Conn) {
				send(ctx, c, `{"Type":"set","Key":"a","Value":10,"Revision":5,"More":true}`,
					`{"Type":"set","Key":"b","Value":20,"Revision":5,"More":true}`,
					`{"Type":"delete","Key":"a","Revision":5}`,
					`{"Type":"set","Key":"b","Value":21,"Revision":6}`)
				<-ctx.Done()
			},
		}}
	srv := newHTTPServer(t, f)
	c := newClient(t, srv, client.Options{})
	changes := make(chan client.Change, 10)
	m, err := c.Mirror(t.Context(), client.MirrorOptions{Prefix: "", MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond,
		OnChange: func(ch client.Change) { changes <- ch }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if ch := <-changes; !ch.Reset || ch.Revision != 4 {
		t.Fatalf("first change: %+v", ch)
	}
	waitUntil(t, "the first half of revision 5 to arrive", func() bool { return len(f.Froms()) == 1 })
	if m.Revision() != 4 {
		t.Errorf("revision %d with revision 5 incomplete, want 4", m.Revision())
	}
	if e, _ := m.Get("a"); string(e.Value) != "1" {
		t.Errorf("a = %s with revision 5 incomplete, want 1", e.Value)
	}
	close(release)
	ch := <-changes
	if ch.Revision != 5 || len(ch.Events) != 3 {
		t.Errorf("revision 5: got %+v, want its three events at once", ch)
	}
	ch = <-changes
	if ch.Revision != 6 || len(ch.Events) != 1 {
		t.Errorf("revision 6: got %+v", ch)
	}
	want := &client.List{Revision: 6, Entries: []client.Entry{{Key: "b", Value: json.RawMessage("21"), Revision: 6, CreateRevision: 5, Version: 2}}}
	if got := m.List(); !reflect.DeepEqual(got, want) {
		t.Errorf("mirror %+v, want %+v", got, want)
	}
	if got := f.Froms(); len(got) != 2 || got[1] != "5" {
		t.Errorf("subscriptions from %q, want the second from 5", got)
	}
}

// TestMirrorStops checks WaitRevision and Err when the mirror stops: on
// Close, and on an error that retrying cannot fix.
func TestMirrorStops(t *testing.T) {
	t.Parallel()
	srv := newServer(t, bus.Options{}, httpapi.Options{})
	c := newClient(t, srv.Addr, client.Options{})
	m, err := c.Mirror(t.Context(), client.MirrorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if err := m.WaitRevision(t.Context(), 100); err == nil {
		t.Errorf("WaitRevision on a closed mirror: nil")
	}
	if err := m.Err(); err != nil {
		t.Errorf("Err after Close: %v", err)
	}

	stop := errors.New("stop")
	p := newProxy(t, srv.Addr)
	c = newClient(t, p.Addr(), client.Options{})
	m, err = c.Mirror(t.Context(), client.MirrorOptions{OnRetry: func(client.Retry) error { return stop }})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	p.setDown(true)
	<-m.Done()
	if err := m.Err(); !errors.Is(err, stop) {
		t.Errorf("Err: got %v, want what OnRetry returned", err)
	}
	if _, err := c.Mirror(t.Context(), client.MirrorOptions{}); !errors.Is(err, client.ErrUnreachable) {
		t.Errorf("a mirror whose first listing fails: %v", err)
	}
}
