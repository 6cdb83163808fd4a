package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/wire"
)

func newClient(t testing.TB, addr string, opts client.Options) *client.Client {
	t.Helper()
	c, err := client.New(addr, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func TestParseAddress(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "127.0.0.1:23333", want: "http://127.0.0.1:23333"},
		{in: "localhost", want: "http://localhost:23333"},
		{in: "[::1]:9", want: "http://[::1]:9"},
		{in: "::1", want: "http://[::1]:23333"},
		{in: "http://h:1", want: "http://h:1"},
		{in: "https://h/kvs/", want: "https://h/kvs"},
		{in: "ftp://h", bad: true},
		{in: "http://", bad: true},
		{in: "http://u:p@h", bad: true},
		{in: "http://h/?q=1", bad: true},
		{in: "http://h/#f", bad: true},
	}
	for _, tt := range tests {
		u, err := client.ParseAddress(tt.in)
		switch {
		case tt.bad && err == nil:
			t.Errorf("%q: got %s, want an error", tt.in, u)
		case !tt.bad && err != nil:
			t.Errorf("%q: %v", tt.in, err)
		case !tt.bad && u.String() != tt.want:
			t.Errorf("%q: got %s, want %s", tt.in, u, tt.want)
		}
	}
}

func TestNewOptions(t *testing.T) {
	t.Parallel()
	pem := filepath.Join(t.TempDir(), "none.pem")
	os.WriteFile(pem, []byte("not a certificate"), 0o600)
	tests := []struct {
		name string
		addr string
		opts client.Options
		want string // in the error; "" for none
	}{
		{"ok", "h:1", client.Options{Token: "abc", Timeout: time.Second}, ""},
		{"bad address", "ftp://h", client.Options{}, `address "ftp://h"`},
		{"token with a space", "h", client.Options{Token: "a b"}, "printable ASCII"},
		{"negative timeout", "h", client.Options{Timeout: -1}, "negative"},
		{"http client and tls", "h", client.Options{HTTPClient: &http.Client{}, CAFile: "x"}, "configure TLS in the HTTPClient"},
		{"missing ca file", "h", client.Options{CAFile: filepath.Join(t.TempDir(), "missing")}, "no such file"},
		{"no certificate", "h", client.Options{CAFile: pem}, "holds no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := client.New(tt.addr, tt.opts)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("got %v, want %q", err, tt.want)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"KVS_TOKEN": "t0k", "KVS_CACERT": "/ca.pem"}
	addr, opts := client.Environment(func(k string) string { return env[k] })
	if addr != client.DefaultAddress || opts.Token != "t0k" || opts.CAFile != "/ca.pem" {
		t.Errorf("got %q %+v", addr, opts)
	}
	env["KVS_ADDRESS"] = "https://kvs.example:1"
	if addr, _ := client.Environment(func(k string) string { return env[k] }); addr != "https://kvs.example:1" {
		t.Errorf("got address %q", addr)
	}
}

// TestCalls checks Get, Set, Delete, List and Revision against the real
// API, and the errors callers test.
func TestCalls(t *testing.T) {
	t.Parallel()
	srv := newServer(t, bus.Options{}, httpapi.Options{MaxValueBytes: 100})
	c := newClient(t, srv.Addr, client.Options{})
	ctx := t.Context()

	if rev, err := c.Revision(ctx, nil); err != nil || rev != 0 {
		t.Fatalf("revision of an empty store: %d, %v", rev, err)
	}
	rev, err := c.Set(ctx, "City", client.String("<Ahmedabad & co>"), nil)
	if err != nil || rev != 1 {
		t.Fatalf("set: %d, %v", rev, err)
	}
	if _, err := c.Set(ctx, "cfg", json.RawMessage(`{"retries": 3, "ratio": 0.50}`), nil); err != nil {
		t.Fatal(err)
	}
	e, err := c.Get(ctx, "City", nil)
	if err != nil || string(e.Value) != `"<Ahmedabad & co>"` || e.Revision != 1 || e.Version != 1 || e.CreateRevision != 1 {
		t.Fatalf("get: %+v, %v", e, err)
	}
	if e, err := c.Get(ctx, "cfg", &client.ReadOptions{Local: true}); err != nil || string(e.Value) != `{"retries":3,"ratio":0.50}` {
		t.Fatalf("get cfg: %s, %v", e.Value, err)
	}

	// Compare-and-swap.
	if rev, err := c.Set(ctx, "City", client.String("Mumbai"), &client.WriteOptions{IfRevision: new(int64(1))}); err != nil || rev != 3 {
		t.Fatalf("conditional set: %d, %v", rev, err)
	}
	_, err = c.Set(ctx, "City", client.String("Pune"), &client.WriteOptions{IfRevision: new(int64(1))})
	var ce *client.Error
	if !errors.Is(err, client.ErrConditionFailed) || !errors.As(err, &ce) || ce.Current == nil || ce.Current.Revision != 3 || string(ce.Current.Value) != `"Mumbai"` {
		t.Fatalf("failed condition: %v (%+v)", err, ce)
	}
	_, err = c.Set(ctx, "new", client.String("x"), &client.WriteOptions{IfRevision: new(int64(5))})
	if !errors.As(err, &ce) || ce.Status != 409 || ce.Current != nil {
		t.Fatalf("condition on an absent key: %v", err)
	}
	if _, err := c.Set(ctx, "new", client.String("x"), &client.WriteOptions{IfRevision: new(int64(0))}); err != nil {
		t.Fatalf("create only: %v", err)
	}
	if _, err := c.Set(ctx, "new", client.String("y"), &client.WriteOptions{IfRevision: new(int64(0))}); !errors.Is(err, client.ErrConditionFailed) {
		t.Fatalf("create only, twice: %v", err)
	}

	if _, err := c.Get(ctx, "absent", nil); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get absent: %v", err)
	}
	if _, err := c.Delete(ctx, "absent", nil); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("delete absent: %v", err)
	}
	if _, err := c.Delete(ctx, "new", &client.WriteOptions{IfRevision: new(int64(1))}); !errors.Is(err, client.ErrConditionFailed) {
		t.Fatalf("conditional delete: %v", err)
	}
	if rev, err := c.Delete(ctx, "new", nil); err != nil || rev != 5 {
		t.Fatalf("delete: %d, %v", rev, err)
	}

	l, err := c.List(ctx, "", nil)
	if err != nil || l.Revision != 5 || len(l.Entries) != 2 || l.Entries[0].Key != "City" || l.Entries[1].Key != "cfg" ||
		l.Entries[0].Revision != 3 || l.Entries[0].Version != 2 || string(l.Entries[1].Value) != `{"retries":3,"ratio":0.50}` {
		t.Fatalf("list: %+v, %v", l, err)
	}
	if l, err := c.List(ctx, "c", nil); err != nil || len(l.Entries) != 1 || l.Entries[0].Key != "cfg" {
		t.Fatalf("list c: %+v, %v", l, err)
	}
	if l, err := c.List(ctx, "zz", nil); err != nil || l.Entries == nil || len(l.Entries) != 0 {
		t.Fatalf("list zz: %+v, %v", l, err)
	}
	if l, err := c.List(ctx, "c", &client.ReadOptions{Local: true}); err != nil || len(l.Entries) != 1 {
		t.Fatalf("local list: %+v, %v", l, err)
	}
	if rev, err := c.Revision(ctx, &client.ReadOptions{Local: true}); err != nil || rev != 5 {
		t.Fatalf("local revision: %d, %v", rev, err)
	}
	if rev, err := c.Revision(ctx, nil); err != nil || rev != 5 {
		t.Fatalf("revision: %d, %v", rev, err)
	}

	// Errors the client finds itself, and those the server answers.
	tests := []struct {
		name string
		call func() error
		want error
	}{
		{"empty key", func() error { _, err := c.Get(ctx, "", nil); return err }, client.ErrInvalid},
		{"invalid utf-8 key", func() error { _, err := c.Set(ctx, "\xff", client.String("x"), nil); return err }, client.ErrInvalid},
		{"null value", func() error { _, err := c.Set(ctx, "k", json.RawMessage(" null "), nil); return err }, client.ErrInvalid},
		{"no value", func() error { _, err := c.Set(ctx, "k", nil, nil); return err }, client.ErrInvalid},
		{"not json", func() error { _, err := c.Set(ctx, "k", json.RawMessage("{"), nil); return err }, client.ErrInvalid},
		{"control character", func() error { _, err := c.Set(ctx, "a\x01", client.String("x"), nil); return err }, client.ErrInvalid},
		{"too large", func() error { _, err := c.Set(ctx, "k", client.String(strings.Repeat("x", 200)), nil); return err }, client.ErrTooLarge},
		{"negative condition", func() error {
			_, err := c.Set(ctx, "k", client.String("x"), &client.WriteOptions{IfRevision: new(int64(-1))})
			return err
		}, client.ErrInvalid},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, err, tt.want)
		}
	}
}

