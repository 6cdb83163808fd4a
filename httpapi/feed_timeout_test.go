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
//
// The sockets hold at most 2*(32+128) KiB (Linux doubles the buffer sizes
// asked for), less than 5 events. Until the handler has written 4 events,
// or the socket is full and its write timed out, the sets wait for the
// handler to keep within 2 events of them: the hub must not drop the
// subscriber while the socket has room, or it rightly gets its 4408 (a
// busy machine made the handler fall behind the sets before). Then the
// sets go on at once, and usually fill the queue before the write times
// out: the hub drops it meanwhile.
func TestFeedWriteTimeout(t *testing.T) {
	e := newFeedEnvSendBuffer(t, bus.Options{Buffer: 4}, httpapi.Options{WriteTimeout: 500 * time.Millisecond}, 32<<10)
	slow := e.dialSlow(t, "") // a receive buffer of 128 KiB
	big := `"` + strings.Repeat("x", 64<<10) + `"`
	const fit = 4        // events that may be written while nothing is read
	for i := range 200 { // 13 MB: more than the sockets hold, and then the queue
		for deadline := time.Now().Add(30 * time.Second); i <= fit+2; { // a hang guard
			x := scrape(t, e.srv.URL)
			sent, _ := x.Value("kvs_feed_events_sent_total")
			subs, _ := x.Value("kvs_subscribers")
			if int(sent) >= min(i-2, fit) || subs == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("before set %d: %v events sent, %v subscribers after 30 s", i+1, sent, subs)
			}
			time.Sleep(5 * time.Millisecond)
		}
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
