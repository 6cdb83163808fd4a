package client_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/hubfeed"
	"github.com/kvsdb/kvs/kv"
)

// server is a kvsd in the test process: the store, the feed and the HTTP
// API of the real one, on the memory log, at Addr (host:port).
type server struct {
	Addr  string
	Store *kv.Store
	Hub   *bus.Hub
	h     *httpapi.Handler
	srv   *httptest.Server
}

// newServer starts a server with the given options (Store and Feed are
// set here), stopped at the end of the test when t is not nil.
func newServer(t testing.TB, bopts bus.Options, opts httpapi.Options) *server {
	bopts.Encode = httpapi.AppendEvent
	hub := bus.New(bopts)
	store := kv.New(kv.Options{Publisher: hub})
	opts.Store, opts.Feed = store, hubfeed.Feed{Hub: hub}
	h := httpapi.New(opts)
	s := &server{Store: store, Hub: hub, h: h, srv: httptest.NewServer(h)}
	s.Addr = strings.TrimPrefix(s.srv.URL, "http://")
	if t != nil {
		t.Cleanup(s.Close)
	}
	return s
}

// Close shuts the server down: subscribers get 1001.
func (s *server) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.h.Shutdown(ctx)
	s.srv.Close()
	s.Hub.Close()
	s.Store.Close()
}

// set sets key to the JSON text value in the store, and returns the
// revision.
func (s *server) set(t testing.TB, key, value string) int64 {
	t.Helper()
	rev, err := s.Store.Set(context.Background(), key, []byte(value))
	if err != nil {
		t.Fatal(err)
	}
	return rev
}
