package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/wire"
)

// ackLog records when each set was acknowledged, by revision. Times are
// nanoseconds since base. Safe for concurrent use.
type ackLog struct {
	base time.Time

	// mu guards the fields below.
	mu   sync.RWMutex
	at   map[int64]int64
	max  int64
	dups int64 // revisions answered to more than one set
}

func newAckLog() *ackLog {
	return &ackLog{base: time.Now(), at: make(map[int64]int64)}
}

// since returns t as nanoseconds since the log's base.
func (a *ackLog) since(t time.Time) int64 { return int64(t.Sub(a.base)) }

// add records that the set of revision rev was acknowledged at t.
func (a *ackLog) add(rev int64, t time.Time) {
	ns := a.since(t)
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.at[rev]; ok {
		a.dups++
		return
	}
	a.at[rev] = ns
	a.max = max(a.max, rev)
}

// get returns when the set of revision rev was acknowledged, if it was.
func (a *ackLog) get(rev int64) (int64, bool) {
	a.mu.RLock()
	ns, ok := a.at[rev]
	a.mu.RUnlock()
	return ns, ok
}

// last returns the highest acknowledged revision, 0 if none.
func (a *ackLog) last() int64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.max
}

// sorted returns the acknowledged revisions in increasing order.
func (a *ackLog) sorted() []int64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	revs := make([]int64, 0, len(a.at))
	for r := range a.at {
		revs = append(revs, r)
	}
	slices.Sort(revs)
	return revs
}

// ackedUpTo returns the prefix of acked (increasing) that is <= rev.
func ackedUpTo(acked []int64, rev int64) []int64 {
	i, _ := slices.BinarySearch(acked, rev+1)
	return acked[:i]
}

// watchRun is what the subscribers of one watch run share.
type watchRun struct {
	acks   *ackLog
	prefix string
	// kvs opens the subscriptions; its timeout bounds each handshake.
	kvs *client.Client
	// resume makes a subscriber closed with 4408 subscribe again.
	resume bool
}

// dial subscribes, from revision from when it is > 0.
func (f *watchRun) dial(ctx context.Context, from int64) (*client.Subscription, error) {
	return f.kvs.Subscribe(ctx, client.SubscribeOptions{Prefix: f.prefix, From: from})
}

// delivery is an event that arrived before its set's acknowledgement was
// recorded.
type delivery struct{ rev, at int64 }

// subscriber is one WebSocket subscriber and what it saw. Its fields are
// written by its own goroutine only; the atomics are also read by the
// progress line and the drain wait.
type subscriber struct {
	f       *watchRun
	check   feedCheck
	hist    *histogram // acknowledgement to delivery
	pending []delivery
	early   int64 // deliveries before their acknowledgement (latency 0)
	errs    errorSet
	// connected is set when the first subscription succeeded.
	connected  bool
	reconnects int64
	// cut is set when the server ended the subscription and it did not
	// resume: only revisions up to seen are expected.
	cut    bool
	lastAt int64 // time of the last delivery, ns since the ack log's base

	seen  atomic.Int64 // everything matching up to it was received (events and progress)
	n     atomic.Int64 // events received
	ended atomic.Bool  // the goroutine is done reading
}

func newSubscriber(f *watchRun) *subscriber { return &subscriber{f: f, hist: new(histogram)} }

// run subscribes (from revision from when > 0) and reads until ctx is done
// or the server ends the subscription. dialed is called after the first
// subscription attempt, once connected says how it went.
func (s *subscriber) run(ctx context.Context, from int64, dialed func()) {
	defer s.ended.Store(true)
	c, err := s.f.dial(ctx, from)
	if err != nil {
		if ctx.Err() == nil {
			s.dialError(err)
		}
		dialed()
		return
	}
	s.connected = true
	dialed()
	for {
		err := s.read(c)
		c.Close()
		if ctx.Err() != nil {
			return
		}
		next, ok := s.closed(err)
		if !ok {
			s.cut = true
			return
		}
		s.reconnects++
		if c, err = s.f.dial(ctx, next); err != nil {
			if ctx.Err() == nil {
				s.dialError(err)
			}
			s.cut = true
			return
		}
	}
}

