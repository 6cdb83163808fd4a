package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestAppendKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		prefix string
		i      int
		width  int
		want   string
	}{
		{"", 0, 0, "k0"},
		{"", 12345, 0, "k12345"},
		{"p/", 7, 0, "p/k7"},
		{"", 42, 6, "k000042"},
		{"ab", 123456, 3, "abk123456"},
	}
	for _, tt := range tests {
		got := string(appendKey(nil, tt.prefix, tt.i, tt.width))
		if got != tt.want {
			t.Errorf("appendKey(%q, %d, %d): got %q, want %q", tt.prefix, tt.i, tt.width, got, tt.want)
		}
		if n := keyLen(tt.prefix, tt.i, tt.width); n != len(tt.want) {
			t.Errorf("keyLen(%q, %d, %d): got %d, want %d", tt.prefix, tt.i, tt.width, n, len(tt.want))
		}
	}
}

func TestPacer(t *testing.T) {
	t.Parallel()
	t.Run("total", func(t *testing.T) {
		t.Parallel()
		p := &pacer{start: time.Now(), total: 1000, stop: make(chan struct{})}
		var n atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				tm := time.NewTimer(time.Hour)
				for {
					if _, _, ok := p.take(t.Context(), tm); !ok {
						return
					}
					n.Add(1)
				}
			})
		}
		wg.Wait()
		if n.Load() != 1000 {
			t.Errorf("requests handed out: got %d, want 1000", n.Load())
		}
	})
	t.Run("stop while waiting", func(t *testing.T) {
		t.Parallel()
		p := &pacer{start: time.Now(), period: float64(time.Hour), stop: make(chan struct{})}
		tm := time.NewTimer(time.Hour)
		if _, _, ok := p.take(t.Context(), tm); !ok {
			t.Fatal("the first request is due at once")
		}
		go close(p.stop)
		if _, _, ok := p.take(t.Context(), tm); ok {
			t.Error("take returned a request an hour early, after stop")
		}
	})
	t.Run("late request counts from when it was due", func(t *testing.T) {
		t.Parallel()
		start := time.Now().Add(-time.Hour)
		p := &pacer{start: start, period: float64(time.Second), stop: make(chan struct{})}
		_, due, ok := p.take(t.Context(), time.NewTimer(time.Hour))
		if !ok || !due.Equal(start) {
			t.Errorf("got %v, %v, want the scheduled time %v", due, ok, start)
		}
	})
}

func TestErrorKind(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err  error
		want string
	}{
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "connection refused"},
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "connection reset"},
		{fmt.Errorf("x: %w", io.ErrUnexpectedEOF), "connection closed"},
		{context.DeadlineExceeded, "timeout"},
		{fmt.Errorf("x: %w", syscall.EMFILE), "too many open files"},
		{errors.New("something else"), "error"},
	}
	for _, tt := range tests {
		if got := errorKind(tt.err); got != tt.want {
			t.Errorf("errorKind(%v): got %q, want %q", tt.err, got, tt.want)
		}
	}
}

// fakeKV is a minimal /set and /get server that records what it was sent.
type fakeKV struct {
	mu     sync.Mutex
	bodies map[string][]string // path -> bodies
	auth   map[string]int      // Authorization header -> requests
	ctype  map[string]int      // Content-Type header -> requests
	rev    int64
	// fail, when set, answers request n (from 1) with an error status.
	fail func(n int64) int
	n    int64
}

