package httpapi_test

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/wire"
)

// TestLeaseRoutes checks the lease routes and the lease members of /set,
// /get, /list and /txn, step by step, with the answers' exact shapes.
func TestLeaseRoutes(t *testing.T) {
	t.Parallel()
	srv, store := newAPI(t, httpapi.Options{})
	u := srv.URL
	steps := []struct {
		name, method, path, body string
		wantCode                 int
		wantBody                 string // exact, or a prefix ending in "..."
	}{
		{"grant", "POST", "/lease/grant", `{"TTL":"1h","ID":7}`, 200, `{"ID":7,"TTL":"1h0m0s","GrantedTTL":"1h0m0s"}`},
		{"grant in seconds", "POST", "/lease/grant", `{"ttl":90,"id":8}`, 200, `{"ID":8,"TTL":"1m30s","GrantedTTL":"1m30s"}`},
		{"set with lease", "POST", "/set", `{"Key":"a","Value":1,"Lease":7}`, 200, `{"Key":"a","Revision":1,"Lease":7}`},
		{"set with lease 2", "POST", "/set", `{"Key":"b","Value":2,"lease":7}`, 200, `{"Key":"b","Revision":2,"Lease":7}`},
		{"set without", "POST", "/set", `{"Key":"c","Value":3}`, 200, `{"Key":"c","Revision":3}`},
		{"get", "GET", "/get?key=a", "", 200, `{"Key":"a","Value":1,"Revision":1,"CreateRevision":1,"Version":1,"Lease":7,"TTL":"...`},
		{"ttl", "GET", "/lease/ttl?id=7", "", 200, `{"ID":7,"TTL":"...`},
		{"keepalive", "POST", "/lease/keepalive", `{"ID":7}`, 200, `{"Leases":[{"ID":7,"TTL":"1h0m0s","GrantedTTL":"1h0m0s"}]}`},
		{"keepalive some", "POST", "/lease/keepalive", `{"IDs":[8,99,7],"ID":98}`, 200,
			`{"Leases":[{"ID":8,"TTL":"1m30s","GrantedTTL":"1m30s"},{"ID":7,"TTL":"1h0m0s","GrantedTTL":"1h0m0s"}],"NotFound":[99,98]}`},
		{"txn with lease", "POST", "/txn", `{"Then":[{"Op":"set","Key":"d","Value":4,"Lease":8},{"Op":"get","Key":"a"}]}`, 200,
			`{"Succeeded":true,"Revision":4,"Results":[{"Op":"set","Key":"d","Found":true,"Value":4,"Revision":4,"CreateRevision":4,"Version":1,"Lease":8,"TTL":"...`},
		{"revoke", "POST", "/lease/revoke", `{"ID":7}`, 200, `{"ID":7,"Revision":5}`},
		{"gone", "GET", "/get?key=a", "", 404, `{"error":"key not found"}`},
		{"revoke again", "POST", "/lease/revoke", `{"ID":7}`, 404, `{"error":"lease not found: never granted, revoked, or expired"}`},
		{"keepalive gone", "POST", "/lease/keepalive", `{"ID":7}`, 404, `{"error":"lease not found","NotFound":[7]}`},
		{"ttl gone", "POST", "/lease/ttl", `{"ID":7}`, 404, `{"error":"lease not found: never granted, revoked, or expired"}`},
		{"set into gone", "POST", "/set", `{"Key":"a","Value":1,"Lease":7}`, 404, `{"error":"lease not found: never granted, revoked, or expired"}`},
		{"txn into gone", "POST", "/txn", `{"Then":[{"Op":"set","Key":"x","Value":1},{"Op":"set","Key":"y","Value":1,"Lease":7}]}`, 404,
			`{"error":"lease not found: lease 7 of the set of \"y\": never granted, revoked, or expired; the transaction changed nothing"}`},
		{"list", "GET", "/lease/list", "", 200, `{"Leases":[{"ID":8,"TTL":"...`},
		{"set with ttl", "POST", "/set", `{"Key":"e","Value":5,"TTL":"10s","IfRevision":0}`, 200, `{"Key":"e","Revision":6,"Lease":...`},
		{"set with ttl fails", "POST", "/set", `{"Key":"e","Value":5,"TTL":"10s","IfRevision":0}`, 409, `{"error":"revision condition failed","Current":{"Key":"e","Value":5,"Revision":6,"CreateRevision":6,"Version":1,"Lease":...`},
		{"list keys", "GET", "/list", "", 200, `{"Revision":6,"Entries":[{"Key":"c","Value":3,"Revision":3,"CreateRevision":3,"Version":1},{"Key":"d","Value":4,"Revision":4,"CreateRevision":4,"Version":1,"Lease":8,"TTL":"...`},
	}
	for _, st := range steps {
		got := do(t, st.method, u+st.path, st.body)
		body := strings.TrimSuffix(got.body, "\n")
		want, prefix := strings.CutSuffix(st.wantBody, "...")
		if got.code != st.wantCode || !prefix && body != want || prefix && !strings.HasPrefix(body, want) {
			t.Fatalf("%s: %s %s %s\ngot  %d %s\nwant %d %s", st.name, st.method, st.path, st.body, got.code, body, st.wantCode, st.wantBody)
		}
	}
	// The failed set with a TTL left no lease behind: only 8 and e's.
	if ls := store.Leases(); len(ls) != 2 {
		t.Fatalf("leases: got %+v, want two", ls)
	}
}

