package main_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// result is what one kvscli run printed, and its exit code.
type result struct {
	stdout, stderr string
	code           int
}

// cliEnv returns the environment of kvscli: the test's, without KVS_*
// variables, plus extra.
func cliEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KVS_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "GORACE=halt_on_error=1 atexit_sleep_ms=0"), extra...)
}

// kvscli runs the kvscli binary with args and the environment env (nil:
// cliEnv()) and waits for it, up to a hang guard.
func kvscli(t *testing.T, env []string, args ...string) result {
	t.Helper()
	if env == nil {
		env = cliEnv()
	}
	r := kvstest.Run(t, "kvscli", env, args...)
	return result{r.Stdout, r.Stderr, r.Code}
}

// proc is a kvscli running in the background, such as a watch.
type proc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	lines  []string // stdout lines so far
	stderr bytes.Buffer
	change chan struct{} // signalled when lines or stderr grow
	done   chan struct{} // closed when the process exited
	err    error
}

// startCLI starts kvscli with args in the background. It is killed at the
// end of the test if it still runs.
func startCLI(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, change: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command(kvstest.Binary(t, "kvscli"), args...)
	if env == nil {
		env = cliEnv()
	}
	p.cmd.Env = env
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.stderrWriter()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 64<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			p.signal()
		}
		p.err = p.cmd.Wait()
		close(p.done)
		p.signal()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("kvscli %q stderr:\n%s", args, p.Stderr())
		}
	})
	return p
}

// stderrWriter returns a writer that collects p's stderr.
func (p *proc) stderrWriter() io.Writer {
	return writerFunc(func(b []byte) (int, error) {
		p.mu.Lock()
		p.stderr.Write(b)
		p.mu.Unlock()
		p.signal()
		return len(b), nil
	})
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func (p *proc) signal() {
	select {
	case p.change <- struct{}{}:
	default:
	}
}

// Lines returns the stdout lines printed so far.
func (p *proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// Stderr returns what it wrote to stderr so far.
func (p *proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// waitFor waits until cond holds, failing the test after a hang guard of
// d or if the process exits first.
func (p *proc) waitFor(what string, d time.Duration, cond func() bool) {
	p.t.Helper()
	guard := time.NewTimer(d)
	defer guard.Stop()
	for !cond() {
		select {
		case <-p.change:
		case <-p.done:
			if !cond() {
				p.t.Fatalf("kvscli exited (%v) before %s; stdout:\n%s\nstderr:\n%s", p.err, what, strings.Join(p.Lines(), "\n"), p.Stderr())
			}
		case <-guard.C:
			p.t.Fatalf("no %s within %v (hang guard); stdout:\n%s\nstderr:\n%s", what, d, strings.Join(p.Lines(), "\n"), p.Stderr())
		}
	}
}

// waitLines waits until it printed at least n lines.
func (p *proc) waitLines(n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d lines of output", n), 60*time.Second, func() bool { return len(p.Lines()) >= n })
}

// waitStderr waits until stderr holds s at least n times.
func (p *proc) waitStderr(s string, n int) {
	p.t.Helper()
	p.waitFor(fmt.Sprintf("%d times %q on stderr", n, s), 60*time.Second, func() bool { return strings.Count(p.Stderr(), s) >= n })
}

// interrupt sends SIGINT, as Ctrl-C does, and returns the exit code.
func (p *proc) interrupt() int {
	p.t.Helper()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		p.t.Fatalf("kvscli did not exit within 30s of SIGINT")
	}
	var ee *exec.ExitError
	if errors.As(p.err, &ee) {
		return ee.ExitCode()
	}
	if p.err != nil {
		p.t.Fatalf("kvscli: %v", p.err)
	}
	return 0
}

// golden is one recorded kvscli run: its arguments (with ADDR for the
// server address), exit code, stdout and stderr.
func formatGolden(args []string, r result) string {
	var b strings.Builder
	b.WriteString("$ kvscli")
	for _, a := range args {
		b.WriteByte(' ')
		b.WriteString(shellQuote(a))
	}
	fmt.Fprintf(&b, "\nexit %d\n-- stdout --\n%s-- stderr --\n%s", r.code, r.stdout, r.stderr)
	return b.String()
}

// checkGolden compares got with testdata/name.golden, or rewrites it with
// -update.
func checkGolden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./kvscli -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s: got\n%s\nwant\n%s", path, got, want)
	}
}

