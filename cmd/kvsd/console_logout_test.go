package main_test

import (
	"testing"
	"time"
)

// TestConsoleLogout checks the console's log-out control against a server
// that needs a token: it shows once the page is logged in (also after a
// reload, when the page did not log in itself), and it ends the session on
// the server, stops the feed, empties the table and asks for the token
// again; a reload then finds no session either.
func TestConsoleLogout(t *testing.T) {
	b := startBrowser(t)
	srv, _, hub := tokenServer(t, "s3cret")

	b.open(srv.URL + "/")
	b.waitFor("the login form", `!document.getElementById('login').hidden && document.body.dataset.state === 'login'`)
	if b.str(`String(document.getElementById('logout').hidden)`) != "true" {
		t.Error("the log-out control shows before the login")
	}
	b.typeInto("token", "s3cret")
	b.click("Log in", `#login-form button`)
	b.waitFor("the page to go live", `document.body.dataset.state === 'live'`)
	b.waitFor("the log-out control", `!document.getElementById('logout').hidden`)

	// A reload keeps the session, and the control.
	b.open(srv.URL + "/")
	b.waitFor("the page to go live again", `document.body.dataset.state === 'live'`)
	b.waitTable("after the reload", []row{{"secret-key", "secret value"}})
	b.waitFor("the log-out control after the reload", `!document.getElementById('logout').hidden`)

	b.click("Log out", `#logout`)
	b.waitFor("the login form after logging out", `!document.getElementById('login').hidden && document.body.dataset.state === 'login' && document.getElementById('logout').hidden`)
	if rows := b.table(); len(rows) != 0 {
		t.Errorf("the page shows rows after logging out: %v", rows)
	}
	// The page closed its feed.
	deadline := time.Now().Add(hangGuard)
	for hub.Len() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers left after logging out, want 0", hub.Len())
		}
		time.Sleep(20 * time.Millisecond)
	}

	// The session is gone from the browser and the server.
	b.open(srv.URL + "/")
	b.waitFor("the login form after a reload", `!document.getElementById('login').hidden && document.body.dataset.state === 'login'`)
	b.checkClean()
}