// TestLeaseBadInput checks that every malformed lease request gets a 4xx
// JSON error and changes nothing.
func TestLeaseBadInput(t *testing.T) {
	t.Parallel()
	srv, store := newAPI(t, httpapi.Options{MaxLeaseTTL: time.Hour})
	u := srv.URL
	do(t, "POST", u+"/lease/grant", `{"TTL":"1m","ID":5}`)
	do(t, "POST", u+"/set", `{"Key":"k","Value":1,"Lease":5}`)
	tests := []struct {
		name, method, path, body string
		code                     int
		msg                      string
	}{
		{"grant no body", "POST", "/lease/grant", ``, 400, "empty request body"},
		{"grant no TTL", "POST", "/lease/grant", `{}`, 400, `missing "TTL"`},
		{"grant TTL 0", "POST", "/lease/grant", `{"TTL":0}`, 400, "must be positive"},
		{"grant TTL 0s", "POST", "/lease/grant", `{"TTL":"0s"}`, 400, "must be positive"},
		{"grant negative", "POST", "/lease/grant", `{"TTL":"-5s"}`, 400, "must be positive"},
		{"grant absurd", "POST", "/lease/grant", `{"TTL":"1000000h"}`, 400, "over the limit of 1h0m0s"},
		{"grant over the limit", "POST", "/lease/grant", `{"TTL":3601}`, 400, "over the limit"},
		{"grant huge number", "POST", "/lease/grant", `{"TTL":1e300}`, 400, "a TTL is a duration"},
		{"grant sub-millisecond", "POST", "/lease/grant", `{"TTL":"1500us"}`, 400, "whole number of milliseconds"},
		{"grant bad string", "POST", "/lease/grant", `{"TTL":"soon"}`, 400, "a TTL is a duration"},
		{"grant bool", "POST", "/lease/grant", `{"TTL":true}`, 400, "a TTL is a duration"},
		{"grant bad JSON", "POST", "/lease/grant", `{"TTL":`, 400, "malformed JSON"},
		{"grant ID in use", "POST", "/lease/grant", `{"TTL":"1m","ID":5}`, 409, "a lease with this ID exists"},
		{"grant ID negative", "POST", "/lease/grant", `{"TTL":"1m","ID":-1}`, 400, `"ID" must be a lease ID`},
		{"grant ID too large", "POST", "/lease/grant", `{"TTL":"1m","ID":9007199254740992}`, 400, `"ID" must be a lease ID`},
		{"grant ID float", "POST", "/lease/grant", `{"TTL":"1m","ID":1.5}`, 400, `"ID" must be a lease ID`},
		{"keepalive nothing", "POST", "/lease/keepalive", `{}`, 400, `missing "ID" or "IDs"`},
		{"keepalive unknown", "POST", "/lease/keepalive", `{"ID":6}`, 404, "lease not found"},
		{"keepalive bad IDs", "POST", "/lease/keepalive", `{"IDs":[5,0]}`, 400, "is not a lease ID"},
		{"keepalive IDs not array", "POST", "/lease/keepalive", `{"IDs":5}`, 400, "array of lease IDs"},
		{"revoke no ID", "POST", "/lease/revoke", `{}`, 400, `missing "ID"`},
		{"revoke ID 0", "POST", "/lease/revoke", `{"ID":0}`, 400, `"ID" must be a lease ID`},
		{"revoke unknown", "POST", "/lease/revoke", `{"ID":6}`, 404, "lease not found"},
		{"ttl no id", "GET", "/lease/ttl", ``, 400, "missing ?id=N"},
		{"ttl bad id", "GET", "/lease/ttl?id=x", ``, 400, `"id" must be a lease ID`},
		{"ttl unknown", "GET", "/lease/ttl?id=6", ``, 404, "lease not found"},
		{"set lease and TTL", "POST", "/set", `{"Key":"k","Value":2,"Lease":5,"TTL":"1m"}`, 400, `give "Lease" or "TTL", not both`},
		{"set unknown lease", "POST", "/set", `{"Key":"k","Value":2,"Lease":6}`, 404, "lease not found"},
		{"set bad lease", "POST", "/set", `{"Key":"k","Value":2,"Lease":"5"}`, 400, `"Lease" must be a lease ID`},
		{"set bad TTL", "POST", "/set", `{"Key":"k","Value":2,"TTL":-1}`, 400, "must be positive"},
		{"set absurd TTL", "POST", "/set", `{"Key":"k","Value":2,"TTL":"2h"}`, 400, "over the limit"},
		{"txn lease on a delete", "POST", "/txn", `{"Then":[{"Op":"delete","Key":"k","Lease":5}]}`, 400, `takes no "Lease"`},
		{"txn bad lease", "POST", "/txn", `{"Then":[{"Op":"set","Key":"k","Value":1,"Lease":-5}]}`, 400, `"Lease" must be a lease ID`},
		{"txn unknown lease", "POST", "/txn", `{"Then":[{"Op":"set","Key":"k","Value":1,"Lease":6}]}`, 404, "lease not found"},
		{"list wrong method", "POST", "/lease/list", ``, 405, "method not allowed"},
	}
	for _, tt := range tests {
		got := do(t, tt.method, u+tt.path, tt.body)
		var e wire.Error
		if got.code != tt.code || json.Unmarshal([]byte(got.body), &e) != nil || !strings.Contains(e.Error, tt.msg) {
			t.Errorf("%s: got %d %s, want %d with %q", tt.name, got.code, strings.TrimSpace(got.body), tt.code, tt.msg)
		}
	}
	if e, _ := store.Get("k"); store.Rev() != 1 || e.Lease != 5 || string(e.Value) != "1" {
		t.Fatalf("the refusals changed the store: revision %d, k %+v", store.Rev(), e)
	}
	if ls := store.Leases(); len(ls) != 1 || ls[0].ID != 5 || ls[0].TTL != time.Minute {
		t.Fatalf("the refusals changed the leases: %+v", ls)
	}
}

