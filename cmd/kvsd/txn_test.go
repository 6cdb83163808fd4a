package main_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/kvstest"
)

// The guarantees of transactions (POST /txn), checked on the real kvsd
// with every backend: atomic under readers that check an invariant,
// across SIGKILL of the file backend, and serialized in log order across
// two instances in Kafka mode.

// txn runs a transaction and returns its result, or an error for anything
// but a 200. It is safe to call from any goroutine.
func (c *client) txn(req httpapi.TxnRequest) (*httpapi.TxnResult, error) {
	code, ans, err := c.post("/txn", req)
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("txn: %d %s", code, ans)
	}
	var res httpapi.TxnResult
	if err := json.Unmarshal(ans, &res); err != nil {
		return nil, err
	}
	return &res, nil
}

func txnGet(key string) httpapi.TxnOp { return httpapi.TxnOp{Op: "get", Key: key} }
func txnSet(key, value string) httpapi.TxnOp {
	return httpapi.TxnOp{Op: "set", Key: key, Value: json.RawMessage(value)}
}
func txnRev(key string, rev int64) httpapi.TxnCond { return httpapi.TxnCond{Key: key, Revision: &rev} }

// bank is the invariant the tests check: n accounts whose balances sum to
// total, changed only by transfers between two of them in one transaction.
type bank struct {
	keys  []string
	total int
}

func newBank(n, each int) *bank {
	b := &bank{total: n * each}
	for i := range n {
		b.keys = append(b.keys, fmt.Sprintf("acct/%d", i))
	}
	return b
}

// open sets every account to its initial balance in one transaction.
func (b *bank) open(c *client) (int64, error) {
	var ops []httpapi.TxnOp
	for _, k := range b.keys {
		ops = append(ops, txnSet(k, strconv.Itoa(b.total/len(b.keys))))
	}
	res, err := c.txn(httpapi.TxnRequest{Then: ops})
	if err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// transfer reads two accounts and moves a random amount between them if
// neither changed meanwhile. It returns the transaction's result (nil if
// the two were the same account).
func (b *bank) transfer(c *client, rng *rand.Rand) (*httpapi.TxnResult, error) {
	from, to := b.keys[rng.IntN(len(b.keys))], b.keys[rng.IntN(len(b.keys))]
	if from == to {
		return nil, nil
	}
	res, err := c.txn(httpapi.TxnRequest{Then: []httpapi.TxnOp{txnGet(from), txnGet(to)}})
	if err != nil {
		return nil, err
	}
	ef, et := res.Results[0], res.Results[1]
	vf, _ := strconv.Atoi(string(ef.Value))
	vt, _ := strconv.Atoi(string(et.Value))
	amount := rng.IntN(50)
	return c.txn(httpapi.TxnRequest{
		If:   []httpapi.TxnCond{txnRev(from, ef.Revision), txnRev(to, et.Revision)},
		Then: []httpapi.TxnOp{txnSet(from, strconv.Itoa(vf-amount)), txnSet(to, strconv.Itoa(vt+amount))},
	})
}

// sum returns the sum of the accounts in values (key -> JSON number), and
// an error unless every account is there.
func (b *bank) sum(values map[string]string) (int, error) {
	s := 0
	for _, k := range b.keys {
		v, ok := values[k]
		if !ok {
			return 0, fmt.Errorf("account %s missing", k)
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("account %s = %q", k, v)
		}
		s += n
	}
	return s, nil
}

// checkFeed applies events one whole revision at a time from the first,
// checks the sum after each revision, and that the events of a revision
// arrive together, all but the last with More. It returns the events by
// revision.
func (b *bank) checkFeed(evs []httpapi.Event) (map[int64][]httpapi.Event, error) {
	values := map[string]string{}
	byRev := map[int64][]httpapi.Event{}
	for i := 0; i < len(evs); {
		rev := evs[i].Revision
		if _, seen := byRev[rev]; seen {
			return nil, fmt.Errorf("the events of revision %d are not together", rev)
		}
		j := i
		for ; j < len(evs) && evs[j].Revision == rev; j++ {
			if more := j+1 < len(evs) && evs[j+1].Revision == rev; evs[j].More != more {
				return nil, fmt.Errorf("event %d (%s at %d): More %v, want %v", j, evs[j].Key, rev, evs[j].More, more)
			}
			if evs[j].Type == "set" {
				values[evs[j].Key] = string(evs[j].Value)
			} else {
				delete(values, evs[j].Key)
			}
		}
		byRev[rev] = evs[i:j]
		if s, err := b.sum(values); err == nil && s != b.total {
			return nil, fmt.Errorf("after revision %d the feed sums to %d, want %d", rev, s, b.total)
		}
		i = j
	}
	return byRev, nil
}

// collectFeed reads ws until it has every change up to rev: an event at
// rev or later without More.
func collectFeed(t *testing.T, ws *websocket.Conn, rev int64) []httpapi.Event {
	t.Helper()
	ws.SetReadLimit(1 << 20)
	var evs []httpapi.Event
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second) // a hang guard
	defer cancel()
	for len(evs) == 0 || evs[len(evs)-1].Revision < rev || evs[len(evs)-1].More {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("reading the feed after %d events: %v", len(evs), err)
		}
		var ev httpapi.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "progress" {
			evs = append(evs, ev)
		}
	}
	return evs
}

