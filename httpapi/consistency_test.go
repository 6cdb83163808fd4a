package httpapi_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/kvsdb/kvs/httpapi"
)

// TestReadConsistency: every read waits for the read barrier unless it
// asks for consistency=local; a failed barrier is a 503 that says how to
// read anyway; a bad consistency is a 400; writes never wait for it.
func TestReadConsistency(t *testing.T) {
	var (
		calls   atomic.Int64
		failing atomic.Bool
	)
	srv, store := newAPI(t, httpapi.Options{ReadBarrier: func(ctx context.Context) error {
		calls.Add(1)
		if failing.Load() {
			return errors.New("bus: kafka: no answer from the broker")
		}
		return nil
	}})
	if _, err := store.Set(t.Context(), "k", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantBarrier              bool
		wantBody                 string // a part of the body
	}{
		{"get by query", "GET", "/get?key=k", "", 200, true, `"Value":1`},
		{"get by body", "POST", "/get", `{"Key":"k"}`, 200, true, `"Value":1`},
		{"explicit linearizable", "GET", "/get?key=k&consistency=linearizable", "", 200, true, `"Value":1`},
		{"local get by query", "GET", "/get?key=k&consistency=local", "", 200, false, `"Value":1`},
		{"local get by body", "POST", "/get?consistency=local", `{"Key":"k"}`, 200, false, `"Value":1`},
		{"case-insensitive", "GET", "/get?key=k&Consistency=LOCAL", "", 200, false, `"Value":1`},
		{"escaped name", "GET", "/get?key=k&consist%65ncy=local", "", 200, false, `"Value":1`},
		{"missing key waits too", "GET", "/get?key=nope", "", 404, true, `key not found`},
		{"getall", "GET", "/getall", "", 200, true, `{"k":1}`},
		{"local getall", "GET", "/getall?consistency=local", "", 200, false, `{"k":1}`},
		{"head getall", "HEAD", "/getall", "", 200, true, ``},
		{"local head getall", "HEAD", "/getall?consistency=local", "", 200, false, ``},
		{"list", "GET", "/list?prefix=k", "", 200, true, `"Revision":1`},
		{"list by body", "POST", "/list", `{"Prefix":"k"}`, 200, true, `"Revision":1`},
		{"local list", "GET", "/list?prefix=k&consistency=local", "", 200, false, `"Revision":1`},
		{"head list", "HEAD", "/list", "", 200, true, ``},
		{"local head list", "HEAD", "/list?consistency=local", "", 200, false, ``},
		{"bad consistency on a list", "GET", "/list?consistency=x", "", 400, false, `bad consistency`},
		{"bad consistency", "GET", "/get?key=k&consistency=stale", "", 400, false, `bad consistency \"stale\"`},
		{"twice", "GET", "/get?key=k&consistency=local&consistency=local", "", 400, false, `given more than once`},
		{"bad escape", "GET", "/getall?consistency=%zz", "", 400, false, `malformed query`},
		{"set does not wait", "POST", "/set", `{"Key":"k","Value":2}`, 200, false, `"Revision":2`},
		{"delete does not wait", "POST", "/delete", `{"Key":"k"}`, 200, false, `"Revision":3`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := calls.Load()
			a := do(t, tt.method, srv.URL+tt.path, tt.body)
			if a.code != tt.wantCode || !strings.Contains(a.body, tt.wantBody) {
				t.Errorf("got %d %s, want %d with %s", a.code, a.body, tt.wantCode, tt.wantBody)
			}
			if waited := calls.Load() > before; waited != tt.wantBarrier {
				t.Errorf("waited for the barrier: got %v, want %v", waited, tt.wantBarrier)
			}
		})
	}

	failing.Store(true)
	a := do(t, "GET", srv.URL+"/get?key=x", "")
	if a.code != 503 || !strings.Contains(a.body, "no answer from the broker") || !strings.Contains(a.body, "consistency=local") {
		t.Errorf("failed barrier: got %d %s, want 503 with the reason and the way out", a.code, a.body)
	}
	if a := do(t, "GET", srv.URL+"/list", ""); a.code != 503 {
		t.Errorf("failed barrier, list: got %d %s, want 503", a.code, a.body)
	}
	if a := do(t, "GET", srv.URL+"/getall", ""); a.code != 503 {
		t.Errorf("failed barrier, getall: got %d %s, want 503", a.code, a.body)
	}
	if a := do(t, "GET", srv.URL+"/getall?consistency=local", ""); a.code != 200 {
		t.Errorf("failed barrier, local getall: got %d %s, want 200", a.code, a.body)
	}
}
