package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// The scenarios. Each runs real kvsd processes (internal/kvstest) with one
// kind of fault, records the traffic and the feeds, and checks them. In
// short mode (the default, part of go test ./...) they run side by side,
// a few seconds of traffic each. KVS_ROBUSTNESS=10m runs them one after
// the other for that long in all, each in rounds of up to 20s (each round
// on keys of its own, checked on its own; the faults and the watchers go
// on across rounds):
//
//	KVS_ROBUSTNESS=10m go test ./internal/robustness -run TestRobustness -v -timeout 30m

type scenario struct {
	name    string
	backend string
	nodes   int
	args    []string // more kvsd flags
	traffic trafficConfig
	fault   fault
	// watchers per node, of every key; each roams to another node when
	// its connection ends. One more watches the quiet key.
	watchers int
	// slow adds a subscriber that stops reading (see stopReading). In
	// short mode the traffic then goes on until kvsd has closed it for
	// being slow at least once, and the run waits for a progress event
	// to the quiet watcher (7.5-10s after its last change), so that the
	// run checks both.
	slow bool
	// inject changes what the first watcher records (checker self-tests).
	inject func(items []watchItem, it watchItem) []watchItem
}

var scenarios = []scenario{
	{
		name: "file/kill", backend: "file", nodes: 1, watchers: 2,
		args:    []string{"-history", "10000000"}, // resumable across every restart of a long run
		traffic: trafficConfig{clients: 6, keys: 5},
		fault:   killRestart(700*time.Millisecond, 1500*time.Millisecond, 0),
	},
	{
		name: "kafka/kill", backend: "kafka", nodes: 3, watchers: 1,
		traffic: trafficConfig{clients: 6, keys: 5},
		fault:   killRestart(time.Second, 2*time.Second, 300*time.Millisecond),
	},
	{
		name: "kafka/broker-cut", backend: "kafka", nodes: 2, watchers: 1,
		traffic: trafficConfig{clients: 6, keys: 5},
		fault:   cutBroker,
	},
	{
		name: "kafka/slow-delivery", backend: "kafka", nodes: 2, watchers: 1,
		traffic: trafficConfig{clients: 6, keys: 5},
		fault:   slowDelivery,
	},
	{
		// Large values fill the stopped subscriber's sockets with few
		// changes (kvsd's send buffer takes up to 4 MiB); a small queue
		// then has it dropped a few changes later, well within kvsd's
		// write timeout, and closed with 4408 when it reads again.
		name: "file/slow-subscriber", backend: "file", nodes: 1, watchers: 1, slow: true,
		args:    []string{"-subscriber-buffer", "8"},
		traffic: trafficConfig{clients: 4, keys: 5, pad: 64000},
		fault:   stopReading,
	},
}

// soak returns the long mode's duration, 0 in short mode.
func soak(t *testing.T) time.Duration {
	v := os.Getenv("KVS_ROBUSTNESS")
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		t.Fatalf("KVS_ROBUSTNESS=%q: want a duration such as 10m", v)
	}
	return d
}

// TestRobustness runs every scenario and fails on any violation. See
// docs/guarantees.md for what each one checks.
func TestRobustness(t *testing.T) {
	long := soak(t)
	if long == 0 {
		t.Parallel() // beside the checker's own tests
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			d := 4 * time.Second
			if long > 0 {
				d = long / time.Duration(len(scenarios))
			} else {
				t.Parallel()
			}
			res := runScenario(t, sc, d)
			for _, p := range res.problems {
				t.Error(p)
			}
			if sc.slow && long == 0 {
				// The scenario must exercise what it is for.
				if res.watch.byCode[4408] == 0 {
					t.Error("the subscriber that stopped reading was never closed with 4408")
				}
				if res.watch.progress == 0 {
					t.Error("no progress event was checked")
				}
			}
		})
	}
}

// result is what a scenario found.
type result struct {
	problems []string
	watch    watchStats
	ops      int
}

// roundMax is the longest round: a longer history takes the checker
// disproportionately longer.
const roundMax = 20 * time.Second

