package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/hubfeed"
	"github.com/kvsdb/kvs/kv"
)

// handshake sends a WebSocket handshake to /subscribe with the given
// header changes (an empty value deletes the header) and returns the
// answer.
func handshake(t *testing.T, e *feedEnv, proto string, header map[string]string) answer {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", e.srv.URL+"/subscribe", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	for k, v := range header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	if proto != "" { // net/http's client sends HTTP/1.1 only
		return rawRequest(t, e.srv.Listener.Addr().String(), req, proto)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return answer{resp.StatusCode, resp.Header, ""} // the body is the feed
	}
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// rawRequest sends req over a new connection as proto and reads the answer.
func rawRequest(t *testing.T, addr string, req *http.Request, proto string) answer {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	fmt.Fprintf(conn, "%s %s %s\r\nHost: %s\r\n", req.Method, req.URL.RequestURI(), proto, addr)
	req.Header.Write(conn)
	io.WriteString(conn, "\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// TestOriginPolicy: browsers send Origin on a WebSocket handshake. Only the
// server's own origin, and those matching OriginPatterns, may subscribe;
// others get 403 JSON before the upgrade. Clients that are not browsers
// send no Origin and are allowed.
func TestOriginPolicy(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{OriginPatterns: []string{"*.example.com", "https://console.kvs.test"}})
	host := strings.TrimPrefix(e.srv.URL, "http://")
	tests := []struct {
		name, origin string
		want         int
	}{
		{"no origin", "", 101},
		{"same origin", "http://" + host, 101},
		{"same origin, other case", "HTTP://" + strings.ToUpper(host), 101},
		{"matching host pattern", "https://app.example.com", 101},
		{"host pattern, any scheme", "http://app.example.com", 101},
		{"matching scheme pattern", "https://console.kvs.test", 101},
		{"scheme pattern, other scheme", "http://console.kvs.test", 403},
		{"cross site", "https://evil.test", 403},
		{"same host, other port", "http://127.0.0.1:1", 403},
		{"suffix trick", "https://example.com.evil.test", 403},
		{"pattern needs a subdomain", "https://example.com", 403},
		{"null origin", "null", 403},
		{"not a URL", "%zz", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := handshake(t, e, "", map[string]string{"Origin": tt.origin})
			if a.code != tt.want {
				t.Fatalf("got %d %s, want %d", a.code, a.body, tt.want)
			}
			if tt.want == 403 && (!strings.Contains(a.body, `"error":"cross-origin WebSocket handshake`) || a.header.Get("Content-Type") != "application/json") {
				t.Fatalf("403 answer %q is not the JSON error", a.body)
			}
		})
	}
	// Without patterns, same origin only.
	strict := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	if a := handshake(t, strict, "", map[string]string{"Origin": "https://app.example.com"}); a.code != 403 {
		t.Fatalf("no patterns, cross origin: got %d, want 403", a.code)
	}
	if a := handshake(t, strict, "", map[string]string{"Origin": "http://" + strings.TrimPrefix(strict.srv.URL, "http://")}); a.code != 101 {
		t.Fatalf("no patterns, same origin: got %d, want 101", a.code)
	}
}

func TestBadHandshakeIsJSON(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	tests := []struct {
		name   string
		proto  string
		header map[string]string
		want   int
		msg    string
	}{
		{"HTTP/1.0", "HTTP/1.0", nil, 426, "HTTP/1.1"},
		{"no version", "", map[string]string{"Sec-WebSocket-Version": ""}, 400, "version"},
		{"version 8", "", map[string]string{"Sec-WebSocket-Version": "8"}, 400, "version"},
		{"no key", "", map[string]string{"Sec-WebSocket-Key": ""}, 400, "Sec-WebSocket-Key"},
		{"key not base64", "", map[string]string{"Sec-WebSocket-Key": "!!!"}, 400, "Sec-WebSocket-Key"},
		{"key too short", "", map[string]string{"Sec-WebSocket-Key": "YWJj"}, 400, "Sec-WebSocket-Key"},
		{"no upgrade header", "", map[string]string{"Upgrade": ""}, 426, "WebSocket endpoint"},
		{"no connection header", "", map[string]string{"Connection": ""}, 426, "WebSocket endpoint"},
		{"upgrade to something else", "", map[string]string{"Upgrade": "h2c"}, 426, "WebSocket endpoint"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := handshake(t, e, tt.proto, tt.header)
			if a.code != tt.want || !strings.Contains(a.body, tt.msg) || a.header.Get("Content-Type") != "application/json" {
				t.Fatalf("got %d %s (%s), want %d JSON mentioning %q", a.code, a.body, a.header.Get("Content-Type"), tt.want, tt.msg)
			}
		})
	}
}

