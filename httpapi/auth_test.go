package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

const testToken = "s3cret-token-for-tests"

// credential is one way a request may (or may not) carry the token.
type credential struct {
	name  string
	apply func(r *http.Request)
	ok    bool
}

func credentials(cookie string) []credential {
	bearer := func(v string) func(r *http.Request) {
		return func(r *http.Request) { r.Header.Set("Authorization", v) }
	}
	return []credential{
		{"none", func(*http.Request) {}, false},
		{"wrong token", bearer("Bearer wrong"), false},
		{"token with an extra byte", bearer("Bearer " + testToken + "x"), false},
		{"token cut short", bearer("Bearer " + testToken[:len(testToken)-1]), false},
		{"empty bearer", bearer("Bearer "), false},
		{"no scheme", bearer(testToken), false},
		{"basic scheme", bearer("Basic " + testToken), false},
		{"two headers", func(r *http.Request) {
			r.Header.Add("Authorization", "Bearer "+testToken)
			r.Header.Add("Authorization", "Bearer "+testToken)
		}, false},
		{"token as the cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: testToken}) }, false},
		{"wrong cookie", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: "x" + cookie[1:]}) }, false},
		{"cookie under another name", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "token", Value: cookie}) }, false},
		{"bearer", bearer("Bearer " + testToken), true},
		{"scheme in lower case", bearer("bearer " + testToken), true},
		{"cookie from /login", func(r *http.Request) { r.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: cookie}) }, true},
		{"wrong bearer, right cookie", func(r *http.Request) {
			r.Header.Set("Authorization", "Bearer wrong")
			r.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: cookie})
		}, true},
	}
}

// login posts the token to /login and returns the cookie it sets.
func login(t *testing.T, client *http.Client, base, token string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "POST", base+"/login", strings.NewReader(`{"Token":`+quote(token)+`}`))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	for _, c := range resp.Cookies() {
		if c.Name == httpapi.CookieName {
			return resp, c.Value
		}
	}
	return resp, ""
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestAuth sends every route with each credential: without the token (or
// with a wrong one) every route but /healthz, /login and /logout answers
// 401 with a JSON error that does not say which; with it (header or
// cookie) each answers as without authentication. (The console's routes:
// see TestConsoleExempt. It presents more wrong tokens than an address may
// by default: see TestWrongTokenLimit.)
func TestAuth(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{Token: testToken, Pprof: true, WrongTokenBurst: 1 << 20})
	e.store.Set(t.Context(), "a", []byte(`1`))
	_, cookie := login(t, http.DefaultClient, e.srv.URL, testToken)
	if cookie == "" {
		t.Fatal("login with the token set no cookie")
	}
	routes := []struct {
		method, path, body string
		code               int // the answer with the token
		exempt             bool
	}{
		{"POST", "/get", `{"Key":"a"}`, 200, false},
		{"GET", "/get?key=a", "", 200, false},
		{"POST", "/set", `{"Key":"a","Value":2}`, 200, false},
		{"PUT", "/set", `{"Key":"a","Value":3}`, 200, false},
		{"POST", "/delete", `{"Key":"absent"}`, 404, false},
		{"DELETE", "/delete?key=absent", "", 404, false},
		{"GET", "/getall", "", 200, false},
		{"POST", "/getall", "", 200, false},
		{"HEAD", "/getall", "", 200, false},
		{"GET", "/subscribe", "", 426, false},
		{"GET", "/readyz", "", 200, false},
		{"GET", "/metrics", "", 200, false},
		{"GET", "/debug/pprof/", "", 200, false},
		{"GET", "/debug/pprof/cmdline", "", 200, false},
		{"GET", "/nope", "", 404, false},
		{"PATCH", "/set", "", 405, false},
		{"GET", "/healthz", "", 200, true},
		{"POST", "/login", `{}`, 400, true},
		{"POST", "/logout", ``, 200, true},
	}
	for _, rt := range routes {
		for _, cr := range credentials(cookie) {
			t.Run(rt.method+" "+rt.path+"/"+cr.name, func(t *testing.T) {
				var body io.Reader
				if rt.body != "" {
					body = strings.NewReader(rt.body)
				}
				req, _ := http.NewRequestWithContext(t.Context(), rt.method, e.srv.URL+rt.path, body)
				cr.apply(req)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if cr.ok || rt.exempt {
					if resp.StatusCode != rt.code {
						t.Fatalf("got %d %s, want %d", resp.StatusCode, b, rt.code)
					}
					return
				}
				if resp.StatusCode != 401 {
					t.Fatalf("got %d %s, want 401", resp.StatusCode, b)
				}
				if rt.method == "HEAD" {
					return
				}
				if resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("WWW-Authenticate") != `Bearer realm="kvs"` {
					t.Fatalf("401 headers: %v", resp.Header)
				}
				want := `{"error":"unauthorized: this kvsd needs a token: send the header Authorization: Bearer <token>"}` + "\n"
				if string(b) != want {
					t.Fatalf("401 body %q, want %q (the same for every missing or wrong token)", b, want)
				}
			})
		}
	}
}

