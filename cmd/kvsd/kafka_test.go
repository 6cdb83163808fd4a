package main_test

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/kvstest"
)

// The Kafka tests run real kvsd processes against a broker that speaks the
// Kafka protocol, kfake, running in the test process on 127.0.0.1. With
// KVS_TEST_KAFKA=host:port they use that broker instead (for example the
// one of compose.yaml); the tests that stop the broker are then skipped.

// broker is a kfake broker on a fixed port, which a test can stop and
// start again.
type broker struct {
	t    *testing.T
	addr string
	port int
	dir  string // data directory, "" for none
	mu   sync.Mutex
	c    *kfake.Cluster
}

// startBroker starts a broker. With persist, it keeps its data in a
// directory, so that it comes back with it after stop and start.
func startBroker(t *testing.T, persist bool) *broker {
	t.Helper()
	if a := os.Getenv("KVS_TEST_KAFKA"); a != "" {
		return &broker{t: t, addr: a}
	}
	b := &broker{t: t}
	if persist {
		b.dir = t.TempDir()
	}
	b.start()
	t.Cleanup(b.stop)
	return b
}

func (b *broker) start() {
	b.t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(b.port)}
	if b.dir != "" {
		opts = append(opts, kfake.DataDir(b.dir))
	}
	var (
		c   *kfake.Cluster
		err error
	)
	// The port of a stopped broker may take a moment to be free again.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err = kfake.NewCluster(opts...); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		b.t.Fatalf("starting kfake: %v", err)
	}
	b.mu.Lock()
	b.c = c
	b.addr = c.ListenAddrs()[0]
	_, port, _ := net.SplitHostPort(b.addr)
	fmt.Sscan(port, &b.port)
	b.mu.Unlock()
}

