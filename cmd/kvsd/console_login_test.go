package main_test

import (
	"net/http/httptest"
	"testing"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/hubfeed"
	"github.com/kvsdb/kvs/kv"
)

// tokenServer serves the API with the console and a feed, needing token,
// with one key set: secret-key.
func tokenServer(t *testing.T, token string) (*httptest.Server, *kv.Store, *bus.Hub) {
	t.Helper()
	hub := bus.New(bus.Options{Encode: httpapi.AppendEvent})
	store := kv.New(kv.Options{Publisher: hub})
	api := httpapi.New(httpapi.Options{Store: store, Feed: hubfeed.Feed{Hub: hub}, Token: token})
	srv := httptest.NewServer(api)
	t.Cleanup(func() {
		api.Shutdown(t.Context())
		srv.Close()
		hub.Close()
		store.Close()
	})
	if _, err := store.Set(t.Context(), "secret-key", []byte(`"secret value"`)); err != nil {
		t.Fatal(err)
	}
	return srv, store, hub
}

// TestConsoleLogin checks the page against a server that needs a token: it
// asks for it, says so clearly when it is wrong, and goes live with the
// right one (the feed too, which a browser can only authorize with the
// cookie).
func TestConsoleLogin(t *testing.T) {
	b := startBrowser(t)
	srv, store, _ := tokenServer(t, "s3cret")

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
