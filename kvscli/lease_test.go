package main_test

import (
	"errors"
	"os/exec"
	"regexp"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// timeLeft matches a time left on a lease in kvscli's output, which
// changes from run to run: it is replaced with TTL in the golden files.
var timeLeft = regexp.MustCompile(`(?m)(^|\t|"TTL":")[0-9hms.]+m[0-9.]+s($|\t|")`)

// TestLeaseCommands runs kvscli lease and set with leases against the real
// kvsd, one step after the other, and compares what it prints and its
// exit code with the golden files testdata/NAME.golden.
func TestLeaseCommands(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory", "-max-lease-ttl", "24h")
	args := func(words ...string) []string { return append([]string{"-server-address", "ADDR"}, words...) }
	lease := func(words ...string) []string { return args(append([]string{"lease"}, words...)...) }
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"lease_grant", lease("grant", "1h", "-id", "7"), 0},
		{"lease_grant_seconds", lease("grant", "90", "--id", "8"), 0},
		{"lease_grant_exists", lease("grant", "1h", "-id", "7"), 1},
		{"lease_grant_bad_ttl", lease("grant", "soon"), 2},
		{"lease_grant_zero", lease("grant", "0s"), 2},
		{"lease_grant_absurd", lease("grant", "1000000h"), 2},
		{"set_lease", args("set", "-key", "a", "-value", "1", "-lease", "7"), 0},
		{"set_lease_unknown", args("set", "-key", "a", "-value", "1", "-lease", "9"), 1},
		{"set_lease_and_ttl", args("set", "-key", "a", "-value", "1", "-lease", "7", "-ttl", "1m"), 2},
		{"set_ttl_bad", args("set", "-key", "a", "-value", "1", "-ttl", "-1s"), 2},
		{"lease_keepalive_once", lease("keepalive", "7", "8", "-once"), 0},
		{"lease_keepalive_once_missing", lease("keepalive", "7", "9", "-once"), 1},
		{"lease_keepalive_missing", lease("keepalive", "9"), 1},
		{"lease_ttl", lease("ttl", "7", "-keys"), 0},
		{"lease_ttl_json", lease("ttl", "8", "-json"), 0},
		{"lease_ttl_missing", lease("ttl", "9"), 1},
		{"lease_list", lease("list"), 0},
		{"lease_revoke", lease("revoke", "7"), 0},
		{"lease_revoke_missing", lease("revoke", "7"), 1},
		{"lease_get_revoked_key", args("get", "-key", "a"), 1},
		{"usage_lease_nothing", lease(), 2},
		{"usage_lease_unknown", lease("frob"), 2},
		{"usage_lease_revoke_no_id", lease("revoke"), 2},
		{"usage_lease_bad_id", lease("revoke", "x"), 2},
		{"usage_lease_wrong_flag", lease("ttl", "7", "-once"), 2},
		{"usage_lease_help", []string{"lease", "-h"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kvscli(t, nil, withAddr(tt.args, srv.Addr)...)
			if r.code != tt.code {
				t.Errorf("exit code: got %d, want %d (stderr: %s)", r.code, tt.code, r.stderr)
			}
			r.stdout = timeLeft.ReplaceAllString(r.stdout, "${1}TTL${2}")
			checkGolden(t, tt.name, formatGolden(tt.args, hideAddr(r, srv.Addr)))
		})
	}
}

// TestLeaseKeepAlive runs kvscli lease keepalive in the background: it
// keeps a lease alive past its TTL until Ctrl-C (exit 0), after which the
// lease expires; and it exits 1 when the lease it keeps is revoked.
func TestLeaseKeepAlive(t *testing.T) {
	t.Parallel()
	srv := kvstest.Start(t, "-backend", "memory")
	g := []string{"-server-address", srv.Addr}
	if r := kvscli(t, nil, append(g, "lease", "grant", "600ms", "-id", "5")...); r.code != 0 {
		t.Fatalf("grant: %+v", r)
	}
	if r := kvscli(t, nil, append(g, "set", "-key", "held", "-value", "x", "-lease", "5")...); r.code != 0 {
		t.Fatalf("set: %+v", r)
	}
	p := startCLI(t, nil, append(g, "lease", "keepalive", "5")...)
	p.waitStderr("(Ctrl-C to stop)", 1)
	began := time.Now()
	for time.Since(began) < 2*time.Second {
		if r := kvscli(t, nil, append(g, "get", "-key", "held")...); r.code != 0 {
			t.Fatalf("%v into the keep-alive of a lease of 600ms: %+v", time.Since(began), r)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := p.interrupt(); code != 0 {
		t.Fatalf("keepalive after Ctrl-C: exit %d, want 0", code)
	}
	for deadline := time.Now().Add(30 * time.Second); kvscli(t, nil, append(g, "get", "-key", "held")...).code == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the lease did not expire after its keep-alive stopped")
		}
	}

	kvscli(t, nil, append(g, "lease", "grant", "600ms", "-id", "6")...)
	p = startCLI(t, nil, append(g, "lease", "keepalive", "6")...)
	p.waitStderr("(Ctrl-C to stop)", 1)
	if r := kvscli(t, nil, append(g, "lease", "revoke", "6")...); r.code != 0 {
		t.Fatalf("revoke: %+v", r)
	}
	<-p.done
	var ee *exec.ExitError
	if !errors.As(p.err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("keepalive of a revoked lease: %v, want exit code 1; stderr:\n%s", p.err, p.Stderr())
	}
	p.waitStderr("lease 6 lost", 1)
}
