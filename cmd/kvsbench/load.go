package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kvsdb/kvs/client"
)

// The kinds of request.
const (
	opGet = iota
	opSet
	opTxn
	nOps
)

var opNames = [nOps]string{"get", "set", "txn"}

// bench holds what every phase of a run shares: the configuration and the
// client.
type bench struct {
	cfg    config
	stderr io.Writer
	kvs    *client.Client
	read   *client.ReadOptions // of the gets: nil, or Local for -consistency local
	width  int                 // digits of a key number (zero-padded), 0 = as is
}

func newBench(cfg config, stderr io.Writer) (*bench, error) {
	tr := &http.Transport{
		Proxy:               nil, // never measure through a proxy
		DialContext:         (&net.Dialer{Timeout: cfg.timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        cfg.connections,
		MaxIdleConnsPerHost: cfg.connections,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     cfg.tlsConfig(),
	}
	kvs, err := cfg.client(tr)
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, stderr: stderr, kvs: kvs}
	if cfg.local {
		b.read = &client.ReadOptions{Local: true}
	}
	if cfg.keySize > 0 {
		b.width = cfg.keySize - len(cfg.prefix) - 1
	}
	return b, nil
}

// client returns a client of the server that sends its requests over tr.
func (c *config) client(tr *http.Transport) (*client.Client, error) {
	return client.New(c.base, client.Options{
		Token:      c.token,
		Timeout:    c.timeout,
		HTTPClient: &http.Client{Transport: tr},
		UserAgent:  "kvsbench",
	})
}

func (b *bench) close() { b.kvs.CloseIdleConnections() }

// keyLen returns the length of key i with prefix, its number padded to
// width digits.
func keyLen(prefix string, i, width int) int {
	return len(prefix) + 1 + max(len(strconv.Itoa(i)), width)
}

// appendKey appends key i: prefix, "k", and i padded with zeros to width
// digits.
func appendKey(b []byte, prefix string, i, width int) []byte {
	b = append(b, prefix...)
	b = append(b, 'k')
	var num [20]byte
	d := strconv.AppendInt(num[:0], int64(i), 10)
	for n := len(d); n < width; n++ {
		b = append(b, '0')
	}
	return append(b, d...)
}

// randomValue returns n random letters and digits.
func randomValue(rng *rand.Rand, n int) []byte {
	const chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	v := make([]byte, n)
	for i := range v {
		v[i] = chars[rng.IntN(len(chars))]
	}
	return v
}

// phase describes one stretch of load: which requests, how many, how fast.
type phase struct {
	label string // for the progress line
	unit  string // what the progress line counts: "requests", "sets"
	// pick returns the kind and key number of request i.
	pick     func(w *worker, i int64) (op int, key int)
	rate     float64 // requests per second over all connections; 0 = unpaced
	duration time.Duration
	total    int64
	// onAck, when set, is called with the revision of each acknowledged
	// set and the time its answer was read.
	onAck func(rev int64, at time.Time)
	// extra adds to the progress line.
	extra func(elapsed time.Duration) string
}

// phaseResult is what a phase measured, merged over its workers.
type phaseResult struct {
	hist    [nOps]*histogram
	errs    errorSet
	ops     int64
	elapsed time.Duration
	// interrupted is set when the run context ended the phase early.
	interrupted bool
}

// pickRandom picks the mode's kind of request on a key uniform in the key
// space.
func (b *bench) pickRandom(mode string) func(w *worker, i int64) (int, int) {
	keys := b.cfg.keys
	ratio := b.cfg.readRatio
	return func(w *worker, i int64) (int, int) {
		op := opSet
		switch mode {
		case "get":
			op = opGet
		case "txn":
			op = opTxn
		case "mixed":
			if w.rng.Float64() < ratio {
				op = opGet
			}
		}
		return op, w.rng.IntN(keys)
	}
}

// pickInOrder sets key i for request i: writes each key once.
func pickInOrder(w *worker, i int64) (int, int) { return opSet, int(i) }

// pacer hands out request numbers to the workers and, with a rate, the
// time each request is due.
type pacer struct {
	start  time.Time
	period float64 // nanoseconds between requests; 0 = unpaced
	total  int64   // 0 = no limit
	next   atomic.Int64
	stop   chan struct{} // closed when the duration is over
}

// take returns the number of the next request and the time its latency
// counts from, after waiting for the time it is due, or ok = false when
// the phase is over. A request sent late because earlier ones were slow
// counts from when it was due (no coordinated omission); one sent on time
// counts from when it is sent.
func (p *pacer) take(ctx context.Context, t *time.Timer) (i int64, start time.Time, ok bool) {
	select {
	case <-p.stop:
		return 0, time.Time{}, false
	case <-ctx.Done():
		return 0, time.Time{}, false
	default:
	}
	i = p.next.Add(1) - 1
	if p.total > 0 && i >= p.total {
		return 0, time.Time{}, false
	}
	if p.period == 0 {
		return i, time.Now(), true
	}
	due := p.start.Add(time.Duration(float64(i) * p.period))
	if d := time.Until(due); d > 0 {
		t.Reset(d)
		select {
		case <-t.C:
		case <-p.stop:
			return 0, time.Time{}, false
		case <-ctx.Done():
			return 0, time.Time{}, false
		}
		// On time: the timer's own lateness is the loader's, not the
		// server's.
		return i, time.Now(), true
	}
	return i, due, true
}

// worker is one connection's goroutine and what it measured.
type worker struct {
	b     *bench
	rng   *rand.Rand
	value json.RawMessage // the JSON string every value this worker sets is
	key   []byte
	txn   client.TxnRequest // reused by each transaction
	hist  [nOps]*histogram
	errs  errorSet
	ops   int64
}

// runPhase runs ph with one worker per connection and merges what they
// measured.
func (b *bench) runPhase(ctx context.Context, ph phase) phaseResult {
	p := &pacer{start: time.Now(), total: ph.total, stop: make(chan struct{})}
	if ph.rate > 0 {
		p.period = 1e9 / ph.rate
	}
	if ph.duration > 0 {
		t := time.AfterFunc(ph.duration, func() { close(p.stop) })
		defer t.Stop()
	}
	var ops, errs atomic.Int64
	stopProgress := b.startProgress(func(el time.Duration) string {
		n := ops.Load()
		s := fmt.Sprintf("%s %.1fs: %d %s (%.0f/s), %d errors", ph.label, el.Seconds(), n, ph.unit, perSec(n, el), errs.Load())
		if ph.extra != nil {
			s += ph.extra(el)
		}
		return s
	})
	workers := make([]*worker, b.cfg.connections)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{b: b, rng: rand.New(rand.NewPCG(rand.Uint64(), uint64(i)))}
		w.value = client.String(string(randomValue(w.rng, b.cfg.valueSize)))
		for op := range w.hist {
			w.hist[op] = new(histogram)
		}
		workers[i] = w
		wg.Go(func() { w.run(ctx, p, ph, &ops, &errs) })
	}
	wg.Wait()
	res := phaseResult{elapsed: time.Since(p.start), interrupted: ctx.Err() != nil}
	stopProgress()
	for op := range res.hist {
		res.hist[op] = new(histogram)
	}
	for _, w := range workers {
		for op := range w.hist {
			res.hist[op].merge(w.hist[op])
		}
		res.errs.merge(w.errs)
		res.ops += w.ops
	}
	return res
}