// TestLeaseExpiredKeepAlive checks that a lease whose TTL has passed is
// not found, for a keep-alive too, even before its end is applied: a 404
// JSON error for each request that names it, and nothing changed.
func TestLeaseExpiredKeepAlive(t *testing.T) {
	t.Parallel()
	srv, store := newAPI(t, httpapi.Options{})
	l, err := store.Grant(t.Context(), 0, time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, ok := store.LeaseRemaining(l.ID); !ok || time.Now().After(deadline) {
			break
		}
	}
	id := strconv.FormatInt(l.ID, 10)
	for _, r := range []struct{ name, method, path, body string }{
		{"keep-alive", "POST", "/lease/keepalive", `{"ID":` + id + `}`},
		{"set", "POST", "/set", `{"Key":"k","Value":1,"Lease":` + id + `}`},
		{"transaction's set", "POST", "/txn", `{"Then":[{"Op":"set","Key":"k","Value":1,"Lease":` + id + `}]}`},
		{"revoke", "POST", "/lease/revoke", `{"ID":` + id + `}`},
		{"ttl", "GET", "/lease/ttl?id=" + id, ``},
	} {
		got := do(t, r.method, srv.URL+r.path, r.body)
		var e wire.Error
		if got.code != 404 || json.Unmarshal([]byte(got.body), &e) != nil || !strings.Contains(e.Error, "lease not found") {
			t.Errorf("%s of an expired lease: got %d %s, want 404 lease not found", r.name, got.code, got.body)
		}
	}
	if _, ok := store.Get("k"); ok || store.Rev() != 0 {
		t.Fatalf("the refusals changed the store: revision %d", store.Rev())
	}
}

