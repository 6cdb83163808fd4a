package main_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/internal/promtext"
	"github.com/kvsdb/kvs/wire"
)

// grant grants a lease with ttl (and id, unless 0) and returns its ID.
func (c *client) grant(id int64, ttl time.Duration) int64 {
	c.t.Helper()
	code, ans, err := c.post(wire.PathLeaseGrant, wire.LeaseGrantRequest{ID: id, TTL: wire.Duration(ttl)})
	if err != nil || code != http.StatusOK {
		c.t.Fatalf("grant: %d %s %v", code, ans, err)
	}
	var l wire.Lease
	if err := json.Unmarshal(ans, &l); err != nil {
		c.t.Fatal(err)
	}
	return l.ID
}

// setLease sets key to value attached to lease and returns the revision.
func (c *client) setLease(key, value string, lease int64) int64 {
	c.t.Helper()
	code, ans, err := c.post(wire.PathSet, wire.WriteRequest{Key: key, Value: json.RawMessage(value), Lease: lease})
	if err != nil || code != http.StatusOK {
		c.t.Fatalf("set %s with lease %d: %d %s %v", key, lease, code, ans, err)
	}
	var res wire.WriteResult
	if err := json.Unmarshal(ans, &res); err != nil {
		c.t.Fatal(err)
	}
	return res.Revision
}

// keepAlive renews the leases and returns the status.
func (c *client) keepAlive(ids ...int64) int {
	c.t.Helper()
	code, ans, err := c.post(wire.PathLeaseKeepAlive, wire.LeaseRequest{IDs: ids})
	if err != nil || code != http.StatusOK && code != http.StatusNotFound {
		c.t.Fatalf("keep-alive %v: %d %s %v", ids, code, ans, err)
	}
	return code
}

// leaseTTL returns lease id as /lease/ttl describes it, and false if it is
// not found.
func (c *client) leaseTTL(id int64) (wire.Lease, bool) {
	c.t.Helper()
	code, ans, err := c.post(wire.PathLeaseTTL, wire.LeaseRequest{ID: id})
	if err != nil || code != http.StatusOK && code != http.StatusNotFound {
		c.t.Fatalf("ttl %d: %d %s %v", id, code, ans, err)
	}
	var l wire.Lease
	if code == http.StatusOK {
		if err := json.Unmarshal(ans, &l); err != nil {
			c.t.Fatal(err)
		}
	}
	return l, code == http.StatusOK
}