// runBank runs 8 writers making transfers through clients (round robin)
// and two readers on each client that check the sum, through /getall and
// through gets inside a transaction, until each writer made perWriter
// attempts. It returns the revision of every transfer that succeeded, with
// what it wrote.
func runBank(t *testing.T, b *bank, clients []*client, perWriter int) map[int64][]httpapi.TxnOpResult {
	t.Helper()
	var (
		mu     sync.Mutex
		done   = map[int64][]httpapi.TxnOpResult{}
		stop   atomic.Bool
		checks atomic.Int64
	)
	var writers, readers sync.WaitGroup
	for w := range 8 {
		c := clients[w%len(clients)]
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range perWriter {
				res, err := b.transfer(c, rng)
				if err != nil {
					t.Error(err)
					return
				}
				if res != nil && res.Succeeded {
					mu.Lock()
					done[res.Revision] = res.Results
					mu.Unlock()
				}
			}
		})
	}
	all := make([]httpapi.TxnOp, len(b.keys))
	for i, k := range b.keys {
		all[i] = txnGet(k)
	}
	for _, c := range clients {
		readers.Go(func() {
			for !stop.Load() {
				values, rev := c.getall()
				if s, err := b.sum(values); err != nil || s != b.total {
					t.Errorf("%s /getall at %d: sum %d, %v; want %d", c.url, rev, s, err, b.total)
					return
				}
				checks.Add(1)
			}
		})
		readers.Go(func() {
			for !stop.Load() {
				res, err := c.txn(httpapi.TxnRequest{Then: all})
				if err != nil {
					t.Error(err)
					return
				}
				values := map[string]string{}
				for _, r := range res.Results {
					values[r.Key] = string(r.Value)
				}
				if s, err := b.sum(values); err != nil || s != b.total {
					t.Errorf("%s gets in a transaction at %d: sum %d, %v; want %d", c.url, res.Revision, s, err, b.total)
					return
				}
				checks.Add(1)
			}
		})
	}
	writers.Wait()
	stop.Store(true)
	readers.Wait()
	if len(done) == 0 {
		t.Fatal("no transfer succeeded")
	}
	t.Logf("%d transfers, %d reads checked", len(done), checks.Load())
	return done
}

// TestTxnInvariant moves amounts between accounts with 8 writers on each
// backend while readers check that the sum stays constant through /getall
// and through gets inside transactions, then replays the feed from
// revision 1 one whole revision at a time and checks the sum after each,
// and that each transfer's revision holds exactly its changes.
func TestTxnInvariant(t *testing.T) {
	for _, backend := range []string{"memory", "file", "kafka"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			args := []string{"-backend", backend}
			if backend == "kafka" {
				b := startBroker(t, false)
				args = append(args, "-kafka-brokers", b.addr, "-kafka-topic", newTopic())
			}
			srv := kvstest.Start(t, args...)
			waitReady(t, srv, http.StatusOK)
			c := newClient(t, srv)
			b := newBank(8, 1000)
			if _, err := b.open(c); err != nil {
				t.Fatal(err)
			}
			done := runBank(t, b, []*client{c}, 60)
			evs := collectFeed(t, subscribe(t, srv, 1), lastRev(done))
			byRev, err := b.checkFeed(evs)
			if err != nil {
				t.Fatal(err)
			}
			checkTransfers(t, done, byRev)
		})
	}
}

// lastRev returns the highest revision of done.
func lastRev(done map[int64][]httpapi.TxnOpResult) int64 {
	var last int64
	for rev := range done {
		last = max(last, rev)
	}
	return last
}

