package main

import (
	"log/slog"
	"runtime/debug"
	"testing"
)

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name     string
		live     uint64
		headroom int
		want     int
	}{
		{"nothing live yet", 0, 10, 100},
		{"small heap: Go's default", 10 * mib, 10, 100},
		{"the minimum growth", 64 * mib, 10, 25},
		{"the headroom", 1000 * mib, 10, 10},
		{"a larger headroom", 1000 * mib, 50, 50},
		{"just over the minimum", 161 * mib, 10, 10},
		{"just under it", 159 * mib, 10, 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := gcPercent(tt.live, tt.headroom); got != tt.want {
				t.Fatalf("gcPercent(%d MiB, %d) = %d, want %d", tt.live/mib, tt.headroom, got, tt.want)
			}
		})
	}
}

// TestGCTunerLeavesGOGC: with GOGC in the environment, or -gc-headroom 0,
// the tuner does not start, and GOGC is left as it is.
func TestGCTunerLeavesGOGC(t *testing.T) {
	before := debug.SetGCPercent(77)
	defer debug.SetGCPercent(before)
	log := slog.New(slog.DiscardHandler)
	for _, env := range []map[string]string{{"GOGC": "77"}, {}} {
		headroom := 10
		if len(env) == 0 {
			headroom = 0
		}
		stop := startGCTuner(headroom, func(k string) string { return env[k] }, log)
		stop()
		if got := debug.SetGCPercent(77); got != 77 {
			t.Fatalf("env %v, headroom %d: GOGC %d, want 77 unchanged", env, headroom, got)
		}
	}
}