// TestLeaseEndAtomicInList lists a lease's keys over and over while the
// lease is revoked, and while it expires: every answer holds all of its
// keys at the revision of the last set, or none at the revision after it
// (the one revision of the lease's end); never some of them.
func TestLeaseEndAtomicInList(t *testing.T) {
	t.Parallel()
	srv, store := newAPI(t, httpapi.Options{})
	const n = 16
	for round := range 6 {
		revoke := round%2 == 0
		ttl := "1h"
		if !revoke {
			ttl = "2s" // long enough for n sets on a busy machine
		}
		g := do(t, "POST", srv.URL+"/lease/grant", `{"TTL":"`+ttl+`"}`)
		var l wire.Lease
		if g.code != 200 || json.Unmarshal([]byte(g.body), &l) != nil {
			t.Fatalf("grant: %d %s", g.code, g.body)
		}
		prefix := "r" + strconv.Itoa(round) + "/"
		for i := range n {
			body := `{"Key":"` + prefix + strconv.Itoa(i) + `","Value":1,"Lease":` + strconv.FormatInt(l.ID, 10) + `}`
			if a := do(t, "POST", srv.URL+"/set", body); a.code != 200 {
				t.Fatalf("round %d: set: %d %s", round, a.code, a.body)
			}
		}
		last := store.Rev()
		listed, done := make(chan struct{}), make(chan struct{})
		if revoke {
			go func() { // while the lists go on
				defer close(done)
				<-listed
				store.Revoke(t.Context(), l.ID)
			}()
		}
		lists := 0
		for deadline := time.Now().Add(30 * time.Second); ; lists++ {
			a := do(t, "GET", srv.URL+"/list?prefix="+prefix, "")
			var list wire.List
			if a.code != 200 || json.Unmarshal([]byte(a.body), &list) != nil {
				t.Fatalf("round %d: list: %d %s", round, a.code, a.body)
			}
			switch {
			case len(list.Entries) == n && list.Revision == last:
			case len(list.Entries) == 0 && list.Revision == last+1:
			default:
				t.Fatalf("round %d (revoke %v): list at revision %d holds %d of the %d keys (last set at %d)",
					round, revoke, list.Revision, len(list.Entries), n, last)
			}
			if len(list.Entries) == 0 {
				break
			}
			if lists == 0 {
				close(listed)
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the lease's keys are still there after 30s", round)
			}
			if !revoke {
				time.Sleep(time.Millisecond) // polling for the expiry
			}
		}
		if revoke {
			<-done
		}
		t.Logf("round %d (revoke %v): %d lists saw all the keys, then one none", round, revoke, lists)
	}
}
