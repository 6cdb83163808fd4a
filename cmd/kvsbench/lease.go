package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/wire"
)

// Lease mode: -leases leases of -ttl, each with one key, are kept alive
// every third of their TTL for -duration, -batch of them per keep-alive
// request, the requests spread evenly over the third; then the renewals
// stop and every lease expires. It reports the keep-alives (requests and
// renewals per second, latency, kvsd's CPU per renewal with -server-pid),
// any lease lost while kept alive, and how late each key's delete reached
// a watch after its lease's TTL since the last acknowledged keep-alive;
// a delete before that is an error (the lease's guarantee broken).

// leaseReport is the outcome of a lease run.
type leaseReport struct {
	Mode        string  `json:"mode"`
	Target      string  `json:"target"`
	Connections int     `json:"connections"`
	Leases      int     `json:"leases"`
	TTLSeconds  float64 `json:"ttl_s"`
	Batch       int     `json:"batch"`
	Seconds     float64 `json:"seconds"`
	// Requests and Renewals count the keep-alive requests answered, and
	// the lease renewals they acknowledged.
	Requests       int64   `json:"requests"`
	RequestsPerSec float64 `json:"requests_per_s"`
	Renewals       int64   `json:"renewals"`
	RenewalsPerSec float64 `json:"renewals_per_s"`
	// ServerCPUSeconds is the CPU time kvsd used during the keep-alive
	// phase (with -server-pid), and CPUPerRenewalUS that per renewal.
	ServerCPUSeconds float64 `json:"server_cpu_s,omitempty"`
	ServerCPUShare   float64 `json:"server_cpu_share,omitempty"`
	CPUPerRenewalUS  float64 `json:"server_cpu_per_renewal_us,omitempty"`
	// Latency is that of the keep-alive requests.
	Latency latencyStats `json:"keepalive_latency"`
	// Lost counts leases that a keep-alive found gone while they were
	// kept alive; Early the keys deleted before their lease's TTL since
	// its last acknowledged keep-alive. Both break the guarantees.
	Lost  int64 `json:"lost"`
	Early int64 `json:"early"`
	// Expired counts the deletes seen once renewals stopped, and Lateness
	// how long after its lease's deadline each one was seen.
	Expired      int64             `json:"expired"`
	Lateness     latencyStats      `json:"expiry_lateness"`
	Missing      int64             `json:"not_expired"`
	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	OK           bool              `json:"ok"`
}

func (r *leaseReport) ok() bool { return r.OK }

