package httpapi_test

import (
	"context"
	"io"
	"iter"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/promtext"
	"github.com/kvsdb/kvs/kv"
)

// scrape gets /metrics and parses it, failing the test if it does not
// parse as the Prometheus text format.
func scrape(t *testing.T, url string) *promtext.Exposition {
	t.Helper()
	a := do(t, "GET", url+"/metrics", "")
	if a.code != 200 {
		t.Fatalf("GET /metrics: %d %s", a.code, a.body)
	}
	if ct := a.header.Get("Content-Type"); ct != httpapi.ContentTypeMetrics {
		t.Fatalf("Content-Type %q, want %q", ct, httpapi.ContentTypeMetrics)
	}
	e, err := promtext.Parse(a.body)
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, a.body)
	}
	if !slices.IsSorted(e.Order) {
		t.Fatalf("families not sorted by name: %v", e.Order)
	}
	return e
}

func wantValue(t *testing.T, e *promtext.Exposition, want float64, name string, labels ...string) {
	t.Helper()
	got, ok := e.Value(name, labels...)
	if !ok {
		t.Errorf("%s%v: missing, want %v", name, labels, want)
		return
	}
	if got != want {
		t.Errorf("%s%v: got %v, want %v", name, labels, got, want)
	}
}

func wantAbsent(t *testing.T, e *promtext.Exposition, name string, labels ...string) {
	t.Helper()
	if got, ok := e.Value(name, labels...); ok {
		t.Errorf("%s%v: got %v, want no such series", name, labels, got)
	}
}