func (w *worker) run(ctx context.Context, p *pacer, ph phase, ops, errs *atomic.Int64) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	// An interrupt stops new requests; one in flight finishes (within
	// -timeout), so that a set the server applies is also acknowledged.
	reqCtx := context.WithoutCancel(ctx)
	for {
		i, start, ok := p.take(ctx, t)
		if !ok {
			return
		}
		op, key := ph.pick(w, i)
		rev, err := w.do(reqCtx, op, key)
		now := time.Now()
		if err != nil {
			if code, msg, ok := answered(err); ok {
				w.errs.add(fmt.Sprintf("%s: http %d", opNames[op], code), msg)
			} else {
				w.errs.add(opNames[op]+": "+errorKind(err), err.Error())
			}
			errs.Add(1)
			continue
		}
		w.hist[op].record(int64(now.Sub(start)))
		w.ops++
		ops.Add(1)
		if op == opSet && ph.onAck != nil {
			ph.onAck(rev, now)
		}
	}
}

// answered returns the status and message of an error that is an answer
// of the server (other than 2xx), and false for any other error.
func answered(err error) (code int, msg string, ok bool) {
	var (
		e  *client.Error
		pe *client.ProtocolError
		ce *client.CompactedError
	)
	switch {
	case errors.As(err, &e):
		return e.Status, e.Message, true
	case errors.As(err, &pe):
		return pe.Status, pe.Body, true
	case errors.As(err, &ce):
		return http.StatusGone, ce.Message, true
	}
	return 0, "", false
}

// errElse is a transaction of txn mode whose conditions did not hold: one
// of its keys was missing.
var errElse = errors.New("the transaction ran Else: a key is missing (preload the key space)")