// TestLeaseRestartRule checks the rule for restarts on the file backend:
// a restart renews every lease, so that a lease is never expired for the
// time kvsd was down. kvsd is killed with SIGKILL when most of a lease's
// TTL has passed since its last keep-alive; after the restart the lease
// has its whole TTL again, and its keys are there until it expires, within
// the TTL and a second after the restart. A grant and a revocation
// acknowledged before the kill are there after it.
func TestLeaseRestartRule(t *testing.T) {
	t.Parallel()
	const ttl = 3 * time.Second
	dir := t.TempDir()
	srv := kvstest.Start(t, "-data", dir)
	c := newClient(t, srv)
	held := c.grant(0, ttl)
	revoked := c.grant(0, time.Hour)
	kept := c.grant(0, time.Hour)
	c.setLease("held", `1`, held)
	c.setLease("revoked", `2`, revoked)
	c.setLease("kept", `3`, kept)
	if code, ans, err := c.post(wire.PathLeaseRevoke, wire.LeaseRequest{ID: revoked}); err != nil || code != http.StatusOK {
		t.Fatalf("revoke: %d %s %v", code, ans, err)
	}
	renewed := time.Now()
	if c.keepAlive(held) != http.StatusOK {
		t.Fatal("keep-alive failed")
	}
	for time.Since(renewed) < 2*time.Second {
		time.Sleep(20 * time.Millisecond)
	}
	srv.Kill()

	srv = kvstest.Start(t, "-data", dir)
	started := time.Now()
	c = newClient(t, srv)
	l, ok := c.leaseTTL(held)
	if !ok || time.Duration(l.TTL) < ttl-time.Second || !slices.Equal(l.Keys, []string{"held"}) {
		t.Fatalf("lease after the restart, %v after its keep-alive: got %+v (found %v), want about %v left and key held", time.Since(renewed), l, ok, ttl)
	}
	if _, ok := c.leaseTTL(revoked); ok || c.get("revoked") != nil {
		t.Fatal("the revoked lease, or its key, is back after the restart")
	}
	if e := c.get("kept"); e == nil || e.Lease != kept {
		t.Fatalf("key kept after the restart: got %+v, want it with lease %d", e, kept)
	}
	for c.get("held") != nil {
		if time.Since(started) > ttl+time.Second {
			t.Fatalf("key held still there %v after the restart, want deleted within the TTL of %v + 1s", time.Since(started), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if since := time.Since(started); since < ttl-time.Second {
		t.Fatalf("key held deleted %v after the restart, before its renewed TTL of %v", since, ttl)
	}
}

// TestLeaseFeed checks what the change feed carries: a set with a lease
// names it; a revocation and an expiry are deletes of all the lease's keys
// at one revision, each with its Reason and More on all but the last; and
// no revision is skipped: grants, keep-alives and the end of a lease
// without keys take none.
func TestLeaseFeed(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{"memory", "file"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			args := []string{"-backend", backend, "-data", t.TempDir()}
			srv := kvstest.Start(t, args...)
			c := newClient(t, srv)
			ws := subscribe(t, srv, 1)
			a := c.grant(0, time.Hour)
			b := c.grant(0, 500*time.Millisecond)
			c.grant(0, 200*time.Millisecond) // no keys: expires without a revision
			c.setLease("a1", `1`, a)
			c.setLease("a2", `2`, a)
			c.setLease("b1", `3`, b)
			c.setLease("b2", `4`, b)
			c.set("plain", `5`)
			c.keepAlive(a)
			if code, ans, err := c.post(wire.PathLeaseRevoke, wire.LeaseRequest{ID: a}); err != nil || code != http.StatusOK || string(ans) != fmt.Sprintf(`{"ID":%d,"Revision":6}`+"\n", a) {
				t.Fatalf("revoke: %d %s %v", code, ans, err)
			}
			var evs []wire.Event
			for len(evs) < 9 {
				var ev wire.Event
				b, _ := json.Marshal(next(t, ws))
				json.Unmarshal(b, &ev)
				evs = append(evs, ev)
			}
			for i, ev := range evs[:5] {
				if ev.Type != "set" || ev.Revision != int64(i+1) || ev.Lease != []int64{a, a, b, b, 0}[i] {
					t.Errorf("event %d: got %+v", i, ev)
				}
			}
			want := []wire.Event{
				{Type: "delete", Key: "a1", Revision: 6, More: true, Reason: "revoked", Lease: a},
				{Type: "delete", Key: "a2", Revision: 6, Reason: "revoked", Lease: a},
				{Type: "delete", Key: "b1", Revision: 7, More: true, Reason: "expired", Lease: b},
				{Type: "delete", Key: "b2", Revision: 7, Reason: "expired", Lease: b},
			}
			if got := evs[5:]; !slices.EqualFunc(got, want, sameLeaseEvent) {
				t.Fatalf("the leases' deletes:\ngot  %+v\nwant %+v", got, want)
			}
			if _, rev := c.getall(); rev != 7 {
				t.Fatalf("revision: got %d, want 7", rev)
			}
			if backend == "file" {
				// The deletes and their reasons survive a restart, and
				// replay alike.
				ws.CloseNow()
				srv.Stop()
				srv = kvstest.Start(t, args...)
			}
			ws = subscribe(t, srv, 6)
			for i, w := range want {
				var ev wire.Event
				b, _ := json.Marshal(next(t, ws))
				json.Unmarshal(b, &ev)
				if !sameLeaseEvent(ev, w) {
					t.Fatalf("replayed event %d: got %+v, want %+v", i, ev, w)
				}
			}
		})
	}
}

func sameLeaseEvent(a, b wire.Event) bool {
	return a.Type == b.Type && a.Key == b.Key && string(a.Value) == string(b.Value) && a.Revision == b.Revision &&
		a.More == b.More && a.Reason == b.Reason && a.Lease == b.Lease
}

// TestLeaseMetrics checks kvs_leases in /metrics.
func TestLeaseMetrics(t *testing.T) {
	t.Parallel()
	srv := kvstest.Start(t, "-backend", "memory")
	c := newClient(t, srv)
	for range 3 {
		c.grant(0, time.Hour)
	}
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	e, err := promtext.Parse(string(b))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := e.Value("kvs_leases"); !ok || v != 3 {
		t.Fatalf("kvs_leases: got %v (%v), want 3", v, ok)
	}
}
