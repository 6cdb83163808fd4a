package main_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/internal/kvstest"
)

const e2eToken = "e2e-token-0123456789abcdef"

// cleanEnv is the environment without KVS_ variables, plus extra.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KVS_") {
			env = append(env, kv)
		}
	}
	return append(append(env, "GORACE=halt_on_error=1 atexit_sleep_ms=0"), extra...)
}

type cmdResult struct {
	stdout, stderr string
	code           int
}

// runBinary runs one of the module's binaries with env and args, up to a
// hang guard.
func runBinary(t *testing.T, name string, env []string, args ...string) cmdResult {
	t.Helper()
	r := kvstest.Run(t, name, env, args...)
	return cmdResult{r.Stdout, r.Stderr, r.Code}
}

// watchProc is a kvscli watch running in the background.
type watchProc struct {
	cmd    *exec.Cmd
	lines  chan string // stdout lines
	stderr chan string // stderr lines
	done   chan struct{}
	err    error
}

func startWatch(t *testing.T, env []string, args ...string) *watchProc {
	t.Helper()
	p := &watchProc{lines: make(chan string, 100), stderr: make(chan string, 100), done: make(chan struct{})}
	p.cmd = exec.Command(kvstest.Binary(t, "kvscli"), args...)
	p.cmd.Env = env
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	scan := func(r io.Reader, c chan string) {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			c <- sc.Text()
		}
	}
	go scan(stderr, p.stderr)
	go func() {
		scan(stdout, p.lines)
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p
}

// nextLine returns the next line of c, failing after a hang guard.
func nextLine(t *testing.T, c chan string, what string) string {
	t.Helper()
	select {
	case l := <-c:
		return l
	case <-time.After(30 * time.Second):
		t.Fatalf("no %s within 30s", what)
		return ""
	}
}

// TestTLSEndToEnd runs kvsd with a certificate from a test CA and a token
// from KVS_TOKEN, and kvscli get, set and watch over HTTPS and WSS with the
// CA given by -cacert or KVS_CACERT. Without the CA, the token, or TLS,
// kvscli fails with a message that says what to do.
func TestTLSEndToEnd(t *testing.T) {
	certs := kvstest.WriteCerts(t)
	t.Setenv("KVS_TOKEN", e2eToken) // inherited by kvsd, not by the clients below
	srv := kvstest.Start(t, "-backend", "memory", "-tls-cert", certs.Cert, "-tls-key", certs.Key)
	if !strings.HasPrefix(srv.URL, "https://") || !strings.Contains(srv.Logs(), `"tls":true`) || !strings.Contains(srv.Logs(), `"token":true`) {
		t.Fatalf("kvsd did not say it serves TLS with a token:\n%s", srv.Logs())
	}
	env := cleanEnv()
	cli := func(args ...string) cmdResult {
		t.Helper()
		return runBinary(t, "kvscli", env, append([]string{"-server-address", srv.URL, "-token", e2eToken, "-cacert", certs.CA}, args...)...)
	}

	if r := cli("set", "-key", "City", "-value", "Pune"); r.code != 0 || r.stdout != "1\n" {
		t.Fatalf("set over HTTPS: %+v", r)
	}
	if r := cli("get", "-key", "City"); r.code != 0 || r.stdout != "Pune\n" {
		t.Fatalf("get over HTTPS: %+v", r)
	}
	if r := cli("get", "-all"); r.code != 0 || r.stdout != "City\tPune\n" {
		t.Fatalf("get -all over HTTPS: %+v", r)
	}

	w := startWatch(t, cleanEnv("KVS_TOKEN="+e2eToken, "KVS_CACERT="+certs.CA), "-server-address", srv.URL, "watch", "-key", "City")
	if l := nextLine(t, w.stderr, "watch start message"); !strings.Contains(l, "watching kvsd") {
		t.Fatalf("watch over WSS: %q", l)
	}
	if r := cli("set", "-key", "City", "-value", "Delhi"); r.code != 0 || r.stdout != "2\n" {
		t.Fatalf("set over HTTPS: %+v", r)
	}
	if l := nextLine(t, w.lines, "watch event"); l != "2\tset\tCity\tDelhi" {
		t.Fatalf("watch over WSS printed %q, want the set at 2", l)
	}
	w.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-w.done:
		if w.err != nil {
			t.Fatalf("watch after Ctrl-C: %v, want exit 0", w.err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watch did not stop within 30s of SIGINT")
	}

	t.Run("bench", func(t *testing.T) {
		r := runBinary(t, "kvsbench", env, "-server-address", srv.URL, "-token", e2eToken, "-cacert", certs.CA,
			"-progress", "0", "set", "-n", "20", "-c", "2", "-key-prefix", "bench/")
		if r.code != 0 {
			t.Fatalf("kvsbench over HTTPS: exit %d\n%s%s", r.code, r.stdout, r.stderr)
		}
	})

	failures := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"no CA", env, []string{"-server-address", srv.URL, "-token", e2eToken, "get", "-key", "City"}, "-cacert"},
		{"no CA, watch", env, []string{"-server-address", srv.URL, "-token", e2eToken, "watch"}, "-cacert"},
		{"no token", env, []string{"-server-address", srv.URL, "-cacert", certs.CA, "get", "-key", "City"}, "401"},
		{"no token, watch", env, []string{"-server-address", srv.URL, "-cacert", certs.CA, "watch"}, "401"},
		{"wrong token", env, []string{"-server-address", srv.URL, "-cacert", certs.CA, "-token", "x" + e2eToken, "set", "-key", "a", "-value", "b"}, "set -token or KVS_TOKEN"},
		{"plain HTTP", env, []string{"-server-address", "http://" + srv.Addr, "-token", e2eToken, "get", "-key", "City"}, "HTTPS"},
		{"not a CA file", env, []string{"-server-address", srv.URL, "-cacert", certs.Key, "get", "-key", "City"}, "no PEM certificate"},
	}
	for _, tt := range failures {
		t.Run(tt.name, func(t *testing.T) {
			r := runBinary(t, "kvscli", tt.env, tt.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("got exit %d, stderr %q; want a failure mentioning %q", r.code, r.stderr, tt.want)
			}
		})
	}
	if r := cli("get", "-key", "a"); r.code != 1 {
		t.Fatalf("the set with a wrong token: got %+v, want key a not found", r)
	}
}

