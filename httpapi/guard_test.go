package httpapi_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
)

// request sends method path with body and header (a "Host" entry sets
// the Host header) to srv.
func request(t *testing.T, base, method, path, body string, header map[string]string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, base+path, r)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
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

// upgradeHeaders adds the headers of a WebSocket handshake to header.
func upgradeHeaders(header map[string]string) map[string]string {
	header["Connection"] = "Upgrade"
	header["Upgrade"] = "websocket"
	header["Sec-WebSocket-Version"] = "13"
	header["Sec-WebSocket-Key"] = "dGhlIHNhbXBsZSBub25jZQ=="
	return header
}

// wantJSONError fails unless a is a JSON error with status code whose
// message holds want.
func wantJSONError(t *testing.T, what string, a answer, code int, want string) {
	t.Helper()
	if a.code != code || a.header.Get("Content-Type") != "application/json" ||
		!strings.HasPrefix(a.body, `{"error":"`) || !strings.Contains(a.body, want) {
		t.Fatalf("%s: got %d %s %q, want %d and a JSON error about %q", what, a.code, a.header.Get("Content-Type"), a.body, code, want)
	}
}

// TestDuplicateParameters: a query parameter given twice, in any letter
// case or spelled with escapes, is a 400 on every route, and so is a query
// string that does not parse; nothing is changed.
func TestDuplicateParameters(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{Pprof: true})
	e.set(t, "a", "1")
	tests := []struct{ method, path, body string }{
		{"GET", "/getall?Prefix=a&prefix=b", ""},
		{"GET", "/getall?prefix=a&prefix=b", ""},
		{"POST", "/getall?prefix=a&PREFIX=a", ""},
		{"HEAD", "/getall?prefix=a&PREFIX=a", ""},
		{"GET", "/getall?pr%65fix=a&prefix=b", ""},
		{"GET", "/getall?prefix=a&prefix", ""},
		{"GET", "/get?key=a&KEY=a", ""},
		{"GET", "/list?prefix=a&Prefix=b", ""},
		{"POST", "/list?x=1&X=1", `{"Prefix":"a"}`},
		{"POST", "/get?x=1&X=1", `{"Key":"a"}`},
		{"POST", "/set?x=1&X=2", `{"Key":"a","Value":2}`},
		{"PUT", "/set?Key=b&key=c", `{"Key":"a","Value":2}`},
		{"DELETE", "/delete?key=a&Key=a", ""},
		{"POST", "/delete?x&x", `{"Key":"a"}`},
		{"GET", "/subscribe?from=1&From=1", ""},
		{"GET", "/subscribe?prefix=a&prefix=a", ""},
		{"GET", "/healthz?a=1&A=2", ""},
		{"GET", "/readyz?a&a", ""},
		{"GET", "/metrics?name=x&Name=y", ""},
		{"POST", "/login?a&a", `{"Token":"x"}`},
		{"GET", "/?v=1&V=1", ""},
		{"GET", "/ui/app.js?v=1&v=2", ""},
		{"GET", "/debug/pprof/?debug=1&debug=2", ""},
		{"GET", "/healthz?%zz", ""},
		{"GET", "/getall?a=1;b=2", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			a := request(t, e.srv.URL, tt.method, tt.path, tt.body, nil)
			if tt.method == "HEAD" {
				if a.code != 400 {
					t.Fatalf("got %d, want 400", a.code)
				}
				return
			}
			want := "given more than once"
			if !strings.Contains(tt.path, "&") || strings.Contains(tt.path, ";") {
				want = "malformed query string"
			}
			wantJSONError(t, tt.method+" "+tt.path, a, 400, want)
		})
	}
	if got := e.store.Rev(); got != 1 {
		t.Fatalf("the store is at revision %d after refused requests, want 1", got)
	}
	// Each parameter once is fine, and so are two different ones.
	for _, path := range []string{"/getall?prefix=a", "/get?key=a", "/healthz?a=1&b=2", "/getall?prefix=a&other=1"} {
		if a := request(t, e.srv.URL, "GET", path, "", nil); a.code != 200 {
			t.Fatalf("GET %s: got %d %s, want 200", path, a.code, a.body)
		}
	}
}