func shellQuote(s string) string {
	if strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		// Bash's $'...' with escapes, so that the golden files show them.
		q := strconv.QuoteToASCII(s)
		return "$'" + strings.ReplaceAll(q[1:len(q)-1], `'`, `\'`) + "'"
	}
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// withAddr replaces the word ADDR in args with addr.
func withAddr(args []string, addr string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = strings.ReplaceAll(a, "ADDR", addr)
	}
	return out
}

// hideAddr replaces addr in r's output with ADDR.
func hideAddr(r result, addr string) result {
	r.stdout = strings.ReplaceAll(r.stdout, addr, "ADDR")
	r.stderr = strings.ReplaceAll(r.stderr, addr, "ADDR")
	return r
}

// TestCommands runs every command and output mode of kvscli against the real
// kvsd, one after the other on the same server, and compares what it
// prints and its exit code with the golden files testdata/NAME.golden.
func TestCommands(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory", "-max-value-bytes", "64")
	big := strings.Repeat("x", 70)
	tests := []struct {
		name string
		args []string // ADDR is the server's address
		code int
	}{
		// The original project's commands, as written.
		{"original_set", []string{"--server-address", "ADDR", "set", "--key", "City", "--value", "Bangalore"}, 0},
		{"set", []string{"--server-address", "ADDR", "set", "--key", "Name", "--value", "Ada <Lovelace> & co"}, 0},
		{"original_get", []string{"--server-address", "ADDR", "get", "--key", "Name"}, 0},
		{"set_number_as_string", []string{"-server-address", "ADDR", "set", "-key", "n", "-value", "42"}, 0},
		{"set_json_value", []string{"-server-address", "ADDR", "set", "-key", "cfg", "-value", `{"retries": 3, "ratio": 0.50}`, "-json-value"}, 0},
		{"set_multiline", []string{"-server-address", "ADDR", "set", "-key", "note", "-value", "line 1\nline 2\tend"}, 0},
		{"original_get_all", []string{"--server-address", "ADDR", "get", "--all"}, 0},
		{"get_all_json", []string{"-server-address", "ADDR", "get", "-all", "-json"}, 0},
		{"get_all_prefix", []string{"-server-address", "ADDR", "get", "-all", "-prefix", "N"}, 0},
		{"get_all_prefix_none", []string{"-server-address", "ADDR", "get", "-all", "-prefix", "zzz"}, 0},
		{"get_string_number", []string{"-server-address", "ADDR", "get", "-key", "n"}, 0},
		{"get_string_number_json", []string{"-server-address", "ADDR", "get", "-key", "n", "-json"}, 0},
		{"get_object", []string{"-server-address", "ADDR", "get", "-key", "cfg"}, 0},
		{"get_json", []string{"-server-address", "ADDR", "get", "-key", "cfg", "-json"}, 0},
		{"get_multiline", []string{"-server-address", "ADDR", "get", "-key", "note"}, 0},
		{"global_flags_after_command", []string{"get", "-key", "City", "--server-address", "ADDR"}, 0},
		{"get_missing", []string{"-server-address", "ADDR", "get", "-key", "Country"}, 1},
		{"get_missing_json", []string{"-server-address", "ADDR", "get", "-key", "Country", "-json"}, 1},
		{"set_if_revision", []string{"-server-address", "ADDR", "set", "-key", "cfg", "-value", "4", "-json-value", "-if-revision", "4"}, 0},
		{"set_if_revision_failed", []string{"-server-address", "ADDR", "set", "-key", "cfg", "-value", "5", "-json-value", "-if-revision", "4"}, 1},
		{"set_if_absent_failed", []string{"-server-address", "ADDR", "set", "-key", "cfg", "-value", "x", "-if-revision", "0"}, 1},
		{"set_if_revision_missing_key", []string{"-server-address", "ADDR", "set", "-key", "nokey", "-value", "x", "-if-revision", "3"}, 1},
		{"set_if_absent", []string{"-server-address", "ADDR", "set", "-key", "fresh", "-value", "x", "-if-revision", "0"}, 0},
		{"del_if_revision_failed", []string{"-server-address", "ADDR", "del", "-key", "cfg", "-if-revision", "1"}, 1},
		{"del", []string{"-server-address", "ADDR", "del", "-key", "cfg"}, 0},
		{"del_missing", []string{"-server-address", "ADDR", "del", "-key", "cfg"}, 1},
		{"set_rejected_key", []string{"-server-address", "ADDR", "set", "-key", "a\x01b", "-value", "x"}, 2},
		{"set_too_large", []string{"-server-address", "ADDR", "set", "-key", "big", "-value", big}, 2},
		{"get_after", []string{"-server-address", "ADDR", "get", "-all"}, 0},
		{"health", []string{"-server-address", "ADDR", "health"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kvscli(t, nil, withAddr(tt.args, srv.Addr)...)
			if r.code != tt.code {
				t.Errorf("exit code: got %d, want %d (stderr: %s)", r.code, tt.code, r.stderr)
			}
			checkGolden(t, tt.name, formatGolden(tt.args, hideAddr(r, srv.Addr)))
		})
	}
}

