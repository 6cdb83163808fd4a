package robustness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
)

// The traffic: concurrent clients, each sending one request at a time over
// plain net/http to a node picked at random for each request (as behind a
// load balancer), on a round's small key space, and recording each
// operation with its call and return time; transactions are in txn_test.go.
// A request that fails before it
// is sent (the node is down: connection refused) is not recorded: it
// cannot have taken effect.

// trafficConfig shapes a round's traffic.
type trafficConfig struct {
	clients int
	keys    int
	// local sends reads with ?consistency=local.
	local bool
	// pad makes each value this many bytes longer.
	pad int
}

// think is the longest pause of a client between two requests (half of it
// on average): it bounds the history's length, and with it the checker's
// time, without making the clients slower than kvsd under faults.
const think = 10 * time.Millisecond

// clock gives the operations' times: nanoseconds since the scenario
// began, on the monotonic clock.
type clock struct{ began time.Time }

func (c clock) now() int64 { return int64(time.Since(c.began)) }

// client is one client of the traffic.
type client struct {
	id    int
	c     *cluster
	h     *history
	cfg   trafficConfig
	clock clock
	http  *http.Client
	rng   *rand.Rand
	seq   int
	// known and knownValue are the last revision and value this client
	// saw of each key, for its conditional writes.
	known      [maxKeys]int64
	knownValue [maxKeys]string

	// problems are answers no correct kvsd gives (a 500, a malformed
	// body): the scenario fails with them.
	problems *problems
	// lastAnswer is when a write last got an answer, or none.
	lastAnswer *lastTime
}

type problems struct {
	mu   sync.Mutex
	list []string
}

func (p *problems) add(format string, args ...any) {
	p.mu.Lock()
	if len(p.list) < 20 {
		p.list = append(p.list, fmt.Sprintf(format, args...))
	}
	p.mu.Unlock()
}

func (p *problems) get() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.list...)
}

type lastTime struct {
	mu sync.Mutex
	t  time.Time
}

func (l *lastTime) note() {
	l.mu.Lock()
	l.t = time.Now()
	l.mu.Unlock()
}

func (l *lastTime) get() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t
}

func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, DialContext: (&net.Dialer{Timeout: time.Second}).DialContext},
	}
}

// run sends requests until ctx is done.
func (cl *client) run(ctx context.Context) {
	for ctx.Err() == nil {
		n := cl.c.nodes[cl.rng.IntN(len(cl.c.nodes))]
		base := n.url()
		if base == "" {
			select { // the node is down: try another soon
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond):
			}
			continue
		}
		key := cl.rng.IntN(cl.cfg.keys)
		switch p := cl.rng.IntN(100); {
		case p < 25:
			cl.do(ctx, base, n.i, request{Kind: opGet, Key: key})
		case p < 35:
			cl.do(ctx, base, n.i, request{Kind: opList})
		case p < 55:
			cl.do(ctx, base, n.i, request{Kind: opSet, Key: key, Value: cl.value()})
		case p < 72:
			ifRev := cl.known[key]
			if cl.rng.IntN(4) == 0 {
				ifRev = 0 // create if absent
			}
			cl.do(ctx, base, n.i, request{Kind: opSet, Key: key, Value: cl.value(), Cond: true, IfRev: ifRev})
		case p < 82:
			cl.do(ctx, base, n.i, request{Kind: opDelete, Key: key})
		default:
			cl.do(ctx, base, n.i, request{Kind: opTxn, Txn: cl.randomTxn()})
		}
		pause(ctx, time.Duration(cl.rng.Int64N(int64(think))))
	}
}

// value returns a new value, unique in the run.
func (cl *client) value() string {
	cl.seq++
	v := fmt.Sprintf("%s-c%d-%d", cl.h.name, cl.id, cl.seq)
	if cl.cfg.pad > 0 {
		v += "-" + strings.Repeat("x", cl.cfg.pad)
	}
	return strconv.Quote(v)
}

