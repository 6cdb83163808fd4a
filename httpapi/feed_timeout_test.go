package httpapi_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
)

// TestFeedWriteTimeout: a subscriber that stops reading for longer than the
// write timeout is cut off. The server writes nothing after the write that
// timed out, which may have left a frame half written (a close frame there
// would be read as the rest of that frame), and does not count it as closed
// with 4408, even when the hub dropped it for falling behind meanwhile (as
// it does unless the machine is so busy that the sets come slower than the
// timeout): it never got the 4408. The events are large, so that each is
// written on its own rather than from the cork buffer. (TestCorkConnFailedWrite
// checks the mechanism on its own.)
func TestFeedWriteTimeout(t *testing.T) {
	e := newFeedEnv(t, bus.Options{Buffer: 4}, httpapi.Options{WriteTimeout: 500 * time.Millisecond})
	slow := e.dialSlow(t, "")
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	for range 200 { // 13 MB: more than the sockets hold, and then the queue
		e.set(t, "big", big)
	}
	t.Logf("the hub dropped %d subscribers for falling behind", e.hub.SlowConsumers())
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		subs, _ := scrape(t, e.srv.URL).Value("kvs_subscribers")
		if subs == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the subscriber that stopped reading is still served %v after the last change", 30*time.Second)
		}
		time.Sleep(20 * time.Millisecond)
	}
	wantValue(t, scrape(t, e.srv.URL), 0, "kvs_feed_slow_consumer_closes_total")

	// What it reads now: whole events in order, then the end of the
	// connection, without a close frame.
	var last int64
	for {
		ev, err := slow.next(10 * time.Second)
		if err != nil {
			var ce websocket.CloseError
			if errors.As(err, &ce) {
				t.Fatalf("after revision %d: got %v, want the connection cut without a close frame", last, ce)
			}
			t.Logf("after revision %d: %v", last, err)
			break
		}
		if ev.Revision != last+1 {
			t.Fatalf("got revision %d after %d", ev.Revision, last)
		}
		last = ev.Revision
	}
}