func (r *leaseReport) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kvsbench lease: %s, %d connections, %d leases of %v, %d per keep-alive\n",
		r.Target, r.Connections, r.Leases, time.Duration(r.TTLSeconds*float64(time.Second)), r.Batch)
	fmt.Fprintf(&b, "keep-alive: %.1fs, %d requests (%.1f/s), %d renewals (%.0f/s), latency p50 %v p99 %v max %v\n",
		r.Seconds, r.Requests, r.RequestsPerSec, r.Renewals, r.RenewalsPerSec,
		usDuration(r.Latency.P50), usDuration(r.Latency.P99), usDuration(r.Latency.Max))
	if r.ServerCPUSeconds > 0 {
		fmt.Fprintf(&b, "kvsd CPU: %.2fs (%.1f%% of one CPU), %.2f µs per renewal\n",
			r.ServerCPUSeconds, 100*r.ServerCPUShare, r.CPUPerRenewalUS)
	}
	fmt.Fprintf(&b, "expiry: %d keys deleted, %d not; lateness after TTL p50 %v p99 %v max %v\n",
		r.Expired, r.Missing, usDuration(r.Lateness.P50), usDuration(r.Lateness.P99), usDuration(r.Lateness.Max))
	fmt.Fprintf(&b, "lost while kept alive: %d, deleted early: %d\n", r.Lost, r.Early)
	for kind, n := range r.Errors {
		fmt.Fprintf(&b, "errors: %d %s (%s)\n", n, kind, r.ErrorSamples[kind])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// leaseRun is the state of a lease run.
type leaseRun struct {
	b   *bench
	ids []int64
	// renewed[i] is when the last keep-alive of lease i that the server
	// acknowledged was sent, in UnixNano.
	renewed []atomic.Int64
	idx     map[int64]int

	mu      sync.Mutex
	hist    histogram
	errs    map[string]int64
	samples map[string]string
}

func (lr *leaseRun) fail(kind string, err error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.errs[kind]++
	if _, ok := lr.samples[kind]; !ok {
		lr.samples[kind] = err.Error()
	}
}

// leases runs lease mode: grant the leases with a key in each, keep them
// alive for the duration, then let them expire and time each key's delete.
func (b *bench) leases(ctx context.Context) (*leaseReport, error) {
	cfg := &b.cfg
	rep := &leaseReport{Mode: "lease", Target: cfg.base, Connections: cfg.connections, Leases: cfg.leases,
		TTLSeconds: cfg.ttl.Seconds(), Batch: cfg.batch}
	lr := &leaseRun{b: b, ids: make([]int64, cfg.leases), renewed: make([]atomic.Int64, cfg.leases),
		idx: make(map[int64]int, cfg.leases), errs: map[string]int64{}, samples: map[string]string{}}
	if err := lr.grant(ctx); err != nil {
		return nil, err
	}

	// Watch the keys' deletes from now on.
	from, err := b.kvs.Revision(ctx, nil)
	if err != nil {
		return nil, err
	}
	deletes := make(chan deletion, cfg.leases)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var watching sync.WaitGroup
	watching.Go(func() {
		for ev, err := range b.kvs.Watch(wctx, client.WatchOptions{Prefix: cfg.prefix, From: from + 1}) {
			if err != nil {
				if wctx.Err() == nil {
					lr.fail("watch", err)
				}
				return
			}
			if ev.Type == wire.EventDelete {
				deletes <- deletion{ev.Key, time.Now()}
			}
		}
	})

	if err := lr.keepAlive(ctx, rep); err != nil {
		return nil, err
	}
	lr.awaitExpiry(ctx, rep, deletes)
	stopWatch()
	watching.Wait()
	rep.Errors, rep.ErrorSamples = lr.errs, lr.samples
	rep.OK = rep.Lost == 0 && rep.Early == 0 && rep.Missing == 0 && len(lr.errs) == 0
	return rep, nil
}

// deletion is a key's delete as the watch received it.
type deletion struct {
	key string
	at  time.Time
}

// grant grants the leases and sets a key into each.
func (lr *leaseRun) grant(ctx context.Context) error {
	b, cfg := lr.b, &lr.b.cfg
	fmt.Fprintf(b.stderr, "kvsbench lease: granting %d leases of %v, a key in each\n", cfg.leases, cfg.ttl)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range cfg.connections {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < cfg.leases && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				sent := time.Now()
				l, err := b.kvs.Grant(ctx, cfg.ttl, nil)
				if err == nil {
					_, err = b.kvs.Set(ctx, cfg.prefix+strconv.Itoa(i), client.String("leased"), &client.WriteOptions{Lease: l.ID})
				}
				if err != nil {
					lr.fail("grant", err)
					continue
				}
				lr.ids[i] = l.ID
				lr.renewed[i].Store(sent.UnixNano())
			}
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for i, id := range lr.ids {
		if id == 0 {
			return fmt.Errorf("granting the leases failed: %v", lr.samples["grant"])
		}
		lr.idx[id] = i
	}
	return nil
}

// keepAlive keeps the leases alive for the duration: every third of the
// TTL each batch once, the batches spread evenly over it. It writes the
// keep-alives' counts, latency and kvsd's CPU into rep.
func (lr *leaseRun) keepAlive(ctx context.Context, rep *leaseReport) error {
	b, cfg := lr.b, &lr.b.cfg
	fmt.Fprintf(b.stderr, "kvsbench lease: keeping them alive for %v, %d per request\n", cfg.duration, cfg.batch)
	cpu0, err := serverCPU(cfg.serverPID)
	if err != nil {
		return err
	}
	nb := (cfg.leases + cfg.batch - 1) / cfg.batch
	period := cfg.ttl / 3
	jobs := make(chan []int64, cfg.connections)
	began := time.Now()
	end := began.Add(cfg.duration)
	var requests, renewals, lost atomic.Int64
	var wg sync.WaitGroup
	for range cfg.connections {
		wg.Go(func() {
			var h histogram
			for ids := range jobs {
				sent := time.Now()
				res, err := b.kvs.KeepAlive(ctx, ids...)
				h.record(int64(time.Since(sent)))
				if err != nil {
					if errors.Is(err, client.ErrLeaseNotFound) {
						lost.Add(int64(len(ids)))
					}
					lr.fail("keepalive", err)
					continue
				}
				requests.Add(1)
				renewals.Add(int64(len(res.Leases)))
				lost.Add(int64(len(res.NotFound)))
				for _, l := range res.Leases {
					lr.renewed[lr.idx[l.ID]].Store(sent.UnixNano())
				}
			}
			lr.mu.Lock()
			lr.hist.merge(&h)
			lr.mu.Unlock()
		})
	}
	t := time.NewTimer(0)
	for k := 0; ; k++ {
		due := began.Add(time.Duration(k) * period / time.Duration(nb))
		if !due.Before(end) || ctx.Err() != nil {
			break
		}
		t.Reset(time.Until(due))
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		g := k % nb
		jobs <- lr.ids[g*cfg.batch : min((g+1)*cfg.batch, cfg.leases)]
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(began)
	cpu1, err := serverCPU(cfg.serverPID)
	if err != nil {
		return err
	}
	rep.Seconds = elapsed.Seconds()
	rep.Requests, rep.Renewals, rep.Lost = requests.Load(), renewals.Load(), lost.Load()
	rep.RequestsPerSec = float64(rep.Requests) / rep.Seconds
	rep.RenewalsPerSec = float64(rep.Renewals) / rep.Seconds
	rep.Latency = lr.hist.stats()
	if cfg.serverPID > 0 {
		rep.ServerCPUSeconds = (cpu1 - cpu0).Seconds()
		rep.ServerCPUShare = rep.ServerCPUSeconds / rep.Seconds
		if rep.Renewals > 0 {
			rep.CPUPerRenewalUS = rep.ServerCPUSeconds * 1e6 / float64(rep.Renewals)
		}
	}
	return nil
}

// awaitExpiry lets the leases expire: each key's delete should come within
// the TTL of its lease's last renewal, and never before it. It waits for
// every key's delete on deletes, at most the TTL and the drain time, and
// writes what came, and how late, into rep.
func (lr *leaseRun) awaitExpiry(ctx context.Context, rep *leaseReport, deletes <-chan deletion) {
	b, cfg := lr.b, &lr.b.cfg
	fmt.Fprintf(b.stderr, "kvsbench lease: renewals stopped; waiting for %d leases to expire\n", cfg.leases)
	var late histogram
	seen := make(map[string]bool, cfg.leases)
	deadline := time.NewTimer(cfg.ttl + cfg.drain)
	defer deadline.Stop()
wait:
	for len(seen) < cfg.leases {
		select {
		case d := <-deletes:
			i, err := strconv.Atoi(strings.TrimPrefix(d.key, cfg.prefix))
			if err != nil || i >= cfg.leases || seen[d.key] {
				continue
			}
			seen[d.key] = true
			lateness := d.at.Sub(time.Unix(0, lr.renewed[i].Load()).Add(cfg.ttl))
			if lateness < 0 {
				rep.Early++
			}
			late.record(int64(lateness))
		case <-deadline.C:
			break wait
		case <-ctx.Done():
			break wait
		}
	}
	rep.Expired, rep.Missing = int64(len(seen)), int64(cfg.leases-len(seen))
	rep.Lateness = late.stats()
}

// serverCPU returns the CPU time (user and system) of process pid so far,
// read from /proc (Linux); 0 when pid is 0.
func serverCPU(pid int) (time.Duration, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("-server-pid %d: %v (it needs Linux's /proc)", pid, err)
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("-server-pid %d: /proc/%d/stat has %d fields", pid, pid, len(f))
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	s, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("-server-pid %d: cannot read its CPU time", pid)
	}
	const hz = 100 // USER_HZ, the unit of /proc's times, on every Linux port
	return time.Duration(u+s) * time.Second / hz, nil
}