// TestMaxSubscribers: beyond MaxSubscribers open connections a handshake
// gets 429 JSON with Retry-After, before the upgrade; once one closes,
// another may subscribe.
func TestMaxSubscribers(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{MaxSubscribers: 3})
	var open []*watcher
	for range 3 {
		open = append(open, e.dial(t, ""))
	}
	a := wsGet(t, e, "")
	if a.code != 429 || !strings.Contains(a.body, `"error":"too many subscribers`) || a.header.Get("Retry-After") == "" {
		t.Fatalf("subscriber 4 of 3: got %d %s %v, want 429 JSON with Retry-After", a.code, a.body, a.header)
	}
	if e.hub.Len() != 3 {
		t.Fatalf("hub has %d subscriptions, want 3: the refused one must not subscribe", e.hub.Len())
	}
	open[0].c.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "a slot to free up", func() bool { return wsGetCode(t, e) == 101 })
	rev, _ := e.store.Set(t.Context(), "k", []byte(`1`))
	for _, w := range open[1:] {
		if got := w.changes(1); got[0].Revision != rev {
			t.Fatalf("got %+v, want the set at %d", got, rev)
		}
	}
}

func wsGetCode(t *testing.T, e *feedEnv) int {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, e.ws, nil)
	if err == nil {
		c.CloseNow()
		return 101
	}
	if resp != nil {
		return resp.StatusCode
	}
	t.Fatal(err)
	return 0
}

// waitFor polls cond until it holds, failing after a generous hang guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestBodyLimits: MaxBodyBytes bounds a request body (413), independently
// of MaxValueBytes (413 for a value over it, in a body under the limit).
func TestBodyLimits(t *testing.T) {
	srv, store := newAPI(t, httpapi.Options{MaxValueBytes: 100, MaxBodyBytes: 2000})
	value := func(n int) string { return `{"Key":"k","Value":"` + strings.Repeat("v", n-2) + `"}` }
	tests := []struct {
		name, body string
		want       int
	}{
		{"value at the limit", value(100), 200},
		{"value over the limit", value(101), 413},
		{"body at the limit", `{"Key":"k","Value":1` + strings.Repeat(" ", 2000-len(`{"Key":"k","Value":1}`)) + `}`, 200},
		{"body over the limit", `{"Key":"k","Value":1` + strings.Repeat(" ", 2001-len(`{"Key":"k","Value":1}`)) + `}`, 413},
		{"key at the limit", `{"Key":"` + strings.Repeat("k", 1024) + `","Value":1}`, 200},
		{"key over the limit", `{"Key":"` + strings.Repeat("k", 1025) + `","Value":1}`, 400},
	}
	for _, tt := range tests {
		a := do(t, "POST", srv.URL+"/set", tt.body)
		if a.code != tt.want {
			t.Errorf("%s: got %d %s, want %d", tt.name, a.code, a.body, tt.want)
		}
	}
	if store.Rev() != 3 {
		t.Fatalf("Rev %d, want 3: only the accepted sets change the store", store.Rev())
	}
	if a := do(t, "POST", srv.URL+"/get", `{"Key":"`+strings.Repeat("x", 3000)+`"}`); a.code != 413 || !strings.Contains(a.body, "limit of "+strconv.Itoa(2000)) {
		t.Fatalf("get with a body over the limit: got %d %s, want 413", a.code, a.body)
	}
}

