package main

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// exactPercentile is the definition the histogram approximates: the value
// of rank ceil(q*n) in sorted order.
func exactPercentile(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

func TestHistogramPercentilesKnownData(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	tests := []struct {
		name   string
		values []int64
	}{
		{"one value", []int64{1234567}},
		{"small exact values", seq(0, 127, 1)},
		{"uniform 1us to 100ms", seq(1000, 100_000_000, 1000)},
		{"two clusters", append(repeat(990, 1_000_000), repeat(10, 100_000_000)...)},
		{"log-normal", logNormal(rng, 100_000, 200_000, 1.0)},
		{"bucket edges", edges()},
		{"seconds", seq(1e9, 30e9, 1e7)},
	}
	qs := []float64{0, 0.5, 0.9, 0.99, 0.999, 1}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var h histogram
			for _, v := range tt.values {
				h.record(v)
			}
			sorted := slices.Sorted(slices.Values(tt.values))
			for _, q := range qs {
				want := exactPercentile(sorted, q)
				got := h.percentile(q)
				// Never below the exact value, at most one bucket (1/64) above.
				if got < want || float64(got) > float64(want)*(1+1.0/histSub) {
					t.Errorf("percentile(%v): got %d, want %d (within +%.1f%%)", q, got, want, 100.0/histSub)
				}
			}
			if got, want := h.count(), uint64(len(tt.values)); got != want {
				t.Errorf("count: got %d, want %d", got, want)
			}
			if got, want := h.max, sorted[len(sorted)-1]; got != want {
				t.Errorf("max: got %d, want %d", got, want)
			}
			if got, want := h.min, sorted[0]; got != want {
				t.Errorf("min: got %d, want %d", got, want)
			}
			var sum float64
			for _, v := range tt.values {
				sum += float64(v)
			}
			if got, want := h.mean(), sum/float64(len(tt.values)); math.Abs(got-want) > 1e-9*want {
				t.Errorf("mean: got %v, want %v", got, want)
			}
		})
	}
}

// TestHistogramTwoClusters checks the percentiles a reader would compute by
// hand: 99% at 1 ms and 1% at 100 ms.
func TestHistogramTwoClusters(t *testing.T) {
	t.Parallel()
	var h histogram
	for range 990 {
		h.record(1_000_000)
	}
	for range 10 {
		h.record(100_000_000)
	}
	s := h.stats()
	want := latencyStats{Count: 1000, Mean: 1990, P50: 1000, P90: 1000, P99: 1000, P999: 100000, Max: 100000}
	// 1 ms and 100 ms are not bucket edges: the percentile is the top of
	// the bucket, within 1/64 above.
	for _, c := range []struct {
		name      string
		got, want float64
	}{{"p50", s.P50, want.P50}, {"p90", s.P90, want.P90}, {"p99", s.P99, want.P99}, {"p99.9", s.P999, want.P999}} {
		if c.got < c.want || c.got > c.want*(1+1.0/histSub) {
			t.Errorf("%s: got %vus, want %vus (within +1.6%%)", c.name, c.got, c.want)
		}
	}
	if s.Count != want.Count || s.Mean != want.Mean || s.Max != want.Max {
		t.Errorf("count, mean, max: got %d %v %v, want %d %v %v", s.Count, s.Mean, s.Max, want.Count, want.Mean, want.Max)
	}
}

func TestHistogramBuckets(t *testing.T) {
	t.Parallel()
	vals := edges()
	rng := rand.New(rand.NewPCG(3, 4))
	for range 100000 {
		vals = append(vals, rng.Int64N(1<<histMaxBits))
	}
	for _, v := range vals {
		b := bucketOf(v)
		if b < 0 || b >= histBuckets {
			t.Fatalf("bucketOf(%d) = %d, out of [0, %d)", v, b, histBuckets)
		}
		if hi := bucketHigh(b); hi < v {
			t.Fatalf("bucketHigh(bucketOf(%d)) = %d, below the value", v, hi)
		}
		if b > 0 && bucketHigh(b-1) >= v {
			t.Fatalf("value %d is in bucket %d but not above bucket %d's top %d", v, b, b-1, bucketHigh(b-1))
		}
		if lo := bucketHigh(b-1) + 1; b > 0 && float64(bucketHigh(b)-lo+1) > math.Max(1, float64(lo)/histSub) {
			t.Fatalf("bucket %d [%d, %d] is wider than 1/%d of its values", b, lo, bucketHigh(b), histSub)
		}
	}
	if got := bucketOf(1 << 62); got != histBuckets-1 {
		t.Errorf("bucketOf(2^62): got %d, want the last bucket %d", got, histBuckets-1)
	}
}

func TestHistogramOutOfRange(t *testing.T) {
	t.Parallel()
	var h histogram
	h.record(-5)
	h.record(1 << 50)
	if got := h.min; got != 0 {
		t.Errorf("a negative value: got min %d, want 0", got)
	}
	if got := h.max; got != 1<<50 {
		t.Errorf("a huge value: got max %d, want %d", got, int64(1<<50))
	}
	if got := h.percentile(1); got > h.max || got < 1<<histMaxBits-1 {
		t.Errorf("percentile(1) of a huge value: got %d, want between 2^40-1 and the max", got)
	}
}

func TestHistogramMerge(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	vals := logNormal(rng, 50000, 1_000_000, 1.5)
	var whole, a, b, empty histogram
	for i, v := range vals {
		whole.record(v)
		if i%3 == 0 {
			a.record(v)
		} else {
			b.record(v)
		}
	}
	var merged histogram
	merged.merge(&empty)
	merged.merge(&a)
	merged.merge(&b)
	merged.merge(&empty)
	if merged.counts != whole.counts || merged.n != whole.n || merged.min != whole.min || merged.max != whole.max {
		t.Fatalf("merge of two halves differs from recording everything in one")
	}
	if got, want := merged.mean(), whole.mean(); math.Abs(got-want) > 1e-9*want {
		t.Errorf("mean: got %v, want %v", got, want)
	}
}

func TestHistogramEmpty(t *testing.T) {
	t.Parallel()
	var h histogram
	if got := h.stats(); got != (latencyStats{}) {
		t.Errorf("stats of an empty histogram: got %+v, want zeros", got)
	}
}

func TestHistogramRecordDoesNotAllocate(t *testing.T) {
	h := new(histogram)
	v := int64(1)
	if n := testing.AllocsPerRun(1000, func() {
		v = v*7 + 13
		h.record(v % (1 << 35))
	}); n != 0 {
		t.Errorf("record: got %v allocations per call, want 0", n)
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	b.ReportAllocs()
	h := new(histogram)
	v := int64(1)
	for b.Loop() {
		v = v*7 + 13
		h.record(v % (1 << 35))
	}
}

func seq(from, to, step int64) []int64 {
	var s []int64
	for v := from; v <= to; v += step {
		s = append(s, v)
	}
	return s
}

func repeat(n int, v int64) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func logNormal(rng *rand.Rand, n int, median, sigma float64) []int64 {
	s := make([]int64, n)
	for i := range s {
		s[i] = int64(median * math.Exp(sigma*rng.NormFloat64()))
	}
	return s
}

// edges returns the values around every bucket boundary.
func edges() []int64 {
	var s []int64
	for b := range histBuckets - 1 {
		hi := bucketHigh(b)
		s = append(s, hi-1, hi, hi+1)
	}
	return slices.DeleteFunc(s, func(v int64) bool { return v < 0 })
}
