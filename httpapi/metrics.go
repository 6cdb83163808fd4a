package httpapi

import (
	"cmp"
	"math"
	"net/http"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvsdb/kvs/kv"
)

// Sample is one value that Options.ExtraMetrics adds to /metrics, such as
// the Kafka log's lag. Samples with the same Name make up one metric.
type Sample struct {
	// Name is the metric's name: [a-zA-Z_:][a-zA-Z0-9_:]*. A sample with
	// an invalid name, or the name of a metric kvs exposes itself, is
	// left out.
	Name string
	// Help says what the metric measures.
	Help string
	// Type is "gauge" or "counter". Empty means "gauge".
	Type string
	// Labels are label names and values, in pairs: {"partition", "0"}.
	Labels []string
	Value  float64
}

// ContentTypeMetrics is the Content-Type of /metrics: the Prometheus text
// exposition format.
const ContentTypeMetrics = "text/plain; version=0.0.4; charset=utf-8"

// unmatchedRoute is the route label of requests that match no route
// pattern (404, 405, and 401 for them without a token).
const unmatchedRoute = "unmatched"

// latencyBounds are the buckets of kvs_http_request_duration_seconds.
var latencyBounds = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// metrics are the counters of a Handler. Route labels are route patterns,
// never raw paths, so that clients cannot add series.
type metrics struct {
	// routes maps a pattern to its stats. It is replaced, never changed,
	// under mu, so that requests read it without a lock.
	routes atomic.Pointer[map[string]*routeStats]
	mu     sync.Mutex

	eventsSent   atomic.Uint64
	progressSent atomic.Uint64
	slowCloses   atomic.Uint64

	txns [txnOutcomes]atomic.Uint64 // by outcome, see txnOutcomeNames
}

// routeStats are the counters of one route.
type routeStats struct {
	codes   [600]atomic.Uint64 // answers by status code; [0] counts codes out of range
	latency latencyHistogram
}

// latencyHistogram is the request latency histogram of a route.
type latencyHistogram struct {
	counts [17]atomic.Uint64 // by bucket of latencyBounds, the last above them all
	sumNs  atomic.Uint64
}

func (h *latencyHistogram) observe(d time.Duration) {
	h.counts[sort.SearchFloat64s(latencyBounds, d.Seconds())].Add(1)
	h.sumNs.Add(uint64(max(d, 0)))
}

func (h *latencyHistogram) snapshot() kv.Histogram {
	s := kv.Histogram{Bounds: latencyBounds, Counts: make([]uint64, len(latencyBounds))}
	for i := range h.counts {
		s.Count += h.counts[i].Load()
		if i < len(latencyBounds) {
			s.Counts[i] = s.Count
		}
	}
	s.Sum = float64(h.sumNs.Load()) / 1e9
	return s
}