func (s *subscriber) dialError(err error) {
	if code, msg, ok := answered(err); ok {
		s.errs.add(fmt.Sprintf("subscribe: http %d", code), msg)
		return
	}
	s.errs.add("subscribe: "+errorKind(err), err.Error())
}

// read handles events until the subscription ends (its context's end
// closes it), and returns why it ended.
func (s *subscriber) read(sub *client.Subscription) error {
	for {
		ev, err := sub.Next()
		var pe *client.ProtocolError
		if errors.As(err, &pe) && pe.Status == http.StatusSwitchingProtocols {
			s.errs.add("feed: bad event", pe.Body)
			continue
		}
		if err != nil {
			return err
		}
		now := s.f.acks.since(time.Now())
		switch ev.Type {
		case wire.EventSet, wire.EventDelete:
			if !strings.HasPrefix(ev.Key, s.f.prefix) {
				s.errs.add("feed: event for a key outside the prefix", ev.Key)
				continue
			}
			s.deliver(ev.Revision, now)
		case wire.EventProgress:
			if ev.Revision < s.check.last {
				s.errs.add("feed: progress revision below a delivered one",
					fmt.Sprintf("progress %d after revision %d", ev.Revision, s.check.last))
			}
			s.seen.Store(max(s.seen.Load(), ev.Revision))
		default:
			s.errs.add("feed: unknown event type", ev.Type)
		}
	}
}

// deliver records the delivery of revision rev at time now.
func (s *subscriber) deliver(rev, now int64) {
	s.check.add(rev)
	s.lastAt = now
	if at, ok := s.f.acks.get(rev); ok {
		s.record(now - at)
	} else {
		s.pending = append(s.pending, delivery{rev, now})
	}
	s.seen.Store(max(s.seen.Load(), rev))
	s.n.Add(1)
}

// record adds one acknowledgement-to-delivery latency; a negative one (the
// event came before the HTTP answer) counts as 0.
func (s *subscriber) record(lat int64) {
	if lat < 0 {
		lat = 0
		s.early++
	}
	s.hist.record(lat)
}

// settle records the latency of the deliveries that came before their
// acknowledgement was recorded, once every acknowledgement is in.
func (s *subscriber) settle() {
	for _, d := range s.pending {
		if at, ok := s.f.acks.get(d.rev); ok {
			s.record(d.at - at)
		}
	}
	s.pending = nil
}

// closed records why the server ended the subscription, and returns the
// revision to subscribe from again, or false when the subscriber stops.
func (s *subscriber) closed(err error) (int64, bool) {
	var (
		ce  *client.CloseError
		cpe *client.CompactedError
	)
	switch {
	case errors.As(err, &cpe):
		s.errs.add(fmt.Sprintf("feed: closed by the server (%d)", wire.CloseCompacted), cpe.Message)
		return 0, false
	case !errors.As(err, &ce):
		s.errs.add("feed: "+errorKind(err), err.Error())
		return 0, false
	}
	switch ce.Code {
	case wire.CloseSlowConsumer:
		s.errs.add("feed: slow consumer (4408)", ce.Reason)
	case wire.CloseGoingAway:
		s.errs.add("feed: server going away (1001)", ce.Reason)
		return 0, false
	default:
		s.errs.add(fmt.Sprintf("feed: closed by the server (%d)", int(ce.Code)), ce.Reason)
		return 0, false
	}
	// The server says where to resume: right after what it sent us.
	next := s.seen.Load() + 1
	r, ok := ce.Resume, ce.Resume > 0
	switch {
	case ok && s.seen.Load() == 0:
		next = r
	case ok && r != next:
		s.errs.add("feed: wrong resume revision",
			fmt.Sprintf("server says resume from %d, got everything up to %d", r, next-1))
	case !ok && s.seen.Load() == 0:
		return 0, false
	}
	return next, s.f.resume
}

