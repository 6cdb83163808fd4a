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

// stopChanges is how many changes a pause of the slow subscriber lasts at
// least: enough to take kvsd's queue for it past -subscriber-buffer (32)
// once the sockets' buffers are full. Measured with 4 KiB of receive
// buffer: 148 changes in a pause did not, 295 did; most of them fill the
// buffers, and kvsd's write to the socket then waits, 5 s at least, for
// the subscriber to read again, which the pause must not outlast.
const stopChanges = 250

// stopReading makes the slow subscriber stop reading at random moments,
// each time after it caught up again (or 10s passed): one that stayed
// behind for long would fall out of kvsd's history, and get 410, as it
// should, instead of resuming. A pause lasts 2-4 s, and until the clients
// have made stopChanges changes since it began (at most 15 s): a
// subscriber falls behind by changes, not by time, and on a busy machine
// the clients make fewer of them in a second.
func stopReading(ctx context.Context, env *faultEnv) {
	for pause(ctx, between(env.rng, 200*time.Millisecond, time.Second)) {
		stop, cancel := context.WithCancel(ctx)
		select {
		case env.slow.pause <- stop:
			env.injected["subscriber stops reading"]++
		default:
		}
		began, from := time.Now(), env.fast.position()
		least := between(env.rng, 2*time.Second, 4*time.Second)
		for pause(ctx, 50*time.Millisecond) && time.Since(began) < 15*time.Second &&
			(time.Since(began) < least || env.fast.position()-from < stopChanges) {
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		wait, cancel := context.WithTimeout(ctx, 10*time.Second)
		env.slow.waitFor(wait, env.fast.position())
		cancel()
	}
}
