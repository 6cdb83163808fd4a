package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestClientOnly checks that kvsbench speaks to kvsd through the client
// package: it links none of the server's packages, nor net/http/pprof.
func TestClientOnly(t *testing.T) {
	t.Parallel()
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	for _, bad := range []string{"github.com/kvsdb/kvs/kv", "github.com/kvsdb/kvs/bus", "github.com/kvsdb/kvs/httpapi", "net/http/pprof"} {
		if slices.Contains(deps, bad) {
			t.Errorf("kvsbench depends on %s", bad)
		}
	}
	if !slices.Contains(deps, "github.com/kvsdb/kvs/client") {
		t.Errorf("kvsbench does not depend on github.com/kvsdb/kvs/client")
	}
}
