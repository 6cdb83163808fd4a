package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/wire"
)

func TestConfigure(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     map[string]string
		flags   globalFlags
		wantURL string
	}{
		{"defaults", nil, globalFlags{}, "http://127.0.0.1:23333"},
		{"environment", map[string]string{"KVS_ADDRESS": "10.0.0.1:1", "KVS_TOKEN": "t"}, globalFlags{}, "http://10.0.0.1:1"},
		{"flags win", map[string]string{"KVS_ADDRESS": "10.0.0.1:1", "KVS_TOKEN": "t"},
			globalFlags{addr: "https://h", token: "u"}, "https://h"},
	}
	for _, tt := range tests {
		c := newCLI(func(k string) string { return tt.env[k] }, nil, nil)
		if err := c.configure(tt.flags); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if c.kvs.URL() != tt.wantURL {
			t.Errorf("%s: got %s, want %s", tt.name, c.kvs.URL(), tt.wantURL)
		}
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	tests := []struct {
		raw, plain, line string
	}{
		{`"Bangalore"`, "Bangalore", "Bangalore"},
		{`"42"`, "42", "42"},
		{`42`, "42", "42"},
		{`{"a":[1,2.50]}`, `{"a":[1,2.50]}`, `{"a":[1,2.50]}`},
		{`"a\tb"`, "a\tb", `"a\tb"`},
		{`"two\nlines"`, "two\nlines", `"two\nlines"`},
		{`"\u003c&\u003e"`, "<&>", "<&>"},
		{`""`, "", ""},
		{`true`, "true", "true"},
	}
	for _, tt := range tests {
		if got := plainValue(json.RawMessage(tt.raw)); got != tt.plain {
			t.Errorf("plainValue(%s): got %q, want %q", tt.raw, got, tt.plain)
		}
		if got := lineValue(json.RawMessage(tt.raw)); got != tt.line {
			t.Errorf("lineValue(%s): got %q, want %q", tt.raw, got, tt.line)
		}
	}

}

// feedStep is what a fake feed does on one /subscribe connection.
type feedStep func(ctx context.Context, c *websocket.Conn)

// fakeFeed is an in-process stand-in for kvsd's /list and /subscribe
// that plays a script: one step per connection.
type fakeFeed struct {
	rev     int64  // Kvs-Revision of /list
	listing string // the entries of GET /list, as a JSON array
	steps   []feedStep
	// listFailures is how many GET /list fail with 503 first.
	listFailures int

	mu    sync.Mutex
	froms []string // the from= of each /subscribe, in order
}

func (f *fakeFeed) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/list":
		f.mu.Lock()
		fail := r.Method == http.MethodGet && f.listFailures > 0
		if fail {
			f.listFailures--
		}
		f.mu.Unlock()
		if fail {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"error":"log unavailable"}`)
			return
		}
		w.Header().Set(wire.RevisionHeader, fmt.Sprint(f.rev))
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"Revision":%d,"Entries":%s}`+"\n", f.rev, cmp.Or(f.listing, "[]"))
	case "/subscribe":
		f.mu.Lock()
		n := len(f.froms)
		f.froms = append(f.froms, r.URL.Query().Get("from"))
		f.mu.Unlock()
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		if n < len(f.steps) {
			f.steps[n](r.Context(), c)
		} else {
			c.Read(r.Context()) // hold until the client goes
		}
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeFeed) Froms() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.froms...)
}

// send returns a step part that writes events.
func send(ctx context.Context, c *websocket.Conn, events ...string) {
	for _, e := range events {
		if err := c.Write(ctx, websocket.MessageText, []byte(e)); err != nil {
			return
		}
	}
}

// runCLI runs kvscli in-process with fast watch timings.
func runCLI(ctx context.Context, client *http.Client, args ...string) (stdout, stderr string, code int) {
	return runCLIOut(ctx, client, nil, args...)
}

// outWatcher is a stdout that calls onWrite with all of its content after
// each write.
type outWatcher struct {
	bytes.Buffer
	onWrite func(string)
}

func (w *outWatcher) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if w.onWrite != nil {
		w.onWrite(w.String())
	}
	return n, err
}

// runCLIOut is runCLI that calls onOut with the output so far after each
// write to stdout.
func runCLIOut(ctx context.Context, client *http.Client, onOut func(string), args ...string) (stdout, stderr string, code int) {
	out := &outWatcher{onWrite: onOut}
	var errb bytes.Buffer
	c := newCLI(func(string) string { return "" }, out, &errb)
	c.httpClient = client
	c.tune = watchTuning{backoffMin: time.Millisecond, backoffMax: 10 * time.Millisecond, idle: 2 * time.Second}
	code = c.run(ctx, args)
	return out.String(), errb.String(), code
}

