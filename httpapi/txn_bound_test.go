package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
)

// readUntilClose reads w's events until the server closes it, and returns
// them (progress events left out) with the close.
func readUntilClose(t *testing.T, w *watcher) ([]httpapi.Event, websocket.CloseError) {
	t.Helper()
	var got []httpapi.Event
	for {
		ev, err := w.next(30 * time.Second)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) {
				t.Fatalf("after %d events: %v, want a close", len(got), err)
			}
			return got, ce
		}
		if ev.Type != "progress" {
			got = append(got, ev)
		}
	}
}

// resumeFrom returns the revision after the last of evs, or 1.
func resumeFrom(evs []httpapi.Event) int64 {
	if len(evs) == 0 {
		return 1
	}
	return evs[len(evs)-1].Revision + 1
}

// TestFeedTxnLargeValues: transactions of three values near 1 MB, each
// event written from the history's bytes with "More":true added, to a
// subscriber that stops reading near its bound in bytes: it gets whole
// transactions, then 4408 before any event of the one that does not fit,
// and resuming from the revision named gets the rest, each transaction
// whole and intact. (bus TestHubTxnBytesAllOrNothing shows the hub's part
// without a transport's timing: charged event by event, a transaction
// would be queued in part.)
func TestFeedTxnLargeValues(t *testing.T) {
	e := newFeedEnv(t, bus.Options{BufferBytes: 5 << 20}, httpapi.Options{WriteTimeout: time.Minute})
	slow := e.dialSlow(t, "")
	const n = 12 // 36 MB: more than the bound and what the sockets buffer
	value := func(rev int64) string {
		return `"` + strings.Repeat(strconv.FormatInt(rev%10, 10), 999_990) + `"`
	}
	var revs []int64
	for i := range n {
		// The revision is the transaction's index + 1: check each
		// event's value against it.
		revs = append(revs, e.txnSets(t, value(int64(i+1)), fmt.Sprint("a", i%5), fmt.Sprint("b", i%7), fmt.Sprint("c", i%3)))
	}
	if want := int64(n); revs[n-1] != want {
		t.Fatalf("revisions %v, want 1 to %d", revs, n)
	}
	size := func(int64) int { return 3 }
	intact := func(evs []httpapi.Event) {
		t.Helper()
		for _, ev := range evs {
			if string(ev.Value) != value(ev.Revision) {
				t.Fatalf("event %s at %d: a value of %d bytes, not the one written", ev.Key, ev.Revision, len(ev.Value))
			}
		}
	}

	got, ce := readUntilClose(t, slow)
	if ce.Code != httpapi.StatusSlowConsumer {
		t.Fatalf("got %v after %d events, want close 4408", ce, len(got))
	}
	if want := "slow consumer, resume from " + strconv.FormatInt(resumeFrom(got), 10); ce.Reason != want {
		t.Fatalf("close reason %q, want %q", ce.Reason, want)
	}
	if len(got) == 3*n {
		t.Fatalf("the slow subscriber got all %d events before being closed", len(got))
	}
	t.Logf("the slow subscriber got %d transactions whole, then 4408", len(got)/3)
	checkWhole(t, got, size)
	intact(got)

	resumed := e.dial(t, "?from="+strconv.FormatInt(resumeFrom(got), 10))
	rest := resumed.changes(3*n - len(got))
	checkWhole(t, rest, size)
	intact(rest)
	if all := slices.Compact(revisions(append(got, rest...))); !slices.Equal(all, revs) {
		t.Fatalf("before and after resume: got %s, want %s", short(all), short(revs))
	}
	released(t, e, slow, resumed)
}

