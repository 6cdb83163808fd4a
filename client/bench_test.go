package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// BenchmarkCall compares the client's Get and Set with the same request
// sent with net/http alone (a prepared body, the answer read and its status
// checked, nothing decoded), over the same HTTP client and server (the
// real API on the memory log, in this process). The ratio of the two is
// the client's overhead. Besides the time per call, it reports the CPU
// time the process spent per call (client and server: cpu-ns/op), which
// other load on the machine disturbs less.
//
//	go test -run XXX -bench BenchmarkCall -count 5 ./client
func BenchmarkCall(b *testing.B) {
	srv := newServer(b, bus.Options{}, httpapi.Options{})
	c := newClient(b, srv.Addr, client.Options{})
	value := json.RawMessage(`"Ahmedabad, Gujarat, India"`)
	if _, err := c.Set(context.Background(), "City", value, nil); err != nil {
		b.Fatal(err)
	}
	hc := c.HTTPClient()
	plain := func(b *testing.B, path, body string) {
		b.ReportAllocs()
		defer cpuPerOp(b)()
		hdr := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"kvs-go-client"}}
		var buf bytes.Buffer
		rd := bytes.NewReader(nil)
		u := c.URL() + path
		for b.Loop() {
			rd.Reset([]byte(body))
			req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, u, rd)
			if err != nil {
				b.Fatal(err)
			}
			req.Header = hdr
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			buf.Reset()
			_, err = buf.ReadFrom(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatal(resp.StatusCode, err)
			}
		}
	}
	b.Run("get/net-http", func(b *testing.B) { plain(b, "/get", `{"Key":"City"}`) })
	b.Run("get/client", func(b *testing.B) {
		b.ReportAllocs()
		defer cpuPerOp(b)()
		ctx := context.Background()
		for b.Loop() {
			if _, err := c.Get(ctx, "City", nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("set/net-http", func(b *testing.B) { plain(b, "/set", `{"Key":"City","Value":`+string(value)+`}`) })
	b.Run("set/client", func(b *testing.B) {
		b.ReportAllocs()
		defer cpuPerOp(b)()
		ctx := context.Background()
		for b.Loop() {
			if _, err := c.Set(ctx, "City", value, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// cpuPerOp starts counting the CPU time of the process; the function it
// returns reports it per op.
func cpuPerOp(b *testing.B) func() {
	start := cpuTime()
	return func() { b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op") }
}

// cpuTime returns the user and system CPU time of the process.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkWatchReplay measures how fast a watch consumes the feed: it
// watches 200,000 retained changes from revision 1, as fast as the server
// sends them, and reports events/s.
//
//	go test -run XXX -bench BenchmarkWatchReplay -benchtime 5x -count 5 ./client
func BenchmarkWatchReplay(b *testing.B) {
	const n = 200_000
	srv := newServer(b, bus.Options{History: n, HistoryBytes: 256 << 20}, httpapi.Options{})
	ctx := context.Background()
	for i := range n {
		if _, err := srv.Store.Set(ctx, "key/"+strconv.Itoa(i%1000), []byte(`"value `+strconv.Itoa(i)+`"`)); err != nil {
			b.Fatal(err)
		}
	}
	c := newClient(b, srv.Addr, client.Options{})
	b.ReportAllocs()
	var total time.Duration
	cpu := cpuTime()
	for b.Loop() {
		start := time.Now()
		got := 0
		for _, err := range c.Watch(ctx, client.WatchOptions{From: 1}) {
			if err != nil {
				b.Fatal(err)
			}
			if got++; got == n {
				break
			}
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "events/s")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(n*b.N), "cpu-ns/event")
}

// BenchmarkWatchLive checks that a watch keeps up with changes made at a
// given rate: a writer applies them to the store (no HTTP on the writing
// side) at 100,000/s for a second, and the watch must deliver all of them
// without being closed as a slow consumer (4408). It reports the rate
// achieved, the slow-consumer closes (0 is the target), and the most the
// watch was behind the store, in changes, sampled every millisecond
// (max-lag; 1000 is 10 ms at this rate), and the CPU time of the process
// (writer, server and watch) per change.
//
//	go test -run XXX -bench BenchmarkWatchLive -benchtime 3x -count 5 ./client
func BenchmarkWatchLive(b *testing.B) {
	const rate, d = 100_000, time.Second
	const n = int(rate * d / time.Second)
	srv := newServer(b, bus.Options{}, httpapi.Options{})
	c := newClient(b, srv.Addr, client.Options{})
	ctx := context.Background()
	b.ReportAllocs()
	var closes, maxLag, achieved float64
	cpu := cpuTime()
	for b.Loop() {
		from := srv.Store.Rev() + 1
		var slow, last atomic.Int64
		last.Store(from - 1)
		wctx, cancel := context.WithCancel(ctx)
		ready := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			count := 0
			for ev, err := range c.Watch(wctx, client.WatchOptions{From: from,
				OnConnect: func(int64) {
					select {
					case <-ready:
					default:
						close(ready)
					}
				},
				OnRetry: func(r client.Retry) error {
					var ce *client.CloseError
					if errors.As(r.Err, &ce) {
						slow.Add(1)
					}
					return nil
				}}) {
				if err != nil {
					return
				}
				last.Store(ev.Revision)
				if count++; count == n {
					return
				}
			}
		}()
		<-ready
		stop := make(chan struct{})
		lag := make(chan int64)
		go func() {
			var most int64
			t := time.NewTicker(time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					lag <- most
					return
				case <-t.C:
					most = max(most, srv.Store.Rev()-last.Load())
				}
			}
		}()
		start := time.Now()
		writes := writeAt(ctx, srv.Store, rate, n)
		achieved += float64(writes) / time.Since(start).Seconds()
		select {
		case <-done:
		case <-time.After(time.Minute):
			b.Fatalf("the watch did not get all %d changes", n)
		}
		close(stop)
		maxLag = max(maxLag, float64(<-lag))
		cancel()
		closes += float64(slow.Load())
	}
	b.ReportMetric(achieved/float64(b.N), "changes/s")
	b.ReportMetric(closes/float64(b.N), "4408/op")
	b.ReportMetric(maxLag, "max-lag")
	b.ReportMetric(float64(cpuTime()-cpu)/float64(n*b.N), "cpu-ns/event")
}

// writeAt applies n sets to store at rate per second, in batches of a
// millisecond's worth, and returns how many it applied.
func writeAt(ctx context.Context, store *kv.Store, rate, n int) int {
	const tick = time.Millisecond
	per := rate * int(tick) / int(time.Second)
	start := time.Now()
	value := []byte(`"a value of some thirty bytes!"`)
	done := 0
	for done < n {
		for range min(per, n-done) {
			if _, err := store.Set(ctx, "live/"+strconv.Itoa(done%1000), value); err != nil {
				panic(err)
			}
			done++
		}
		if d := time.Until(start.Add(time.Duration(done/per) * tick)); d > 0 {
			time.Sleep(d)
		}
	}
	return done
}
