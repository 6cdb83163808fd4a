package main_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestGCHeadroom: once the store holds more than the tuner's minimum
// growth, kvsd lowers GOGC after a collection (here to about 16 MiB over
// 48 MB live: 35%), and /metrics says how much the store takes; with
// -gc-headroom 0, GOGC stays at Go's default of 100.
func TestGCHeadroom(t *testing.T) {
	tests := []struct {
		name string
		args []string
		low  bool // GOGC lowered
	}{
		{"default", nil, true},
		{"off", []string{"-gc-headroom", "0"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := kvstest.Start(t, append([]string{"-backend", "memory"}, tt.args...)...)
			value := `"` + strings.Repeat("x", 1_000_000) + `"`
			const n = 48
			for i := range n {
				resp, err := http.Post(srv.URL+"/set", "", strings.NewReader(fmt.Sprintf(`{"Key":"big/%d","Value":%s}`, i, value)))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Fatalf("set %d: %d", i, resp.StatusCode)
				}
			}
			e := scrapeKvsd(t, srv)
			if keys, _ := e.Value("kvs_keys"); keys != n {
				t.Fatalf("kvs_keys %v, want %d", keys, n)
			}
			live, _ := e.Value("kvs_store_live_bytes")
			slabs, _ := e.Value("kvs_store_slab_bytes")
			if live < n*1_000_000 || slabs < live || slabs > 1.1*live {
				t.Fatalf("kvs_store_live_bytes %v, kvs_store_slab_bytes %v: want about %d", live, slabs, n*1_000_000)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				gogc, ok := scrapeKvsd(t, srv).Value("go_gc_gogc_percent")
				if !ok {
					t.Fatal("no go_gc_gogc_percent in /metrics")
				}
				if !tt.low {
					if gogc != 100 {
						t.Fatalf("GOGC %v, want 100", gogc)
					}
					return
				}
				if gogc < 50 && gogc >= 10 {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("GOGC still %v after 30 s, want it lowered to about 35", gogc)
				}
				// A collection comes with the allocations of each scrape.
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}
