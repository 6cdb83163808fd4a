package main_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/internal/promtext"
)

func scrapeKvsd(t *testing.T, srv *kvstest.Server) *promtext.Exposition {
	t.Helper()
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	e, err := promtext.Parse(string(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v\n%s", err, body)
	}
	return e
}

// TestMetricsEndToEnd runs a known workload on the real kvsd with each
// backend and checks the log's metrics: with -fsync always each of n
// sequential sets is one batch of one change and one fsync; with -fsync
// never there are batches but no fsyncs; the memory backend has no log
// metrics. -pprof mounts the profiles.
func TestMetricsEndToEnd(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		fsyncs     float64 // -1: no log metrics
		pprofRoute bool
	}{
		{"file, fsync always", nil, 7, false},
		{"file, fsync never", []string{"-fsync", "never"}, 0, false},
		{"memory, pprof", []string{"-backend", "memory", "-pprof"}, -1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := kvstest.Start(t, tt.args...)
			const n = 7
			for i := range n {
				resp, err := http.Post(srv.URL+"/set", "", strings.NewReader(`{"Key":"k`+strconv.Itoa(i%5)+`","Value":`+strconv.Itoa(i)+`}`))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("set %d: %d", i, resp.StatusCode)
				}
			}
			resp, err := http.Get(srv.URL + "/debug/pprof/cmdline")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got, want := resp.StatusCode, map[bool]int{true: 200, false: 404}[tt.pprofRoute]; got != want {
				t.Fatalf("GET /debug/pprof/cmdline: got %d, want %d", got, want)
			}
			m := scrapeKvsd(t, srv)
			want := func(v float64, name string, labels ...string) {
				t.Helper()
				if got, ok := m.Value(name, labels...); !ok || got != v {
					t.Errorf("%s%v: got %v (present %v), want %v", name, labels, got, ok, v)
				}
			}
			want(n, "kvs_http_requests_total", "route", "POST /set", "code", "200")
			want(n, "kvs_revision")
			want(5, "kvs_keys")
			want(1, "kvs_ready")
			want(0, "kvs_feed_slow_consumers_total") // counted: internal/robustness file/slow-subscriber
			if tt.fsyncs < 0 {
				if m.Families["kvs_log_batch_changes"] != nil || m.Families["kvs_log_fsync_duration_seconds"] != nil {
					t.Errorf("log metrics with the memory backend")
				}
				return
			}
			want(n, "kvs_log_batch_changes_count")
			want(n, "kvs_log_batch_changes_sum")
			want(n, "kvs_log_batch_changes_bucket", "le", "1")
			want(tt.fsyncs, "kvs_log_fsync_duration_seconds_count")
			want(tt.fsyncs, "kvs_log_fsync_duration_seconds_bucket", "le", "+Inf")
			if s, _ := m.Value("kvs_log_fsync_duration_seconds_sum"); (tt.fsyncs > 0) != (s > 0) {
				t.Errorf("fsync seconds %v after %v fsyncs", s, tt.fsyncs)
			}
		})
	}
}

// TestExtraProcForFsync checks that kvsd on the file log with -fsync always
// runs one more P than the Go runtime's default, for the thread that waits
// in fdatasync, and no more with -fsync never or the memory backend; a
// GOMAXPROCS set in the environment wins.
func TestExtraProcForFsync(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // the runtime's default
	procs := func(args ...string) float64 {
		t.Helper()
		srv := kvstest.Start(t, args...)
		v, ok := scrapeKvsd(t, srv).Value("go_sched_gomaxprocs_threads")
		if !ok || v < 1 {
			t.Fatalf("kvsd %v: go_sched_gomaxprocs_threads %v (present %v)", args, v, ok)
		}
		return v
	}
	base := procs("-fsync", "never")
	if got := procs("-backend", "memory"); got != base {
		t.Errorf("memory backend: GOMAXPROCS %v, want the default %v", got, base)
	}
	if got := procs(); got != base+1 {
		t.Errorf("file log, -fsync always: GOMAXPROCS %v, want the default %v + 1", got, base)
	}
	t.Setenv("GOMAXPROCS", "1")
	if got := procs(); got != 1 {
		t.Errorf("GOMAXPROCS=1 in the environment: GOMAXPROCS %v, want 1", got)
	}
}
