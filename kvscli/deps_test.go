package main_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestClientOnly checks that kvscli and kvsbench are built on the client
// package: they link neither the server's packages (kv, bus, httpapi) nor
// net/http/pprof, and kvscli's binary links no module but this one and
// coder/websocket.
func TestClientOnly(t *testing.T) {
	t.Parallel()
	for _, pkg := range []string{".", "../cmd/kvsbench"} {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		deps := strings.Fields(string(out))
		for _, bad := range []string{"github.com/kvsdb/kvs/kv", "github.com/kvsdb/kvs/bus", "github.com/kvsdb/kvs/httpapi", "net/http/pprof"} {
			if slices.Contains(deps, bad) {
				t.Errorf("%s depends on %s", pkg, bad)
			}
		}
		if !slices.Contains(deps, "github.com/kvsdb/kvs/client") {
			t.Errorf("%s does not depend on github.com/kvsdb/kvs/client", pkg)
		}
	}

	out, err := exec.Command("go", "version", "-m", kvstest.Binary(t, "kvscli")).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "dep" && f[1] != "github.com/coder/websocket" {
			t.Errorf("kvscli links the module %s", f[1])
		}
	}
}
