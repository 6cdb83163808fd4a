package httpapi

import (
	"encoding/base64"
	"net/http"
	"testing"
	"time"
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
