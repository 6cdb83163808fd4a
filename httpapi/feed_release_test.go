package httpapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
)

// TestShutdownReleasesSubscriptions: once Handler.Shutdown has returned,
// every subscriber's handler has ended its subscription of the feed and let
// go of every event it held, as kvsd closes the hub and the store right
// after.
func TestShutdownReleasesSubscriptions(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	for range 20 {
		e.dial(t, "")
	}
	for range 5 {
		e.set(t, "k", `"v"`)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := e.h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n, held := e.hub.Len(), func() int64 { now, _ := e.hub.Buffered(); return now }(); n != 0 || held != 0 {
		t.Fatalf("after Shutdown returned: %d subscriptions, %d bytes held; want none", n, held)
	}
}