// watch runs the watch mode at rate sets per second: subscribers connect,
// sets are made, then every subscriber must have received each
// acknowledged revision once, in order.
func (b *bench) watch(ctx context.Context, rate float64) (*report, error) {
	cfg := &b.cfg
	rep := b.newReport()
	rep.Rate = rate
	if cfg.preload > 0 {
		pre, err := b.preload(ctx, cfg.preload)
		if err != nil {
			return nil, err
		}
		rep.Preload = pre
	}
	kvs, err := cfg.client(&http.Transport{
		Proxy:           nil,
		DialContext:     (&net.Dialer{Timeout: cfg.timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig: cfg.tlsConfig(),
	})
	if err != nil {
		return nil, err
	}
	f := &watchRun{acks: newAckLog(), prefix: cfg.prefix, kvs: kvs, resume: cfg.resume}
	defer kvs.CloseIdleConnections()
	var from int64
	if cfg.from {
		rev, err := b.revision(ctx)
		if err != nil {
			return nil, err
		}
		from = rev + 1
	}

	// Subscribers outlive an interrupt of the set phase long enough to
	// receive what was acknowledged; an interrupt while they subscribe
	// stops them at once.
	subCtx, cancelSubs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelSubs()
	stopDialing := context.AfterFunc(ctx, cancelSubs)
	subs, running := b.subscribe(subCtx, f, from)
	stop := func() {
		cancelSubs()
		running.Wait()
	}
	if !cfg.from && !anyConnected(subs) {
		stop()
		var errs errorSet
		for _, s := range subs {
			errs.merge(s.errs)
		}
		counts, samples := errorMaps(errs)
		return nil, fmt.Errorf("no subscriber could subscribe at %s%s: %s", cfg.base, wire.PathSubscribe, errorsText(counts, samples))
	}
	if !stopDialing() {
		running.Wait()
		return nil, ctx.Err()
	}

	start := f.acks.since(time.Now())
	res := b.runPhase(ctx, phase{
		label:    fmt.Sprintf("watch %g/s", rate),
		unit:     "sets",
		pick:     b.pickRandom("set"),
		rate:     rate,
		duration: cfg.duration,
		total:    cfg.total,
		onAck:    f.acks.add,
		extra: func(el time.Duration) string {
			var n int64
			for _, s := range subs {
				n += s.n.Load()
			}
			return fmt.Sprintf(", %d events delivered (%.0f/s)", n, perSec(n, el))
		},
	})
	b.awaitDelivery(ctx, subs, f.acks.last())
	stop()

	b.fillLoad(rep, res)
	b.verifyWatch(rep, f, subs, res.errs, start)
	return rep, nil
}

// awaitDelivery waits until every subscriber has every acknowledged
// revision, up to target, for at most -drain (a second once interrupted).
func (b *bench) awaitDelivery(ctx context.Context, subs []*subscriber, target int64) {
	if target <= 0 {
		return
	}
	drain := b.cfg.drain
	if ctx.Err() != nil {
		drain = min(drain, time.Second) // interrupted: do not linger
	}
	deadline := time.Now().Add(drain)
	for time.Now().Before(deadline) && !caughtUp(subs, target) {
		time.Sleep(5 * time.Millisecond)
	}
}

// subscribe starts cfg.subscribers subscribers of f from the revision
// from (0: from now on), at most 64 handshakes at a time. Unless cfg.from,
// it returns once every handshake is done, so that each subscription is
// registered before the first set. running ends when all have stopped.
func (b *bench) subscribe(ctx context.Context, f *watchRun, from int64) ([]*subscriber, *sync.WaitGroup) {
	subs := make([]*subscriber, b.cfg.subscribers)
	var dialed sync.WaitGroup
	running := new(sync.WaitGroup)
	dialed.Add(len(subs))
	sem := make(chan struct{}, 64) // handshakes at a time
	for i := range subs {
		s := newSubscriber(f)
		subs[i] = s
		running.Go(func() {
			sem <- struct{}{}
			s.run(ctx, from, func() {
				<-sem
				dialed.Done()
			})
		})
	}
	if !b.cfg.from {
		dialed.Wait()
	}
	return subs, running
}

// anyConnected reports whether a subscriber completed its handshake.
func anyConnected(subs []*subscriber) bool {
	for _, s := range subs {
		if s.connected {
			return true
		}
	}
	return false
}

// verifyWatch checks what each subscriber received against the
// acknowledged sets, and writes the verdict, the delivery latency and the
// errors (errs: the set phase's, then the subscribers') into rep. start is
// when the sets began.
func (b *bench) verifyWatch(rep *report, f *watchRun, subs []*subscriber, errs errorSet, start int64) {
	acked := f.acks.sorted()
	var (
		total     verdict
		hist      = new(histogram)
		lastAt    int64
		bad       int
		early     int64
		reconn    int64
		connected int
	)
	if d := f.acks.dups; d > 0 {
		errs.addN("set: revision answered to two sets", "", d)
	}
	for _, s := range subs {
		errs.merge(s.errs)
		if !s.connected {
			continue
		}
		connected++
		want := acked
		if s.cut {
			want = ackedUpTo(acked, s.seen.Load())
		}
		v := s.check.verify(want)
		if !v.ok() {
			bad++
		}
		total.add(v)
		s.settle()
		hist.merge(s.hist)
		early += s.early
		reconn += s.reconnects
		lastAt = max(lastAt, s.lastAt)
	}
	rep.Latency["delivery"] = hist.stats()
	rep.Errors, rep.ErrorSamples = errorMaps(errs)
	rep.Watch = &watchReport{
		KeyPrefix:       b.cfg.prefix,
		Subscribers:     len(subs),
		Connected:       connected,
		verdict:         total,
		DeliveredPerSec: perSec(total.Delivered, time.Duration(lastAt-start)),
		BadSubscribers:  bad,
		Early:           early,
		Reconnects:      reconn,
	}
	rep.OK = len(rep.Errors) == 0 && total.ok() && connected == len(subs)
	if rep.Preload != nil && len(rep.Preload.Errors) > 0 {
		rep.OK = false
	}
}

// caughtUp reports whether every subscriber still reading has received
// everything up to revision target.
func caughtUp(subs []*subscriber, target int64) bool {
	for _, s := range subs {
		if !s.ended.Load() && s.seen.Load() < target {
			return false
		}
	}
	return true
}

// revision returns the server's current revision.
func (b *bench) revision(ctx context.Context) (int64, error) {
	rev, err := b.kvs.Revision(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("reading the current revision from %s: %v", b.cfg.base, err)
	}
	return rev, nil
}

// keptUp reports whether a setter that made ops sets in seconds kept up
// with rate: whether it made nine in ten of those that fell due in the
// step's duration (the pacer hands out no more), or, without a duration,
// kept nine tenths of the rate. The step's seconds include the time the
// last sets took to answer, so a rate computed with them would fail a
// short step for one slow answer.
func keptUp(ops int64, seconds, rate float64, duration time.Duration, total int64) bool {
	if duration <= 0 {
		return float64(ops) >= 0.9*rate*seconds
	}
	due := rate * duration.Seconds()
	if total > 0 {
		due = min(due, float64(total))
	}
	return float64(ops) >= 0.9*due
}

// sweep runs watch at each rate of -sweep, stopping at the first that
// fails, and reports the highest rate that passed.
func (b *bench) sweep(ctx context.Context) (*sweepReport, error) {
	cfg := &b.cfg
	limit := float64(cfg.sweepP99) / 1e3
	sr := &sweepReport{Mode: "watch", Target: cfg.base, Subscribers: cfg.subscribers, P99LimitUS: limit, OK: true}
	for i, rate := range cfg.sweep {
		step, err := b.watch(ctx, rate)
		if err != nil {
			return nil, err
		}
		// A step passes when it saw no error, a correct feed, delivery p99
		// within the limit, and the setter kept up with the rate.
		pass := step.OK && step.Latency["delivery"].P99 <= limit && keptUp(step.Ops, step.Seconds, rate, cfg.duration, cfg.total) && !step.Interrupted
		step.Pass = &pass
		sr.Steps = append(sr.Steps, *step)
		if step.Watch != nil && !step.Watch.verdict.ok() {
			sr.OK = false // a wrong feed is a bug at any rate
		}
		if !pass {
			if i == 0 {
				sr.OK = false
			}
			break
		}
		sr.BestRate = rate
		if ctx.Err() != nil {
			break
		}
	}
	return sr, nil
}
