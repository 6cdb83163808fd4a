package main_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/internal/promtext"
)

// battery is a kvsd under a bad-input battery, and a client that sends
// requests to it without keep-alive, so that each request stands alone.
type battery struct {
	t      *testing.T
	srv    *kvstest.Server
	client *http.Client
}

const batteryToken = "battery-token-0123456789"

// request sends method path with body and the token (unless noToken), plus
// header, and returns the status, header and body of the answer.
func (b *battery) request(method, path, body string, header http.Header) (int, http.Header, string) {
	b.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(b.t.Context(), method, b.srv.URL+path, rd)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+batteryToken)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %.80s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp.StatusCode, resp.Header, ""
	}
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatalf("%s %.80s: reading the answer: %v", method, path, err)
	}
	return resp.StatusCode, resp.Header, string(data)
}

// raw sends data over a new connection and reads one answer.
func (b *battery) raw(data string) (int, http.Header, string, error) {
	conn, err := net.Dial("tcp", b.srv.Addr)
	if err != nil {
		b.t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	if _, err := io.WriteString(conn, data); err != nil {
		return 0, nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(body), nil
}

// state returns the listing of every key and its revision.
func (b *battery) state() (string, string) {
	b.t.Helper()
	code, h, body := b.request("GET", "/getall", "", nil)
	if code != 200 {
		b.t.Fatalf("getall: %d %s", code, body)
	}
	return body, h.Get("Kvs-Revision")
}

// metric scrapes /metrics and returns the value of name{labels}.
func (b *battery) metric(name string, labels ...string) float64 {
	b.t.Helper()
	code, _, body := b.request("GET", "/metrics", "", nil)
	if code != 200 {
		b.t.Fatalf("metrics: %d", code)
	}
	e, err := promtext.Parse(body)
	if err != nil {
		b.t.Fatalf("metrics: %v", err)
	}
	v, ok := e.Value(name, labels...)
	if !ok {
		b.t.Fatalf("metrics: no %s%v", name, labels)
	}
	return v
}

func (b *battery) waitMetric(what string, cond func() bool) {
	b.t.Helper()
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for !cond() {
		if time.Now().After(deadline) {
			b.t.Fatalf("waited 60s for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (b *battery) wsURL(query string) string {
	return "ws://" + b.srv.Addr + "/subscribe" + query
}

func (b *battery) dial(ctx context.Context, query string) (*websocket.Conn, *http.Response, error) {
	return websocket.Dial(ctx, b.wsURL(query), &websocket.DialOptions{
		HTTPHeader: http.Header{"Authorization": {"Bearer " + batteryToken}},
	})
}

var upgradeHeader = http.Header{
	"Connection":            {"Upgrade"},
	"Upgrade":               {"websocket"},
	"Sec-Websocket-Version": {"13"},
	"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
}

func withHeader(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// TestBadInputBattery sends the real kvsd (file backend, a token, small
// limits) malformed and truncated JSON, wrong types, huge and deeply
// nested values, invalid UTF-8, NUL bytes, abused /subscribe parameters,
// wrong methods, bad WebSocket frames, slow headers, idle connections and
// 2000 subscribers opening and closing. Each gets its documented status
// (JSON, but for the few that net/http answers before any handler runs) or
// close code; afterwards kvsd still serves, holds exactly the data it held
// before, and has no subscriber or goroutine left over.
func TestBadInputBattery(t *testing.T) {
	srv := kvstest.Start(t, "-token", batteryToken, "-max-value-bytes", "65536", "-max-subscribers", "100",
		"-read-header-timeout", "5s", "-idle-timeout", "2s")
	b := &battery{t: t, srv: srv, client: &http.Client{
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   60 * time.Second,
	}}
	for i := range 20 {
		body := fmt.Sprintf(`{"Key":"seed/%02d","Value":{"n":%d,"s":"<%d> & \u00e9"}}`, i, i, i)
		if code, _, resp := b.request("POST", "/set", body, nil); code != 200 {
			t.Fatalf("seed: %d %s", code, resp)
		}
	}
	b.request("POST", "/delete", `{"Key":"seed/19"}`, nil)
	before, beforeRev := b.state()
	goroutines := b.metric("go_goroutines")

	t.Run("requests", func(t *testing.T) { batteryRequests(t, b) })
	t.Run("raw", func(t *testing.T) { batteryRaw(t, b) })
	t.Run("slow headers", func(t *testing.T) { batterySlowloris(t, b) })
	t.Run("idle connection", func(t *testing.T) { batteryIdle(t, b) })
	t.Run("frames", func(t *testing.T) { batteryFrames(t, b) })
	t.Run("subscriber churn", func(t *testing.T) { batteryChurn(t, b, 2000) })
	t.Run("subscriber limit", func(t *testing.T) { batteryLimit(t, b, 100) })

	if srv.Exited() {
		t.Fatalf("kvsd exited:\n%s", srv.Logs())
	}
	b.waitMetric("every subscriber to end", func() bool { return b.metric("kvs_subscribers") == 0 })
	b.waitMetric("goroutines to go back", func() bool { return b.metric("go_goroutines") <= goroutines+10 })
	after, afterRev := b.state()
	if after != before || afterRev != beforeRev {
		t.Fatalf("the data changed:\nbefore (rev %s): %s\nafter (rev %s):  %s", beforeRev, before, afterRev, after)
	}
	code, _, body := b.request("GET", "/metrics", "", nil)
	e, err := promtext.Parse(body)
	if code != 200 || err != nil {
		t.Fatalf("metrics: %d %v", code, err)
	}
	for _, s := range e.Families["kvs_http_requests_total"].Samples {
		if c, _ := strconv.Atoi(s.Labels["code"]); c >= 500 {
			t.Errorf("%v answers with %s on %s", s.Value, s.Labels["code"], s.Labels["route"])
		}
	}
	if code, _, body := b.request("GET", "/readyz", "", nil); code != 200 {
		t.Fatalf("readyz after the battery: %d %s", code, body)
	}
	if code, _, body := b.request("POST", "/set", `{"Key":"after","Value":1}`, nil); code != 200 {
		t.Fatalf("set after the battery: %d %s", code, body)
	}
	if strings.Contains(srv.Logs(), "panic") {
		t.Fatalf("kvsd logged a panic:\n%s", srv.Logs())
	}
}

func batteryRequests(t *testing.T, b *battery) {
	nested := func(open, close string, n int) string {
		return strings.Repeat(open, n) + "1" + strings.Repeat(close, n)
	}
	manyParams := make(url.Values)
	for i := range 1000 {
		manyParams.Set("p"+strconv.Itoa(i), "1")
	}
	tests := []struct {
		name, method, path, body string
		header                   http.Header
		code                     int
		msg                      string // in the JSON error
	}{
		// Malformed and truncated JSON.
		{"missing value", "POST", "/set", `{"Key":"a","Value":}`, nil, 400, "malformed JSON"},
		{"truncated member", "POST", "/set", `{"Key":"a","Val`, nil, 400, "malformed JSON"},
		{"truncated object", "POST", "/set", `{"Key":"a","Value":1`, nil, 400, "malformed JSON"},
		{"truncated string", "POST", "/get", `{"Key":"a`, nil, 400, "malformed JSON"},
		{"empty body", "POST", "/set", ``, nil, 400, "empty request body"},
		{"whitespace body", "POST", "/delete", " \n\t ", nil, 400, "empty request body"},
		{"trailing object", "POST", "/set", `{"Key":"a","Value":1}{"Key":"b","Value":2}`, nil, 400, "malformed JSON"},
		{"trailing garbage", "POST", "/get", `{"Key":"seed/01"} x`, nil, 400, "malformed JSON"},
		{"byte order mark", "POST", "/set", "\xef\xbb\xbf{\"Key\":\"a\",\"Value\":1}", nil, 400, "malformed JSON"},
		{"single quotes", "POST", "/set", `{'Key':'a','Value':1}`, nil, 400, "malformed JSON"},
		{"comment", "POST", "/set", `{"Key":"a",/* x */"Value":1}`, nil, 400, "malformed JSON"},
		// Wrong types.
		{"array body", "POST", "/set", `[1,2]`, nil, 400, "JSON object"},
		{"string body", "POST", "/set", `"just a string"`, nil, 400, "JSON object"},
		{"number body", "POST", "/get", `42`, nil, 400, "JSON object"},
		{"null body", "POST", "/set", `null`, nil, 400, `missing \"Key\"`},
		{"key number", "POST", "/set", `{"Key":12,"Value":1}`, nil, 400, "must be a JSON string"},
		{"key array", "POST", "/set", `{"Key":["a"],"Value":1}`, nil, 400, "must be a JSON string"},
		{"key object", "POST", "/get", `{"Key":{"a":1}}`, nil, 400, "must be a JSON string"},
		{"key bool", "POST", "/delete", `{"Key":true}`, nil, 400, "must be a JSON string"},
		{"value null", "POST", "/set", `{"Key":"a","Value":null}`, nil, 400, "must not be null"},
		{"value missing", "POST", "/set", `{"Key":"a"}`, nil, 400, `missing \"Value\"`},
		{"IfRevision string", "POST", "/set", `{"Key":"a","Value":1,"IfRevision":"1"}`, nil, 400, "IfRevision"},
		{"IfRevision fraction", "POST", "/set", `{"Key":"a","Value":1,"IfRevision":1.5}`, nil, 400, "IfRevision"},
		{"IfRevision negative", "POST", "/delete", `{"Key":"seed/01","IfRevision":-3}`, nil, 400, "IfRevision"},
		{"IfRevision huge", "POST", "/set", `{"Key":"a","Value":1,"IfRevision":1e400}`, nil, 400, "IfRevision"},
		{"IfRevision overflow", "POST", "/delete", `{"Key":"seed/01","IfRevision":99999999999999999999}`, nil, 400, "IfRevision"},
		{"IfRevision object", "POST", "/set", `{"Key":"a","Value":1,"IfRevision":{}}`, nil, 400, "IfRevision"},
		// Huge and deeply nested.
		{"value over the limit", "POST", "/set", `{"Key":"a","Value":"` + strings.Repeat("v", 65536) + `"}`, nil, 413, "over the limit"},
		{"body over the limit", "POST", "/set", `{"Key":"a","Value":1,"pad":"` + strings.Repeat("p", 200<<10) + `"}`, nil, 413, "over the limit"},
		{"get body over the limit", "POST", "/get", `{"Key":"` + strings.Repeat("k", 200<<10) + `"}`, nil, 413, "over the limit"},
		{"deep arrays", "POST", "/set", `{"Key":"a","Value":` + nested("[", "]", 20000) + `}`, nil, 400, "exceeded max depth"},
		{"deep objects", "POST", "/set", `{"Key":"a","Value":` + nested(`{"a":`, "}", 11000) + `}`, nil, 400, "exceeded max depth"},
		{"deep unknown member", "POST", "/get", `{"Key":"seed/01","x":` + nested("[", "]", 20000) + `}`, nil, 400, "exceeded max depth"},
		{"key over 1024 bytes", "POST", "/set", `{"Key":"` + strings.Repeat("k", 1025) + `","Value":1}`, nil, 400, "longer than 1024"},
		{"key of multibyte runes over 1024 bytes", "POST", "/set", `{"Key":"` + strings.Repeat("é", 513) + `","Value":1}`, nil, 400, "longer than 1024"},
		// Invalid UTF-8, NUL and control characters.
		{"key invalid UTF-8", "POST", "/set", "{\"Key\":\"a\xffb\",\"Value\":1}", nil, 400, "not valid UTF-8"},
		{"key overlong encoding", "POST", "/set", "{\"Key\":\"\xc0\xaf\",\"Value\":1}", nil, 400, "not valid UTF-8"},
		{"key encoded surrogate", "POST", "/get", "{\"Key\":\"\xed\xa0\x80\"}", nil, 400, "not valid UTF-8"},
		{"key escaped lone surrogate", "POST", "/set", `{"Key":"\ud800","Value":1}`, nil, 400, "lone surrogate"},
		{"value invalid UTF-8", "POST", "/set", "{\"Key\":\"a\",\"Value\":\"\xc3\"}", nil, 400, "not valid UTF-8"},
		{"value invalid UTF-8 deep", "POST", "/set", "{\"Key\":\"a\",\"Value\":{\"x\":[\"\xfe\"]}}", nil, 400, "not valid UTF-8"},
		{"key escaped NUL", "POST", "/set", `{"Key":"a\u0000b","Value":1}`, nil, 400, "control characters"},
		{"key raw NUL", "POST", "/set", "{\"Key\":\"a\x00b\",\"Value\":1}", nil, 400, "malformed JSON"},
		{"key newline", "POST", "/get", `{"Key":"a\nb"}`, nil, 400, "control characters"},
		{"key DEL", "POST", "/set", `{"Key":"a\u007f","Value":1}`, nil, 400, "control characters"},
		{"key empty", "POST", "/set", `{"Key":"","Value":1}`, nil, 400, "must not be empty"},
		{"query key NUL", "GET", "/get?key=a%00", "", nil, 400, "control characters"},
		{"query key invalid UTF-8", "DELETE", "/delete?key=%ff", "", nil, 400, "not valid UTF-8"},
		{"query malformed escape", "GET", "/get?key=%zz", "", nil, 400, "malformed query string"},
		{"query semicolon", "GET", "/getall?prefix=seed;x", "", nil, 400, "malformed query string"},
		{"prefix control character", "GET", "/getall?prefix=%01", "", nil, 400, "bad prefix"},
		{"query without key", "GET", "/get?ifrevision=1", "", nil, 400, "missing key"},
		// Not found, and conditions that fail: nothing changes.
		{"delete missing", "POST", "/delete", `{"Key":"nope"}`, nil, 404, "key not found"},
		{"delete deleted", "DELETE", "/delete?key=seed/19", "", nil, 404, "key not found"},
		{"create existing", "POST", "/set", `{"Key":"seed/01","Value":2,"IfRevision":0}`, nil, 409, "condition failed"},
		{"stale revision", "POST", "/delete", `{"Key":"seed/01","IfRevision":1000}`, nil, 409, "condition failed"},
		// Wrong methods and routes.
		{"PATCH set", "PATCH", "/set", `{"Key":"a","Value":1}`, nil, 405, "method not allowed"},
		{"GET set", "GET", "/set", "", nil, 405, "method not allowed"},
		{"DELETE getall", "DELETE", "/getall", "", nil, 405, "method not allowed"},
		{"PUT get", "PUT", "/get", `{"Key":"a"}`, nil, 405, "method not allowed"},
		{"POST subscribe", "POST", "/subscribe", "", nil, 405, "method not allowed"},
		{"OPTIONS get", "OPTIONS", "/get", "", nil, 405, "method not allowed"},
		{"POST metrics", "POST", "/metrics", "", nil, 405, "method not allowed"},
		{"unknown route", "GET", "/admin", "", nil, 404, "not found"},
		{"route with a suffix", "POST", "/set/x", `{"Key":"a","Value":1}`, nil, 404, "not found"},
		// Tokens.
		{"no token", "POST", "/set", `{"Key":"a","Value":1}`, http.Header{"Authorization": {""}}, 401, "unauthorized"},
		{"wrong token", "POST", "/delete", `{"Key":"seed/01"}`, http.Header{"Authorization": {"Bearer " + batteryToken + "x"}}, 401, "unauthorized"},
		{"token in another scheme", "GET", "/getall", "", http.Header{"Authorization": {"Basic " + batteryToken}}, 401, "unauthorized"},
		{"wrong cookie", "GET", "/getall", "", http.Header{"Authorization": {""}, "Cookie": {"kvs_token=" + batteryToken}}, 401, "unauthorized"},
		{"login wrong token", "POST", "/login", `{"Token":"nope"}`, nil, 401, "unauthorized"},
		{"login malformed", "POST", "/login", `{"Token":`, nil, 400, "malformed JSON"},
		{"login huge", "POST", "/login", `{"Token":"` + strings.Repeat("t", 10000) + `"}`, nil, 413, "over the limit"},
		// /subscribe parameters and handshakes.
		{"subscribe key and prefix", "GET", "/subscribe?key=a&prefix=b", "", upgradeHeader, 400, "not both"},
		{"subscribe negative from", "GET", "/subscribe?from=-1", "", upgradeHeader, 400, "from must be"},
		{"subscribe from not a number", "GET", "/subscribe?from=abc", "", upgradeHeader, 400, "from must be"},
		{"subscribe from overflow", "GET", "/subscribe?from=99999999999999999999", "", upgradeHeader, 400, "from must be"},
		{"subscribe from twice", "GET", "/subscribe?from=0&from=1", "", upgradeHeader, 400, "more than once"},
		{"subscribe empty key", "GET", "/subscribe?key=", "", upgradeHeader, 400, "bad key"},
		{"subscribe key NUL", "GET", "/subscribe?key=a%00", "", upgradeHeader, 400, "bad key"},
		{"subscribe prefix invalid UTF-8", "GET", "/subscribe?prefix=%ff", "", upgradeHeader, 400, "bad prefix"},
		{"subscribe long key", "GET", "/subscribe?key=" + strings.Repeat("k", 2000), "", upgradeHeader, 400, "bad key"},
		{"subscribe unknown parameter", "GET", "/subscribe?topic=x", "", upgradeHeader, 400, "unknown parameter"},
		{"subscribe 1000 parameters", "GET", "/subscribe?" + manyParams.Encode(), "", upgradeHeader, 400, "unknown parameter"},
		{"subscribe malformed query", "GET", "/subscribe?key=a;b", "", upgradeHeader, 400, "malformed query string"},
		{"subscribe without upgrade", "GET", "/subscribe", "", nil, 426, "WebSocket endpoint"},
		{"subscribe version 8", "GET", "/subscribe", "", withHeader(upgradeHeader, "Sec-Websocket-Version", "8"), 400, "version"},
		{"subscribe bad key", "GET", "/subscribe", "", withHeader(upgradeHeader, "Sec-Websocket-Key", "short"), 400, "Sec-WebSocket-Key"},
		{"subscribe cross origin", "GET", "/subscribe", "", withHeader(upgradeHeader, "Origin", "https://evil.example"), 403, "cross-origin"},
		{"subscribe without token", "GET", "/subscribe", "", withHeader(upgradeHeader, "Authorization", ""), 401, "unauthorized"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body := b.request(tt.method, tt.path, tt.body, tt.header)
			if code != tt.code {
				t.Fatalf("got %d %.200s, want %d", code, body, tt.code)
			}
			var e struct {
				Error *string `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == nil || h.Get("Content-Type") != "application/json" {
				t.Fatalf("answer %.200q (%s) is not a JSON error: %v", body, h.Get("Content-Type"), err)
			}
			if !strings.Contains(*e.Error, tt.msg) && !strings.Contains(body, tt.msg) {
				t.Fatalf("error %q does not mention %q", *e.Error, tt.msg)
			}
		})
	}
}

// batteryRaw sends what only a raw connection can: broken request lines
// and headers (answered by net/http before any handler, in plain text),
// and a WebSocket handshake over HTTP/1.0.
func batteryRaw(t *testing.T, b *battery) {
	auth := "Authorization: Bearer " + batteryToken + "\r\n"
	tests := []struct {
		name, data string
		code       int
		json       bool
	}{
		{"garbage request line", "HELLO\r\n\r\n", 400, false},
		{"header without a colon", "GET /healthz HTTP/1.1\r\nHost: localhost\r\nNoColon\r\n\r\n", 400, false},
		{"NUL in a header", "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-A: a\x00b\r\n\r\n", 400, false},
		{"no Host header", "GET /healthz HTTP/1.1\r\n\r\n", 400, false},
		{"Content-Length not a number", "POST /set HTTP/1.1\r\nHost: localhost\r\n" + auth + "Content-Length: abc\r\n\r\n", 400, false},
		{"two Content-Lengths", "POST /set HTTP/1.1\r\nHost: localhost\r\n" + auth + "Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}", 400, false},
		{"headers over the limit", "GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("b", 100<<10) + "\r\n\r\n", 431, false},
		{"query over the header limit", "GET /subscribe?key=" + strings.Repeat("k", 100<<10) + " HTTP/1.1\r\nHost: localhost\r\n\r\n", 431, false},
		{"bad chunk size", "POST /set HTTP/1.1\r\nHost: localhost\r\n" + auth + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", 400, true},
		{"WebSocket over HTTP/1.0", "GET /subscribe HTTP/1.0\r\nHost: localhost\r\n" + auth + "Connection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", 426, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, h, body, err := b.raw(tt.data)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			if code != tt.code {
				t.Fatalf("got %d %.200s, want %d", code, body, tt.code)
			}
			if tt.json && (h.Get("Content-Type") != "application/json" || !json.Valid([]byte(body))) {
				t.Fatalf("answer %q is not JSON", body)
			}
		})
	}
}

// batterySlowloris sends a request's headers a byte at a time, slower than
// -read-header-timeout (5s) allows: kvsd closes the connection without an
// answer long before the headers are complete.
func batterySlowloris(t *testing.T, b *battery) {
	const request = "GET /getall HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + batteryToken + "\r\n\r\n"
	var wg sync.WaitGroup
	for range 5 { // several at once, as an attacker would
		wg.Go(func() {
			conn, err := net.Dial("tcp", b.srv.Addr)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			conn.SetReadDeadline(time.Now().Add(30 * time.Second)) // a hang guard
			type answer struct {
				data []byte
				err  error
			}
			closed := make(chan answer, 1)
			go func() {
				data, err := io.ReadAll(conn)
				closed <- answer{data, err}
			}()
			sent := 0
			var got answer
		send:
			for sent < len(request) {
				select {
				case got = <-closed:
					break send
				case <-time.After(200 * time.Millisecond):
				}
				if _, err := conn.Write([]byte{request[sent]}); err != nil {
					got = <-closed
					break
				}
				sent++
			}
			if sent == len(request) {
				t.Errorf("kvsd waited for all %d bytes of headers sent at 5 a second", sent)
				return
			}
			// net/http answers 400 when the timeout falls within the
			// request line, and nothing within the headers.
			if (got.err != nil && !isReset(got.err)) || len(got.data) > 0 && !strings.HasPrefix(string(got.data), "HTTP/1.1 400 ") {
				t.Errorf("after %d of %d bytes: got %q, %v; want the connection closed, after a 400 or nothing", sent, len(request), got.data, got.err)
			}
		})
	}
	wg.Wait()
}

func isReset(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && strings.Contains(oe.Err.Error(), "reset")
}

// batteryIdle keeps a connection open after an answer: kvsd closes it after
// -idle-timeout (2s).
func batteryIdle(t *testing.T, b *battery) {
	conn, err := net.Dial("tcp", b.srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(60 * time.Second)) // a hang guard
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Close {
		t.Fatalf("healthz: %d, close %v; want 200 on a kept-alive connection", resp.StatusCode, resp.Close)
	}
	began := time.Now()
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) && !isReset(err) {
		t.Fatalf("idle connection: got %v, want it closed by kvsd", err)
	}
	if idle := time.Since(began); idle < time.Second {
		t.Fatalf("idle connection closed after %v, before -idle-timeout 2s", idle)
	}
}

// batteryFrames sends what a WebSocket client must not: a message over the
// feed's read limit of 4 KiB (closed with 1009), frames that break the
// protocol (closed with 1002), and an unmasked frame (closed, as RFC 6455
// requires; coder/websocket sends no close frame for it).
func batteryFrames(t *testing.T, b *battery) {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	c, _, err := b.dial(ctx, "?key=nothing")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.Write(ctx, websocket.MessageText, []byte(strings.Repeat("x", 5000))) // the feed reads at most 4 KiB
	for {
		if _, _, err = c.Read(ctx); err != nil {
			break
		}
	}
	if code := websocket.CloseStatus(err); code != websocket.StatusMessageTooBig {
		t.Errorf("a 5000-byte message: got %v, want close 1009", err)
	}

	tests := []struct {
		name  string
		frame []byte
		want  websocket.StatusCode // -1: the connection closed, with or without a close frame
	}{
		{"reserved bit set", []byte{0xa1, 0x80, 1, 2, 3, 4}, websocket.StatusProtocolError},
		{"unknown opcode", []byte{0x83, 0x80, 1, 2, 3, 4}, websocket.StatusProtocolError},
		{"fragmented ping", []byte{0x09, 0x80, 1, 2, 3, 4}, websocket.StatusProtocolError},
		{"unmasked frame", []byte{0x81, 0x00}, -1},
	}
	for _, tt := range tests {
		code, err := rawFrame(t, b, tt.frame)
		if tt.want == -1 && (code == -1 && (errors.Is(err, io.EOF) || isReset(err)) || code == websocket.StatusProtocolError) {
			continue
		}
		if code != tt.want {
			t.Errorf("%s: got close code %d (%v), want %d", tt.name, code, err, tt.want)
		}
	}
}

// rawFrame opens the feed over a raw connection, sends frame, and returns
// the code of the close frame kvsd answers with, or -1 and why there was
// none.
func rawFrame(t *testing.T, b *battery, frame []byte) (websocket.StatusCode, error) {
	conn, err := net.Dial("tcp", b.srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	io.WriteString(conn, "GET /subscribe?key=nothing HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer "+batteryToken+"\r\n"+
		"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	conn.Write(frame)
	for {
		var hdr [2]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			return -1, err
		}
		payload := make([]byte, hdr[1]&0x7f) // the server's frames here are short
		if _, err := io.ReadFull(br, payload); err != nil {
			return -1, err
		}
		if hdr[0]&0x0f == 0x8 { // close
			if len(payload) < 2 {
				return -1, fmt.Errorf("close frame without a code")
			}
			return websocket.StatusCode(binary.BigEndian.Uint16(payload)), nil
		}
	}
}

// batteryChurn opens and closes n subscribers, at most 20 at a time, some
// with filters, some replaying history, some closing at once without a
// close handshake. A 429 (a slot not yet freed) is retried.
func batteryChurn(t *testing.T, b *battery, n int) {
	queries := []string{"", "?prefix=seed/", "?key=seed/03", "?from=1", "?from=5&prefix=seed/0"}
	var (
		next    atomic.Int64
		retries atomic.Int64
		wg      sync.WaitGroup
	)
	for range 20 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || t.Failed() {
					return
				}
				ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
				c, resp, err := b.dial(ctx, queries[i%int64(len(queries))])
				for err != nil && resp != nil && resp.StatusCode == http.StatusTooManyRequests {
					retries.Add(1)
					time.Sleep(10 * time.Millisecond)
					c, resp, err = b.dial(ctx, queries[i%int64(len(queries))])
				}
				if err != nil {
					cancel()
					t.Errorf("subscriber %d: %v (%v)", i, err, resp)
					return
				}
				if i%5 == 3 { // from=1 replays the seeds: read one
					if _, _, err := c.Read(ctx); err != nil {
						t.Errorf("subscriber %d: %v", i, err)
					}
				}
				if i%2 == 0 {
					c.Close(websocket.StatusNormalClosure, "")
				} else {
					c.CloseNow()
				}
				cancel()
			}
		})
	}
	wg.Wait()
	t.Logf("%d subscribers opened and closed (%d handshakes retried after a 429)", n, retries.Load())
}

// batteryLimit opens -max-subscribers subscribers: one more gets 429 JSON
// with Retry-After, before the upgrade.
func batteryLimit(t *testing.T, b *battery, limit int) {
	b.waitMetric("the churn's subscribers to end", func() bool { return b.metric("kvs_subscribers") == 0 })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	var open []*websocket.Conn
	defer func() {
		for _, c := range open {
			c.CloseNow()
		}
	}()
	for i := range limit {
		c, _, err := b.dial(ctx, "")
		if err != nil {
			t.Fatalf("subscriber %d of %d: %v", i+1, limit, err)
		}
		open = append(open, c)
	}
	code, h, body := b.request("GET", "/subscribe", "", upgradeHeader)
	if code != 429 || h.Get("Retry-After") == "" || !strings.Contains(body, `"error":"too many subscribers`) {
		t.Fatalf("subscriber %d of %d: got %d %s %v, want 429 JSON with Retry-After", limit+1, limit, code, body, h)
	}
	if got := b.metric("kvs_subscribers"); got != float64(limit) {
		t.Fatalf("kvs_subscribers %v, want %d", got, limit)
	}
}
