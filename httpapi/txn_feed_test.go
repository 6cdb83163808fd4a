package httpapi_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// txnSets sets each key to value in one transaction and returns its
// revision.
func (e *feedEnv) txnSets(t testing.TB, value string, keys ...string) int64 {
	t.Helper()
	tx := &kv.Txn{}
	for _, k := range keys {
		tx.Then = append(tx.Then, kv.TxnOp{Op: kv.OpSet, Key: k, Value: []byte(value)})
	}
	res, err := e.store.Txn(context.Background(), tx)
	if err != nil {
		t.Fatal(err)
	}
	return res.Revision
}

// checkWhole checks that evs hold whole revisions: the events of each are
// consecutive, all but the last have More, and there are size(rev) of
// them.
func checkWhole(t *testing.T, evs []httpapi.Event, size func(rev int64) int) {
	t.Helper()
	for i := 0; i < len(evs); {
		rev := evs[i].Revision
		j := i
		for j < len(evs) && evs[j].Revision == rev {
			if more := j < len(evs)-1 && evs[j+1].Revision == rev; evs[j].More != more {
				t.Fatalf("event %d (%s at %d): More %v, want %v", j, evs[j].Key, rev, evs[j].More, more)
			}
			j++
		}
		if j-i != size(rev) {
			t.Fatalf("revision %d: got %d events, want %d", rev, j-i, size(rev))
		}
		i = j
	}
}

// TestFeedTxnMore checks the frames of a transaction's events, live and
// replayed, for subscribers with and without a filter: the shared
// encoding with "More":true on all but the subscriber's last of the
// revision.
func TestFeedTxnMore(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	all, pre := e.dial(t, ""), e.dial(t, "?prefix=a")
	e.set(t, "x", `0`)
	e.txnSets(t, `{"v":"<&>"}`, "a1", "b", "a2")
	want := map[*watcher][]string{
		all: {`{"Type":"set","Key":"x","Value":0,"Revision":1}`,
			`{"Type":"set","Key":"a1","Value":{"v":"<&>"},"Revision":2,"More":true}`,
			`{"Type":"set","Key":"b","Value":{"v":"<&>"},"Revision":2,"More":true}`,
			`{"Type":"set","Key":"a2","Value":{"v":"<&>"},"Revision":2}`},
		pre: {`{"Type":"set","Key":"a1","Value":{"v":"<&>"},"Revision":2,"More":true}`,
			`{"Type":"set","Key":"a2","Value":{"v":"<&>"},"Revision":2}`},
	}
	read := func(w *watcher, n int) []string {
		var got []string
		for range n {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			_, data, err := w.c.Read(ctx)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, string(data))
		}
		return got
	}
	for w, frames := range want {
		if got := read(w, len(frames)); !slices.Equal(got, frames) {
			t.Errorf("live: got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(frames, "\n"))
		}
	}
	for q, frames := range map[string][]string{"?from=1": want[all], "?from=1&prefix=a": want[pre]} {
		if got := read(e.dial(t, q), len(frames)); !slices.Equal(got, frames) {
			t.Errorf("replay %s: got\n%s\nwant\n%s", q, strings.Join(got, "\n"), strings.Join(frames, "\n"))
		}
	}
}

// TestFeedTxnSlowConsumer: a subscriber that falls behind while
// transactions are written is closed between revisions, with the revision
// to resume from; it has every revision before it whole, and resuming
// loses and repeats nothing.
func TestFeedTxnSlowConsumer(t *testing.T) {
	e := newFeedEnv(t, bus.Options{Buffer: 64}, httpapi.Options{WriteTimeout: time.Minute})
	// As in TestFeedSlowConsumer: a small receive buffer, and no reads
	// until the writes are done.
	slow := e.dialSlow(t, "") // a receive buffer of 128 KiB
	big := `"` + strings.Repeat("x", 32<<10) + `"`
	const n = 250 // 3 events of 32 KiB each: 24 MiB
	size := func(int64) int { return 3 }
	var revs []int64
	for i := range n {
		revs = append(revs, e.txnSets(t, big, fmt.Sprint("a", i%5), fmt.Sprint("b", i%7), fmt.Sprint("c", i%3)))
	}
	var got []httpapi.Event
	for {
		ev, err := slow.next(20 * time.Second)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != httpapi.StatusSlowConsumer {
				t.Fatalf("got %v after %d events, want close 4408", err, len(got))
			}
			resume := int64(1)
			if len(got) > 0 {
				resume = got[len(got)-1].Revision + 1
			}
			if want := "slow consumer, resume from " + strconv.FormatInt(resume, 10); ce.Reason != want {
				t.Fatalf("close reason %q, want %q", ce.Reason, want)
			}
			break
		}
		got = append(got, ev)
	}
	if len(got) >= 3*n {
		t.Fatalf("the slow subscriber got all %d events before being closed", len(got))
	}
	checkWhole(t, got, size)
	resume := int64(1)
	if len(got) > 0 {
		resume = got[len(got)-1].Revision + 1
	}
	rest := e.dial(t, "?from="+strconv.FormatInt(resume, 10)).changes(3*n - len(got))
	checkWhole(t, rest, size)
	all := slices.Compact(revisions(append(got, rest...)))
	if !slices.Equal(all, revs) {
		t.Fatalf("before and after resume: got %s, want %s", short(all), short(revs))
	}
}

// TestFeedTxnShutdownDuringReplay: a subscriber replaying transactions
// when the server shuts down is closed with 1001 between revisions, with
// every revision before the one to resume from whole.
func TestFeedTxnShutdownDuringReplay(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	value := `"` + strings.Repeat("v", 4<<10) + `"`
	const n = 400
	for i := range n {
		e.txnSets(t, value, "a", "b", fmt.Sprint("c", i%10))
	}
	w := e.dial(t, "?from=1")
	var got []httpapi.Event
	for range 10 {
		ev, err := w.next(10 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second) // a hang guard
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- e.h.Shutdown(ctx) }()
	for {
		ev, err := w.next(10 * time.Second)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
				t.Fatalf("got %v after %d events, want close 1001", err, len(got))
			}
			if want := "server shutting down, resume from " + strconv.FormatInt(got[len(got)-1].Revision+1, 10); ce.Reason != want {
				t.Fatalf("reason %q, want %q", ce.Reason, want)
			}
			break
		}
		got = append(got, ev)
		time.Sleep(time.Millisecond) // a slow reader
	}
	if len(got) == 3*n {
		t.Fatalf("the whole replay (%d events) was sent before the close", 3*n)
	}
	checkWhole(t, got, func(int64) int { return 3 })
	if err := <-done; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}