// TestCrossSiteWrites: a request that may change state (every method but
// GET and HEAD) from a page of another site, as its Origin or its
// Sec-Fetch-Site shows, is refused with 403 JSON and changes nothing, even
// with the login cookie and a form's Content-Type; the server's own
// origin, the origins of OriginPatterns, and clients that send neither
// header (curl, kvscli) are served.
func TestCrossSiteWrites(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{Token: testToken, OriginPatterns: []string{"*.allowed.test"}})
	_, cookie := login(t, http.DefaultClient, e.srv.URL, testToken)
	own := e.srv.URL // http://127.0.0.1:port
	writes := []struct{ method, path, body string }{
		{"POST", "/set", `{"Key":"k","Value":1}`},
		{"PUT", "/set", `{"Key":"k","Value":1}`},
		{"POST", "/delete", `{"Key":"k"}`},
		{"DELETE", "/delete?key=k", ""},
		{"POST", "/get", `{"Key":"k"}`},
		{"POST", "/getall", ""},
		{"POST", "/list", `{"Prefix":""}`},
		{"POST", "/login", `{"Token":"` + testToken + `"}`},
		{"POST", "/logout", ""},
		{"PATCH", "/set", `{"Key":"k","Value":1}`},
		{"POST", "/a-route-added-later", ""},
	}
	foreign := []map[string]string{
		{"Origin": "https://evil.test"},
		{"Origin": "http://127.0.0.1:1"},
		{"Origin": "null"},
		{"Origin": "https://evil.test", "Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site"},
		{"Origin": "https://allowed.test.evil.test"},
	}
	for _, w := range writes {
		for _, hdr := range foreign {
			hdr["Cookie"] = httpapi.CookieName + "=" + cookie
			hdr["Content-Type"] = "text/plain"
			a := request(t, e.srv.URL, w.method, w.path, w.body, hdr)
			wantJSONError(t, w.method+" "+w.path+" with "+hdr["Origin"]+hdr["Sec-Fetch-Site"], a, 403, "cross-site")
			if a.header.Get("Set-Cookie") != "" {
				t.Fatalf("%s %s: a refused request set a cookie", w.method, w.path)
			}
		}
	}
	if got := e.store.Rev(); got != 0 {
		t.Fatalf("the store is at revision %d after refused writes, want 0", got)
	}
	allowed := []map[string]string{
		{},
		{"Origin": own},
		{"Origin": own, "Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "none"},
		{"Origin": "https://app.allowed.test", "Sec-Fetch-Site": "cross-site"},
	}
	for i, hdr := range allowed {
		hdr["Authorization"] = "Bearer " + testToken
		a := request(t, e.srv.URL, "POST", "/set", `{"Key":"k","Value":1}`, hdr)
		if a.code != 200 {
			t.Fatalf("set with %v: got %d %s, want 200", hdr, a.code, a.body)
		}
		if rev := e.store.Rev(); rev != int64(i+1) {
			t.Fatalf("set with %v: store at revision %d, want %d", hdr, rev, i+1)
		}
	}
	// Reads from another site are not refused: the browser does not let
	// the page see the answer (no CORS headers).
	a := request(t, e.srv.URL, "GET", "/getall", "", map[string]string{"Origin": "https://evil.test", "Authorization": "Bearer " + testToken})
	if a.code != 200 || a.header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("cross-site read: got %d, Access-Control-Allow-Origin %q; want 200 and none", a.code, a.header.Get("Access-Control-Allow-Origin"))
	}
}

// TestAllowedHosts: with AllowedHosts, a request whose Host is another name
// gets 421 JSON on every route, the WebSocket upgrade and /healthz
// included; IP addresses and the allowed names are served. Without it,
// every host is.
func TestAllowedHosts(t *testing.T) {
	loop := newFeedEnv(t, bus.Options{}, httpapi.Options{AllowedHosts: httpapi.LoopbackHosts})
	port := loop.srv.URL[strings.LastIndex(loop.srv.URL, ":"):]
	routes := []struct{ method, path, body string }{
		{"GET", "/getall", ""},
		{"GET", "/get?key=a", ""},
		{"POST", "/set", `{"Key":"a","Value":1}`},
		{"GET", "/healthz", ""},
		{"GET", "/readyz", ""},
		{"GET", "/metrics", ""},
		{"GET", "/", ""},
		{"GET", "/ui/app.js", ""},
		{"POST", "/login", `{"Token":"x"}`},
		{"GET", "/nope", ""},
	}
	for _, host := range []string{"rebind.attacker.example", "rebind.attacker.example" + port, "localhost.attacker.example", "127.0.0.1.attacker.example"} {
		for _, rt := range routes {
			a := request(t, loop.srv.URL, rt.method, rt.path, rt.body, map[string]string{"Host": host})
			wantJSONError(t, rt.method+" "+rt.path+" for "+host, a, 421, "-allowed-hosts")
		}
		h := request(t, loop.srv.URL, "GET", "/subscribe", "", upgradeHeaders(map[string]string{"Host": host}))
		wantJSONError(t, "the upgrade for "+host, h, 421, "-allowed-hosts")
	}
	if got := loop.store.Rev(); got != 0 {
		t.Fatalf("the store is at revision %d after refused writes, want 0", got)
	}
	for _, host := range []string{"localhost" + port, "LocalHost" + port, "localhost." + port, "app.localhost" + port, "127.0.0.1" + port, "[::1]" + port, "10.1.2.3", "localhost"} {
		if a := request(t, loop.srv.URL, "GET", "/getall", "", map[string]string{"Host": host}); a.code != 200 {
			t.Fatalf("Host %s: got %d %s, want 200", host, a.code, a.body)
		}
	}
	if a := request(t, loop.srv.URL, "GET", "/subscribe", "", upgradeHeaders(map[string]string{"Host": "localhost" + port})); a.code != 101 {
		t.Fatalf("the upgrade for localhost: got %d %s, want 101", a.code, a.body)
	}

	named := newFeedEnv(t, bus.Options{}, httpapi.Options{AllowedHosts: []string{"kvs.example.com", "*.kvs.test"}})
	for host, want := range map[string]int{"kvs.example.com": 200, "KVS.example.com:443": 200, "a.kvs.test": 200, "kvs.test": 421, "localhost": 421, "evil.example.com": 421, "192.0.2.1:80": 200} {
		if a := request(t, named.srv.URL, "GET", "/healthz", "", map[string]string{"Host": host}); a.code != want {
			t.Fatalf("Host %s: got %d %s, want %d", host, a.code, a.body, want)
		}
	}

	open := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	if a := request(t, open.srv.URL, "GET", "/getall", "", map[string]string{"Host": "rebind.attacker.example"}); a.code != 200 {
		t.Fatalf("without AllowedHosts: got %d, want 200", a.code)
	}
}
