package client

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	t.Parallel()
	lo, hi := 100*time.Millisecond, 5*time.Second
	zero := func(int64) int64 { return 0 }
	// Without jitter: doubling from lo, capped at hi, for any attempt.
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for n, w := range want {
		if got := backoff(n, lo, hi, zero); got != w*time.Millisecond {
			t.Errorf("attempt %d: got %v, want %v", n, got, w*time.Millisecond)
		}
	}
	for _, n := range []int{40, 63, 64, 1000} {
		if got := backoff(n, lo, hi, zero); got != hi {
			t.Errorf("attempt %d: got %v, want the cap %v", n, got, hi)
		}
	}
	// With the most jitter: half of that.
	most := func(k int64) int64 { return k - 1 }
	if got := backoff(0, lo, hi, most); got != lo/2 {
		t.Errorf("jittered attempt 0: got %v, want %v", got, lo/2)
	}
	if got := backoff(10, lo, hi, most); got != hi/2 {
		t.Errorf("jittered attempt 10: got %v, want %v", got, hi/2)
	}
}