// TestWatchResumes plays every way a feed connection can end, and checks
// that watch reconnects from the right revision each time, prints each
// event once, skips progress events, and exits 1 on 4410.
func TestWatchResumes(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"lines", nil, "5\tset\ta\tfive\n6\tset\tb\t{\"n\":6}\n10\tset\ta\tten\n12\tdelete\ta\n14\tset\tc\t\"x\\ty\"\n15\tset\ta\t1\n"},
		{"json", []string{"-json"}, `{"Type":"set","Key":"a","Value":"five","Revision":5}
{"Type":"set","Key":"b","Value":{"n":6},"Revision":6}
{"Type":"set","Key":"a","Value":"ten","Revision":10}
{"Type":"delete","Key":"a","Revision":12}
{"Type":"set","Key":"c","Value":"x\ty","Revision":14}
{"Type":"set","Key":"a","Value":1,"Revision":15}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := &fakeFeed{rev: 4, steps: []feedStep{
				func(ctx context.Context, c *websocket.Conn) { // from=5: dropped before any event
					c.CloseNow()
				},
				func(ctx context.Context, c *websocket.Conn) { // from=5 again: shutdown
					send(ctx, c, `{"Type":"set","Key":"a","Value":"five","Revision":5}`,
						`{"Type":"set","Key":"b","Value":{"n":6},"Revision":6}`)
					c.Close(websocket.StatusGoingAway, "server shutting down, resume from 7")
				},
				func(ctx context.Context, c *websocket.Conn) { // from=7: a progress event, a repeat, a slow-consumer close
					send(ctx, c, `{"Type":"progress","Revision":8}`,
						`{"Type":"set","Key":"b","Value":{"n":6},"Revision":6}`,
						`{"Type":"set","Key":"a","Value":"ten","Revision":10}`)
					c.Close(websocket.StatusCode(4408), "slow consumer, resume from 12")
				},
				func(ctx context.Context, c *websocket.Conn) { // from=12: then silence
					send(ctx, c, `{"Type":"delete","Key":"a","Revision":12}`)
					c.Read(ctx)
				},
				func(ctx context.Context, c *websocket.Conn) { // from=13: the TCP connection drops
					send(ctx, c, `{"Type":"set","Key":"c","Value":"x\ty","Revision":14}`)
					c.CloseNow()
				},
				func(ctx context.Context, c *websocket.Conn) { // from=15: a server error
					c.Close(websocket.StatusInternalError, "feed ended, resume from 15")
				},
				func(ctx context.Context, c *websocket.Conn) { // from=15: compacted
					send(ctx, c, `{"Type":"set","Key":"a","Value":1,"Revision":15}`)
					c.Close(websocket.StatusCode(4410), "history compacted, oldest retained revision 40")
				},
			}}
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			stdout, stderr, code := runCLI(t.Context(), nil, append([]string{"-server-address", srv.URL, "watch"}, tt.args...)...)
			if code != 1 {
				t.Errorf("exit code: got %d, want 1; stderr:\n%s", code, stderr)
			}
			if stdout != tt.want {
				t.Errorf("stdout: got\n%s\nwant\n%s", stdout, tt.want)
			}
			if got, want := strings.Join(f.Froms(), ","), "5,5,7,12,13,15,15"; got != want {
				t.Errorf("from of each connection: got %s, want %s", got, want)
			}
			for _, s := range []string{
				"watching kvsd at " + srv.URL + " from revision 5 (Ctrl-C to stop)",
				"is shutting down (1001); reconnecting in",
				"read too slowly (4408); reconnecting in",
				"no message for 2s; reconnecting in",
				"lost the connection to kvsd at " + srv.URL + ": the connection closed; reconnecting in",
				"closed the watch (1011 feed ended, resume from 15)",
				"no longer has the changes from revision 16 on (history compacted: the oldest it has is 40), so this watch cannot show them: run it again with -relist to list the current values and continue, or with -from 40 to skip them",
			} {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
		})
	}
}

// TestWatchEmptyStore: on a store that has had no change, kvsd's progress
// events carry revision 0; watch takes them as such, without reconnecting.
func TestWatchEmptyStore(t *testing.T) {
	t.Parallel()
	f := &fakeFeed{rev: 0, steps: []feedStep{
		func(ctx context.Context, c *websocket.Conn) {
			send(ctx, c, `{"Type":"progress","Revision":0}`, `{"Type":"progress","Revision":0}`,
				`{"Type":"set","Key":"a","Value":1,"Revision":1}`)
			c.Close(websocket.StatusCode(4410), "history compacted, oldest retained revision 40")
		},
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	stdout, stderr, code := runCLI(t.Context(), nil, "-server-address", srv.URL, "watch")
	if code != 1 || stdout != "1\tset\ta\t1\n" {
		t.Errorf("got exit code %d and %q, want 1 and the set; stderr:\n%s", code, stdout, stderr)
	}
	if got := strings.Join(f.Froms(), ","); got != "1" {
		t.Errorf("from of each connection: got %s, want 1 (no reconnect)", got)
	}
}

// TestWatchRelist checks -relist: on 4410, watch prints the current values
// and continues from the listing's revision + 1; Ctrl-C then exits 0.
func TestWatchRelist(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"lines", nil, "30\trelist\n30\tset\ta\tx y\n30\tset\tb\t{\"n\":1}\n30\tset\tc\t<&>\n31\tdelete\ta\n"},
		{"json", []string{"-json"}, `{"Type":"relist","Revision":30}
{"Type":"set","Key":"a","Value":"x y","Revision":30}
{"Type":"set","Key":"b","Value":{"n":1},"Revision":30}
{"Type":"set","Key":"c","Value":"<&>","Revision":30}
{"Type":"delete","Key":"a","Revision":31}
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			f := &fakeFeed{rev: 30, listing: `[{"Key":"a","Value":"x y","Revision":3,"CreateRevision":3,"Version":1},{"Key":"b","Value":{"n":1},"Revision":30,"CreateRevision":2,"Version":9},{"Key":"c","Value":"<&>","Revision":4,"CreateRevision":4,"Version":1}]`, steps: []feedStep{
				func(ctx context.Context, c *websocket.Conn) {
					c.Close(websocket.StatusCode(4410), "history compacted, oldest retained revision 20")
				},
				func(ctx context.Context, c *websocket.Conn) {
					send(ctx, c, `{"Type":"delete","Key":"a","Revision":31}`)
					c.Read(ctx)
				},
			}}
			srv := httptest.NewServer(f)
			t.Cleanup(srv.Close)
			args := append([]string{"-server-address", srv.URL, "watch", "-from", "3", "-relist"}, tt.args...)
			// Ctrl-C once the live change is out.
			stdout, stderr, code := runCLIOut(ctx, nil, func(out string) {
				if strings.Contains(out, "31") {
					cancel()
				}
			}, args...)
			if code != 0 {
				t.Errorf("exit code: got %d, want 0; stderr:\n%s", code, stderr)
			}
			if stdout != tt.want {
				t.Errorf("stdout: got\n%s\nwant\n%s", stdout, tt.want)
			}
			if got := strings.Join(f.Froms(), ","); got != "3,31" {
				t.Errorf("from of each connection: got %s, want 3,31", got)
			}
		})
	}
}

