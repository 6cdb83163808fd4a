package main_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/wire"
)

// TestConsoleLeases checks that the console shows which keys expire and
// when: a key with a lease shows the time left on it, counting down, and
// renewed by keep-alives (which the feed does not carry); one without
// shows nothing; an expiry deletes the row and shows in the feed with its
// reason; and editing a leased key keeps it on its lease.
func TestConsoleLeases(t *testing.T) {
	b := startBrowser(t)
	srv := kvstest.Start(t, "-backend", "memory")
	c := newClient(t, srv)
	long := c.grant(0, time.Hour)
	short := c.grant(0, 4*time.Second)
	c.setLease("held", `"a"`, long)
	c.set("plain", `"b"`)

	b.open(srv.URL + "/")
	b.waitFor("the page to go live", `document.body.dataset.state === 'live'`)
	expires := func(key string) string {
		return b.str(`document.querySelector('#rows tr[data-key=` + strconv.Quote(key) + `]')?.cells[3].textContent ?? 'missing'`)
	}
	b.waitFor("held's expiry", `document.querySelector('#rows tr[data-key="held"]').cells[3].textContent.startsWith('in 59 min')`)
	if got := expires("plain"); got != "" {
		t.Fatalf("plain, without a lease, shows %q", got)
	}
	if got := b.str(`document.querySelector('#rows tr[data-key="held"]').dataset.lease`); got != strconv.FormatInt(long, 10) {
		t.Fatalf("held's row names lease %q, want %d", got, long)
	}

	// A key set while the page is open, into a lease it has not seen.
	c.setLease("brief", `"c"`, short)
	b.waitFor("brief's expiry", `/^in [1-4] s$/.test(document.querySelector('#rows tr[data-key="brief"]')?.cells[3].textContent)`)
	// Keep-alives renew it: the page reads the time left again.
	for range 3 {
		time.Sleep(2 * time.Second)
		c.keepAlive(short)
	}
	if got := expires("brief"); got == "missing" {
		t.Fatalf("brief expired although kept alive: %s", b.dump())
	}
	b.waitFor("the expiry in the feed", `[...document.querySelectorAll('#feed li')].some((li) => li.textContent.endsWith('deletebriefexpired'))`)
	b.waitFor("brief's row to go", `!document.querySelector('#rows tr[data-key="brief"]')`)

	// Editing a leased key keeps it on its lease.
	b.click("held's row", `#rows tr[data-key="held"]`)
	b.waitFor("the form to edit held", `document.getElementById('editing').textContent.includes('lease `+strconv.FormatInt(long, 10)+`')`)
	b.typeInto("value", "changed")
	b.click("Set", "#set")
	b.waitFor("the set", `document.getElementById('msg').textContent.startsWith('Set held')`)
	if e := c.get("held"); e == nil || e.Lease != long || string(e.Value) != `"changed"` {
		t.Fatalf("held after the console's set: %+v, want it changed and still on lease %d", e, long)
	}
	if l, _ := c.leaseTTL(long); !strings.Contains(strings.Join(l.Keys, ","), "held") || l.GrantedTTL != wire.Duration(time.Hour) {
		t.Fatalf("lease %d: %+v", long, l)
	}
	b.checkClean()
}
