package main_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestComposeHealthCheck runs the health check of compose.yaml's kvsd
// services, as written there, against a real kvsd: it must pass when kvsd
// is ready, and fail (exit 3) when kvsd is gone.
func TestComposeHealthCheck(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile(filepath.Join("..", "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s+test: (\["CMD", "/usr/local/bin/kvscli".*\])$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("compose.yaml: no health check that runs /usr/local/bin/kvscli")
	}
	var test []string
	if err := json.Unmarshal(m[1], &test); err != nil {
		t.Fatalf("compose.yaml: health check %s: %v", m[1], err)
	}
	args := test[2:]
	if args[len(args)-1] != "health" {
		t.Errorf("compose.yaml: the health check runs %q, want kvscli health", args)
	}
	srv := kvstest.Start(t, "-backend", "memory")
	for i, a := range args {
		if strings.HasPrefix(a, "127.0.0.1:") {
			args[i] = srv.Addr
		}
	}
	if r := kvscli(t, nil, args...); r.code != 0 || r.stdout != "ready\n" {
		t.Errorf("health check against a ready kvsd: exit %d, %q (stderr %s)", r.code, r.stdout, r.stderr)
	}
	srv.Kill()
	if r := kvscli(t, nil, args...); r.code != 3 || !strings.Contains(r.stderr, "cannot reach kvsd") {
		t.Errorf("health check against no kvsd: exit %d (stderr %s), want 3", r.code, r.stderr)
	}
}