// TestMetrics runs a known workload and checks every counter it moves,
// and that /metrics parses as the Prometheus text format.
func TestMetrics(t *testing.T) {
	logStats := kv.LogStats{
		BatchChanges: kv.Histogram{Bounds: []float64{1, 2}, Counts: []uint64{4, 5}, Count: 6, Sum: 12},
		SyncSeconds:  kv.Histogram{Bounds: []float64{0.001}, Counts: []uint64{5}, Count: 6, Sum: 0.25},
	}
	e := newFeedEnv(t, bus.Options{}, httpapi.Options{
		ProgressInterval: time.Hour,
		LogStats:         func() kv.LogStats { return logStats },
		ExtraMetrics: func() []httpapi.Sample {
			return []httpapi.Sample{
				{Name: "kvs_kafka_lag", Help: "Records behind.", Labels: []string{"partition", "0"}, Value: 7},
				{Name: "kvs_kafka_lag", Labels: []string{"partition", "1"}, Value: 0},
				{Name: "kvs_kafka_lag", Labels: []string{"partition", "1"}, Value: 9},          // repeated: left out
				{Name: "kvs_kafka_records_total", Type: "counter", Value: 40},                  // a counter
				{Name: "kvs_keys", Value: 1e6},                                                 // a kvs metric: left out
				{Name: "bad name", Value: 1},                                                   // left out
				{Name: "kvs_odd", Labels: []string{"x"}, Value: 1},                             // left out
				{Name: "kvs_summary", Type: "summary", Value: 1},                               // left out
				{Name: "kvs_escaped", Labels: []string{"v", "a\"b\\c\nd"}, Value: math.Inf(1)}, // escaped
			}
		},
	})
	u := e.srv.URL
	w := e.dial(t, "?from=1")
	steps := []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/set", `{"Key":"k1","Value":1}`, 200},
		{"POST", "/set", `{"Key":"k2","Value":2}`, 200},
		{"PUT", "/set", `{"Key":"k3","Value":3}`, 200},
		{"POST", "/set", `{"Key":`, 400},
		{"POST", "/get", `{"Key":"k1"}`, 200},
		{"POST", "/get", `{"Key":"k2"}`, 200},
		{"GET", "/get?key=nope", "", 404},
		{"GET", "/nope", "", 404},
		{"PATCH", "/set", "", 405},
		{"GET", "/getall", "", 200},
		{"GET", "/healthz", "", 200},
	}
	for _, st := range steps {
		if a := do(t, st.method, u+st.path, st.body); a.code != st.code {
			t.Fatalf("%s %s: got %d, want %d", st.method, st.path, a.code, st.code)
		}
	}
	if got := revisions(w.changes(3)); !slices.Equal(got, []int64{1, 2, 3}) {
		t.Fatalf("subscriber got %v", got)
	}
	m := scrape(t, u)
	wantValue(t, m, 1, "kvs_subscribers")
	w.c.Close(websocket.StatusNormalClosure, "")
	// The handler untracks the subscriber before it returns, and the
	// request is counted after: wait for both.
	waitFor(t, "the subscriber's handler to end, and its request to be counted", func() bool {
		m := scrape(t, u)
		v, _ := m.Value("kvs_subscribers")
		n, _ := m.Value("kvs_http_requests_total", "route", "GET /subscribe", "code", "101")
		return v == 0 && n > 0
	})

	m = scrape(t, u)
	for _, c := range []struct {
		route, code string
		want        float64
	}{
		{"POST /set", "200", 2},
		{"PUT /set", "200", 1},
		{"POST /set", "400", 1},
		{"POST /get", "200", 2},
		{"GET /get", "404", 1},
		{"unmatched", "404", 1},
		{"unmatched", "405", 1},
		{"GET /getall", "200", 1},
		{"GET /healthz", "200", 1},
		{"GET /subscribe", "101", 1},
	} {
		wantValue(t, m, c.want, "kvs_http_requests_total", "route", c.route, "code", c.code)
	}
	wantValue(t, m, 3, "kvs_http_request_duration_seconds_count", "route", "POST /set")
	wantValue(t, m, 3, "kvs_http_request_duration_seconds_bucket", "route", "POST /set", "le", "+Inf")
	wantValue(t, m, 2, "kvs_http_request_duration_seconds_count", "route", "unmatched")
	wantAbsent(t, m, "kvs_http_request_duration_seconds_count", "route", "GET /subscribe") // a connection's lifetime is no latency
	if s, _ := m.Value("kvs_http_request_duration_seconds_sum", "route", "POST /set"); !(s > 0) {
		t.Errorf("latency sum of POST /set: %v, want > 0", s)
	}
	wantValue(t, m, 3, "kvs_keys")
	wantValue(t, m, 3, "kvs_revision")
	wantValue(t, m, 1, "kvs_ready")
	wantValue(t, m, 0, "kvs_subscribers")
	wantValue(t, m, 3, "kvs_feed_events_sent_total")
	wantValue(t, m, 0, "kvs_feed_progress_sent_total")
	wantValue(t, m, 0, "kvs_feed_slow_consumer_closes_total")
	if g, ok := m.Value("go_goroutines"); !ok || g < 1 {
		t.Errorf("go_goroutines %v", g)
	}

	wantValue(t, m, 4, "kvs_log_batch_changes_bucket", "le", "1")
	wantValue(t, m, 5, "kvs_log_batch_changes_bucket", "le", "2")
	wantValue(t, m, 6, "kvs_log_batch_changes_bucket", "le", "+Inf")
	wantValue(t, m, 12, "kvs_log_batch_changes_sum")
	wantValue(t, m, 6, "kvs_log_batch_changes_count")
	wantValue(t, m, 5, "kvs_log_fsync_duration_seconds_bucket", "le", "0.001")
	wantValue(t, m, 0.25, "kvs_log_fsync_duration_seconds_sum")

	wantValue(t, m, 7, "kvs_kafka_lag", "partition", "0")
	wantValue(t, m, 0, "kvs_kafka_lag", "partition", "1")
	wantValue(t, m, 40, "kvs_kafka_records_total")
	wantValue(t, m, math.Inf(1), "kvs_escaped", "v", "a\"b\\c\nd")
	for name, typ := range map[string]string{"kvs_kafka_lag": "gauge", "kvs_kafka_records_total": "counter", "kvs_keys": "gauge",
		"kvs_http_requests_total": "counter", "kvs_http_request_duration_seconds": "histogram"} {
		if f := m.Families[name]; f == nil || f.Type != typ || f.Help == "" && name != "kvs_kafka_records_total" {
			t.Errorf("family %s: %+v, want type %s with help", name, f, typ)
		}
	}
	for _, name := range []string{"bad name", "kvs_odd", "kvs_summary"} {
		if f := m.Families[name]; f != nil && len(f.Samples) > 0 {
			t.Errorf("invalid extra sample %s exposed", name)
		}
	}
	wantValue(t, m, 3, "kvs_keys") // not the extra sample's 1e6
}