// do sends one request and records the operation.
func (cl *client) do(ctx context.Context, base string, node int, in request) {
	req, err := cl.httpRequest(ctx, base, in)
	if err != nil {
		cl.problems.add("building a request: %v", err)
		return
	}
	call := cl.clock.now()
	resp, err := cl.http.Do(req)
	var body []byte
	if err == nil {
		body, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	ret := cl.clock.now()
	write := in.writes()
	var out response
	switch {
	case err != nil && notSent(err):
		return // refused: it never reached kvsd
	case err != nil, resp.StatusCode == http.StatusServiceUnavailable:
		if ctx.Err() != nil && !write {
			return
		}
		out.Unknown = true
		ret = forever
	default:
		out, err = parseAnswer(cl.h.keys, in, resp, body)
		if err != nil {
			cl.problems.add("%s from kvsd %d: %v", describe(cl.h.keys, in, response{Unknown: true}), node, err)
			return
		}
	}
	if write && !out.Unknown {
		cl.lastAnswer.note()
	}
	switch {
	case out.Unknown:
	case in.Kind == opTxn:
		cl.learnTxn(in.Txn, out)
	case in.Kind == opGet && out.Code == 200, out.Code == 409:
		cl.known[in.Key], cl.knownValue[in.Key] = out.Entry.Rev, out.Entry.Value
	case in.Kind == opSet && out.Code == 200:
		cl.known[in.Key], cl.knownValue[in.Key] = out.Rev, in.Value
	case in.Kind == opGet && out.Code == 404, in.Kind == opDelete && out.Code == 200:
		cl.known[in.Key], cl.knownValue[in.Key] = 0, ""
	}
	cl.h.add(porcupine.Operation{ClientId: cl.id, Input: in, Call: call, Output: out, Return: ret, Metadata: node})
}

// notSent reports whether err means that the request never reached the
// server: the connection was refused or could not be made.
func notSent(err error) bool {
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

func (cl *client) httpRequest(ctx context.Context, base string, in request) (*http.Request, error) {
	consistency := ""
	if cl.cfg.local {
		consistency = "&consistency=local"
	}
	switch in.Kind {
	case opGet:
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/get?key="+url.QueryEscape(cl.h.keys[in.Key])+consistency, nil)
	case opList:
		return http.NewRequestWithContext(ctx, http.MethodGet, base+"/list?prefix="+url.QueryEscape(cl.h.name+"/")+consistency, nil)
	case opTxn:
		b, err := txnBody(cl.h.keys, in.Txn)
		if err != nil {
			return nil, err
		}
		return http.NewRequestWithContext(ctx, http.MethodPost, base+"/txn", bytes.NewReader(b))
	}
	body := map[string]any{"Key": cl.h.keys[in.Key]}
	path := "/delete"
	if in.Kind == opSet {
		path = "/set"
		body["Value"] = json.RawMessage(in.Value)
	}
	if in.Cond {
		body["IfRevision"] = in.IfRev
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	return http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
}

// wireEntry is an entry as /get and a 409 answer it.
type wireEntry struct {
	Key            string
	Value          json.RawMessage
	Revision       int64
	CreateRevision int64
	Version        int64
}

func (e *wireEntry) entry() entry {
	if e == nil {
		return entry{}
	}
	return entry{Value: string(e.Value), Rev: e.Revision, Create: e.CreateRevision, Version: e.Version}
}

// parseAnswer reads an answer of kvsd to in. Statuses other than 200, 404
// (get, delete) and 409 (conditional writes) are errors.
func parseAnswer(keys []string, in request, resp *http.Response, body []byte) (response, error) {
	out := response{Code: resp.StatusCode}
	switch {
	case resp.StatusCode == http.StatusOK && in.Kind == opTxn:
		return parseTxn(keys, in.Txn, resp, body, out)
	case resp.StatusCode == http.StatusNotFound && (in.Kind == opGet || in.Kind == opDelete):
		return out, nil
	case resp.StatusCode == http.StatusConflict && in.Cond:
		var e struct{ Current *wireEntry }
		if err := json.Unmarshal(body, &e); err != nil {
			return out, fmt.Errorf("409 body %q: %v", body, err)
		}
		out.Entry = e.Current.entry()
		return out, nil
	case resp.StatusCode != http.StatusOK:
		return out, fmt.Errorf("status %d: %s", resp.StatusCode, body)
	}
	switch in.Kind {
	case opGet:
		var e wireEntry
		if err := json.Unmarshal(body, &e); err != nil {
			return out, fmt.Errorf("get answer %q: %v", body, err)
		}
		out.Entry = e.entry()
	case opList:
		var l struct {
			Revision int64
			Entries  []wireEntry
		}
		if err := json.Unmarshal(body, &l); err != nil {
			return out, fmt.Errorf("listing %q: %v", body, err)
		}
		if h := resp.Header.Get("Kvs-Revision"); h != strconv.FormatInt(l.Revision, 10) {
			return out, fmt.Errorf("listing at revision %d with Kvs-Revision %q", l.Revision, h)
		}
		out.Rev = l.Revision
		for _, e := range l.Entries {
			i, err := keyIndex(e.Key)
			if err != nil {
				return out, err
			}
			out.List[i] = e.entry()
		}
	default:
		var r struct{ Revision int64 }
		if err := json.Unmarshal(body, &r); err != nil || r.Revision <= 0 {
			return out, fmt.Errorf("write answer %q: %v", body, err)
		}
		out.Rev = r.Revision
	}
	return out, nil
}

// keyName returns the name of key i of the round with the given name.
func keyName(round string, i int) string { return fmt.Sprintf("%s/k%d", round, i) }

// keyIndex returns the index of a round's key name.
func keyIndex(name string) (int, error) {
	_, k, ok := strings.Cut(name, "/k")
	i, err := strconv.Atoi(k)
	if !ok || err != nil || i < 0 || i >= maxKeys {
		return 0, fmt.Errorf("listing holds key %q, not one of the round's", name)
	}
	return i, nil
}