// runScenario runs sc for about d of traffic and returns what the checks
// found. It fails the test only when the run itself cannot go on.
func runScenario(t *testing.T, sc scenario, d time.Duration) result {
	short := os.Getenv("KVS_ROBUSTNESS") == ""
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0))
	c := startCluster(t, sc.backend, sc.nodes, sc.args...)
	clk := clock{began: time.Now()}
	probs := &problems{}
	lastAnswer := &lastTime{}

	// Watchers, from revision 1, until the end.
	wctx, stopWatchers := context.WithCancel(context.Background())
	defer stopWatchers()
	var (
		ws  []*watcher
		wwg sync.WaitGroup
	)
	for i := range c.nodes {
		for j := range sc.watchers {
			ws = append(ws, &watcher{name: fmt.Sprintf("watcher %d.%d", i, j), c: c, clock: clk, node: i, roam: true})
		}
	}
	ws[0].inject = sc.inject
	qw := &watcher{name: "quiet watcher", key: "quiet", c: c, clock: clk, roam: true}
	ws = append(ws, qw)
	env := &faultEnv{c: c, rng: rng, fast: ws[0], injected: make(map[string]int)}
	if sc.slow {
		// A receive buffer of 256 KiB absorbs little, yet holds two
		// segments of loopback's 64 KiB: with less, the window opens
		// so slowly when it reads again (about 100 KB/s with 4 KiB) that
		// kvsd's write times out before the 4408.
		env.slow = &watcher{name: "slow watcher", c: c, clock: clk, rcvbuf: 256 << 10, pause: make(chan context.Context, 1)}
		ws = append(ws, env.slow)
	}
	for _, w := range ws {
		wwg.Go(func() { w.run(wctx) })
	}

	// The quiet key is written once in a while only, so that its watcher
	// gets progress events.
	quiet := &history{name: "quiet", keys: []string{"quiet"}}
	newClient := func(id int, h *history, cfg trafficConfig) *client {
		return &client{id: id, c: c, h: h, cfg: cfg, clock: clk, http: newHTTPClient(),
			rng: rand.New(rand.NewPCG(rng.Uint64(), uint64(id))), problems: probs, lastAnswer: lastAnswer}
	}
	qctx, stopQuiet := context.WithCancel(context.Background())
	var qwg sync.WaitGroup
	qc := newClient(0, quiet, trafficConfig{keys: 1})
	qwg.Go(func() {
		for {
			if n := c.nodes[0]; n.url() != "" {
				qc.do(qctx, n.url(), 0, request{Kind: opSet, Value: qc.value()})
			}
			if !pause(qctx, between(qc.rng, 9*time.Second, 12*time.Second)) {
				return
			}
		}
	})

	// Rounds of traffic, each on keys of its own, with the fault.
	var histories []*history
	end := time.Now().Add(d)
	for r := 0; r == 0 || time.Until(end) > time.Second; r++ {
		h := &history{name: fmt.Sprintf("%s-r%d", strings.ReplaceAll(sc.name, "/", "-"), r)}
		for i := range sc.traffic.keys {
			h.keys = append(h.keys, keyName(h.name, i))
		}
		histories = append(histories, h)
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			pause(ctx, min(time.Until(end), roundMax))
			for sc.slow && short && env.slow.closes(4408) == 0 && time.Since(end) < 2*time.Minute { // a hang guard
				pause(ctx, 50*time.Millisecond)
			}
			cancel()
		}()
		var cwg sync.WaitGroup
		for i := range sc.traffic.clients {
			cl := newClient(i, h, sc.traffic)
			cwg.Go(func() { cl.run(ctx) })
		}
		if sc.fault != nil {
			sc.fault(ctx, env)
		}
		<-ctx.Done()
		cancel()
		cwg.Wait()
		c.up()
	}
	stopQuiet()
	qwg.Wait()

	// Let every write that may still land do so, list each round's keys on
	// every node, and write a fence that every watcher of every key must
	// receive: then the feeds are whole.
	c.settle(lastAnswer.get())
	lister := newClient(sc.traffic.clients, nil, sc.traffic)
	for _, h := range histories {
		lister.h = h
		for _, n := range c.nodes {
			lister.do(context.Background(), n.url(), n.i, request{Kind: opList})
		}
	}
	fence := writeFence(t, c)
	wait, cancelWait := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancelWait()
	for _, w := range ws {
		if w.key == "" {
			if err := w.waitFor(wait, fence); err != nil {
				probs.add("%v", err)
			}
		}
	}
	var quietRev int64
	for _, it := range ws[0].received() {
		if it.Key == "quiet" {
			quietRev = it.Rev
		}
	}
	if err := qw.waitFor(wait, quietRev); err != nil {
		probs.add("%v", err)
	}
	for sc.slow && short && qw.progressEvents() == 0 && wait.Err() == nil {
		pause(wait, 50*time.Millisecond)
	}
	stopWatchers()
	wwg.Wait()

	// Check.
	res := result{problems: probs.get()}
	feed, stats, wprobs := validateWatches(ws)
	res.watch = stats
	res.problems = append(res.problems, wprobs...)
	for _, ev := range feed {
		if _, err := keyIndex(ev.Key); err != nil && ev.Key != "quiet" && ev.Key != "fence" {
			res.problems = append(res.problems, fmt.Sprintf("the feed has %s %s at revision %d, a key nobody wrote", ev.Type, ev.Key, ev.Rev))
		}
	}
	unknown := 0
	var txns txnCounts
	began := time.Now()
	var slowest time.Duration
	for _, h := range append(histories, quiet) {
		ops := h.operations()
		res.ops += len(ops)
		for _, op := range ops {
			if op.Output.(response).Unknown {
				unknown++
			}
			txns.count(h.keys, op)
		}
		b := time.Now()
		if err := checkHistory(h, feed, 2*time.Minute); err != nil {
			res.problems = append(res.problems, err.Error())
		}
		slowest = max(slowest, time.Since(b))
	}
	starts := 0
	for _, n := range c.nodes {
		starts += n.starts - 1
	}
	t.Logf("%d operations in %d rounds (%d without an answer; transactions: %v), %d changes in the feed; faults: %v; restarts: %d; "+
		"watchers: %d events, %d progress events, closes by code %v; checked in %v (the slowest round %v)",
		res.ops, len(histories), unknown, txns, len(feed), env.injected, starts,
		stats.events, stats.progress, stats.byCode, time.Since(began).Round(time.Millisecond), slowest.Round(time.Millisecond))
	return res
}

// writeFence sets the key "fence" and returns its revision.
func writeFence(t *testing.T, c *cluster) int64 {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		resp, err := http.Post(c.nodes[0].url()+"/set", "application/json", strings.NewReader(`{"Key":"fence","Value":1}`))
		if err == nil {
			var ans struct{ Revision int64 }
			err = json.NewDecoder(resp.Body).Decode(&ans)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK && ans.Revision > 0 {
				return ans.Revision
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("fence: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