// tlsClient trusts the test CA.
func tlsClient(t *testing.T, certs kvstest.Certs) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(certs.CA)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}
}

// TestAuthEndToEnd runs kvsd with -token-file and checks the routes that
// need the token, the ones that do not, and the cookie of /login over TLS
// (Secure) for a request and a WebSocket.
func TestAuthEndToEnd(t *testing.T) {
	certs := kvstest.WriteCerts(t)
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(e2eToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := kvstest.Start(t, "-backend", "memory", "-token-file", tokenFile, "-tls-cert", certs.Cert, "-tls-key", certs.Key)
	client := tlsClient(t, certs)
	get := func(path string, header http.Header) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+path, nil)
		if header != nil {
			req.Header = header
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	bearer := http.Header{"Authorization": {"Bearer " + e2eToken}}
	for _, tt := range []struct {
		path   string
		header http.Header
		want   int
	}{
		{"/healthz", nil, 200},
		{"/readyz", nil, 401},
		{"/getall", nil, 401},
		{"/metrics", nil, 401},
		{"/get?key=a", nil, 401},
		{"/nope", nil, 401},
		{"/debug/pprof/", bearer, 404}, // off by default
		{"/readyz", bearer, 200},
		{"/getall", bearer, 200},
		{"/metrics", bearer, 200},
		{"/get?key=a", bearer, 404},
	} {
		if got := get(tt.path, tt.header); got != tt.want {
			t.Errorf("GET %s (token %v): got %d, want %d", tt.path, tt.header != nil, got, tt.want)
		}
	}

	req, _ := http.NewRequest("POST", srv.URL+"/login", strings.NewReader(`{"Token":"`+e2eToken+`"}`))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		cookie = c
	}
	if resp.StatusCode != 200 || cookie == nil || !cookie.Secure || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login over TLS: %d, cookie %+v; want 200 and a Secure, HttpOnly, SameSite=Strict cookie", resp.StatusCode, cookie)
	}
	withCookie := http.Header{"Cookie": {cookie.Name + "=" + cookie.Value}}
	if got := get("/getall", withCookie); got != 200 {
		t.Fatalf("getall with the cookie: %d", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	ws := "wss://" + srv.Addr + "/subscribe"
	if _, resp, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPClient: client}); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("subscribe without the cookie: %v, %v; want 401", resp, err)
	}
	c, _, err := websocket.Dial(ctx, ws, &websocket.DialOptions{HTTPClient: client, HTTPHeader: withCookie})
	if err != nil {
		t.Fatalf("subscribe with the cookie: %v", err)
	}
	defer c.CloseNow()
	r := runBinary(t, "kvscli", cleanEnv("KVS_TOKEN="+e2eToken, "KVS_CACERT="+certs.CA), "-server-address", srv.URL, "set", "-key", "k", "-value", "v")
	if r.code != 0 {
		t.Fatalf("kvscli set: %+v", r)
	}
	_, data, err := c.Read(ctx)
	if err != nil || string(data) != `{"Type":"set","Key":"k","Value":"v","Revision":1}` {
		t.Fatalf("feed with the cookie: %s, %v", data, err)
	}
}