// TestMalformedQueryIs400: a query string that does not parse is refused,
// rather than served without the parameters that did not parse (which
// would turn ?key=a;b into a subscription to every key, or a listing of
// every key).
func TestMalformedQueryIs400(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	e.store.Set(t.Context(), "a;b", []byte(`1`))
	for _, q := range []string{"?key=a;b", "?prefix=a;b", "?key=%zz", "?from=1;2"} {
		if a := wsGet(t, e, q); a.code != 400 || !strings.Contains(a.body, "malformed query string") {
			t.Errorf("/subscribe%s: got %d %s, want 400", q, a.code, a.body)
		}
	}
	for _, target := range []string{"GET /getall?prefix=a;b", "GET /get?key=a;b", "DELETE /delete?key=%zz", "GET /getall?prefix=%"} {
		method, path, _ := strings.Cut(target, " ")
		if a := do(t, method, e.srv.URL+path, ""); a.code != 400 || !strings.Contains(a.body, "malformed query string") {
			t.Errorf("%s: got %d %s, want 400", target, a.code, a.body)
		}
	}
	if a := do(t, "GET", e.srv.URL+"/get?key=a%3Bb", ""); a.code != 200 {
		t.Errorf("an escaped semicolon: got %d %s, want 200", a.code, a.body)
	}
}

// TestLoneSurrogateKey: Go's JSON decoder turns an escaped lone surrogate
// into U+FFFD; a key holding one is refused rather than stored under
// another name than the client sent.
func TestLoneSurrogateKey(t *testing.T) {
	srv, store := newAPI(t, httpapi.Options{})
	tests := []struct {
		name, key string // key as JSON text
		want      int
		stored    string
	}{
		{"lone high surrogate", `"\ud800"`, 400, ""},
		{"lone low surrogate", `"a\udc00b"`, 400, ""},
		{"surrogate and replacement", `"\ud800\ufffd"`, 400, ""},
		{"pair", `"\ud83d\ude00"`, 200, "😀"},
		{"escaped replacement", `"\uFFFD"`, 200, "\uFFFD"},
		{"literal replacement", "\"\uFFFD\\n\"", 400, ""}, // a control character
		{"literal replacement and escape", "\"\uFFFD\\u0041\"", 200, "\uFFFDA"},
		{"escaped backslash", `"a\\ud800"`, 200, `a\ud800`},
	}
	for _, tt := range tests {
		a := do(t, "POST", srv.URL+"/set", `{"Key":`+tt.key+`,"Value":1}`)
		if a.code != tt.want {
			t.Errorf("%s: got %d %s, want %d", tt.name, a.code, a.body, tt.want)
			continue
		}
		if tt.want == 200 {
			if _, ok := store.Get(tt.stored); !ok {
				t.Errorf("%s: key %q not stored", tt.name, tt.stored)
			}
		}
	}
	if n := store.Len(); n != 4 {
		t.Errorf("store holds %d keys, want the 4 accepted", n)
	}
}

// TestSubscriberOutlivesServerTimeouts: a subscriber lives longer than the
// server's read and write timeouts (-read-header-timeout, ReadTimeout and
// WriteTimeout in kvsd), through the handler's ResponseWriter wrapper.
func TestSubscriberOutlivesServerTimeouts(t *testing.T) {
	hub := bus.New(bus.Options{Encode: httpapi.AppendEvent})
	store := kv.New(kv.Options{Publisher: hub})
	h := httpapi.New(httpapi.Options{Store: store, Feed: hubfeed.Feed{Hub: hub}})
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ReadTimeout = 300 * time.Millisecond
	srv.Config.WriteTimeout = 300 * time.Millisecond
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.Shutdown(ctx)
		srv.Close()
		hub.Close()
		store.Close()
	})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/subscribe", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	time.Sleep(time.Second) // past both timeouts
	rev, _ := store.Set(ctx, "k", []byte(`1`))
	if got := (&watcher{t, c}).changes(1); got[0].Revision != rev {
		t.Fatalf("got %+v, want the set at %d", got, rev)
	}
}