// checkTransfers checks that the feed holds, at each transfer's revision,
// exactly the changes the transfer answered with.
func checkTransfers(t *testing.T, done map[int64][]httpapi.TxnOpResult, byRev map[int64][]httpapi.Event) {
	t.Helper()
	for rev, results := range done {
		evs := byRev[rev]
		if len(evs) != len(results) {
			t.Fatalf("revision %d: the feed has %v, the transaction answered %+v", rev, evs, results)
		}
		for i, r := range results {
			if evs[i].Type != "set" || evs[i].Key != r.Key || string(evs[i].Value) != string(r.Value) || r.Revision != rev {
				t.Fatalf("revision %d: the feed has %+v, the transaction answered %+v", rev, evs[i], r)
			}
		}
	}
}

// TestTxnKafkaTwoInstances runs transfers between overlapping accounts
// from two kvsd sharing a topic: the transactions serialize as the log
// orders them, so both instances end with the same entries and the same
// feed, which keeps the sum at every revision, and every transfer's
// revision holds exactly its changes on both.
func TestTxnKafkaTwoInstances(t *testing.T) {
	br := startBroker(t, false)
	topic := newTopic()
	srvA, srvB := startKafkaKvsd(t, br, topic), startKafkaKvsd(t, br, topic)
	a, bc := newClient(t, srvA), newClient(t, srvB)
	b := newBank(4, 1000) // few accounts: transfers from both instances collide
	rev, err := b.open(a)
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, bc, rev)
	done := runBank(t, b, []*client{a, bc}, 40)
	_, lastA := a.getall()
	waitRev(t, bc, lastA)
	_, lastB := bc.getall()
	waitRev(t, a, lastB)
	if ea, eb := entries(t, a), entries(t, bc); !sameEntries(ea, eb) {
		t.Fatalf("the instances differ:\nA: %v\nB: %v", ea, eb)
	}
	last := lastRev(done)
	evA := collectFeed(t, subscribe(t, srvA, 1), last)
	evB := collectFeed(t, subscribe(t, srvB, 1), last)
	if !slices.EqualFunc(evA, evB, sameEvent) {
		t.Fatalf("the feeds differ:\nA: %v\nB: %v", evA, evB)
	}
	byRev, err := b.checkFeed(evA)
	if err != nil {
		t.Fatal(err)
	}
	checkTransfers(t, done, byRev)
}