// TestSecurityFlags checks that bad values of the security and limit
// flags, and of their environment twins, stop kvsd with a message.
func TestSecurityFlags(t *testing.T) {
	dir := t.TempDir()
	certs := kvstest.WriteCerts(t)
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\nsecond line\n"), 0o600)
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"token with a space", []string{"-token", "a b"}, "", "printable ASCII"},
		{"token from the environment", nil, "KVS_TOKEN=tab\there", "printable ASCII"},
		{"token and token file", []string{"-token", "abc", "-token-file", empty}, "", "give one of them"},
		{"missing token file", []string{"-token-file", filepath.Join(dir, "nope")}, "", "-token-file"},
		{"empty token file", []string{"-token-file", empty}, "", "the first line is empty"},
		{"certificate without key", []string{"-tls-cert", certs.Cert}, "", "give both or neither"},
		{"key from the environment only", nil, "KVS_TLS_KEY=" + certs.Key, "give both or neither"},
		{"key that does not match", []string{"-tls-cert", certs.CA, "-tls-key", certs.Key}, "", "-tls-cert"},
		{"certificate not PEM", []string{"-tls-cert", empty, "-tls-key", certs.Key}, "", "-tls-cert"},
		{"bad origin pattern", []string{"-allowed-origins", "ok.example.com,[bad"}, "", `bad pattern "[bad"`},
		{"no subscribers", []string{"-max-subscribers", "0"}, "", "-max-subscribers 0"},
		{"negative body limit", nil, "KVS_MAX_BODY_BYTES=-1", "-max-body-bytes -1"},
		{"header timeout", []string{"-read-header-timeout", "0s"}, "", "-read-header-timeout 0s"},
		{"idle timeout", []string{"-idle-timeout", "-1s"}, "", "-idle-timeout -1s"},
		{"session of no time", []string{"-session-ttl", "0s"}, "", "-session-ttl 0s"},
		{"bad host pattern", []string{"-allowed-hosts", "localhost,http://kvs.example.com"}, "", `-allowed-hosts: bad pattern "http://kvs.example.com"`},
		{"no subscriber memory", []string{"-subscriber-buffer-bytes", "0"}, "", "-subscriber-buffer-bytes 0"},
		{"feed memory below the largest event", []string{"-feed-buffer-bytes", "1048576"}, "", "must hold the largest event"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-addr", "127.0.0.1:0", "-backend", "memory"}, tt.args...)
			r := runBinary(t, "kvsd", cleanEnv(tt.env), args...)
			if r.code == 0 || !strings.Contains(r.stderr, tt.want) {
				t.Fatalf("kvsd %v %s: exit %d\n%s\nwant a non-zero exit and %q", tt.args, tt.env, r.code, r.stderr, tt.want)
			}
		})
	}
}