// TestUsage checks -h, help and every kind of usage error (exit code 2),
// which need no server.
func TestUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"help", []string{"-h"}, 0},
		{"help_long", []string{"--help"}, 0},
		{"help_command", []string{"help", "watch"}, 0},
		{"get_help", []string{"get", "-h"}, 0},
		{"set_help", []string{"set", "--help"}, 0},
		{"del_help", []string{"del", "-h"}, 0},
		{"watch_help", []string{"watch", "-h"}, 0},
		{"no_command", nil, 2},
		{"unknown_command", []string{"put", "-key", "a"}, 2},
		{"unknown_flag", []string{"get", "-bogus"}, 2},
		{"unknown_global_flag", []string{"-bogus", "get"}, 2},
		{"bad_timeout", []string{"-timeout", "soon", "get", "-all"}, 2},
		{"negative_timeout", []string{"-timeout", "-1s", "get", "-all"}, 2},
		{"bad_address", []string{"-server-address", "ftp://example.com", "get", "-all"}, 2},
		{"positional_key", []string{"get", "Name"}, 2},
		{"get_nothing", []string{"get"}, 2},
		{"get_key_and_all", []string{"get", "-key", "a", "-all"}, 2},
		{"get_prefix_without_all", []string{"get", "-prefix", "a"}, 2},
		{"get_empty_key", []string{"get", "-key", ""}, 2},
		{"set_without_value", []string{"set", "-key", "a"}, 2},
		{"set_bad_json_value", []string{"set", "-key", "a", "-value", "{", "-json-value"}, 2},
		{"set_null", []string{"set", "-key", "a", "-value", "null", "-json-value"}, 2},
		{"set_negative_if_revision", []string{"set", "-key", "a", "-value", "1", "-if-revision", "-1"}, 2},
		{"set_bad_if_revision", []string{"set", "-key", "a", "-value", "1", "-if-revision", "one"}, 2},
		{"del_without_key", []string{"del"}, 2},
		{"watch_key_and_prefix", []string{"watch", "-key", "a", "-prefix", "b"}, 2},
		{"watch_negative_from", []string{"watch", "-from", "-3"}, 2},
		{"watch_extra_argument", []string{"watch", "now"}, 2},
		{"bad_token", []string{"-token", "a b", "get", "-all"}, 2},
		{"snapshot_help", []string{"snapshot", "-h"}, 0},
		{"snapshot_nothing", []string{"snapshot"}, 2},
		{"snapshot_no_file", []string{"snapshot", "save"}, 2},
		{"snapshot_unknown_action", []string{"snapshot", "load", "backup.snap"}, 2},
		{"snapshot_extra_argument", []string{"snapshot", "status", "a.snap", "b.snap"}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			// An address nobody listens on: usage errors must not get that far.
			r := kvscli(t, cliEnv("KVS_ADDRESS=127.0.0.1:1"), tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code: got %d, want %d (stderr: %s)", r.code, tt.code, r.stderr)
			}
			if tt.code == 0 && (r.stdout == "" || r.stderr != "") {
				t.Errorf("help: want usage on stdout only; got stdout %q, stderr %q", r.stdout, r.stderr)
			}
			if tt.code != 0 && (r.stdout != "" || r.stderr == "") {
				t.Errorf("usage error: want a message on stderr only; got stdout %q, stderr %q", r.stdout, r.stderr)
			}
			checkGolden(t, "usage_"+tt.name, formatGolden(tt.args, r))
		})
	}
}

