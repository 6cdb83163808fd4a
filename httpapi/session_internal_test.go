package httpapi

import (
	"bytes"
	"encoding/base64"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/kv"
)

// TestSessionCookie: a session cookie is valid until its expiry and no
// longer, only for the token it was made with, only as made (any change
// to it is refused), and not once revoked.
func TestSessionCookie(t *testing.T) {
	const ttl = 12 * time.Hour
	a := newAuth("the-token", ttl, 10)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	value, exp := a.newSession(now)
	if !exp.Equal(now.Add(ttl)) {
		t.Fatalf("expiry %v, want %v", exp, now.Add(ttl))
	}
	if _, _, ok := a.session(value, now); !ok {
		t.Fatal("a new session is refused")
	}
	if _, got, ok := a.session(value, exp.Add(-time.Second)); !ok || !got.Equal(exp) {
		t.Fatalf("a second before its expiry: ok %v, expiry %v", ok, got)
	}
	if _, _, ok := a.session(value, exp); ok {
		t.Fatal("a session is accepted at its expiry")
	}
	if _, _, ok := newAuth("another-token", ttl, 10).session(value, now); ok {
		t.Fatal("a session is accepted by a server with another token")
	}
	if _, _, ok := newAuth("the-token", ttl, 10).session(value, now); !ok {
		t.Fatal("a session is refused by a server with the same token (a restart)")
	}
	raw, _ := base64.RawURLEncoding.DecodeString(value)
	for i := range raw {
		b := append([]byte(nil), raw...)
		b[i] ^= 1
		if _, _, ok := a.session(base64.RawURLEncoding.EncodeToString(b), now); ok {
			t.Fatalf("a cookie with bit 0 of byte %d flipped is accepted", i)
		}
	}
	for _, v := range []string{"", "the-token", value[:len(value)-1], value + "A", "x" + value} {
		if _, _, ok := a.session(v, now); ok {
			t.Fatalf("cookie %q accepted", v)
		}
	}
	other, _ := a.newSession(now)
	id, _, _ := a.session(value, now)
	a.revoke(id, exp, now)
	if _, _, ok := a.session(value, now); ok {
		t.Fatal("a revoked session is accepted")
	}
	if _, _, ok := a.session(other, now); !ok {
		t.Fatal("revoking a session revoked another")
	}
}

// TestLimiter: each address may fail burst times, then once a second;
// addresses are independent, and an IPv6 address counts by its /64.
func TestLimiter(t *testing.T) {
	l := newLimiter(3)
	now := time.Now()
	for i := range 3 {
		if _, ok := l.allow("192.0.2.1", now); !ok {
			t.Fatalf("try %d refused", i+1)
		}
		if limited := l.fail("192.0.2.1", now); limited != (i == 2) {
			t.Fatalf("after %d failures: limited %v", i+1, limited)
		}
	}
	if wait, ok := l.allow("192.0.2.1", now); ok || wait <= 0 || wait > time.Second {
		t.Fatalf("after 3 failures: allowed %v, wait %v; want refused for up to 1 s", ok, wait)
	}
	if _, ok := l.allow("192.0.2.2", now); !ok {
		t.Fatal("another address is refused")
	}
	if _, ok := l.allow("192.0.2.1", now.Add(time.Second)); !ok {
		t.Fatal("a second later: still refused")
	}
	l.fail("192.0.2.1", now.Add(time.Second))
	if _, ok := l.allow("192.0.2.1", now.Add(1500*time.Millisecond)); ok {
		t.Fatal("a failure a second later gave a second try")
	}
	if _, ok := l.allow("192.0.2.1", now.Add(time.Hour)); !ok {
		t.Fatal("an hour later: still refused")
	}

	addr := func(remote string) string {
		return clientAddr(&http.Request{RemoteAddr: remote})
	}
	if a, b := addr("[2001:db8:1:2:aaaa::1]:5000"), addr("[2001:db8:1:2:bbbb::2]:6000"); a != b {
		t.Fatalf("two addresses of one /64: %q and %q", a, b)
	}
	if a, b := addr("[2001:db8:1:2::1]:5000"), addr("[2001:db8:1:3::1]:5000"); a == b {
		t.Fatalf("two /64s count as one: %q", a)
	}
	if got := addr("192.0.2.7:1234"); got != "192.0.2.7" {
		t.Fatalf("IPv4: %q", got)
	}
}