// do sends one request and reads the answer. For a set it returns the
// revision of the change.
func (w *worker) do(ctx context.Context, op, key int) (int64, error) {
	w.key = appendKey(w.key[:0], w.b.cfg.prefix, key, w.b.width)
	switch op {
	case opSet:
		return w.b.kvs.Set(ctx, string(w.key), w.value, nil)
	case opTxn:
		// Move a value between key and another one: both must exist,
		// and both change at one revision.
		other := key
		if keys := w.b.cfg.keys; keys > 1 {
			other = (key + 1 + w.rng.IntN(keys-1)) % keys
		}
		a, b := string(w.key), string(appendKey(nil, w.b.cfg.prefix, other, w.b.width))
		t := &w.txn
		t.If = append(t.If[:0], client.IfExists(a, true), client.IfExists(b, true))
		t.Then = append(t.Then[:0], client.SetOp(a, w.value), client.SetOp(b, w.value))
		if a == b {
			t.If, t.Then = t.If[:1], t.Then[:1]
		}
		res, err := w.b.kvs.Txn(ctx, t)
		if err == nil && !res.Succeeded {
			err = errElse
		}
		if err != nil {
			return 0, err
		}
		return res.Revision, nil
	}
	_, err := w.b.kvs.Get(ctx, string(w.key), w.b.read)
	return 0, err
}

// errorKind names the kind of a transport error, for counting.
func errorKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed"
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE):
		return "too many open files"
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "no free local port"
	}
	return "error"
}

// startProgress prints line(elapsed) on stderr every cfg.progress until the
// returned function is called.
func (b *bench) startProgress(line func(elapsed time.Duration) string) (stop func()) {
	if b.cfg.progress <= 0 {
		return func() {}
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(b.cfg.progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintln(b.stderr, "kvsbench "+line(time.Since(start)))
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}

// load runs set, get, mixed or fill, after the preload.
func (b *bench) load(ctx context.Context) (*report, error) {
	cfg := &b.cfg
	rep := b.newReport()
	var failed int64
	if cfg.preload > 0 {
		pre, err := b.preload(ctx, cfg.preload)
		if err != nil {
			return nil, err
		}
		rep.Preload = pre
		for _, n := range pre.Errors {
			failed += n
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	ph := phase{label: cfg.mode, unit: "requests", pick: b.pickRandom(cfg.mode), rate: cfg.rate, duration: cfg.duration, total: cfg.total}
	if cfg.mode == "fill" {
		ph.pick = pickInOrder
		ph.total = int64(cfg.keys)
		if cfg.total > 0 {
			ph.total = min(ph.total, cfg.total)
		}
	}
	res := b.runPhase(ctx, ph)
	b.fillLoad(rep, res)
	rep.OK = failed == 0 && len(rep.Errors) == 0
	return rep, nil
}

// preload writes keys 0 .. n-1 once each.
func (b *bench) preload(ctx context.Context, n int) (*preloadReport, error) {
	res := b.runPhase(ctx, phase{label: "preload", unit: "sets", pick: pickInOrder, total: int64(n)})
	p := &preloadReport{Keys: n, Seconds: seconds(res.elapsed), OpsPerSec: perSec(res.ops, res.elapsed)}
	p.Errors, _ = errorMaps(res.errs)
	if res.ops == 0 && len(res.errs) > 0 {
		counts, samples := errorMaps(res.errs)
		return nil, fmt.Errorf("preload to %s failed: %s", b.cfg.base, errorsText(counts, samples))
	}
	return p, nil
}

func (b *bench) newReport() *report {
	cfg := &b.cfg
	r := &report{
		Mode:        cfg.mode,
		Target:      cfg.base,
		Connections: cfg.connections,
		Keys:        cfg.keys,
		KeySize:     cfg.keySize,
		ValueSize:   cfg.valueSize,
		Rate:        cfg.rate,
		Latency:     make(map[string]latencyStats),
	}
	if cfg.mode == "mixed" {
		r.ReadRatio = cfg.readRatio
	}
	return r
}

// fillLoad puts what a phase measured into r.
func (b *bench) fillLoad(r *report, res phaseResult) {
	r.Seconds = seconds(res.elapsed)
	r.Ops = res.ops
	r.OpsPerSec = perSec(res.ops, res.elapsed)
	all := new(histogram)
	for op, h := range res.hist {
		if h.count() > 0 {
			r.Latency[opNames[op]] = h.stats()
			all.merge(h)
		}
	}
	if b.cfg.mode == "mixed" {
		r.Latency["all"] = all.stats()
	}
	r.Errors, r.ErrorSamples = errorMaps(res.errs)
	r.Interrupted = res.interrupted
}