// TestTxnCrashRecovery runs 8 writers that each change several keys of
// their own per transaction (sets and deletes, all with the transaction's
// id), kills kvsd with SIGKILL at a random moment, restarts it on the same
// data directory, and checks that every acknowledged transaction is there
// whole (every key it changed and no later transaction changed has its
// value and revision), that the transaction in flight at the kill is there
// whole or not at all, and that nothing else is. KVS_CRASH_RUNS sets the
// number of kills (default 5).
func TestTxnCrashRecovery(t *testing.T) {
	runs := crashRuns(t, 5)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	const writers, keysPerWriter = 8, 6

	type entry = txnEntry
	dir := t.TempDir()
	model := make([]map[string]entry, writers) // each writer's keys as acknowledged
	for w := range model {
		model[w] = map[string]entry{}
	}
	inflight := make([]*httpapi.TxnRequest, writers)
	var maxAcked int64
	owner := map[int64]int{}            // the writer of each acknowledged revision
	lastAcked := make([]int64, writers) // each writer's last acknowledged revision

	for run := 0; ; run++ {
		srv := kvstest.Start(t, "-data", dir, "-snapshot-bytes", "16384")
		c := newClient(t, srv)
		all, rev := c.getall()
		if rev < maxAcked {
			t.Fatalf("run %d: store at revision %d after restart, below the acknowledged %d", run, rev, maxAcked)
		}
		for w := range writers {
			got := map[string]entry{}
			for k, v := range all {
				if strings.HasPrefix(k, fmt.Sprintf("w%d/", w)) {
					e := c.get(k)
					got[k] = entry{v, e.Revision}
				}
			}
			if sameState(got, model[w]) {
				continue
			}
			// Then the transaction in flight was applied, whole.
			p := inflight[w]
			if p == nil {
				t.Fatalf("run %d: writer %d's keys are\n%v\nnot the acknowledged\n%v", run, w, got, model[w])
			}
			want := maps.Clone(model[w])
			var txnRev int64
			for _, op := range p.Then {
				if op.Op == "set" {
					txnRev = got[op.Key].rev
				}
			}
			for _, op := range p.Then {
				if op.Op == "set" {
					want[op.Key] = entry{string(op.Value), txnRev}
				} else {
					delete(want, op.Key)
				}
			}
			if w2, taken := owner[txnRev]; taken {
				t.Fatalf("run %d: writer %d's transaction in flight applied at revision %d, acknowledged to writer %d", run, w, txnRev, w2)
			}
			if txnRev <= lastAcked[w] || !sameState(got, want) {
				t.Fatalf("run %d: writer %d's keys are\n%v\nneither the acknowledged\n%v\nnor with the transaction in flight %+v applied whole", run, w, got, model[w], p)
			}
			model[w] = want
			owner[txnRev], lastAcked[w] = w, txnRev
			maxAcked = max(maxAcked, txnRev)
		}
		clear(inflight)
		if run == runs {
			if code := srv.Stop(); code != 0 {
				t.Fatalf("exit code after SIGTERM: %d", code)
			}
			break
		}

		var wg sync.WaitGroup
		var acked, top atomic.Int64
		revs := make([][]int64, writers) // acknowledged in this run, by writer
		for w := range writers {
			wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			wg.Go(func() {
				for n := 0; ; n++ {
					// Set two to four of the writer's keys, and delete one
					// other if it exists, all marked with the transaction.
					id := strconv.Quote(fmt.Sprintf("w%d r%d n%d", w, run, n))
					perm := wrng.Perm(keysPerWriter)
					req := &httpapi.TxnRequest{}
					for _, i := range perm[:2+wrng.IntN(3)] {
						req.Then = append(req.Then, txnSet(fmt.Sprintf("w%d/k%d", w, i), id))
					}
					if k := fmt.Sprintf("w%d/k%d", w, perm[5]); wrng.IntN(2) == 0 {
						if _, ok := model[w][k]; ok {
							req.Then = append(req.Then, httpapi.TxnOp{Op: "delete", Key: k})
						}
					}
					res, err := c.txn(*req)
					if err != nil {
						inflight[w] = req
						return
					}
					for _, r := range res.Results {
						if r.Op == "set" {
							model[w][r.Key] = entry{string(r.Value), res.Revision}
						} else {
							delete(model[w], r.Key)
						}
					}
					acked.Add(1)
					revs[w] = append(revs[w], res.Revision)
					for m := top.Load(); res.Revision > m && !top.CompareAndSwap(m, res.Revision); m = top.Load() {
					}
				}
			})
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		srv.Kill()
		wg.Wait()
		maxAcked = max(maxAcked, top.Load())
		for w := range revs {
			for _, r := range revs[w] {
				if w2, taken := owner[r]; taken {
					t.Fatalf("run %d: revision %d acknowledged to writers %d and %d", run, r, w2, w)
				}
				owner[r] = w
				lastAcked[w] = max(lastAcked[w], r)
			}
		}
		t.Logf("run %d: %d transactions acknowledged before the kill, up to revision %d", run, acked.Load(), maxAcked)
	}
}

// txnEntry is a key's value (JSON text) and revision.
type txnEntry struct {
	value string
	rev   int64
}

func sameState(a, b map[string]txnEntry) bool { return maps.Equal(a, b) }

// TestTxnFlag checks -max-txn-ops and its environment twin: a bad value
// stops kvsd, and the limit it sets is the one /txn enforces.
func TestTxnFlag(t *testing.T) {
	r := runBinary(t, "kvsd", cleanEnv("KVS_MAX_TXN_OPS=0"), "-addr", "127.0.0.1:0", "-backend", "memory")
	if r.code == 0 || !strings.Contains(r.stderr, "-max-txn-ops 0") {
		t.Fatalf("KVS_MAX_TXN_OPS=0: exit %d\n%s\nwant a non-zero exit naming -max-txn-ops", r.code, r.stderr)
	}
	srv := kvstest.Start(t, "-backend", "memory", "-max-txn-ops", "2")
	c := newClient(t, srv)
	if _, err := c.txn(httpapi.TxnRequest{Then: []httpapi.TxnOp{txnGet("a"), txnGet("b")}}); err != nil {
		t.Fatalf("two operations: %v", err)
	}
	_, err := c.txn(httpapi.TxnRequest{Then: []httpapi.TxnOp{txnGet("a"), txnGet("b"), txnGet("c")}})
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "at most 2") {
		t.Fatalf("three operations: got %v, want a 400 naming the limit", err)
	}
}
