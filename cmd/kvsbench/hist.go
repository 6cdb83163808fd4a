package main

import (
	"math"
	"math/bits"
	"time"
)

// The latency histogram is log-linear, like HdrHistogram: values below 128
// (nanoseconds) each have their own bucket; above, every power of two is
// split into 64 equal buckets, so a bucket is at most 1/64 (1.6%) of the
// values it holds wide. A percentile is reported as the highest value of
// its bucket (capped at the largest value recorded): never below the exact
// percentile, and at most 1.6% above it.
const (
	histSubBits = 6
	histSub     = 1 << histSubBits // buckets per power of two
	// histMaxBits bounds the values told apart: larger values (over 2^40
	// ns, about 18 minutes) share the last bucket; max stays exact.
	histMaxBits = 40
	histBuckets = (histMaxBits-histSubBits)*histSub + histSub
)

// histogram counts latencies in nanoseconds. Recording never allocates.
// Each worker fills its own; merge combines them at the end. Not safe for
// concurrent use.
type histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// bucketOf returns the bucket of v (v >= 0).
func bucketOf(v int64) int {
	if v < 2*histSub {
		return int(max(v, 0))
	}
	if v >= 1<<histMaxBits {
		v = 1<<histMaxBits - 1
	}
	shift := bits.Len64(uint64(v)) - histSubBits - 1
	return (shift+1)*histSub + int(v>>shift) - histSub
}

// bucketHigh returns the highest value that falls in bucket b.
func bucketHigh(b int) int64 {
	if b < 2*histSub {
		return int64(b)
	}
	shift := b/histSub - 1
	m := int64(b%histSub + histSub)
	return (m+1)<<shift - 1
}

// record adds one value, in nanoseconds; negative values count as 0.
func (h *histogram) record(ns int64) {
	ns = max(ns, 0)
	h.counts[bucketOf(ns)]++
	if h.n == 0 || ns < h.min {
		h.min = ns
	}
	if ns > h.max {
		h.max = ns
	}
	h.n++
	h.sum += float64(ns)
}

// merge adds every value of o to h.
func (h *histogram) merge(o *histogram) {
	if o.n == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.max = max(h.max, o.max)
	h.n += o.n
	h.sum += o.sum
}

// count returns the number of values recorded.
func (h *histogram) count() uint64 { return h.n }

// percentile returns the value at or below which a fraction q (0 to 1) of
// the values lie: the highest value of the bucket holding the value of rank
// ceil(q*n), capped at the maximum. It returns 0 for an empty histogram.
func (h *histogram) percentile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(bucketHigh(b), h.max)
		}
	}
	return h.max
}

// mean returns the average value, 0 for an empty histogram.
func (h *histogram) mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// latencyStats is the summary of a histogram that kvsbench reports, in
// microseconds.
type latencyStats struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   float64 `json:"p50_us"`
	P90   float64 `json:"p90_us"`
	P99   float64 `json:"p99_us"`
	P999  float64 `json:"p999_us"`
	Max   float64 `json:"max_us"`
}

func (h *histogram) stats() latencyStats {
	us := func(ns int64) float64 { return math.Round(float64(ns)/100) / 10 }
	return latencyStats{
		Count: h.n,
		Mean:  math.Round(h.mean()/100) / 10,
		P50:   us(h.percentile(0.50)),
		P90:   us(h.percentile(0.90)),
		P99:   us(h.percentile(0.99)),
		P999:  us(h.percentile(0.999)),
		Max:   us(h.max),
	}
}

// usDuration turns microseconds back into a Duration, for printing.
func usDuration(us float64) time.Duration { return time.Duration(us * 1e3) }
