package robustness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// A fault injects one kind of failure at random moments until ctx is done,
// from the test's goroutine (it may start processes), and leaves the
// cluster whole when it returns: every node up, every proxy healed.
type fault func(ctx context.Context, env *faultEnv)

// faultEnv is what a fault acts on.
type faultEnv struct {
	c    *cluster
	rng  *rand.Rand
	slow *watcher // the subscriber that stops reading, if any
	// fast is a watcher of every key that always reads: the slow one
	// catches up with it between its pauses.
	fast *watcher
	// injected counts the faults injected, by kind.
	injected map[string]int
}

// pause waits for d, or until ctx is done; it reports whether d passed.
func pause(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// between returns a random duration in [lo, hi).
func between(rng *rand.Rand, lo, hi time.Duration) time.Duration {
	return lo + time.Duration(rng.Int64N(int64(hi-lo)))
}

// killRestart kills a node with SIGKILL every lo to hi, and starts it
// again (after up to wait): the file backend recovers from its log, a
// Kafka instance replays the topic.
func killRestart(lo, hi, wait time.Duration) fault {
	return func(ctx context.Context, env *faultEnv) {
		for pause(ctx, between(env.rng, lo, hi)) {
			n := env.c.nodes[env.rng.IntN(len(env.c.nodes))]
			n.kill()
			env.injected[fmt.Sprintf("SIGKILL kvsd %d", n.i)]++
			if wait > 0 {
				pause(ctx, between(env.rng, 0, wait))
			}
			n.start()
		}
	}
}

// cutBroker makes the broker unreachable from every node for a while, at
// random moments: connections are closed and new ones refused, or (hold)
// accepted and never answered, as behind a partition.
func cutBroker(ctx context.Context, env *faultEnv) {
	for pause(ctx, between(env.rng, 500*time.Millisecond, 1500*time.Millisecond)) {
		hold := env.rng.IntN(2) == 0
		for _, n := range env.c.nodes {
			n.proxy.cut(hold)
		}
		env.injected[map[bool]string{false: "broker refusing", true: "broker silent"}[hold]]++
		pause(ctx, between(env.rng, 300*time.Millisecond, 1500*time.Millisecond))
		for _, n := range env.c.nodes {
			n.proxy.heal()
		}
	}
}

// slowDelivery delays what the broker sends to the last node, by a
// random 50-400ms, for stretches at random moments.
func slowDelivery(ctx context.Context, env *faultEnv) {
	p := env.c.nodes[len(env.c.nodes)-1].proxy
	defer p.setDelay(0)
	for {
		p.setDelay(between(env.rng, 50*time.Millisecond, 400*time.Millisecond))
		env.injected["slow broker to the last kvsd"]++
		if !pause(ctx, between(env.rng, 500*time.Millisecond, 2*time.Second)) {
			return
		}
		p.setDelay(0)
		if !pause(ctx, between(env.rng, 200*time.Millisecond, time.Second)) {
			return
		}
	}
}

// constantDelay delays what the broker sends to the last node by d for
// the whole run.
func constantDelay(d time.Duration) fault {
	return func(ctx context.Context, env *faultEnv) {
		p := env.c.nodes[len(env.c.nodes)-1].proxy
		p.setDelay(d)
		env.injected["slow broker to the last kvsd"]++
		<-ctx.Done()
		p.setDelay(0)
	}
}

// stopReading makes the slow subscriber stop reading at random moments,
// each time after it caught up again (or 30s passed): one that stayed
// behind for long would fall out of kvsd's history, and get 410, as it
// should, instead of resuming. A pause lasts until kvsd has dropped the
// subscriber for falling behind (kvs_feed_slow_consumers_total grew: its
// queue was full, after the sockets' buffers), then the subscriber reads
// again: what the sockets hold, then the 4408. Neither a time nor a count
// of changes would do: how much the kernel's buffers absorb, and how fast
// the clients write, vary. A pause also ends when a subscriber's
// connection ends otherwise (kvs_subscribers fell: kvsd's write to it
// timed out, which its write timeout allows when the clients made too few
// changes in the meantime), and after 60s (a hang guard).
func stopReading(ctx context.Context, env *faultEnv) {
	n := env.c.nodes[0]
	for pause(ctx, between(env.rng, 200*time.Millisecond, time.Second)) {
		dropped, err1 := n.metric(ctx, "kvs_feed_slow_consumers_total")
		subs, err2 := n.metric(ctx, "kvs_subscribers")
		if err1 != nil || err2 != nil {
			continue
		}
		stop, cancel := context.WithCancel(ctx)
		select {
		case env.slow.pause <- stop:
			env.injected["subscriber stops reading"]++
		default:
		}
		deadline := time.Now().Add(60 * time.Second)
		for pause(ctx, 50*time.Millisecond) {
			d, err1 := n.metric(ctx, "kvs_feed_slow_consumers_total")
			s, err2 := n.metric(ctx, "kvs_subscribers")
			if err1 == nil && d > dropped {
				env.injected["subscriber dropped as slow"]++
				break
			}
			if err2 == nil && s < subs || time.Now().After(deadline) {
				env.injected["pause ended otherwise"]++
				break
			}
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		wait, cancel := context.WithTimeout(ctx, 30*time.Second)
		env.slow.waitFor(wait, env.fast.position())
		cancel()
	}
}