// fakeServer answers every request with handler, on 127.0.0.1.
func fakeServer(t *testing.T, handler http.HandlerFunc) string {
	t.Helper()
	s := httptest.NewServer(handler)
	t.Cleanup(s.Close)
	return strings.TrimPrefix(s.URL, "http://")
}

func jsonAnswer(code int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintln(w, body)
	}
}

// TestServerErrors checks the exit code 3 cases (server down, too slow,
// refused, failed, not a kvsd) and their messages, for each command.
func TestServerErrors(t *testing.T) {
	t.Parallel()
	down := kvstest.FreeAddr(t)
	// A server that accepts connections and never answers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	silent := ln.Addr().String()
	unauthorized := fakeServer(t, jsonAnswer(401, `{"error":"missing or wrong bearer token"}`))
	failing := fakeServer(t, jsonAnswer(503, `{"error":"log unavailable"}`))
	// What kvsd's /readyz answers while it cannot reach Kafka.
	notReady := fakeServer(t, jsonAnswer(503, `{"error":"not ready: kafka: dial tcp 10.0.0.9:9092: i/o timeout"}`))
	notKVS := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintln(w, "<html>hello</html>")
	})
	notFound := fakeServer(t, http.NotFound)

	tests := []struct {
		name string
		addr string
		args []string
	}{
		{"down_get", down, []string{"get", "-key", "a"}},
		{"down_get_all", down, []string{"get", "-all"}},
		{"down_set", down, []string{"set", "-key", "a", "-value", "b"}},
		{"down_del", down, []string{"del", "-key", "a"}},
		{"down_watch", down, []string{"watch"}},
		{"down_watch_from", down, []string{"watch", "-from", "3"}},
		{"timeout_get", silent, []string{"-timeout", "300ms", "get", "-key", "a"}},
		{"timeout_set", silent, []string{"-timeout", "300ms", "set", "-key", "a", "-value", "b"}},
		{"timeout_watch", silent, []string{"-timeout", "300ms", "watch", "-from", "1"}},
		{"unauthorized_get", unauthorized, []string{"get", "-key", "a"}},
		{"unauthorized_watch", unauthorized, []string{"watch"}},
		{"unauthorized_watch_from", unauthorized, []string{"watch", "-from", "1"}},
		{"unavailable_set", failing, []string{"set", "-key", "a", "-value", "b"}},
		{"unavailable_watch", failing, []string{"watch"}},
		{"not_kvs_get", notKVS, []string{"get", "-key", "a"}},
		{"not_kvs_get_all", notKVS, []string{"get", "-all"}},
		{"not_kvs_set", notKVS, []string{"set", "-key", "a", "-value", "b"}},
		{"not_kvs_404", notFound, []string{"get", "-key", "a"}},
		{"down_health", down, []string{"health"}},
		{"timeout_health", silent, []string{"-timeout", "300ms", "health"}},
		{"unauthorized_health", unauthorized, []string{"health"}},
		{"unavailable_health", notReady, []string{"health"}},
		{"not_kvs_health", notFound, []string{"health"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-server-address", "ADDR"}, tt.args...)
			r := kvscli(t, nil, withAddr(args, tt.addr)...)
			if r.code != 3 {
				t.Errorf("exit code: got %d, want 3 (stderr: %s)", r.code, r.stderr)
			}
			checkGolden(t, "server_"+tt.name, formatGolden(args, hideAddr(r, tt.addr)))
		})
	}
}

