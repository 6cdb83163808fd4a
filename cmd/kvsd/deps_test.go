package main_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestBinaryDependencies checks, with go version -m, that the built
// binaries link only the two runtime dependencies (DESIGN.md) and their
// own dependencies: kfake and the rest of franz-go are for tests only.
func TestBinaryDependencies(t *testing.T) {
	allowed := []string{
		"github.com/coder/websocket",
		"github.com/segmentio/kafka-go",
		// kafka-go's own dependencies (compression codecs).
		"github.com/klauspost/compress",
		"github.com/pierrec/lz4/v4",
	}
	tests := []struct {
		name string
		want []string // must be there
	}{
		{"kvsd", []string{"github.com/coder/websocket", "github.com/segmentio/kafka-go"}},
		{"kvscli", []string{"github.com/coder/websocket"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command("go", "version", "-m", kvstest.Binary(t, tt.name)).Output()
			if err != nil {
				t.Fatalf("go version -m: %v", err)
			}
			var deps []string
			for line := range strings.Lines(string(out)) {
				f := strings.Fields(line)
				if len(f) >= 2 && (f[0] == "dep" || f[0] == "=>") {
					deps = append(deps, f[1])
				}
			}
			for _, d := range deps {
				if !slices.Contains(allowed, d) {
					t.Errorf("%s links %s, want only %v", tt.name, d, allowed)
				}
			}
			for _, w := range tt.want {
				if !slices.Contains(deps, w) {
					t.Errorf("%s does not link %s: got %v", tt.name, w, deps)
				}
			}
		})
	}
}
