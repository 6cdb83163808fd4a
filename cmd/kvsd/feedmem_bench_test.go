package main_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/internal/promtext"
)

// BenchmarkFeedMemory measures how much kvsd's memory (RSS) grows under
// subscribers that stop reading, the attack of issue 14. kvsd first holds
// 64 values of 1 MB (except when idle); then N subscribers replay them from
// revision 1 (replay), or subscribe while 100 more such values are written
// over them (live; with 0 subscribers, what the writes alone cost), or
// just connect (idle: the cost of a connection). It reports the growth of
// the peak RSS from there, and the bound that docs/operations.md states
// for what subscribers hold, both in MiB:
//
//	go test ./cmd/kvsd -run '^$' -bench FeedMemory -benchtime 1x
//
// Run it without -race: the race detector's shadow memory counts in RSS.
func BenchmarkFeedMemory(b *testing.B) {
	for _, bc := range []struct {
		mode string
		n    int
	}{
		{"idle", 200},
		{"replay", 10},
		{"replay", 60},
		{"replay", 200},
		{"live", 0},
		{"live", 20},
		{"live", 60},
	} {
		b.Run(fmt.Sprintf("%s/subscribers=%d", bc.mode, bc.n), func(b *testing.B) {
			for b.Loop() {
				feedMemory(b, bc.mode, bc.n)
			}
		})
	}
}

// The defaults of -feed-buffer-bytes and the cost of a connection that the
// bound in docs/operations.md assumes.
const (
	feedBufferBytes = 256 << 20
	perConnection   = 64 << 10
)

func feedMemory(b *testing.B, mode string, n int) {
	srv := kvstest.Start(b, "-backend", "memory", "-max-subscribers", "100000")
	value := `"` + strings.Repeat("v", 1_000_000) + `"`
	if mode != "idle" {
		for i := range 64 {
			benchSet(b, srv.URL, "k"+strconv.Itoa(i), value)
		}
	}
	base := procBytes(b, srv.PID(), "VmRSS")
	// Reset the peak (VmHWM) to the current RSS.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", srv.PID()), []byte("5"), 0); err != nil {
		b.Fatal(err)
	}
	query := ""
	if mode == "replay" {
		query = "?from=1"
	}
	conns := make([]*websocket.Conn, n)
	for i := range conns {
		conns[i] = dialNotReading(b, srv, query)
		if mode == "replay" {
			ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
			_, _, err := conns[i].Read(ctx) // the first event, then nothing
			cancel()
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	if mode == "live" {
		for i := range 100 {
			benchSet(b, srv.URL, "k"+strconv.Itoa(i%64), value)
		}
	}
	// Let the writes to the subscribers stall (their socket buffers are
	// small), then take the peak.
	time.Sleep(2 * time.Second)
	peak := procBytes(b, srv.PID(), "VmHWM")
	held := benchMetric(b, srv.URL, "kvs_feed_buffered_bytes_peak")
	for _, c := range conns {
		c.CloseNow()
	}
	grown := float64(peak-base) / (1 << 20)
	bound := float64(feedBufferBytes+n*perConnection) / (1 << 20)
	b.ReportMetric(grown, "rss-growth-MiB")
	b.ReportMetric(bound, "bound-MiB")
	b.ReportMetric(held/(1<<20), "held-peak-MiB")
	if n > 0 {
		b.ReportMetric(grown/float64(n)*1024, "KiB/subscriber")
	}
	// The writes of the live mode cost memory of their own (request
	// bodies, garbage until the next collection): compare with 0
	// subscribers there.
	if mode != "live" && grown > bound {
		b.Errorf("%s, %d subscribers: RSS grew by %.0f MiB, over the bound of %.0f MiB", mode, n, grown, bound)
	}
}

// dialNotReading subscribes through a socket with a small receive buffer,
// so that kvsd's writes stall once the client stops reading.
func dialNotReading(b *testing.B, srv *kvstest.Server, query string) *websocket.Conn {
	ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+srv.Addr+"/subscribe"+query, &websocket.DialOptions{HTTPClient: kvstest.SmallReceiveBuffer(128 << 10)})
	if err != nil {
		b.Fatal(err)
	}
	c.SetReadLimit(2 << 20)
	return c
}

func benchSet(b *testing.B, base, key, value string) {
	resp, err := http.Post(base+"/set", "", strings.NewReader(`{"Key":`+strconv.Quote(key)+`,"Value":`+value+`}`))
	if err != nil {
		b.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b.Fatalf("set %s: %d", key, resp.StatusCode)
	}
}

func benchMetric(b *testing.B, base, name string) float64 {
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	e, err := promtext.Parse(string(body))
	if err != nil {
		b.Fatal(err)
	}
	v, _ := e.Value(name)
	return v
}

// procBytes returns a memory figure of /proc/PID/status, in bytes.
func procBytes(b *testing.B, pid int, field string) int64 {
	v := procStatus(nil, pid, field)
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		b.Fatalf("/proc/%d/status: %s: %q", pid, field, v)
	}
	return kb << 10
}