// TestAuthUpgrade checks the WebSocket handshake of /subscribe with each
// credential: 401 JSON before the upgrade without the token, a live feed
// with it.
func TestAuthUpgrade(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{Token: testToken})
	_, cookie := login(t, http.DefaultClient, e.srv.URL, testToken)
	for _, cr := range credentials(cookie) {
		t.Run(cr.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", e.srv.URL, nil)
			cr.apply(req)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			c, resp, err := websocket.Dial(ctx, e.ws, &websocket.DialOptions{HTTPHeader: req.Header})
			if !cr.ok {
				if err == nil {
					c.CloseNow()
					t.Fatal("upgraded without the token")
				}
				if resp == nil || resp.StatusCode != 401 {
					t.Fatalf("got %v (%v), want 401", resp, err)
				}
				b, _ := io.ReadAll(resp.Body)
				if !strings.Contains(string(b), `"error":"unauthorized`) {
					t.Fatalf("401 body %q, want a JSON error", b)
				}
				return
			}
			if err != nil {
				t.Fatalf("dial with %s: %v", cr.name, err)
			}
			defer c.CloseNow()
			rev, _ := e.store.Set(t.Context(), "k", []byte(`"v"`))
			w := &watcher{t, c}
			if got := w.changes(1); got[0].Revision != rev {
				t.Fatalf("got %+v, want the set at %d", got, rev)
			}
		})
	}
}

// TestLogin checks POST /login: the cookie's attributes over HTTP and over
// TLS, wrong tokens and bad bodies, and a browser-like client (a cookie
// jar) that logs in and then lists and subscribes with the cookie alone.
func TestLogin(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{Token: testToken})

	resp, cookie := login(t, http.DefaultClient, e.srv.URL, testToken)
	if resp.StatusCode != 200 || cookie == "" {
		t.Fatalf("login: got %d and cookie %q, want 200 and a cookie", resp.StatusCode, cookie)
	}
	if cookie == testToken || strings.Contains(cookie, testToken) {
		t.Fatal("the cookie holds the token itself")
	}
	sc := resp.Header.Get("Set-Cookie")
	for _, attr := range []string{"Path=/", "HttpOnly", "SameSite=Strict"} {
		if !strings.Contains(sc, attr) {
			t.Errorf("Set-Cookie %q lacks %s", sc, attr)
		}
	}
	if strings.Contains(sc, "Secure") {
		t.Errorf("Set-Cookie %q is Secure over plain HTTP: the browser would never send it back", sc)
	}
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}

	tests := []struct {
		name, body string
		code       int
		want       string
	}{
		{"wrong token", `{"Token":"wrong"}`, 401, "unauthorized"},
		{"empty token", `{"Token":""}`, 401, "unauthorized"},
		{"lower-case member", `{"token":"` + testToken + `"}`, 200, "ok"},
		{"missing token", `{"Key":"x"}`, 400, `missing \"Token\"`},
		{"token not a string", `{"Token":42}`, 400, "malformed JSON"},
		{"malformed JSON", `{"Token":`, 400, "malformed JSON"},
		{"empty body", ``, 400, "malformed JSON"},
		{"huge body", `{"Token":"` + strings.Repeat("x", 8<<10) + `"}`, 413, "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, "POST", e.srv.URL+"/login", tt.body)
			if a.code != tt.code || !strings.Contains(a.body, tt.want) {
				t.Fatalf("got %d %s, want %d mentioning %s", a.code, a.body, tt.code, tt.want)
			}
			if set := a.header.Get("Set-Cookie"); (set != "") != (tt.code == 200) {
				t.Fatalf("status %d with Set-Cookie %q", a.code, set)
			}
		})
	}

	t.Run("browser", func(t *testing.T) {
		jar, _ := cookiejar.New(nil)
		client := &http.Client{Jar: jar}
		resp, err := client.Get(e.srv.URL + "/getall")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("before login: got %d, want 401", resp.StatusCode)
		}
		login(t, client, e.srv.URL, testToken)
		resp, err = client.Get(e.srv.URL + "/getall")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("after login: got %d, want 200", resp.StatusCode)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, e.ws, &websocket.DialOptions{HTTPClient: client})
		if err != nil {
			t.Fatalf("subscribe with the cookie: %v", err)
		}
		defer c.CloseNow()
		rev, _ := e.store.Set(t.Context(), "k", []byte(`1`))
		if got := (&watcher{t, c}).changes(1); got[0].Revision != rev {
			t.Fatalf("got %+v, want the set at %d", got, rev)
		}
	})

	t.Run("another token", func(t *testing.T) {
		other, _ := newAPI(t, httpapi.Options{Token: testToken + "2"})
		req, _ := http.NewRequest("GET", other.URL+"/getall", nil)
		req.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: cookie})
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Fatalf("a cookie for another token: got %d, want 401", resp.StatusCode)
		}
	})
}