// TestWatchRelistRetries checks that a -relist whose listing fails (503)
// retries the listing, and then goes on as usual.
func TestWatchRelistRetries(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	compacted := func(ctx context.Context, c *websocket.Conn) {
		c.Close(websocket.StatusCode(4410), "history compacted, oldest retained revision 20")
	}
	f := &fakeFeed{rev: 30, listing: `[{"Key":"a","Value":1,"Revision":3,"CreateRevision":3,"Version":1}]`, listFailures: 1, steps: []feedStep{
		compacted,
		func(ctx context.Context, c *websocket.Conn) {
			send(ctx, c, `{"Type":"delete","Key":"a","Revision":31}`)
			c.Read(ctx)
		},
	}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	stdout, stderr, code := runCLIOut(ctx, nil, func(out string) {
		if strings.Contains(out, "31") {
			cancel()
		}
	}, "-server-address", srv.URL, "watch", "-from", "3", "-relist")
	if code != 0 {
		t.Errorf("exit code: got %d, want 0; stderr:\n%s", code, stderr)
	}
	if want := "30\trelist\n30\tset\ta\t1\n31\tdelete\ta\n"; stdout != want {
		t.Errorf("stdout: got\n%s\nwant\n%s", stdout, want)
	}
	if got := strings.Join(f.Froms(), ","); got != "3,31" {
		t.Errorf("from of each connection: got %s, want 3,31", got)
	}
	if want := "listing the current values failed: kvsd at " + srv.URL + " failed (503): log unavailable"; !strings.Contains(stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, stderr)
	}
}

// TestHTTPS checks that https:// addresses work for requests and for the
// watch (wss), with a server that speaks HTTP/2.
func TestHTTPS(t *testing.T) {
	t.Parallel()
	f := &fakeFeed{rev: 1, steps: []feedStep{func(ctx context.Context, c *websocket.Conn) {
		send(ctx, c, `{"Type":"set","Key":"a","Value":"tls","Revision":2}`)
		c.Close(websocket.StatusCode(4410), "history compacted")
	}}}
	mux := http.NewServeMux()
	mux.Handle("/", f)
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			t.Errorf("get over %s, want HTTP/2 (is the test server's HTTP/2 on?)", r.Proto)
		}
		fmt.Fprintln(w, `{"Key":"a","Value":"over tls","Revision":1,"CreateRevision":1,"Version":1}`)
	})
	// With HTTP/2 on, as a TLS kvsd would have: requests may use it, the
	// WebSocket handshake must not.
	srv := httptest.NewUnstartedServer(mux)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "https://") {
		t.Fatalf("not a TLS server: %s", srv.URL)
	}
	stdout, stderr, code := runCLI(t.Context(), srv.Client(), "-server-address", srv.URL, "get", "-key", "a")
	if code != 0 || stdout != "over tls\n" {
		t.Errorf("get: got %q, exit %d, want %q, exit 0; stderr: %s", stdout, code, "over tls\n", stderr)
	}
	stdout, stderr, code = runCLI(t.Context(), srv.Client(), "-server-address", srv.URL, "watch")
	if code != 1 || stdout != "2\tset\ta\ttls\n" {
		t.Errorf("watch: got %q, exit %d, want %q, exit 1; stderr: %s", stdout, code, "2\tset\ta\ttls\n", stderr)
	}
}
