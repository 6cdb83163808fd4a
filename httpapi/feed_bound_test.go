package httpapi_test

import (
	"context"
	"errors"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/kvstest"
)

// dialSlow opens a subscription through a socket with a small receive
// buffer (Linux would otherwise grow it to many MiB), so that the server's
// writes stall as soon as the client stops reading.
func (e *feedEnv) dialSlow(t *testing.T, query string) *watcher {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, e.ws+query, &websocket.DialOptions{HTTPClient: kvstest.SmallReceiveBuffer(128 << 10)})
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(2 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return &watcher{t, c}
}

// released waits until every subscription of e has ended and let go of
// every event it held: each event the transports received was Done, on
// every path that closed them.
func released(t *testing.T, e *feedEnv, ws ...*watcher) {
	t.Helper()
	for _, w := range ws {
		w.c.CloseNow()
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		now, _ := e.hub.Buffered()
		if now == 0 && e.hub.Len() == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the subscribers left: %d subscriptions, %d bytes held; want none", e.hub.Len(), now)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// liveHeap returns the bytes of the heap's live objects.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// TestFeedMemoryBound: subscribers that replay values of 1 MB and stop
// reading hold no copy of the history's bytes; the events held for them
// stay within the subscriber's and the total bound, in bytes; one that
// falls behind by more than its bound is closed with 4408 and the revision
// to resume from; and when they are gone, so is the memory.
func TestFeedMemoryBound(t *testing.T) {
	const (
		perSub = 4 << 20
		total  = 16 << 20
		subs   = 10
		values = 16
	)
	e := newFeedEnv(t, bus.Options{BufferBytes: perSub, TotalBufferBytes: total}, httpapi.Options{WriteTimeout: time.Minute})
	value := `"` + strings.Repeat("v", 1_000_000) + `"`
	for i := range values {
		e.set(t, "k"+strconv.Itoa(i), value)
	}
	base := liveHeap()

	// Each subscriber reads its first event, then nothing.
	ws := make([]*watcher, subs)
	for i := range ws {
		ws[i] = e.dialSlow(t, "?from=1")
		if ev, err := ws[i].next(30 * time.Second); err != nil || ev.Revision != 1 {
			t.Fatalf("subscriber %d: first event %v, %v; want revision 1", i, ev.Revision, err)
		}
	}
	// Before the bound, each held its whole replay, 16 MB, in its write
	// buffer. Now: about one event each, shared with the history.
	grown := liveHeap() - base
	t.Logf("%d subscribers replaying %d values of 1 MB, not reading: the live heap grew by %.1f MiB", subs, values, float64(grown)/(1<<20))
	if limit := int64(total + subs*256<<10 + 8<<20); grown > limit {
		t.Errorf("%d subscribers replaying %d values of 1 MB: the live heap grew by %d MiB, want at most %d MiB", subs, values, grown>>20, limit>>20)
	}

	// Changes while they do not read: their queues pass perSub.
	for i := range 8 {
		e.set(t, "live"+strconv.Itoa(i), value)
	}
	if _, peak := e.hub.Buffered(); peak > total {
		t.Errorf("the events held for subscribers took %d bytes at most, bound %d", peak, total)
	}

	// Now they read: every event in order, then 4408 and where to resume.
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Go(func() {
			last := int64(1)
			for {
				ev, err := w.next(30 * time.Second)
				if err != nil {
					var ce websocket.CloseError
					if !errors.As(err, &ce) || ce.Code != httpapi.StatusSlowConsumer {
						t.Errorf("subscriber %d: got %v after revision %d, want close 4408", i, err, last)
					} else if want := "slow consumer, resume from " + strconv.FormatInt(last+1, 10); ce.Reason != want {
						t.Errorf("subscriber %d: reason %q, want %q", i, ce.Reason, want)
					}
					if last == values+8 {
						t.Errorf("subscriber %d got every event, and 4408", i)
					}
					return
				}
				if ev.Type != "progress" {
					if ev.Revision != last+1 {
						t.Errorf("subscriber %d: revision %d after %d", i, ev.Revision, last)
						return
					}
					last = ev.Revision
				}
			}
		})
	}
	wg.Wait()

	// Gone, and so is their memory.
	released(t, e, ws...)
	// The store and the history hold the 8 new values, and no more.
	if grown := liveHeap() - base; grown > 8*2_000_000+4<<20 {
		t.Errorf("after the subscribers left, the live heap is %d MiB above where it was, with 16 MB of new values", grown>>20)
	}
}