func TestLoginTLS(t *testing.T) {
	store := newStore(t)
	srv := httptest.NewTLSServer(httpapi.New(httpapi.Options{Store: store, Token: testToken}))
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	client := srv.Client()
	client.Jar = jar
	resp, cookie := login(t, client, srv.URL, testToken)
	if resp.StatusCode != 200 || cookie == "" {
		t.Fatalf("login over TLS: got %d, cookie %q", resp.StatusCode, cookie)
	}
	if sc := resp.Header.Get("Set-Cookie"); !strings.Contains(sc, "; Secure") {
		t.Fatalf("Set-Cookie over TLS %q, want Secure", sc)
	}
	u, _ := url.Parse(srv.URL)
	if got := jar.Cookies(u); len(got) != 1 {
		t.Fatalf("jar holds %v for %s", got, u)
	}
	resp, err := client.Get(srv.URL + "/getall")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("getall with the cookie over TLS: %d", resp.StatusCode)
	}
}

// TestLoginWithoutToken: a server without a token answers /login with 200
// and sets no cookie; every route works without credentials.
func TestLoginWithoutToken(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	a := do(t, "POST", srv.URL+"/login", `{"Token":"anything"}`)
	if a.code != 200 || a.header.Get("Set-Cookie") != "" {
		t.Fatalf("got %d, Set-Cookie %q; want 200 and none", a.code, a.header.Get("Set-Cookie"))
	}
	if a := do(t, "GET", srv.URL+"/getall", ""); a.code != 200 {
		t.Fatalf("getall without a token configured: %d", a.code)
	}
}

func TestTLSDoesNotChangeAnswers(t *testing.T) {
	store := newStore(t)
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Options{Store: store}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the TLS handshake error of the plain HTTP request
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	resp, err := srv.Client().Post(srv.URL+"/set", "", strings.NewReader(`{"Key":"a","Value":1}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != `{"Key":"a","Revision":1}`+"\n" || resp.ProtoMajor != 2 {
		t.Fatalf("over HTTP/2: got %s %d %s", resp.Proto, resp.StatusCode, b)
	}
	// Plain HTTP to the TLS port gets net/http's 400, never data.
	resp, err = http.Get(strings.Replace(srv.URL, "https", "http", 1) + "/getall")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "HTTPS") {
		t.Fatalf("plain HTTP to the TLS port: got %d %s, want 400", resp.StatusCode, b)
	}
}

func newStore(t *testing.T) *kv.Store {
	t.Helper()
	s := kv.New(kv.Options{})
	t.Cleanup(func() { s.Close() })
	return s
}
