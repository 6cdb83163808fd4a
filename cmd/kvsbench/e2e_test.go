package main_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// result is the part of kvsbench -json output these tests read.
type result struct {
	Mode    string
	Ops     int64
	Latency map[string]struct {
		Count uint64
		P50   float64 `json:"p50_us"`
		P99   float64 `json:"p99_us"`
		Max   float64 `json:"max_us"`
	}
	Errors  map[string]int64
	Preload *struct{ Keys int }
	Watch   *struct {
		Subscribers, Connected                            int
		Expected, Delivered, Lost, Duplicated, Unexpected int64
		Reordered                                         int64   `json:"out_of_order"`
		DeliveredPerSec                                   float64 `json:"delivered_per_s"`
	}
	Steps    []result
	BestRate float64 `json:"best_rate"`
	OK       bool
}

// kvsbench runs the real binary against srv and returns stdout, stderr
// and the exit code.
func kvsbench(t *testing.T, srv *kvstest.Server, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	full := append([]string{"-server-address", srv.Addr}, args...)
	cmd := exec.CommandContext(t.Context(), kvstest.Binary(t, "kvsbench"), full...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("kvsbench %q: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

func decode(t *testing.T, stdout string) result {
	t.Helper()
	var r result
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("kvsbench -json output: %v\n%s", err, stdout)
	}
	return r
}

// TestModes runs each mode for about a second against a real kvsd.
func TestModes(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	tests := []struct {
		name  string
		args  []string
		check func(t *testing.T, r result)
	}{
		{"set", []string{"set", "-c", "4", "-d", "1s", "-key-prefix", "set/"}, func(t *testing.T, r result) {
			if r.Ops == 0 || r.Latency["set"].Count != uint64(r.Ops) {
				t.Errorf("ops %d, set latencies %d: want equal and > 0", r.Ops, r.Latency["set"].Count)
			}
		}},
		{"get", []string{"get", "-c", "4", "-d", "1s", "-keys", "200", "-key-prefix", "get/"}, func(t *testing.T, r result) {
			if r.Preload == nil || r.Preload.Keys != 200 {
				t.Errorf("preload: got %+v, want 200 keys", r.Preload)
			}
			if r.Ops == 0 || r.Latency["get"].Count != uint64(r.Ops) {
				t.Errorf("ops %d, get latencies %d: want equal and > 0", r.Ops, r.Latency["get"].Count)
			}
		}},
		{"mixed", []string{"mixed", "-c", "4", "-d", "1s", "-keys", "100", "-read-ratio", "0.5", "-key-prefix", "mixed/"}, func(t *testing.T, r result) {
			g, s := r.Latency["get"].Count, r.Latency["set"].Count
			if g == 0 || s == 0 || g+s != uint64(r.Ops) || r.Latency["all"].Count != g+s {
				t.Errorf("ops %d: gets %d + sets %d, all %d", r.Ops, g, s, r.Latency["all"].Count)
			}
		}},
		{"paced set with a total", []string{"set", "-c", "2", "-n", "60", "-rate", "200", "-key-prefix", "paced/"}, func(t *testing.T, r result) {
			if r.Ops != 60 {
				t.Errorf("ops: got %d, want 60", r.Ops)
			}
		}},
		{"watch", []string{"watch", "-subscribers", "20", "-rate", "100", "-d", "1s"}, func(t *testing.T, r result) {
			w := r.Watch
			if w == nil || r.Ops == 0 || w.Connected != 20 || w.Expected != 20*r.Ops || w.Delivered != w.Expected ||
				w.Lost+w.Duplicated+w.Reordered+w.Unexpected != 0 {
				t.Errorf("got ops %d, watch %+v; want every set delivered to 20 subscribers once", r.Ops, w)
			}
			if r.Latency["delivery"].Count != uint64(w.Delivered) {
				t.Errorf("delivery latencies: got %d, want %d", r.Latency["delivery"].Count, w.Delivered)
			}
		}},
		{"watch from a revision, 2 KiB values", []string{"watch", "-subscribers", "10", "-rate", "200", "-d", "1s", "-from", "-value-size", "2048", "-resume"}, func(t *testing.T, r result) {
			w := r.Watch
			if w == nil || r.Ops == 0 || w.Connected != 10 || w.Expected != 10*r.Ops || w.Delivered != w.Expected {
				t.Errorf("got ops %d, watch %+v; want every set delivered to 10 subscribers once", r.Ops, w)
			}
		}},
		// Rates and connections that a busy machine sustains: the test is
		// of the sweep, not of the machine.
		{"watch sweep", []string{"watch", "-subscribers", "5", "-c", "16", "-d", "1s", "-sweep", "20,40", "-sweep-p99", "10s"}, func(t *testing.T, r result) {
			if len(r.Steps) != 2 || r.BestRate != 40 {
				t.Fatalf("got %d steps, best rate %v; want 2 steps, best 40", len(r.Steps), r.BestRate)
			}
			for _, s := range r.Steps {
				if s.Watch == nil || s.Watch.Delivered != 5*s.Ops || s.Ops == 0 {
					t.Errorf("step: got ops %d, watch %+v", s.Ops, s.Watch)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := kvsbench(t, srv, append([]string{"-json", "-progress", "200ms"}, tt.args...)...)
			if code != 0 {
				t.Fatalf("exit code %d, want 0\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			r := decode(t, stdout)
			if !r.OK || len(r.Errors) != 0 {
				t.Errorf("ok %v, errors %v: want ok and no errors", r.OK, r.Errors)
			}
			if !strings.Contains(stderr, "kvsbench ") {
				t.Errorf("no progress line on stderr: %q", stderr)
			}
			tt.check(t, r)
		})
	}
}

// TestFill checks that fill writes exactly the key space, with padded keys,
// and that the human output has its table.
func TestFill(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	stdout, stderr, code := kvsbench(t, srv, "fill", "-c", "8", "-keys", "300", "-key-size", "16", "-value-size", "100", "-key-prefix", "f/")
	if code != 0 {
		t.Fatalf("exit code %d, want 0\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{"requests   300 in", "p50", "p99.9", "\nok\n"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	resp, err := http.Get(srv.URL + "/getall?prefix=f/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var all map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatal(err)
	}
	if len(all) != 300 {
		t.Fatalf("keys stored: got %d, want 300", len(all))
	}
	for k, v := range all {
		if len(k) != 16 || !strings.HasPrefix(k, "f/k000000000") || len(v) != 100 {
			t.Fatalf("got key %q (%d bytes) with a %d-byte value, want 16-byte keys f/k000000000NNN and 100-byte values", k, len(k), len(v))
		}
	}
}

// TestFailures checks that errors make the exit status non-zero.
func TestFailures(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	t.Run("missing keys", func(t *testing.T) {
		stdout, _, code := kvsbench(t, srv, "-json", "-progress", "0", "get", "-preload", "0", "-key-prefix", "absent/", "-n", "50", "-c", "2")
		if code != 1 {
			t.Fatalf("exit code: got %d, want 1", code)
		}
		if r := decode(t, stdout); r.OK || r.Errors["get: http 404"] != 50 {
			t.Errorf("got ok %v, errors %v; want 50 get: http 404", r.OK, r.Errors)
		}
	})
	t.Run("values over the limit", func(t *testing.T) {
		small := kvstest.Start(t, "-backend", "memory", "-max-value-bytes", "100")
		stdout, _, code := kvsbench(t, small, "-json", "-progress", "0", "set", "-value-size", "200", "-n", "5", "-c", "1")
		if code != 1 {
			t.Fatalf("exit code: got %d, want 1", code)
		}
		if r := decode(t, stdout); r.Errors["set: http 413"] != 5 {
			t.Errorf("errors: got %v, want 5 set: http 413", r.Errors)
		}
	})
	t.Run("server down", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		down := &kvstest.Server{Addr: ln.Addr().String()}
		ln.Close()
		_, stderr, code := kvsbench(t, down, "-progress", "0", "watch", "-subscribers", "3", "-d", "1s")
		if code != 1 || !strings.Contains(stderr, down.Addr) || !strings.Contains(stderr, "connection refused") {
			t.Errorf("got exit code %d and %q, want 1 and a message naming %s", code, stderr, down.Addr)
		}
	})
	t.Run("usage", func(t *testing.T) {
		_, stderr, code := kvsbench(t, srv, "frobnicate")
		if code != 2 || !strings.Contains(stderr, "unknown mode") {
			t.Errorf("got exit code %d and %q, want 2 and a usage message", code, stderr)
		}
	})
}

// TestLeaseMode runs lease mode against kvsd: every lease is kept alive
// without a loss, and then expires, each key deleted at or after its TTL
// since the last acknowledged keep-alive.
func TestLeaseMode(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	stdout, stderr, code := kvsbench(t, srv, "-json", "-progress", "200ms", "lease", "-leases", "300", "-ttl", "3s",
		"-batch", "50", "-d", "3s", "-c", "4", "-server-pid", strconv.Itoa(srv.PID()))
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	var r struct {
		OK                    bool
		Leases                int
		Renewals, Lost, Early int64
		Expired               int64
		Missing               int64                  `json:"not_expired"`
		Lateness              struct{ Count uint64 } `json:"expiry_lateness"`
		KeepAlive             struct{ Count uint64 } `json:"keepalive_latency"`
		Requests              int64
		Errors                map[string]int64
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("%v: %s", err, stdout)
	}
	// 300 leases, renewed every second for 3s: 3 rounds (a TTL that a
	// busy machine grants 300 leases well within).
	if !r.OK || r.Leases != 300 || r.Lost != 0 || r.Early != 0 || r.Expired != 300 || r.Missing != 0 ||
		r.Renewals < 300*2 || r.Lateness.Count != 300 || r.KeepAlive.Count != uint64(r.Requests) || len(r.Errors) != 0 {
		t.Fatalf("got %+v", r)
	}
}