func newFakeKV(t *testing.T) (*fakeKV, *httptest.Server) {
	t.Helper()
	f := &fakeKV{bodies: map[string][]string{}, auth: map[string]int{}, ctype: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeKV) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.n++
	n := f.n
	f.bodies[r.Method+" "+r.URL.Path] = append(f.bodies[r.Method+" "+r.URL.Path], string(body))
	f.auth[r.Header.Get("Authorization")]++
	f.ctype[r.Header.Get("Content-Type")]++
	f.rev++
	rev := f.rev
	f.mu.Unlock()
	if f.fail != nil {
		if code := f.fail(n); code != 0 {
			w.WriteHeader(code)
			fmt.Fprintf(w, `{"error":"failure %d"}`+"\n", code)
			return
		}
	}
	var req struct{ Key string }
	json.Unmarshal(body, &req)
	switch r.URL.Path {
	case "/set":
		fmt.Fprintf(w, `{"Key":%q,"Revision":%d}`+"\n", req.Key, rev)
	case "/get":
		fmt.Fprintf(w, `{"Key":%q,"Value":"v","Revision":1,"CreateRevision":1,"Version":1}`+"\n", req.Key)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

// runJSON runs kvsbench in-process with -json and returns its report.
func runJSON(t *testing.T, args ...string) (report, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(t.Context(), append([]string{"-json", "-progress", "0"}, args...), func(string) string { return "" }, &out, &errOut)
	var rep report
	if out.Len() > 0 {
		if jerr := json.Unmarshal(out.Bytes(), &rep); jerr != nil {
			t.Fatalf("output is not a JSON report: %v\n%s", jerr, out.String())
		}
	}
	return rep, err
}

func TestRunRequests(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		path     string
		body     string // regexp for every body
		requests int
	}{
		{"set", []string{"set", "-n", "40", "-key-prefix", "p/", "-key-size", "8", "-keys", "1000", "-value-size", "10"},
			"POST /set", `^\{"Key":"p/k\d{5}","Value":"[A-Za-z0-9]{10}"\}$`, 40},
		{"get", []string{"get", "-n", "30", "-preload", "0"},
			"POST /get", `^\{"Key":"k\d{1,4}"\}$`, 30},
		{"mixed, all gets", []string{"mixed", "-n", "25", "-preload", "0", "-read-ratio", "1"},
			"POST /get", `^\{"Key":"k\d+"\}$`, 25},
		{"mixed, all sets", []string{"mixed", "-n", "25", "-preload", "0", "-read-ratio", "0"},
			"POST /set", `^\{"Key":"k\d+","Value":"[A-Za-z0-9]{16}"\}$`, 25},
		{"empty values", []string{"set", "-n", "5", "-value-size", "0"},
			"POST /set", `^\{"Key":"k\d+","Value":""\}$`, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f, srv := newFakeKV(t)
			rep, err := runJSON(t, append([]string{"-server-address", srv.URL, "-token", "tok", "-c", "4"}, tt.args...)...)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if len(f.bodies) != 1 || len(f.bodies[tt.path]) != tt.requests {
				t.Fatalf("requests: got %d to %s (all: %v), want %d", len(f.bodies[tt.path]), tt.path, mapLens(f.bodies), tt.requests)
			}
			re := regexp.MustCompile(tt.body)
			for _, b := range f.bodies[tt.path] {
				if !re.MatchString(b) {
					t.Fatalf("body %q does not match %s", b, tt.body)
				}
			}
			if f.auth["Bearer tok"] != tt.requests || f.ctype["application/json"] != tt.requests {
				t.Errorf("headers: got Authorization %v, Content-Type %v; want Bearer tok and application/json on all", f.auth, f.ctype)
			}
			if rep.Ops != int64(tt.requests) || !rep.OK || len(rep.Errors) != 0 {
				t.Errorf("report: got ops %d, ok %v, errors %v; want %d, true, none", rep.Ops, rep.OK, rep.Errors, tt.requests)
			}
			var n uint64
			for _, s := range rep.Latency {
				n += s.Count
			}
			if strings.HasPrefix(tt.name, "mixed") {
				n -= rep.Latency["all"].Count
			}
			if n != uint64(tt.requests) {
				t.Errorf("latency counts: got %d, want %d", n, tt.requests)
			}
		})
	}
}

func TestRunFillWritesEachKeyOnce(t *testing.T) {
	t.Parallel()
	f, srv := newFakeKV(t)
	rep, err := runJSON(t, "-server-address", srv.URL, "-c", "8", "-keys", "500", "fill")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	seen := map[string]int{}
	for _, b := range f.bodies["POST /set"] {
		var req struct{ Key string }
		json.Unmarshal([]byte(b), &req)
		seen[req.Key]++
	}
	for i := range 500 {
		if k := fmt.Sprintf("k%d", i); seen[k] != 1 {
			t.Errorf("key %s written %d times, want once", k, seen[k])
		}
	}
	if len(seen) != 500 || rep.Ops != 500 {
		t.Errorf("got %d keys and %d ops, want 500 and 500", len(seen), rep.Ops)
	}
}

func TestRunPreload(t *testing.T) {
	t.Parallel()
	f, srv := newFakeKV(t)
	rep, err := runJSON(t, "-server-address", srv.URL, "-c", "3", "-keys", "40", "get", "-n", "10")
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if got := len(f.bodies["POST /set"]); got != 40 {
		t.Errorf("preload sets: got %d, want 40", got)
	}
	if rep.Preload == nil || rep.Preload.Keys != 40 || rep.Ops != 10 {
		t.Errorf("report: got preload %+v, ops %d; want 40 keys and 10 ops", rep.Preload, rep.Ops)
	}
}

func TestRunCountsErrorsByKind(t *testing.T) {
	t.Parallel()
	f, srv := newFakeKV(t)
	f.fail = func(n int64) int {
		switch {
		case n%5 == 0:
			return http.StatusServiceUnavailable
		case n%7 == 0:
			return http.StatusConflict
		}
		return 0
	}
	rep, err := runJSON(t, "-server-address", srv.URL, "-c", "1", "set", "-n", "35")
	if !errors.Is(err, errFailed) {
		t.Fatalf("run: got %v, want errFailed", err)
	}
	want := map[string]int64{"set: http 503": 7, "set: http 409": 4}
	if len(rep.Errors) != len(want) || rep.Errors["set: http 503"] != 7 || rep.Errors["set: http 409"] != 4 {
		t.Errorf("errors: got %v, want %v", rep.Errors, want)
	}
	if rep.ErrorSamples["set: http 503"] != "failure 503" {
		t.Errorf("error sample: got %q, want the server's message", rep.ErrorSamples["set: http 503"])
	}
	if rep.Ops != 35-11 || rep.OK {
		t.Errorf("ops, ok: got %d, %v, want 24, false", rep.Ops, rep.OK)
	}
}

func TestRunUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	rep, err := runJSON(t, "-server-address", addr, "-c", "2", "set", "-n", "10")
	if !errors.Is(err, errFailed) {
		t.Fatalf("run: got %v, want errFailed", err)
	}
	if rep.Errors["set: connection refused"] != 10 {
		t.Errorf("errors: got %v, want 10 connection refused", rep.Errors)
	}
}

func mapLens(m map[string][]string) map[string]int {
	l := map[string]int{}
	for k, v := range m {
		l[k] = len(v)
	}
	return l
}
