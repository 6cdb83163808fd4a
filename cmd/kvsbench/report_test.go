package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func sampleReports() map[string]results {
	lat := latencyStats{Count: 1000, Mean: 250.5, P50: 180, P90: 420.3, P99: 1700, P999: 3650, Max: 7400}
	pass, fail := true, false
	watch := report{
		Mode: "watch", Target: "http://127.0.0.1:23333", Connections: 4, Keys: 10000, ValueSize: 16, Rate: 200,
		Seconds: 10, Ops: 2000, OpsPerSec: 200,
		Latency: map[string]latencyStats{"set": lat, "delivery": {Count: 2000000, Mean: 900, P50: 420, P90: 2000, P99: 9100, P999: 15000, Max: 31000}},
		Errors:  map[string]int64{},
		Watch: &watchReport{KeyPrefix: "kvsbench-0a1b2c3d/", Subscribers: 1000, Connected: 1000,
			verdict:         verdict{Expected: 2000000, Delivered: 2000000},
			DeliveredPerSec: 199000, Early: 1234},
		OK: true,
	}
	badWatch := watch
	badWatch.Watch = &watchReport{KeyPrefix: "kvsbench-0a1b2c3d/", Subscribers: 1000, Connected: 999,
		verdict:         verdict{Expected: 2000000, Delivered: 1999998, Lost: 3, Duplicated: 1, Reordered: 2},
		DeliveredPerSec: 199000, BadSubscribers: 2, Early: 1234, Reconnects: 1}
	badWatch.Errors = map[string]int64{"feed: slow consumer (4408)": 1, "subscribe: http 503": 1}
	badWatch.ErrorSamples = map[string]string{"feed: slow consumer (4408)": "slow consumer, resume from 812"}
	badWatch.OK = false
	step1, step2 := watch, badWatch
	step1.Pass, step2.Pass = &pass, &fail
	step2.Rate = 400
	return map[string]results{
		"set": &report{
			Mode: "set", Target: "http://127.0.0.1:23333", Connections: 64, Keys: 10000, ValueSize: 16,
			Seconds: 10.002, Ops: 312345, OpsPerSec: 31228.3,
			Latency: map[string]latencyStats{"set": lat},
			Errors:  map[string]int64{}, OK: true,
		},
		"mixed-errors": &report{
			Mode: "mixed", Target: "http://127.0.0.1:23333", Connections: 8, Keys: 100, ValueSize: 16, ReadRatio: 0.9,
			Seconds: 1, Ops: 900, OpsPerSec: 900,
			Latency:      map[string]latencyStats{"get": lat, "set": lat, "all": lat},
			Errors:       map[string]int64{"get: http 404": 3, "set: timeout": 5},
			ErrorSamples: map[string]string{"get: http 404": "key not found"},
			Preload:      &preloadReport{Keys: 100, Seconds: 0.05, OpsPerSec: 2000, Errors: map[string]int64{}},
			Interrupted:  true,
		},
		"watch":     &watch,
		"watch-bad": &badWatch,
		"sweep": &sweepReport{Mode: "watch", Target: "http://127.0.0.1:23333", Subscribers: 1000, P99LimitUS: 50000,
			Steps: []report{step1, step2}, BestRate: 200, OK: false},
	}
}

// TestReportText compares the text output with testdata/*.golden (go test
// -update rewrites them).
func TestReportText(t *testing.T) {
	t.Parallel()
	for name, r := range sampleReports() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			var b bytes.Buffer
			if err := r.writeText(&b); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", name+".golden")
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// TestReportJSON checks that -json output is one object that decodes back
// into the same report.
func TestReportJSON(t *testing.T) {
	t.Parallel()
	for name, r := range sampleReports() {
		var b bytes.Buffer
		if err := writeJSON(&b, r); err != nil {
			t.Fatal(err)
		}
		if bytes.Count(b.Bytes(), []byte("\n")) != 1 {
			t.Errorf("%s: got %q, want one line", name, b.String())
		}
		var m map[string]any
		if err := json.Unmarshal(b.Bytes(), &m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if m["ok"] != r.ok() {
			t.Errorf("%s: ok: got %v, want %v", name, m["ok"], r.ok())
		}
	}
	var b bytes.Buffer
	writeJSON(&b, sampleReports()["watch-bad"])
	var got report
	json.Unmarshal(b.Bytes(), &got)
	if w := got.Watch; w == nil || w.Lost != 3 || w.Duplicated != 1 || w.Reordered != 2 || w.Connected != 999 {
		t.Errorf("watch numbers did not survive JSON: %+v", w)
	}
}
