package robustness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/internal/promtext"
)

// Kafka timeouts of the kvsd under test: short, so that faults cost
// seconds, not minutes.
const (
	kafkaWriteTimeout = 2 * time.Second
	kafkaReadTimeout  = 2 * time.Second
)

// cluster is the kvsd processes of a scenario: one for the file and memory
// backends, two or three on one kfake broker for the Kafka backend, each
// behind its own proxy to the broker.
type cluster struct {
	t       *testing.T
	backend string // "file", "memory" or "kafka"
	args    []string
	broker  *kfake.Cluster
	nodes   []*node
}

// node is one kvsd, which a fault may kill and start again (on a new
// port, with the same data directory or topic).
type node struct {
	c     *cluster
	i     int
	data  string      // the file backend's directory
	proxy *kafkaProxy // the Kafka backend's way to the broker

	mu     sync.Mutex
	srv    *kvstest.Server // nil while down
	starts int
}

// startCluster starts n kvsd with backend and extra flags, and waits until
// each is ready.
func startCluster(t *testing.T, backend string, n int, args ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, backend: backend, args: args}
	if backend == "kafka" {
		b, err := kfake.NewCluster(kfake.NumBrokers(1))
		if err != nil {
			t.Fatalf("starting kfake: %v", err)
		}
		t.Cleanup(b.Close)
		c.broker = b
	}
	for i := range n {
		nd := &node{c: c, i: i, data: t.TempDir()}
		if backend == "kafka" {
			nd.proxy = newKafkaProxy(t, c.broker.ListenAddrs()[0])
		}
		c.nodes = append(c.nodes, nd)
		nd.start()
	}
	return c
}

// start starts the node's kvsd and waits until it is ready. It must be
// called from the test's goroutine.
func (n *node) start() {
	t := n.c.t
	t.Helper()
	args := []string{"-backend", n.c.backend}
	switch n.c.backend {
	case "file":
		// No snapshot in a run: a subscriber resuming after a restart
		// finds its revisions in the log the restart replayed.
		args = append(args, "-data", n.data, "-snapshot-bytes", strconv.Itoa(1<<30))
	case "kafka":
		args = append(args, "-kafka-brokers", n.proxy.addr(), "-kafka-topic", "robustness",
			"-kafka-write-timeout", kafkaWriteTimeout.String(), "-kafka-read-timeout", kafkaReadTimeout.String())
	}
	srv := kvstest.Start(t, append(args, n.c.args...)...)
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for {
		resp, err := http.Get(srv.URL + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("kvsd %d not ready within 60s: %v\n%s", n.i, err, srv.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
	n.mu.Lock()
	n.srv = srv
	n.starts++
	n.mu.Unlock()
}

// kill kills the node's kvsd with SIGKILL.
func (n *node) kill() {
	n.mu.Lock()
	srv := n.srv
	n.srv = nil
	n.mu.Unlock()
	if srv != nil {
		srv.Kill()
	}
}

// url returns the node's base URL, "" while it is down.
func (n *node) url() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.srv == nil {
		return ""
	}
	return n.srv.URL
}

// revision returns the node's Kvs-Revision, read linearizably.
func (n *node) revision(ctx context.Context) (int64, error) {
	u := n.url()
	if u == "" {
		return 0, fmt.Errorf("kvsd %d is down", n.i)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u+"/getall", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("kvsd %d: HEAD /getall: %s", n.i, resp.Status)
	}
	return strconv.ParseInt(resp.Header.Get("Kvs-Revision"), 10, 64)
}

// metric returns the value of one of the node's metrics (a series without
// labels).
func (n *node) metric(ctx context.Context, name string) (float64, error) {
	u := n.url()
	if u == "" {
		return 0, fmt.Errorf("kvsd %d is down", n.i)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	e, err := promtext.Parse(string(body))
	if err != nil {
		return 0, fmt.Errorf("kvsd %d: /metrics: %v", n.i, err)
	}
	v, ok := e.Value(name)
	if !ok {
		return 0, fmt.Errorf("kvsd %d: /metrics has no %s", n.i, name)
	}
	return v, nil
}

// up starts every node that is down, and heals every proxy. It must be
// called from the test's goroutine.
func (c *cluster) up() {
	for _, n := range c.nodes {
		if n.proxy != nil {
			n.proxy.heal()
			n.proxy.setDelay(0)
		}
		if n.url() == "" {
			n.start()
		}
	}
}

// settle waits until every write that may still take effect has done so,
// and every node has applied it: in Kafka mode a write answered 503 can
// still be produced up to two write timeouts later (its produce request,
// and the one before it in the queue).
func (c *cluster) settle(lastAnswer time.Time) {
	c.t.Helper()
	if c.backend == "kafka" {
		if wait := time.Until(lastAnswer.Add(2*kafkaWriteTimeout + 500*time.Millisecond)); wait > 0 {
			time.Sleep(wait)
		}
	}
	deadline := time.Now().Add(60 * time.Second) // a hang guard
	for {
		revs := make([]int64, len(c.nodes))
		var err error
		for i, n := range c.nodes {
			if revs[i], err = n.revision(c.t.Context()); err != nil {
				break
			}
		}
		if err == nil && slices.Min(revs) == slices.Max(revs) {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("the cluster did not settle: revisions %v, %v", revs, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