// TestLocalReads checks that ReadOptions.Local sends consistency=local,
// and that reads without it do not.
func TestLocalReads(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var queries []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		queries = append(queries, r.Method+" "+r.URL.Path+"?"+r.URL.RawQuery)
		mu.Unlock()
		w.Header().Set(wire.RevisionHeader, "1")
		switch r.URL.Path {
		case wire.PathGet:
			w.Write([]byte(`{"Key":"k","Value":1,"Revision":1,"CreateRevision":1,"Version":1}`))
		case wire.PathList:
			w.Write([]byte(`{"Revision":1,"Entries":[]}`))
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, client.Options{})
	local := &client.ReadOptions{Local: true}
	c.Get(t.Context(), "k", local)
	c.Get(t.Context(), "k", nil)
	c.List(t.Context(), "p/", local)
	c.List(t.Context(), "", nil)
	c.Revision(t.Context(), local)
	want := []string{
		"POST /get?consistency=local", "POST /get?",
		"GET /list?consistency=local&prefix=p%2F", "GET /list?",
		"HEAD /list?consistency=local",
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(queries, "\n") != strings.Join(want, "\n") {
		t.Errorf("got requests\n%s\nwant\n%s", strings.Join(queries, "\n"), strings.Join(want, "\n"))
	}
}

// TestUnreachable checks the errors of calls that get no answer: a refused
// connection, Options.Timeout, and the caller's context.
func TestUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	_, err = newClient(t, down, client.Options{}).Get(t.Context(), "k", nil)
	var ue *client.UnreachableError
	if !errors.Is(err, client.ErrUnreachable) || !errors.Is(err, syscall.ECONNREFUSED) || !errors.As(err, &ue) || ue.Timeout || ue.Addr != down {
		t.Errorf("refused: got %v", err)
	}

	// A server that accepts connections and never answers.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	go func() {
		for {
			c, err := silent.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	c := newClient(t, silent.Addr().String(), client.Options{Timeout: 50 * time.Millisecond})
	_, err = c.Set(t.Context(), "k", client.String("v"), nil)
	if !errors.Is(err, client.ErrUnreachable) || !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &ue) || !ue.Timeout {
		t.Errorf("timeout: got %v", err)
	}
	_, err = c.Subscribe(t.Context(), client.SubscribeOptions{})
	if !errors.As(err, &ue) || !ue.Timeout {
		t.Errorf("subscribe timeout: got %v", err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = newClient(t, silent.Addr().String(), client.Options{}).Get(ctx, "k", nil)
	if !errors.Is(err, context.Canceled) || errors.Is(err, client.ErrUnreachable) {
		t.Errorf("cancelled: got %v", err)
	}
}

// TestNotKVS checks the errors of answers that kvsd would not give.
func TestNotKVS(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == wire.PathGet {
			w.Write([]byte("<html>hello</html>"))
			return
		}
		http.Error(w, "teapot", http.StatusTeapot)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, client.Options{})
	var pe *client.ProtocolError
	if _, err := c.Get(t.Context(), "k", nil); !errors.Is(err, client.ErrProtocol) || !errors.As(err, &pe) || pe.Status != 200 || pe.Body != "<html>hello</html>" {
		t.Errorf("get: got %v", err)
	}
	if _, err := c.Set(t.Context(), "k", client.String("v"), nil); !errors.As(err, &pe) || pe.Status != 418 || pe.Body != "teapot" {
		t.Errorf("set: got %v", err)
	}
}

// TestAuthAndReady checks ErrUnauthorized and Ready.
func TestAuthAndReady(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	notReady := errors.New("kafka: broker unreachable")
	readyErr := notReady
	srv := newServer(t, bus.Options{}, httpapi.Options{Token: "s3cret-token-0123", Ready: func() error {
		mu.Lock()
		defer mu.Unlock()
		return readyErr
	}})
	ctx := t.Context()
	for _, token := range []string{"", "wrong"} {
		c := newClient(t, srv.Addr, client.Options{Token: token})
		if _, err := c.Get(ctx, "k", nil); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("token %q: get: got %v", token, err)
		}
		if _, err := c.Revision(ctx, nil); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("token %q: revision (HEAD): got %v", token, err)
		}
		if _, err := c.Subscribe(ctx, client.SubscribeOptions{}); !errors.Is(err, client.ErrUnauthorized) {
			t.Errorf("token %q: subscribe: got %v", token, err)
		}
		for _, err := range c.Watch(ctx, client.WatchOptions{From: 1}) {
			if !errors.Is(err, client.ErrUnauthorized) {
				t.Errorf("token %q: watch: got %v", token, err)
			}
			break
		}
	}
	c := newClient(t, srv.Addr, client.Options{Token: "s3cret-token-0123"})
	if _, err := c.Set(ctx, "k", client.String("v"), nil); err != nil {
		t.Fatal(err)
	}
	err := c.Ready(ctx)
	var e *client.Error
	if !errors.Is(err, client.ErrUnavailable) || !errors.As(err, &e) || !strings.Contains(e.Message, "broker unreachable") {
		t.Errorf("ready: got %v", err)
	}
	mu.Lock()
	readyErr = nil
	mu.Unlock()
	if err := c.Ready(ctx); err != nil {
		t.Errorf("ready: %v", err)
	}
}
