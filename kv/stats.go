package kv

import (
	"math"
	"sort"
	"sync/atomic"
	"time"
)

// Histogram is a snapshot of a distribution, in the form Prometheus
// exposes: Counts[i] is the number of observations less than or equal to
// Bounds[i] (cumulative), Count the number of all of them and Sum their
// total.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Count  uint64
	Sum    float64
}

// LogStats is a snapshot of a log's counters, for monitoring.
type LogStats struct {
	// BatchChanges is the distribution of the number of changes in each
	// appended batch: its Count is the number of batches (one write each),
	// its Sum the number of changes.
	BatchChanges Histogram
	// SyncSeconds is the distribution of the time each batch's fsync took.
	// It stays empty with FileOptions.NoSync.
	SyncSeconds Histogram
}

// Bucket bounds of LogStats.
var (
	batchBounds = []float64{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024}
	syncBounds  = []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1}
)

// histogram counts observations in fixed buckets. Its methods are safe for
// concurrent use; a snapshot taken during an observation may count it in
// its bucket but not yet in its sum.
type histogram struct {
	bounds []float64
	counts []atomic.Uint64 // by bucket, not cumulative; the last is above every bound
	sum    atomic.Uint64   // math.Float64bits of the total
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]atomic.Uint64, len(bounds)+1)}
}

func (h *histogram) observe(v float64) {
	h.counts[sort.SearchFloat64s(h.bounds, v)].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

func (h *histogram) snapshot() Histogram {
	s := Histogram{Bounds: h.bounds, Counts: make([]uint64, len(h.bounds))}
	for i := range h.counts {
		s.Count += h.counts[i].Load()
		if i < len(h.bounds) {
			s.Counts[i] = s.Count
		}
	}
	s.Sum = math.Float64frombits(h.sum.Load())
	return s
}

// logStats are the live counters behind FileLog.Stats.
type logStats struct {
	batch *histogram
	sync  *histogram
}

func newLogStats() logStats {
	return logStats{batch: newHistogram(batchBounds), sync: newHistogram(syncBounds)}
}

// Stats returns a snapshot of the log's counters: how many changes each
// batch held and how long each fsync took. It is safe to call at any time,
// from any goroutine.
func (l *FileLog) Stats() LogStats {
	return LogStats{BatchChanges: l.stats.batch.snapshot(), SyncSeconds: l.stats.sync.snapshot()}
}

// timed calls f and returns its error and how long it took.
func timed(f func() error) (time.Duration, error) {
	began := time.Now()
	err := f()
	return time.Since(began), err
}