// TestFeedTxnReplayChunks: a replay reads the history in chunks of whole
// revisions; across chunk edges it sends exactly the frames the live feed
// sent, More included, for events copied into a burst and for large ones
// written from the history's bytes, with and without a filter.
func TestFeedTxnReplayChunks(t *testing.T) {
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{})
	queries := []string{"", "?prefix=a"}
	live := make([]*watcher, len(queries))
	for i, q := range queries {
		live[i] = e.dial(t, q)
	}
	small, large := `{"v":"<&>"}`, `"`+strings.Repeat("x", 40<<10)+`"`
	events := 0
	for i := range 120 {
		var keys []string
		for j := range 1 + i%5 {
			keys = append(keys, fmt.Sprintf("%c%d", "ab"[(i+j)%2], j))
		}
		v := small
		if i%4 == 3 {
			v = large
		}
		e.txnSets(t, v, keys...)
		events += len(keys)
	}
	frames := func(w *watcher, n int) []string {
		t.Helper()
		var out []string
		for len(out) < n {
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			_, data, err := w.c.Read(ctx)
			cancel()
			if err != nil {
				t.Fatalf("after %d of %d frames: %v", len(out), n, err)
			}
			if !strings.HasPrefix(string(data), `{"Type":"progress"`) {
				out = append(out, string(data))
			}
		}
		return out
	}
	for i, q := range queries {
		n := events
		if q != "" {
			n = events / 2 // the keys alternate between a and b
		}
		want := frames(live[i], n)
		replay := e.dial(t, "?from=1"+strings.Replace(q, "?", "&", 1))
		if got := frames(replay, n); !slices.Equal(got, want) {
			for j := range got {
				if got[j] != want[j] {
					t.Fatalf("query %q: replayed frame %d is %.80s..., live %.80s...", q, j, got[j], want[j])
				}
			}
		}
		var evs []httpapi.Event
		for _, f := range want {
			var ev httpapi.Event
			if err := json.Unmarshal([]byte(f), &ev); err != nil {
				t.Fatal(err)
			}
			evs = append(evs, ev)
		}
		sizes := map[int64]int{}
		for _, ev := range evs {
			sizes[ev.Revision]++
		}
		checkWhole(t, evs, func(rev int64) int { return sizes[rev] })
		if more := slices.IndexFunc(evs, func(ev httpapi.Event) bool { return ev.More && len(ev.Value) > 32<<10 }); more < 0 {
			t.Fatalf("query %q: no large event with More: the test does not test direct writes", q)
		}
		replay.c.CloseNow()
	}
	released(t, e, live...)
}

// TestFeedTxnReplayOutrun: a replay of transactions that the history
// outruns (the subscriber reads too slowly while other keys' changes push
// the history on) is closed with 4408 after a whole revision, naming the
// next; the history no longer has it, so resuming from it gets 410.
func TestFeedTxnReplayOutrun(t *testing.T) {
	e := newFeedEnv(t, bus.Options{History: 300}, httpapi.Options{WriteTimeout: time.Minute})
	value := `"` + strings.Repeat("v", 100<<10) + `"`
	for range 100 { // 30 MB: more than the sockets buffer
		e.txnSets(t, value, "a0", "a1", "a2")
	}
	w := e.dialSlow(t, "?prefix=a&from=1")
	if ev, err := w.next(30 * time.Second); err != nil || ev.Revision != 1 || !ev.More {
		t.Fatalf("first event: %+v, %v; want the first of revision 1", ev.Revision, err)
	}
	for range 100 { // the history drops every revision of a
		e.txnSets(t, `1`, "b0", "b1", "b2")
	}
	got, ce := readUntilClose(t, w)
	if ce.Code != httpapi.StatusSlowConsumer {
		t.Fatalf("got %v after %d events, want close 4408", ce, len(got)+1)
	}
	got = slices.Insert(got, 0, httpapi.Event{Revision: 1, More: true}) // the first one, read above
	if len(got) >= 300 {
		t.Fatalf("the replay sent all %d events before being closed", len(got))
	}
	checkWhole(t, got, func(int64) int { return 3 })
	t.Logf("the replay sent %d of 100 transactions whole, then 4408", len(got)/3)
	resume := resumeFrom(got)
	if want := "slow consumer, resume from " + strconv.FormatInt(resume, 10); ce.Reason != want {
		t.Fatalf("close reason %q, want %q", ce.Reason, want)
	}
	if int64(len(got)) != 3*(resume-1) {
		t.Fatalf("%d events up to revision %d, want every revision whole", len(got), resume-1)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, e.ws+"?prefix=a&from="+strconv.FormatInt(resume, 10), nil)
	if err == nil {
		c.CloseNow()
		t.Fatalf("resuming from %d: accepted, want 410", resume)
	}
	if resp == nil || resp.StatusCode != http.StatusGone {
		t.Fatalf("resuming from %d: %v (%v), want 410", resume, err, resp)
	}
	released(t, e, w)
}
