package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// The garbage collector lets the heap grow past what it found live before
// it collects again: by GOGC percent of it, 100 by default, so a process
// whose heap is mostly a large store takes about twice the store's memory.
// kvs keeps its store in slabs the collector does not scan (see kv's
// table), so a collection costs little however large the store is, and
// kvsd can afford to collect sooner: the GC tuner sets GOGC after each
// collection so that the heap may grow by -gc-headroom percent of what is
// live, but never by less than gcMinGrowth (a small heap would otherwise
// be collected again and again for little), nor by more than Go's default.
// Measured in docs/benchmarks.md (Memory).

// gcMinGrowth is the least the heap may grow by between collections.
const gcMinGrowth = 16 << 20

// gcPoll is how often the tuner looks for a finished collection.
const gcPoll = 100 * time.Millisecond

// gcPercent returns the GOGC that lets a heap with live bytes live grow by
// headroom percent of them, or by gcMinGrowth if that is more, within
// headroom..100.
func gcPercent(live uint64, headroom int) int {
	if live == 0 {
		return 100
	}
	p := int((gcMinGrowth*100 + live - 1) / live)
	return min(100, max(headroom, p))
}

// gcTuner sets GOGC after each collection (see gcPercent).
type gcTuner struct {
	headroom int
	log      *slog.Logger
	samples  []metrics.Sample
	cycles   uint64
	percent  int
}

// startGCTuner starts the tuner, unless GOGC is set in the environment
// (then it is the user's choice) or headroom is 0 (Go's default stays).
// Call the function it returns to stop it and wait for it.
func startGCTuner(headroom int, getenv func(string) string, log *slog.Logger) (stop func()) {
	if headroom <= 0 || getenv("GOGC") != "" {
		return func() {}
	}
	t := &gcTuner{
		headroom: headroom,
		log:      log,
		samples: []metrics.Sample{
			{Name: "/gc/cycles/total:gc-cycles"},
			{Name: "/gc/heap/live:bytes"},
		},
		percent: 100,
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { t.run(ctx) })
	return func() {
		cancel()
		wg.Wait()
	}
}

func (t *gcTuner) run(ctx context.Context) {
	tick := time.NewTicker(gcPoll)
	defer tick.Stop()
	for {
		t.poll()
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// poll sets GOGC anew when a collection finished since the last poll.
func (t *gcTuner) poll() {
	metrics.Read(t.samples)
	cycles, live := t.samples[0].Value.Uint64(), t.samples[1].Value.Uint64()
	if cycles == t.cycles {
		return
	}
	t.cycles = cycles
	if p := gcPercent(live, t.headroom); p != t.percent {
		t.percent = p
		debug.SetGCPercent(p)
		t.log.Debug("GOGC set", "gogc", p, "live_bytes", live)
	}
}

// memoryMetrics returns the samples of the store's memory and of GOGC for
// /metrics, and then extra's.
func memoryMetrics(store *kv.Store, extra func() []httpapi.Sample) func() []httpapi.Sample {
	gogc := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	return func() []httpapi.Sample {
		m := store.Memory()
		metrics.Read(gogc)
		samples := []httpapi.Sample{
			{Name: "kvs_store_slab_bytes", Help: "Memory of the slabs the entries are packed in.", Value: float64(m.SlabBytes)},
			{Name: "kvs_store_live_bytes", Help: "What the entries take in the slabs; the rest is replaced or deleted entries not yet reclaimed, and room not yet filled.", Value: float64(m.LiveBytes)},
			{Name: "kvs_store_index_bytes", Help: "Memory of the index that finds the entries.", Value: float64(m.IndexBytes)},
			{Name: "go_gc_gogc_percent", Help: "GOGC: how far, in percent of the live heap, the heap may grow before the next collection (set by -gc-headroom).", Value: float64(gogc[0].Value.Uint64())},
		}
		if extra != nil {
			samples = append(samples, extra()...)
		}
		return samples
	}
}
