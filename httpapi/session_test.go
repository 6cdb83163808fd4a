package httpapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
)

// TestSessionLifetime: the cookie of /login carries its expiry (Max-Age,
// Expires, and the Kvs-Session-Expires header on the answers it
// authorizes); /logout ends the session on the server, so that the same
// cookie is refused afterwards, and tells the browser to forget it.
func TestSessionLifetime(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{Token: testToken, SessionTTL: 3 * time.Hour})
	began := time.Now()
	resp, cookie := login(t, http.DefaultClient, e.srv.URL, testToken)
	sc := resp.Header.Get("Set-Cookie")
	if !strings.Contains(sc, "Max-Age=10800") && !strings.Contains(sc, "Max-Age=10801") {
		t.Fatalf("Set-Cookie %q: want Max-Age of the session's 3 hours", sc)
	}
	withCookie := map[string]string{"Cookie": httpapi.CookieName + "=" + cookie}
	a := request(t, e.srv.URL, "GET", "/getall", "", withCookie)
	exp, err := time.Parse(time.RFC3339, a.header.Get(httpapi.SessionHeader))
	if a.code != 200 || err != nil || exp.Before(began.Add(3*time.Hour)) || exp.After(time.Now().Add(3*time.Hour+time.Second)) {
		t.Fatalf("getall with the cookie: %d, %s %q; want 200 and the expiry in 3 hours", a.code, httpapi.SessionHeader, a.header.Get(httpapi.SessionHeader))
	}
	bearer := request(t, e.srv.URL, "GET", "/getall", "", map[string]string{"Authorization": "Bearer " + testToken})
	if bearer.header.Get(httpapi.SessionHeader) != "" {
		t.Fatalf("an answer to the bearer token names a session")
	}

	_, other := login(t, http.DefaultClient, e.srv.URL, testToken)
	if other == cookie {
		t.Fatal("two logins got the same cookie")
	}
	out := request(t, e.srv.URL, "POST", "/logout", "", withCookie)
	if out.code != 200 || !strings.Contains(out.header.Get("Set-Cookie"), httpapi.CookieName+"=;") || !strings.Contains(out.header.Get("Set-Cookie"), "Max-Age=0") {
		t.Fatalf("logout: %d, Set-Cookie %q; want 200 and the cookie cleared", out.code, out.header.Get("Set-Cookie"))
	}
	if a := request(t, e.srv.URL, "GET", "/getall", "", withCookie); a.code != 401 {
		t.Fatalf("the cookie after /logout: got %d, want 401", a.code)
	}
	if a := request(t, e.srv.URL, "GET", "/getall", "", map[string]string{"Cookie": httpapi.CookieName + "=" + other}); a.code != 200 {
		t.Fatalf("another session after the first logged out: got %d, want 200", a.code)
	}
	// Logging out without a session (or again) is fine and changes nothing.
	for _, hdr := range []map[string]string{nil, withCookie} {
		if a := request(t, e.srv.URL, "POST", "/logout", "", hdr); a.code != 200 {
			t.Fatalf("logout with %v: got %d %s, want 200", hdr, a.code, a.body)
		}
	}

	// A browser: the jar forgets the cookie.
	jar, _ := cookiejar.New(nil)
	client := &http.Client{Jar: jar}
	login(t, client, e.srv.URL, testToken)
	resp, err = client.Post(e.srv.URL+"/logout", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp, err = client.Get(e.srv.URL + "/getall"); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("a browser after /logout: got %d, want 401", resp.StatusCode)
	}
}

// TestSessionEndsFeed: a feed opened with a session cookie (not the token)
// is closed with 4401 when the session expires, or when /logout ends it.
func TestSessionEndsFeed(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{Token: testToken, SessionTTL: 3 * time.Second, ProgressInterval: 100 * time.Millisecond})
	dial := func(header http.Header) *websocket.Conn {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, _, err := websocket.Dial(ctx, e.ws, &websocket.DialOptions{HTTPHeader: header})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.CloseNow() })
		return c
	}
	closedWith := func(c *websocket.Conn) websocket.CloseError {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard
		defer cancel()
		for {
			if _, _, err := c.Read(ctx); err != nil {
				var ce websocket.CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("feed ended with %v, want a close", err)
				}
				return ce
			}
		}
	}
	var expiring *websocket.Conn
	for expiring == nil { // again if the session expired before the dial (a slow machine)
		_, cookie := login(t, http.DefaultClient, e.srv.URL, testToken)
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		c, resp, err := websocket.Dial(ctx, e.ws, &websocket.DialOptions{HTTPHeader: http.Header{"Cookie": {httpapi.CookieName + "=" + cookie}}})
		cancel()
		if err == nil {
			expiring = c
			t.Cleanup(func() { c.CloseNow() })
		} else if resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatal(err)
		}
	}
	token := dial(http.Header{"Authorization": {"Bearer " + testToken}})
	if ce := closedWith(expiring); ce.Code != httpapi.StatusSessionEnded || !strings.Contains(ce.Reason, "session expired") {
		t.Fatalf("feed of an expiring session: got %v, want close 4401", ce)
	}
	// The feed of the token stays.
	rev, err := e.store.Set(t.Context(), "k", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	if got := (&watcher{t, token}).changes(1); got[0].Revision != rev {
		t.Fatalf("feed of the token: got %v, want revision %d", got, rev)
	}

	long := newFeedEnv(t, bus.Options{}, httpapi.Options{Token: testToken, ProgressInterval: 100 * time.Millisecond})
	e = long
	_, cookie := login(t, http.DefaultClient, e.srv.URL, testToken)
	header := http.Header{"Cookie": {httpapi.CookieName + "=" + cookie}}
	revoked := dial(header)
	if a := request(t, e.srv.URL, "POST", "/logout", "", map[string]string{"Cookie": header.Get("Cookie")}); a.code != 200 {
		t.Fatalf("logout: %d", a.code)
	}
	if ce := closedWith(revoked); ce.Code != httpapi.StatusSessionEnded || !strings.Contains(ce.Reason, "/logout") {
		t.Fatalf("feed of a session ended by /logout: got %v, want close 4401", ce)
	}
}