// TestMetricsWithoutLog: with the memory log there are no log metrics.
func TestMetricsWithoutLog(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	m := scrape(t, srv.URL)
	for _, name := range []string{"kvs_log_batch_changes", "kvs_log_fsync_duration_seconds"} {
		if m.Families[name] != nil {
			t.Errorf("%s exposed without a log", name)
		}
	}
	wantValue(t, m, 0, "kvs_revision")
}

// slowFeed is a Feed whose every subscriber is dropped at once as too slow.
type slowFeed struct{}

func (slowFeed) Subscribe(context.Context, string, string, int64) (httpapi.Subscription, int64, error) {
	c := make(chan *kv.Event)
	close(c)
	return &slowSub{c: c}, 5, nil
}
func (slowFeed) Rev() int64 { return 0 }

type slowSub struct{ c chan *kv.Event }

func (s *slowSub) Events() (iter.Seq[[]*kv.Event], <-chan *kv.Event) {
	return func(func([]*kv.Event) bool) {}, s.c
}
func (s *slowSub) Done(*kv.Event) {}
func (s *slowSub) Err() error     { return kv.ErrSlowConsumer }

func TestMetricsSlowConsumerCloses(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{Feed: slowFeed{}})
	ws := "ws" + strings.TrimPrefix(srv.URL, "http") + "/subscribe"
	for range 2 {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		c, _, err := websocket.Dial(ctx, ws, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = c.Read(ctx)
		cancel()
		if code := websocket.CloseStatus(err); code != httpapi.StatusSlowConsumer {
			t.Fatalf("got %v, want close 4408", err)
		}
		c.CloseNow()
	}
	wantValue(t, scrape(t, srv.URL), 2, "kvs_feed_slow_consumer_closes_total")
}

// TestMetricsRouteLabels sends requests to paths chosen by a client: the
// route label is always a registered pattern or "unmatched", never a raw
// path, so that clients cannot add series.
func TestMetricsRouteLabels(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{Token: "t"})
	rnd := rand.New(rand.NewPCG(1, 2))
	paths := []string{"/get/../getall", "/./set", "//getall", "/GETALL", "/getall/", "/subscribe/x", "/metrics?x=1", "/%2e%2e/get"}
	for i := range 200 {
		paths = append(paths, "/x"+strconv.Itoa(rnd.IntN(1<<30))+"/"+strconv.Itoa(i))
	}
	for i, p := range paths {
		method := []string{"GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}[i%6]
		req, _ := http.NewRequest(method, srv.URL+p, nil)
		if i%2 == 0 {
			req.Header.Set("Authorization", "Bearer t")
		}
		client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer t")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m, err := promtext.Parse(string(body))
	if err != nil {
		t.Fatal(err)
	}
	routes := map[string]bool{}
	for _, s := range m.Families["kvs_http_requests_total"].Samples {
		routes[s.Labels["route"]] = true
	}
	allowed := map[string]bool{"unmatched": true}
	for _, p := range []string{"POST /get", "GET /get", "POST /set", "PUT /set", "POST /delete", "DELETE /delete",
		"GET /getall", "POST /getall", "GET /subscribe", "GET /healthz", "GET /readyz", "POST /login", "GET /metrics"} {
		allowed[p] = true
	}
	for r := range routes {
		if !allowed[r] {
			t.Errorf("route label %q is not a registered pattern", r)
		}
	}
	if len(routes) > len(allowed) {
		t.Errorf("%d route labels after %d paths", len(routes), len(paths))
	}
}