// TestWrongTokenLimit: an address that presents WrongTokenBurst wrong
// tokens (to /login or as a bearer token) gets 429 with Retry-After for
// its next ones, unchecked (the right token too), until a try comes back a
// second later; its sessions still work, and other addresses are not
// limited. Each wrong token is logged with the address, never the token.
// (The handler's clock is the test's, so that a slow machine changes
// nothing.)
func TestWrongTokenLimit(t *testing.T) {
	const token = "s3cret-token-for-tests"
	var logs bytes.Buffer
	store := kv.New(kv.Options{})
	defer store.Close()
	h := New(Options{Store: store, Token: token, WrongTokenBurst: 3, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.now = func() time.Time { return clock }
	send := func(remote, method, path, body, auth string, cookie *http.Cookie) *httptest.ResponseRecorder {
		t.Helper()
		r := httptest.NewRequest(method, path, strings.NewReader(body))
		r.RemoteAddr = remote
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		if cookie != nil {
			r.AddCookie(cookie)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	const me, other = "192.0.2.1:4000", "192.0.2.2:4000"
	w := send(me, "POST", "/login", `{"Token":"`+token+`"}`, "", nil)
	cookies := w.Result().Cookies()
	if w.Code != 200 || len(cookies) != 1 {
		t.Fatalf("login: %d, cookies %v", w.Code, cookies)
	}
	if w := send(me, "POST", "/login", `{"Token":"guess-number-1"}`, "", nil); w.Code != 401 {
		t.Fatalf("wrong token 1 to /login: %d", w.Code)
	}
	for _, g := range []string{"guess-number-2", "guess-number-3"} {
		if w := send(me, "GET", "/getall", "", "Bearer "+g, nil); w.Code != 401 {
			t.Fatalf("wrong bearer token %s: %d", g, w.Code)
		}
	}
	for _, tt := range []struct{ method, path, body, auth string }{
		{"POST", "/login", `{"Token":"` + token + `"}`, ""},
		{"GET", "/getall", "", "Bearer " + token},
		{"GET", "/getall", "", "Bearer guess-number-4"},
	} {
		w := send(me, tt.method, tt.path, tt.body, tt.auth, nil)
		if w.Code != 429 || !strings.Contains(w.Body.String(), "too many wrong tokens") {
			t.Fatalf("%s %s %s after 3 wrong tokens: got %d %s, want 429", tt.method, tt.path, tt.auth, w.Code, w.Body)
		}
		if s, err := strconv.Atoi(w.Header().Get("Retry-After")); err != nil || s != 1 {
			t.Fatalf("Retry-After %q, want 1", w.Header().Get("Retry-After"))
		}
	}
	if w := send(me, "GET", "/getall", "", "", cookies[0]); w.Code != 200 {
		t.Fatalf("a session of the limited address: got %d, want 200", w.Code)
	}
	if w := send(me, "GET", "/getall", "", "", nil); w.Code != 401 {
		t.Fatalf("no token from the limited address: got %d, want 401", w.Code)
	}
	if w := send(other, "GET", "/getall", "", "Bearer "+token, nil); w.Code != 200 {
		t.Fatalf("another address: got %d, want 200", w.Code)
	}
	clock = clock.Add(999 * time.Millisecond)
	if w := send(me, "GET", "/getall", "", "Bearer "+token, nil); w.Code != 429 {
		t.Fatalf("the right token 0.999 s later: got %d, want 429", w.Code)
	}
	clock = clock.Add(time.Millisecond)
	if w := send(me, "GET", "/getall", "", "Bearer "+token, nil); w.Code != 200 {
		t.Fatalf("the right token a second later: got %d, want 200", w.Code)
	}
	out := logs.String()
	if n := strings.Count(out, "wrong token"); n != 3 || !strings.Contains(out, "remote=192.0.2.1") {
		t.Fatalf("logs name %d wrong tokens (want 3, with the address):\n%s", n, out)
	}
	if strings.Contains(out, "guess-number") || strings.Contains(out, token) {
		t.Fatalf("the logs hold a token:\n%s", out)
	}
}