// TestEnvironment checks that KVS_ADDRESS and KVS_TOKEN set the address and
// the bearer token, that the flags win over them, and that the token is
// sent on every request, the watch included.
func TestEnvironment(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string // "METHOD PATH Authorization"
	addr := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/get":
			fmt.Fprintln(w, `{"Key":"a","Value":"from the fake","Revision":1,"CreateRevision":1,"Version":1}`)
		case "/list":
			w.Header().Set("Kvs-Revision", "1")
			fmt.Fprintln(w, `{"Revision":1,"Entries":[]}`)
		default:
			w.WriteHeader(401)
			fmt.Fprintln(w, `{"error":"unauthorized"}`)
		}
	})
	down := kvstest.FreeAddr(t)
	tests := []struct {
		name     string
		env      []string
		args     []string
		code     int
		wantSeen []string
	}{
		{"address and token from the environment", []string{"KVS_ADDRESS=" + addr, "KVS_TOKEN=s3cret"},
			[]string{"get", "-key", "a"}, 0, []string{"POST /get Bearer s3cret"}},
		{"flags win over the environment", []string{"KVS_ADDRESS=" + down, "KVS_TOKEN=wrong"},
			[]string{"-server-address", addr, "-token", "right", "get", "-key", "a"}, 0, []string{"POST /get Bearer right"}},
		{"http:// URL", nil, []string{"-server-address", "http://" + addr + "/", "get", "-key", "a"}, 0, []string{"POST /get "}},
		{"token on the watch", []string{"KVS_TOKEN=w"}, []string{"-server-address", addr, "watch"}, 3,
			[]string{"HEAD /list Bearer w", "GET /subscribe Bearer w"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mu.Lock()
			seen = nil
			mu.Unlock()
			r := kvscli(t, cliEnv(tt.env...), tt.args...)
			if r.code != tt.code {
				t.Errorf("exit code: got %d, want %d (stderr: %s)", r.code, tt.code, r.stderr)
			}
			if tt.code == 0 && r.stdout != "from the fake\n" {
				t.Errorf("stdout: got %q, want %q", r.stdout, "from the fake\n")
			}
			mu.Lock()
			got := strings.Join(seen, "\n")
			mu.Unlock()
			if want := strings.Join(tt.wantSeen, "\n"); got != want {
				t.Errorf("requests: got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestWatchOutput checks the output modes of watch against the real kvsd:
// it replays the history from -from 1, is stopped with SIGINT, and must
// exit 0 with the golden output.
func TestWatchOutput(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	for _, args := range [][]string{
		{"set", "-key", "City", "-value", "Ahmedabad"},
		{"set", "-key", "Name", "-value", "Ada"},
		{"set", "-key", "cfg", "-value", `{"a": [1, 2.50]}`, "-json-value"},
		{"set", "-key", "City", "-value", "Bangalore"},
		{"set", "-key", "note", "-value", "two\nlines"},
		{"del", "-key", "Name"},
		{"set", "-key", "Nickname", "-value", "<&>"},
	} {
		if r := kvscli(t, nil, append([]string{"-server-address", srv.Addr}, args...)...); r.code != 0 {
			t.Fatalf("%q: exit %d: %s", args, r.code, r.stderr)
		}
	}
	tests := []struct {
		name  string
		args  []string
		lines int // lines to wait for before SIGINT
	}{
		{"watch_from", []string{"--server-address", "ADDR", "watch", "--from", "1"}, 7},
		{"watch_json", []string{"-server-address", "ADDR", "watch", "-from", "1", "-json"}, 7},
		{"watch_key", []string{"-server-address", "ADDR", "watch", "-from", "1", "-key", "City"}, 2},
		{"watch_prefix", []string{"-server-address", "ADDR", "watch", "-from", "3", "-prefix", "N"}, 2},
		{"watch_from_0", []string{"-server-address", "ADDR", "watch", "-from", "0", "-key", "cfg"}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := startCLI(t, nil, withAddr(tt.args, srv.Addr)...)
			w.waitLines(tt.lines)
			w.waitStderr("Ctrl-C to stop", 1)
			code := w.interrupt()
			if code != 0 {
				t.Errorf("exit code after SIGINT: got %d, want 0", code)
			}
			r := result{stdout: strings.Join(w.Lines(), "\n") + "\n", stderr: w.Stderr(), code: code}
			checkGolden(t, tt.name, formatGolden(tt.args, hideAddr(r, srv.Addr)))
		})
	}

	t.Run("watch_live", func(t *testing.T) {
		// Without -from: only the changes after it started, none before.
		w := startCLI(t, nil, "-server-address", srv.Addr, "watch", "-json")
		w.waitStderr("from revision 8 (Ctrl-C to stop)", 1)
		if r := kvscli(t, nil, "-server-address", srv.Addr, "set", "-key", "City", "-value", "Mumbai"); r.code != 0 {
			t.Fatalf("set: exit %d: %s", r.code, r.stderr)
		}
		w.waitLines(1)
		if code := w.interrupt(); code != 0 {
			t.Errorf("exit code after SIGINT: got %d, want 0", code)
		}
		want := []string{`{"Type":"set","Key":"City","Value":"Mumbai","Revision":8}`}
		if got := w.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("got %q, want %q", got, want)
		}
	})
}

// TestWatchCompacted checks watch when the server no longer has the
// revision to start from: exit code 1 with a message, or with -relist the
// current values and then the live changes.
func TestWatchCompacted(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory", "-history", "3")
	for i := range 6 {
		if r := kvscli(t, nil, "-server-address", srv.Addr, "set", "-key", "k"+strconv.Itoa(i%4), "-value", strconv.Itoa(i)); r.code != 0 {
			t.Fatalf("set: exit %d: %s", r.code, r.stderr)
		}
	}
	t.Run("watch_compacted", func(t *testing.T) {
		args := []string{"-server-address", "ADDR", "watch", "-from", "2"}
		r := kvscli(t, nil, withAddr(args, srv.Addr)...)
		if r.code != 1 {
			t.Errorf("exit code: got %d, want 1", r.code)
		}
		checkGolden(t, "watch_compacted", formatGolden(args, hideAddr(r, srv.Addr)))
	})
	for _, tt := range []struct {
		name  string
		args  []string
		lines int // before the live change
	}{
		{"watch_relist", []string{"-server-address", "ADDR", "watch", "-from", "2", "-relist"}, 5},
		// k1 is gone by then: the listing is empty, the relist line alone.
		{"watch_relist_json", []string{"-server-address", "ADDR", "watch", "-from", "2", "-relist", "-json", "-prefix", "k1"}, 1},
		{"watch_relist_key", []string{"-server-address", "ADDR", "watch", "-from", "2", "-relist", "-key", "k2"}, 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := startCLI(t, nil, withAddr(tt.args, srv.Addr)...)
			w.waitLines(tt.lines)
			w.waitStderr("Ctrl-C to stop", 1)
			// A live change after the listing, to each watch's keys.
			r := kvscli(t, nil, "-server-address", srv.Addr, "set", "-key", "k1", "-value", "live")
			if r.code != 0 {
				t.Fatalf("set: exit %d: %s", r.code, r.stderr)
			}
			r = kvscli(t, nil, "-server-address", srv.Addr, "del", "-key", "k1")
			if r.code != 0 {
				t.Fatalf("del: exit %d: %s", r.code, r.stderr)
			}
			want := tt.lines + 2
			if tt.name == "watch_relist_key" {
				want = tt.lines // k2 did not change
				if r := kvscli(t, nil, "-server-address", srv.Addr, "set", "-key", "k2", "-value", "live"); r.code != 0 {
					t.Fatalf("set: exit %d: %s", r.code, r.stderr)
				}
				want++
			}
			w.waitLines(want)
			code := w.interrupt()
			if code != 0 {
				t.Errorf("exit code after SIGINT: got %d, want 0", code)
			}
			got := result{stdout: strings.Join(w.Lines(), "\n") + "\n", stderr: w.Stderr(), code: code}
			checkGolden(t, tt.name, formatGolden(tt.args, hideAddr(got, srv.Addr)))
		})
	}
}

// watchEvent is one line of watch -json output.
type watchEvent struct {
	Type     string
	Key      string
	Value    json.RawMessage
	Revision int64
}