// route returns the stats of a route pattern, "" for none.
func (m *metrics) route(pattern string) *routeStats {
	if pattern == "" {
		pattern = unmatchedRoute
	}
	if p := m.routes.Load(); p != nil {
		if rs, ok := (*p)[pattern]; ok {
			return rs
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.routes.Load()
	if old != nil {
		if rs, ok := (*old)[pattern]; ok {
			return rs
		}
	}
	next := make(map[string]*routeStats)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	rs := new(routeStats)
	next[pattern] = rs
	m.routes.Store(&next)
	return rs
}

// observe counts an answered request. The latency of a WebSocket that was
// upgraded (101) is its lifetime, not a request's: it is not observed.
func (m *metrics) observe(pattern string, code int, began time.Time) {
	rs := m.route(pattern)
	if code < 100 || code >= len(rs.codes) {
		code = 0
	}
	rs.codes[code].Add(1)
	if code != http.StatusSwitchingProtocols {
		rs.latency.observe(time.Since(began))
	}
}

// family is one metric of the exposition: its samples (series) share its
// name, help and type.
type family struct {
	name, help, typ string
	series          []series
}

type series struct {
	labels string // rendered: name="value",...
	value  float64
	hist   *kv.Histogram // for a histogram
}

func (f *family) add(value float64, labels ...string) {
	f.series = append(f.series, series{labels: renderLabels(labels), value: value})
}

func (f *family) addHist(h kv.Histogram, labels ...string) {
	f.series = append(f.series, series{labels: renderLabels(labels), hist: &h})
}

func renderLabels(pairs []string) string {
	var b strings.Builder
	for i := 0; i+1 < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(pairs[i])
		b.WriteString(`="`)
		b.WriteString(labelEscaper.Replace(pairs[i+1]))
		b.WriteByte('"')
	}
	return b.String()
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

// families collects every metric of h, sorted by name.
func (h *Handler) families() []*family {
	gauge := func(name, help string, v float64) *family {
		f := &family{name: name, help: help, typ: "gauge"}
		f.add(v)
		return f
	}
	counter := func(name, help string, v uint64) *family {
		f := &family{name: name, help: help, typ: "counter"}
		f.add(float64(v))
		return f
	}
	ready := 1.0
	if h.ready() != nil {
		ready = 0
	}
	h.mu.Lock()
	subs := h.nsubs
	h.mu.Unlock()
	fams := []*family{
		gauge("go_goroutines", "Goroutines that currently exist.", float64(runtime.NumGoroutine())),
		gauge("go_sched_gomaxprocs_threads", "The Go runtime's GOMAXPROCS: how many goroutines can run at once.", float64(runtime.GOMAXPROCS(0))),
		gauge("kvs_keys", "Keys in the store.", float64(h.store.Len())),
		gauge("kvs_revision", "Revision of the last change applied to the store.", float64(h.store.Rev())),
		gauge("kvs_ready", "1 when the server serves current data and takes writes (/readyz answers 200), else 0.", ready),
		gauge("kvs_subscribers", "Open /subscribe connections.", float64(subs)),
		counter("kvs_feed_events_sent_total", "Change events (set, delete) written to subscribers.", h.metrics.eventsSent.Load()),
		counter("kvs_feed_progress_sent_total", "Progress events written to idle subscribers.", h.metrics.progressSent.Load()),
		counter("kvs_feed_slow_consumer_closes_total", "Subscribers closed with 4408 because they fell behind by more than their queue.", h.metrics.slowCloses.Load()),
	}

	reqs := &family{name: "kvs_http_requests_total", typ: "counter",
		help: `HTTP requests answered, by route pattern ("unmatched" for none) and status code. Requests that net/http rejects before routing (400 bad request line, 431 headers too large) are not counted.`}
	lat := &family{name: "kvs_http_request_duration_seconds", typ: "histogram",
		help: "Time to answer an HTTP request, by route pattern; upgraded WebSocket connections are not counted."}
	if p := h.metrics.routes.Load(); p != nil {
		for route, rs := range *p {
			for code := range rs.codes {
				if n := rs.codes[code].Load(); n > 0 {
					c := strconv.Itoa(code)
					if code == 0 {
						c = "other"
					}
					reqs.add(float64(n), "route", route, "code", c)
				}
			}
			if s := rs.latency.snapshot(); s.Count > 0 {
				lat.addHist(s, "route", route)
			}
		}
	}
	fams = append(fams, reqs, lat, h.metrics.txnFamily())

	if h.logStats != nil {
		st := h.logStats()
		batch := &family{name: "kvs_log_batch_changes", typ: "histogram",
			help: "Changes in each batch appended to the log (group commit): _count is the number of batches, each one write and one fsync."}
		batch.addHist(st.BatchChanges)
		fsync := &family{name: "kvs_log_fsync_duration_seconds", typ: "histogram",
			help: "Time each fsync of a batch took (none with -fsync never)."}
		fsync.addHist(st.SyncSeconds)
		fams = append(fams, batch, fsync)
	}

	if h.extraMetrics != nil {
		fams = appendExtra(fams, h.extraMetrics())
	}
	slices.SortFunc(fams, func(a, b *family) int { return cmp.Compare(a.name, b.name) })
	for _, f := range fams {
		slices.SortFunc(f.series, func(a, b series) int { return cmp.Compare(a.labels, b.labels) })
	}
	return fams
}

// appendExtra adds samples to fams, leaving out invalid ones, those that
// would change a metric of fams, and repeated label sets.
func appendExtra(fams []*family, samples []Sample) []*family {
	taken := make(map[string]bool, len(fams))
	for _, f := range fams {
		taken[f.name] = true
	}
	extra := make(map[string]*family)
	seen := make(map[string]bool)
	for _, s := range samples {
		typ := cmp.Or(s.Type, "gauge")
		if !validMetricName(s.Name) || taken[s.Name] || (typ != "gauge" && typ != "counter") || len(s.Labels)%2 != 0 {
			continue
		}
		ok := true
		for i := 0; i < len(s.Labels); i += 2 {
			ok = ok && validLabelName(s.Labels[i])
		}
		f := extra[s.Name]
		if f == nil {
			f = &family{name: s.Name, help: s.Help, typ: typ}
			extra[s.Name] = f
			fams = append(fams, f)
		}
		labels := renderLabels(s.Labels)
		if !ok || f.typ != typ || seen[s.Name+"{"+labels] {
			continue
		}
		seen[s.Name+"{"+labels] = true
		f.series = append(f.series, series{labels: labels, value: s.Value})
	}
	return fams
}

func validMetricName(s string) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		if !(c == '_' || c == ':' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}

func validLabelName(s string) bool {
	return validMetricName(s) && !strings.Contains(s, ":") && !strings.HasPrefix(s, "__")
}

// appendExposition renders fams in the Prometheus text format.
func appendExposition(b []byte, fams []*family) []byte {
	for _, f := range fams {
		if len(f.series) == 0 {
			continue
		}
		b = append(b, "# HELP "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, helpEscaper.Replace(f.help)...)
		b = append(b, "\n# TYPE "...)
		b = append(b, f.name...)
		b = append(b, ' ')
		b = append(b, f.typ...)
		b = append(b, '\n')
		for _, s := range f.series {
			if s.hist == nil {
				b = appendSample(b, f.name, s.labels, "", s.value)
				continue
			}
			h := s.hist
			for i, bound := range h.Bounds {
				b = appendSample(b, f.name+"_bucket", s.labels, `le="`+formatFloat(bound)+`"`, float64(h.Counts[i]))
			}
			b = appendSample(b, f.name+"_bucket", s.labels, `le="+Inf"`, float64(h.Count))
			b = appendSample(b, f.name+"_sum", s.labels, "", h.Sum)
			b = appendSample(b, f.name+"_count", s.labels, "", float64(h.Count))
		}
	}
	return b
}

func appendSample(b []byte, name, labels, extra string, v float64) []byte {
	b = append(b, name...)
	if labels != "" || extra != "" {
		b = append(b, '{')
		b = append(b, labels...)
		if labels != "" && extra != "" {
			b = append(b, ',')
		}
		b = append(b, extra...)
		b = append(b, '}')
	}
	b = append(b, ' ')
	b = append(b, formatFloat(v)...)
	return append(b, '\n')
}

func formatFloat(v float64) string {
	switch {
	case math.IsInf(v, 1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// serveMetrics serves GET /metrics.
func (h *Handler) serveMetrics(w http.ResponseWriter, r *http.Request) {
	b := appendExposition(make([]byte, 0, 16<<10), h.families())
	w.Header().Set("Content-Type", ContentTypeMetrics)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b)
}