func (b *broker) stop() {
	b.mu.Lock()
	c := b.c
	b.c = nil
	b.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

func (b *broker) external() bool { return b.dir == "" && b.c == nil && b.port == 0 }

// topicSeq makes each test's topic name unique, so that tests can share an
// external broker.
var topicSeq atomic.Int64

func newTopic() string {
	return fmt.Sprintf("kvs-test-%d-%d", time.Now().UnixNano(), topicSeq.Add(1))
}

// startKafkaKvsd starts kvsd with the Kafka backend on topic and waits
// until it is ready.
func startKafkaKvsd(t *testing.T, b *broker, topic string, args ...string) *kvstest.Server {
	t.Helper()
	srv := kvstest.Start(t, append([]string{"-backend", "kafka", "-kafka-brokers", b.addr, "-kafka-topic", topic}, args...)...)
	waitReady(t, srv, http.StatusOK)
	return srv
}

// readyz returns the status and body of srv's /readyz.
func readyz(t *testing.T, srv *kvstest.Server) (int, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + "/readyz")
	if err != nil {
		t.Fatalf("readyz: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitReady waits until srv's /readyz answers code.
func waitReady(t *testing.T, srv *kvstest.Server, code int) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		got, body := readyz(t, srv)
		if got == code {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz: got %d %s, want %d", got, body, code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEntry waits until key has revision rev at c, and returns the entry.
func waitEntry(t *testing.T, c *client, key string, rev int64) *httpapi.Entry {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		e := c.get(key)
		if e != nil && e.Revision >= rev {
			return e
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: key %s: got %+v, want revision %d", c.url, key, e, rev)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRev waits until c's /getall revision reaches rev, and returns the
// listing.
func waitRev(t *testing.T, c *client, rev int64) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		m, got := c.getall()
		if got >= rev {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: revision %d, want %d", c.url, got, rev)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// setIf sets key with a condition and returns the status and revision
// (0 unless 200).
func (c *client) setIf(key, value string, ifRev int64) (int, int64) {
	c.t.Helper()
	code, ans, err := c.post("/set", httpapi.WriteRequest{Key: key, Value: json.RawMessage(value), IfRevision: &ifRev})
	if err != nil {
		c.t.Fatalf("set %s: %v", key, err)
	}
	var res httpapi.WriteResult
	if code == http.StatusOK {
		if err := json.Unmarshal(ans, &res); err != nil {
			c.t.Fatal(err)
		}
	}
	return code, res.Revision
}

// del deletes key and returns the revision.
func (c *client) del(key string) int64 {
	c.t.Helper()
	code, ans, err := c.post("/delete", httpapi.WriteRequest{Key: key})
	if err != nil || code != http.StatusOK {
		c.t.Fatalf("delete %s: %d %s %v", key, code, ans, err)
	}
	var res httpapi.WriteResult
	if err := json.Unmarshal(ans, &res); err != nil {
		c.t.Fatal(err)
	}
	return res.Revision
}

// collect reads change events from ws until one has revision rev or more,
// and returns them.
func collect(t *testing.T, ws *websocket.Conn, rev int64) []httpapi.Event {
	t.Helper()
	var evs []httpapi.Event
	for len(evs) == 0 || evs[len(evs)-1].Revision < rev {
		evs = append(evs, next(t, ws))
	}
	return evs
}

// entries returns every key's entry at c, with its revisions.
func entries(t *testing.T, c *client) map[string]httpapi.Entry {
	t.Helper()
	m, _ := c.getall()
	out := make(map[string]httpapi.Entry, len(m))
	for k := range m {
		if e := c.get(k); e != nil {
			out[k] = *e
		}
	}
	return out
}

func sameEntries(a, b map[string]httpapi.Entry) bool {
	if len(a) != len(b) {
		return false
	}
	for k, ea := range a {
		eb, ok := b[k]
		if !ok || ea.Revision != eb.Revision || ea.CreateRevision != eb.CreateRevision ||
			ea.Version != eb.Version || string(ea.Value) != string(eb.Value) {
			return false
		}
	}
	return true
}

// TestKafkaTwoInstances runs two kvsd on one topic: a set on one is read on
// the other with the same revision, concurrent conditional sets on both
// have exactly one winner everywhere, both feeds carry the same events, and
// a subscriber that moves from one to the other with from loses and
// repeats nothing.
func TestKafkaTwoInstances(t *testing.T) {
	b := startBroker(t, false)
	topic := newTopic()
	srvA := startKafkaKvsd(t, b, topic)
	srvB := startKafkaKvsd(t, b, topic)
	a, bc := newClient(t, srvA), newClient(t, srvB)
	wsA, wsB := subscribe(t, srvA, 1), subscribe(t, srvB, 1)

	// A set on A is read on B with the same revision, and the other way.
	rev := a.set("city", `"Ahmedabad"`)
	if e := waitEntry(t, bc, "city", rev); e.Revision != rev || string(e.Value) != `"Ahmedabad"` || e.Version != 1 || e.CreateRevision != rev {
		t.Fatalf("B: got %+v, want city=Ahmedabad at revision %d", e, rev)
	}
	rev = bc.set("city", `"Mumbai"`)
	if e := waitEntry(t, a, "city", rev); e.Revision != rev || string(e.Value) != `"Mumbai"` || e.Version != 2 {
		t.Fatalf("A: got %+v, want city=Mumbai at revision %d, version 2", e, rev)
	}

	// Concurrent conditional sets on A and B: exactly one wins, and both
	// instances hold the winner.
	for i := range 20 {
		key := fmt.Sprintf("race-%d", i)
		var (
			wg    sync.WaitGroup
			codes [2]int
			revs  [2]int64
		)
		for j, c := range []*client{a, bc} {
			wg.Go(func() { codes[j], revs[j] = c.setIf(key, fmt.Sprintf(`"from-%d"`, j), 0) })
		}
		wg.Wait()
		var win int
		switch {
		case codes[0] == http.StatusOK && codes[1] == http.StatusConflict:
			win = 0
		case codes[0] == http.StatusConflict && codes[1] == http.StatusOK:
			win = 1
		default:
			t.Fatalf("%s: got statuses %v, want one 200 and one 409", key, codes)
		}
		want := fmt.Sprintf(`"from-%d"`, win)
		for _, c := range []*client{a, bc} {
			if e := waitEntry(t, c, key, revs[win]); e.Revision != revs[win] || string(e.Value) != want {
				t.Fatalf("%s at %s: got %+v, want %s at revision %d", key, c.url, e, want, revs[win])
			}
		}
		// An update conditional on the winner's revision, from both again.
		ifRev := revs[win]
		for j, c := range []*client{a, bc} {
			wg.Go(func() { codes[j], revs[j] = c.setIf(key, `"second"`, ifRev) })
		}
		wg.Wait()
		if n := strings.Count(fmt.Sprint(codes), "200"); n != 1 || !slices.Contains(codes[:], http.StatusConflict) {
			t.Fatalf("%s second round: got statuses %v, want one 200 and one 409", key, codes)
		}
	}
	last := a.del("city")

	// Both feeds carry the same events.
	evA, evB := collect(t, wsA, last), collect(t, wsB, last)
	if !slices.EqualFunc(evA, evB, sameEvent) {
		t.Fatalf("the feeds differ:\nA: %v\nB: %v", evA, evB)
	}
	if len(evA) != 2+20*2+1 {
		t.Fatalf("got %d events, want %d: %v", len(evA), 2+20*2+1, evA)
	}

	// A subscriber reads part of the feed from A, then moves to B.
	ws := subscribe(t, srvA, 1)
	var moved []httpapi.Event
	for range 17 {
		moved = append(moved, next(t, ws))
	}
	ws.Close(websocket.StatusNormalClosure, "")
	ws = subscribe(t, srvB, moved[len(moved)-1].Revision+1)
	moved = append(moved, collect(t, ws, last)...)
	if !slices.EqualFunc(moved, evA, sameEvent) {
		t.Fatalf("moving from A to B:\ngot  %v\nwant %v", moved, evA)
	}
}

func sameEvent(a, b httpapi.Event) bool {
	return a.Type == b.Type && a.Key == b.Key && a.Revision == b.Revision && string(a.Value) == string(b.Value)
}

// TestKafkaRestartAndJoin checks that an instance restarted on the topic
// rebuilds the same state (revisions, create revisions and versions), and
// that a new instance joins and converges.
func TestKafkaRestartAndJoin(t *testing.T) {
	b := startBroker(t, false)
	topic := newTopic()
	srvA := startKafkaKvsd(t, b, topic)
	srvB := startKafkaKvsd(t, b, topic)
	a, bc := newClient(t, srvA), newClient(t, srvB)
	for i := range 30 {
		c := a
		if i%2 == 1 {
			c = bc
		}
		c.set(fmt.Sprintf("k%d", i%7), fmt.Sprintf(`{"n":%d}`, i))
		if i%5 == 4 {
			c.del(fmt.Sprintf("k%d", i%7))
		}
	}
	// Writers on both instances at once, on the same few keys: every
	// instance must still count versions alike.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		revs []int64
	)
	for w := range 4 {
		c := []*client{a, bc}[w%2]
		wg.Go(func() {
			for i := range 25 {
				rev := c.set(fmt.Sprintf("hot%d", i%3), fmt.Sprint(w*100+i))
				mu.Lock()
				revs = append(revs, rev)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	extra := slices.Max(revs)
	waitRev(t, a, extra)
	waitRev(t, bc, extra)
	want := entries(t, a)
	if got := entries(t, bc); !sameEntries(got, want) {
		t.Fatalf("B differs from A:\nA: %v\nB: %v", want, got)
	}

	if code := srvA.Stop(); code != 0 {
		t.Fatalf("kvsd exit code after SIGTERM: got %d, want 0", code)
	}
	bc.set("k1", `"while A was down"`)
	srvA = startKafkaKvsd(t, b, topic)
	srvC := startKafkaKvsd(t, b, topic)
	a, c := newClient(t, srvA), newClient(t, srvC)
	last := c.set("k2", `"from C"`)
	for _, cl := range []*client{a, bc, c} {
		waitRev(t, cl, last)
	}
	want = entries(t, bc)
	for _, cl := range []*client{a, c} {
		if got := entries(t, cl); !sameEntries(got, want) {
			t.Fatalf("%s differs from B:\nB: %v\ngot: %v", cl.url, want, got)
		}
	}
	// The restarted instance's feed holds the whole history again.
	evA, evC := collect(t, subscribe(t, srvA, 1), last), collect(t, subscribe(t, srvC, 1), last)
	if !slices.EqualFunc(evA, evC, sameEvent) || len(evA) != 30+6+100+2 {
		t.Fatalf("feeds from revision 1 after restart and join:\nA: %v\nC: %v", evA, evC)
	}
}

// TestKafkaBrokerDown stops the broker: writes fail with 503 within the
// write timeout, and so do linearizable reads within the read timeout,
// while local reads go on; /readyz says why; when the broker is back
// (with its data, on the same port) writes succeed again and the feed goes
// on without a gap.
func TestKafkaBrokerDown(t *testing.T) {
	b := startBroker(t, true)
	if b.external() {
		t.Skip("KVS_TEST_KAFKA: the broker cannot be stopped by the test")
	}
	srv := startKafkaKvsd(t, b, newTopic(), "-kafka-write-timeout", "1s", "-kafka-read-timeout", "1s")
	c := newClient(t, srv)
	ws := subscribe(t, srv, 1)
	var acked []int64
	for i := range 5 {
		acked = append(acked, c.set(fmt.Sprintf("k%d", i), fmt.Sprint(i)))
	}

	b.stop()
	body := waitReady(t, srv, http.StatusServiceUnavailable)
	if !strings.Contains(body, "kafka") {
		t.Errorf("readyz while the broker is down: got %s, want the reason", body)
	}
	began := time.Now()
	code, ans, err := c.post("/set", httpapi.WriteRequest{Key: "down", Value: json.RawMessage(`1`)})
	took := time.Since(began)
	var e httpapi.Error
	if err != nil || code != http.StatusServiceUnavailable || json.Unmarshal(ans, &e) != nil || e.Error == "" {
		t.Fatalf("set while the broker is down: got %d %s %v, want 503 with a JSON error", code, ans, err)
	}
	// The bound is 1s; the slack is only a guard against a hang.
	if took > 1*time.Second+10*time.Second {
		t.Errorf("set while the broker is down took %v, want about the 1s write timeout", took)
	}
	if e := c.getLocal("k3"); e == nil || e.Revision != acked[3] {
		t.Fatalf("local get while the broker is down: got %+v, want revision %d", e, acked[3])
	}
	began = time.Now()
	code, ans, err = c.post("/get", httpapi.WriteRequest{Key: "k3"})
	took = time.Since(began)
	if err != nil || code != http.StatusServiceUnavailable || json.Unmarshal(ans, &e) != nil || !strings.Contains(e.Error, "consistency=local") {
		t.Fatalf("linearizable get while the broker is down: got %d %s %v, want 503 with a JSON error that names consistency=local", code, ans, err)
	}
	if took > 1*time.Second+10*time.Second {
		t.Errorf("linearizable get while the broker is down took %v, want about the 1s read timeout", took)
	}

	b.start()
	waitReady(t, srv, http.StatusOK)
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for {
		code, ans, err := c.post("/set", httpapi.WriteRequest{Key: "back", Value: json.RawMessage(`1`)})
		if err == nil && code == http.StatusOK {
			var res httpapi.WriteResult
			json.Unmarshal(ans, &res)
			acked = append(acked, res.Revision)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("set after the broker came back: got %d %s %v", code, ans, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 5 {
		acked = append(acked, c.set(fmt.Sprintf("k%d", i), fmt.Sprint(10+i)))
	}

	// The subscriber that stayed connected, and a new one from revision
	// 1, get the same events: every acknowledged write once, in order. (A
	// write that failed with 503 may still have been applied, so there may
	// be one more.)
	last := acked[len(acked)-1]
	evs, replay := collect(t, ws, last), collect(t, subscribe(t, srv, 1), last)
	if !slices.EqualFunc(evs, replay, sameEvent) {
		t.Fatalf("the live feed and the replayed one differ:\nlive:   %v\nreplay: %v", evs, replay)
	}
	var got []int64
	for _, ev := range evs {
		if ev.Key != "down" {
			got = append(got, ev.Revision)
		}
	}
	if !slices.Equal(got, acked) {
		t.Fatalf("feed revisions: got %v, want the acknowledged %v", got, acked)
	}
}

// TestKafkaDataLost restarts the broker without its data: kvsd finds its
// position gone, says so, becomes not ready and refuses writes, rather
// than go on from what the broker has now.
func TestKafkaDataLost(t *testing.T) {
	b := startBroker(t, false)
	if b.external() {
		t.Skip("KVS_TEST_KAFKA: the broker cannot be stopped by the test")
	}
	topic := newTopic()
	srv := startKafkaKvsd(t, b, topic, "-kafka-write-timeout", "1s")
	c := newClient(t, srv)
	for i := range 5 {
		c.set(fmt.Sprintf("k%d", i), fmt.Sprint(i))
	}
	b.stop()
	b.start() // empty, on the same port
	body := waitReady(t, srv, http.StatusServiceUnavailable)
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for !strings.Contains(body, "lost data") {
		if time.Now().After(deadline) {
			t.Fatalf("readyz after the broker lost its data: got %s, want it to say so", body)
		}
		time.Sleep(20 * time.Millisecond)
		_, body = readyz(t, srv)
	}
	waitLog(t, srv, "THE BROKER LOST DATA")
	if code, ans, _ := c.post("/set", httpapi.WriteRequest{Key: "k9", Value: json.RawMessage(`9`)}); code != http.StatusServiceUnavailable {
		t.Fatalf("set after data loss: got %d %s, want 503", code, ans)
	}
	if e := c.getLocal("k4"); e == nil {
		t.Fatal("local get after data loss: the data this instance had is gone, want it still served")
	}
	// A linearizable read cannot be confirmed: 503 at once, not after the
	// read timeout.
	if code, ans, _ := c.post("/get", httpapi.WriteRequest{Key: "k4"}); code != http.StatusServiceUnavailable || !strings.Contains(string(ans), "lost data") {
		t.Fatalf("linearizable get after data loss: got %d %s, want 503 naming the data loss", code, ans)
	}
}

// TestKafkaFlags checks that bad values of the Kafka backend's flags, and
// of their environment twins, stop kvsd with a message.
func TestKafkaFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"no brokers", []string{"-backend", "kafka"}, "", "-backend kafka needs -kafka-brokers"},
		{"blank brokers from the environment", []string{"-backend", "kafka"}, "KVS_KAFKA_BROKERS= , ", "needs -kafka-brokers"},
		{"empty topic", []string{"-backend", "kafka", "-kafka-brokers", "127.0.0.1:1", "-kafka-topic", ""}, "", "-kafka-topic: must not be empty"},
		{"negative replication factor", []string{"-backend", "kafka", "-kafka-brokers", "127.0.0.1:1", "-kafka-replication-factor", "-1"}, "", "-kafka-replication-factor -1"},
		{"write timeout from the environment", []string{"-backend", "kafka", "-kafka-brokers", "127.0.0.1:1"}, "KVS_KAFKA_WRITE_TIMEOUT=0s", "-kafka-write-timeout 0s: must be positive"},
		{"zero read timeout", []string{"-backend", "kafka", "-kafka-brokers", "127.0.0.1:1", "-kafka-read-timeout", "0s"}, "", "-kafka-read-timeout 0s: must be positive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard
			defer cancel()
			cmd := exec.CommandContext(ctx, kvstest.Binary(t, "kvsd"), append([]string{"-addr", "127.0.0.1:0"}, tt.args...)...)
			cmd.Env = append(os.Environ(), tt.env)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), tt.want) {
				t.Fatalf("kvsd %v %s: got %v\n%s\nwant a non-zero exit and %q", tt.args, tt.env, err, out, tt.want)
			}
		})
	}
}

// TestKafkaFlagsFromEnvironment starts kvsd with the Kafka backend chosen
// by environment variables alone, and checks that it serves from the
// topic they name.
func TestKafkaFlagsFromEnvironment(t *testing.T) {
	b := startBroker(t, false)
	topic := newTopic()
	srvA := startKafkaKvsd(t, b, topic)
	rev := newClient(t, srvA).set("k", `"v"`)
	t.Setenv("KVS_BACKEND", "kafka")
	t.Setenv("KVS_KAFKA_BROKERS", b.addr)
	t.Setenv("KVS_KAFKA_TOPIC", topic)
	srvB := kvstest.Start(t)
	waitReady(t, srvB, http.StatusOK)
	if e := newClient(t, srvB).get("k"); e == nil || e.Revision != rev {
		t.Fatalf("get from the instance configured by the environment: got %+v, want revision %d", e, rev)
	}
	if !strings.Contains(srvB.Logs(), `"backend":"kafka"`) {
		t.Errorf("want the kafka backend in the logs:\n%s", srvB.Logs())
	}
}

// TestKafkaBench runs kvsbench set against kvsd with the Kafka backend
// (kfake): 64 connections for 1s here, as a smoke test of the means. On a
// quiet machine, for docs/benchmarks.md:
//
//	KVS_KAFKA_BENCH=10s go test ./cmd/kvsd -run TestKafkaBench -v
func TestKafkaBench(t *testing.T) {
	d := cmp.Or(os.Getenv("KVS_KAFKA_BENCH"), "1s")
	b := startBroker(t, false)
	srv := startKafkaKvsd(t, b, newTopic())
	for _, conns := range []string{"64", "1"} {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute) // a hang guard
		out, err := exec.CommandContext(ctx, kvstest.Binary(t, "kvsbench"), "set", "-c", conns, "-d", d, "-keys", "10000", "-server-address", srv.Addr).CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("kvsbench set -c %s: %v\n%s", conns, err, out)
		}
		t.Logf("kvsbench set -c %s -d %s, Kafka backend (kfake in the test process):\n%s", conns, d, out)
	}
}

// TestKafkaStartsBeforeBroker starts kvsd while no broker listens: it
// serves, answers /readyz and writes with 503, and connects (creating the
// topic) once the broker is there.
func TestKafkaStartsBeforeBroker(t *testing.T) {
	if os.Getenv("KVS_TEST_KAFKA") != "" {
		t.Skip("KVS_TEST_KAFKA: the test starts its own broker")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &broker{t: t, port: ln.Addr().(*net.TCPAddr).Port}
	b.addr = ln.Addr().String()
	ln.Close()
	srv := kvstest.Start(t, "-backend", "kafka", "-kafka-brokers", b.addr, "-kafka-topic", newTopic(), "-kafka-write-timeout", "1s")
	if body := waitReady(t, srv, http.StatusServiceUnavailable); !strings.Contains(body, "kafka") {
		t.Errorf("readyz without a broker: got %s, want the reason", body)
	}
	c := newClient(t, srv)
	if code, ans, err := c.post("/set", httpapi.WriteRequest{Key: "k", Value: json.RawMessage(`1`)}); err != nil || code != http.StatusServiceUnavailable {
		t.Fatalf("set without a broker: got %d %s %v, want 503", code, ans, err)
	}
	b.start()
	t.Cleanup(b.stop)
	waitReady(t, srv, http.StatusOK)
	if rev := c.set("k", `1`); rev != 1 {
		t.Fatalf("first set once the broker is there: got revision %d, want 1", rev)
	}
}

// TestKafkaLagMetrics: /metrics reports the Kafka log's position and lag.
func TestKafkaLagMetrics(t *testing.T) {
	b := startBroker(t, false)
	srv := startKafkaKvsd(t, b, newTopic())
	waitReady(t, srv, http.StatusOK)
	c := newClient(t, srv)
	var rev int64
	for i := range 5 {
		rev = c.set(fmt.Sprint("k", i), `1`)
	}
	m := scrapeKvsd(t, srv)
	for name, want := range map[string]float64{
		"kvs_kafka_lag_records":    0,
		"kvs_kafka_next_offset":    float64(rev), // revision = offset + 1
		"kvs_kafka_high_watermark": float64(rev),
	} {
		if got, ok := m.Value(name); !ok || got != want {
			t.Errorf("%s: got %v (present %v), want %v", name, got, ok, want)
		}
	}
}
