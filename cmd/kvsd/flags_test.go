package main_test

import (
	"strings"
	"testing"
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
