package main_test

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestClientOnly checks that kvscli is built on the client package alone:
// it links neither the server's packages (kv, bus, httpapi) nor
// net/http/pprof, and its binary's modules are this one and
// coder/websocket.
func TestClientOnly(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, bad := range []string{"github.com/kvsdb/kvs/kv", "github.com/kvsdb/kvs/bus", "github.com/kvsdb/kvs/httpapi", "net/http/pprof"} {
		for _, d := range deps {
			if d == bad {
				t.Errorf("kvscli depends on %s", bad)
			}
		}
	}
	found := false
	for _, d := range deps {
		found = found || d == "github.com/kvsdb/kvs/client"
	}
	if !found {
		t.Errorf("kvscli does not depend on github.com/kvsdb/kvs/client")
	}

	out, err = exec.Command("go", "version", "-m", kvstest.Binary(t, "kvscli")).Output()
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
