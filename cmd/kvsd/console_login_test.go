package main_test

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// tokenGate stands in for kvsd -token, which is not built yet: every route
// but the page itself needs the token, as a bearer header or as the cookie
// that POST /login sets. It lets the test check the page's side of the
// login; the real server replaces it.
func tokenGate(token string, next http.Handler) http.Handler {
	ok := func(s string) bool { return subtle.ConstantTimeCompare([]byte(s), []byte(token)) == 1 }
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/" || strings.HasPrefix(r.URL.Path, "/ui/"):
			next.ServeHTTP(w, r) // the page holds no data, and asks for the token
			return
		case r.URL.Path == "/login" && r.Method == http.MethodPost:
			var body struct{ Token string }
			if json.NewDecoder(r.Body).Decode(&body) != nil || !ok(body.Token) {
				http.Error(w, `{"error":"wrong token"}`, http.StatusUnauthorized)
				return
			}
			http.SetCookie(w, &http.Cookie{Name: "kvs_token", Value: token, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if c, err := r.Cookie("kvs_token"); err == nil && ok(c.Value) || ok(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")) {
			next.ServeHTTP(w, r)
			return
		}
		http.Error(w, `{"error":"this server needs a token"}`, http.StatusUnauthorized)
	})
}

type hubFeed struct{ *bus.Hub }

func (f hubFeed) Subscribe(key, prefix string, from int64) (httpapi.Subscription, error) {
	s, err := f.Hub.Subscribe(bus.Filter{Key: key, Prefix: prefix}, from)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// TestConsoleLogin checks the page against a server that needs a token: it
// asks for it, says so clearly when it is wrong, and goes live with the
// right one (the feed too, which a browser can only authorize with the
// cookie).
func TestConsoleLogin(t *testing.T) {
	b := startBrowser(t)
	hub := bus.New(bus.Options{Encode: httpapi.AppendEvent})
	store := kv.New(kv.Options{Publisher: hub})
	api := httpapi.New(httpapi.Options{Store: store, Feed: hubFeed{hub}})
	srv := httptest.NewServer(tokenGate("s3cret", api))
	t.Cleanup(func() {
		api.Shutdown(t.Context())
		srv.Close()
		hub.Close()
		store.Close()
	})
	if _, err := store.Set(t.Context(), "secret-key", []byte(`"secret value"`)); err != nil {
		t.Fatal(err)
	}

	b.open(srv.URL + "/")
	b.waitFor("the login form", `!document.getElementById('login').hidden && document.body.dataset.state === 'login'`)
	if rows := b.table(); len(rows) != 0 {
		t.Errorf("the page shows rows before the login: %v", rows)
	}

	b.typeInto("token", "wrong")
	b.click("Log in", `#login-form button`)
	b.waitFor("the refusal", `document.getElementById('login-msg').textContent.startsWith('Wrong token')`)
	if b.str(`String(document.getElementById('login').hidden)`) != "false" {
		t.Error("the login form closed after a wrong token")
	}

	b.typeInto("token", "s3cret")
	b.click("Log in", `#login-form button`)
	b.waitFor("the page to go live", `document.getElementById('login').hidden && document.body.dataset.state === 'live'`)
	b.waitTable("after the login", []row{{"secret-key", "secret value"}})
	if _, err := store.Set(t.Context(), "over-the-feed", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	b.waitTable("a change over the feed", []row{{"over-the-feed", "1"}, {"secret-key", "secret value"}})
	if got := b.str(`document.cookie`); got != "" {
		t.Errorf("the page can read the token cookie (%q): it must be HttpOnly", got)
	}
	b.checkClean()
}
