package main_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestHelp: kvsd -h (or -help, --help) prints the usage with every flag on
// stdout and exits 0, as kvscli -h does; a flag it does not know is an
// error that says where the flags are.
func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "-help", "--help"} {
		r := runBinary(t, "kvsd", cleanEnv(), arg)
		if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: kvsd [flags]") || r.stderr != "" {
			t.Fatalf("kvsd %s: exit %d, stdout %.80q, stderr %q; want 0 and the usage on stdout", arg, r.code, r.stdout, r.stderr)
		}
		for _, flag := range []string{"-addr", "-backend", "-subscriber-buffer-bytes", "-feed-buffer-bytes", "-token"} {
			if !strings.Contains(r.stdout, "\n  "+flag+" ") {
				t.Errorf("kvsd %s: the usage does not list %s", arg, flag)
			}
		}
	}
	for _, args := range [][]string{{"-no-such-flag"}, {"serve"}} {
		r := runBinary(t, "kvsd", cleanEnv(), args...)
		if r.code != 1 || !strings.Contains(r.stderr, "run kvsd -h") || r.stdout != "" {
			t.Fatalf("kvsd %v: exit %d, stderr %q; want 1 and a pointer to kvsd -h", args, r.code, r.stderr)
		}
	}
}

// TestAllowedHostsEndToEnd: kvsd listening on a loopback address answers
// only to loopback names and IP addresses by default (DNS rebinding),
// -allowed-hosts changes that, and kvsd listening on every address
// answers to every host unless told otherwise.
func TestAllowedHostsEndToEnd(t *testing.T) {
	get := func(srv *kvstest.Server, host string) int {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/getall", nil)
		req.Host = host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name  string
		args  []string
		hosts map[string]int
	}{
		{"loopback listener", nil, map[string]int{"rebind.attacker.example": 421, "localhost": 200, "127.0.0.1": 200}},
		{"loopback listener, every host", []string{"-allowed-hosts", "*"}, map[string]int{"rebind.attacker.example": 200}},
		{"loopback listener, named hosts", []string{"-allowed-hosts", "kvs.example.com, *.kvs.test"}, map[string]int{"kvs.example.com": 200, "a.kvs.test": 200, "localhost": 421, "127.0.0.1": 200}},
		{"every address", []string{"-addr", "0.0.0.0:0"}, map[string]int{"rebind.attacker.example": 200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := kvstest.Start(t, append([]string{"-backend", "memory"}, tt.args...)...)
			for host, want := range tt.hosts {
				if got := get(srv, host); got != want {
					t.Errorf("Host %s: got %d, want %d", host, got, want)
				}
			}
		})
	}
}
