package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// errorSet counts errors by kind, keeping the first message of each kind
// as a sample. Not safe for concurrent use: each worker has its own.
type errorSet map[string]*errorCount

type errorCount struct {
	n      int64
	sample string
}

func (e *errorSet) add(kind, sample string) { e.addN(kind, sample, 1) }

// addN counts n errors of a kind.
func (e *errorSet) addN(kind, sample string, n int64) {
	if *e == nil {
		*e = make(errorSet)
	}
	c := (*e)[kind]
	if c == nil {
		c = &errorCount{sample: sample}
		(*e)[kind] = c
	}
	c.n += n
}

func (e *errorSet) merge(o errorSet) {
	for k, c := range o {
		if *e == nil {
			*e = make(errorSet)
		}
		if m := (*e)[k]; m != nil {
			m.n += c.n
		} else {
			(*e)[k] = &errorCount{n: c.n, sample: c.sample}
		}
	}
}

// report is the outcome of a run: what -json prints.
type report struct {
	Mode        string  `json:"mode"`
	Target      string  `json:"target"`
	Connections int     `json:"connections"`
	Keys        int     `json:"keys"`
	KeySize     int     `json:"key_size,omitempty"`
	ValueSize   int     `json:"value_size"`
	ReadRatio   float64 `json:"read_ratio,omitempty"`
	Rate        float64 `json:"rate,omitempty"` // requested; 0 = unlimited
	Seconds     float64 `json:"seconds"`
	// Ops counts requests answered with 200 (watch: sets acknowledged).
	Ops       int64   `json:"ops"`
	OpsPerSec float64 `json:"ops_per_s"`
	// Latency has one entry per kind of request ("get", "set"), "all" in
	// mixed mode, and "delivery" in watch mode: set acknowledged to event
	// delivered.
	Latency map[string]latencyStats `json:"latency"`
	// Errors counts errors by kind; ErrorSamples has the first message of
	// each kind.
	Errors       map[string]int64  `json:"errors"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	Preload      *preloadReport    `json:"preload,omitempty"`
	Watch        *watchReport      `json:"watch,omitempty"`
	// Pass is set on the steps of a sweep: whether the step met the
	// latency limit with no error.
	Pass *bool `json:"pass,omitempty"`
	// Interrupted is set when the run was stopped (Ctrl-C) before its end.
	Interrupted bool `json:"interrupted,omitempty"`
	// OK is what the exit status says: no error, and in watch mode a
	// correct feed.
	OK bool `json:"ok"`
}

// preloadReport describes the writes made before measuring.
type preloadReport struct {
	Keys      int              `json:"keys"`
	Seconds   float64          `json:"seconds"`
	OpsPerSec float64          `json:"ops_per_s"`
	Errors    map[string]int64 `json:"errors"`
}

// watchReport is the feed side of a watch run.
type watchReport struct {
	KeyPrefix   string `json:"key_prefix"`
	Subscribers int    `json:"subscribers"`
	// Connected counts subscribers whose first subscription succeeded.
	Connected int `json:"connected"`
	verdict
	DeliveredPerSec float64 `json:"delivered_per_s"`
	// BadSubscribers counts subscribers whose feed was not exactly right.
	BadSubscribers int `json:"subscribers_with_feed_errors"`
	// Early counts deliveries that arrived before the setter read the
	// set's answer: their latency is counted as 0.
	Early      int64 `json:"delivered_before_ack"`
	Reconnects int64 `json:"reconnects"`
}

// sweepReport is the outcome of watch -sweep.
type sweepReport struct {
	Mode        string   `json:"mode"`
	Target      string   `json:"target"`
	Subscribers int      `json:"subscribers"`
	P99LimitUS  float64  `json:"p99_limit_us"`
	Steps       []report `json:"steps"`
	// BestRate is the highest requested set rate that passed; 0 if none.
	BestRate float64 `json:"best_rate"`
	OK       bool    `json:"ok"`
}

// results is what a run prints: a report or a sweep.
type results interface {
	ok() bool
	writeText(w io.Writer) error
}

func (r *report) ok() bool      { return r.OK }
func (s *sweepReport) ok() bool { return s.OK }

// latencyOrder is the order of the latency rows in text output.
var latencyOrder = []string{"get", "set", "all", "delivery"}

func (r *report) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kvsbench %s: %s, %d connections", r.Mode, r.Target, r.Connections)
	if r.Watch != nil {
		fmt.Fprintf(&b, ", %d subscribers", r.Watch.Subscribers)
	}
	fmt.Fprintf(&b, ", %d keys, %d B values", r.Keys, r.ValueSize)
	if r.Mode == "mixed" {
		fmt.Fprintf(&b, ", %.0f%% gets", 100*r.ReadRatio)
	}
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", rate %g/s", r.Rate)
	}
	b.WriteString("\n")
	if p := r.Preload; p != nil {
		fmt.Fprintf(&b, "preload    %d keys in %.2fs (%.0f sets/s), %s\n", p.Keys, p.Seconds, p.OpsPerSec, errorsText(p.Errors, nil))
	}
	what := "requests"
	if r.Watch != nil {
		what = "sets"
	}
	fmt.Fprintf(&b, "%-10s %d in %.2fs: %.1f/s\n", what, r.Ops, r.Seconds, r.OpsPerSec)
	if v := r.Watch; v != nil {
		fmt.Fprintf(&b, "delivered  %d events to %d/%d subscribers: %.0f/s\n", v.Delivered, v.Connected, v.Subscribers, v.DeliveredPerSec)
		fmt.Fprintf(&b, "feed       expected %d, lost %d, duplicated %d, out of order %d, unexpected %d",
			v.Expected, v.Lost, v.Duplicated, v.Reordered, v.Unexpected)
		if v.BadSubscribers > 0 {
			fmt.Fprintf(&b, " (in %d subscribers)", v.BadSubscribers)
		}
		fmt.Fprintf(&b, "; %d delivered before their set's answer (latency 0)", v.Early)
		if v.Reconnects > 0 {
			fmt.Fprintf(&b, "; %d reconnects", v.Reconnects)
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "errors     %s\n", errorsText(r.Errors, r.ErrorSamples))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "latency   \tcount\tmean\tp50\tp90\tp99\tp99.9\tmax\t")
	for _, k := range latencyOrder {
		s, ok := r.Latency[k]
		if !ok {
			continue
		}
		fmt.Fprintf(tw, "%-10s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n", k, s.Count, fmtUS(s.Mean), fmtUS(s.P50),
			fmtUS(s.P90), fmtUS(s.P99), fmtUS(s.P999), fmtUS(s.Max))
	}
	tw.Flush()
	if r.Interrupted {
		b.WriteString("interrupted before the end\n")
	}
	if r.OK {
		b.WriteString("ok\n")
	} else {
		b.WriteString("FAILED: see errors above\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func (s *sweepReport) writeText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kvsbench watch -sweep: %s, %d subscribers, p99 limit %s\n", s.Target, s.Subscribers, fmtUS(s.P99LimitUS))
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rate\tsets/s\tevents/s\tp50\tp99\tmax\tlost\tdup\torder\terrors\tpass\t")
	for _, st := range s.Steps {
		d := st.Latency["delivery"]
		pass := "no"
		if st.Pass != nil && *st.Pass {
			pass = "yes"
		}
		var errs int64
		for _, n := range st.Errors {
			errs += n
		}
		fmt.Fprintf(tw, "%g\t%.1f\t%.0f\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t\n", st.Rate, st.OpsPerSec, st.Watch.DeliveredPerSec,
			fmtUS(d.P50), fmtUS(d.P99), fmtUS(d.Max), st.Watch.Lost, st.Watch.Duplicated, st.Watch.Reordered, errs, pass)
	}
	tw.Flush()
	for _, st := range s.Steps {
		if len(st.Errors) > 0 {
			fmt.Fprintf(&b, "errors at rate %g: %s\n", st.Rate, errorsText(st.Errors, st.ErrorSamples))
		}
	}
	if s.BestRate > 0 {
		fmt.Fprintf(&b, "highest rate within the limit: %g sets/s\n", s.BestRate)
	} else {
		b.WriteString("no rate stayed within the limit\n")
	}
	if s.OK {
		b.WriteString("ok\n")
	} else {
		b.WriteString("FAILED: see above\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeJSON writes v as one JSON object on one line.
func writeJSON(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// errorsText lists errors by kind, most frequent first, with samples.
func errorsText(errs map[string]int64, samples map[string]string) string {
	if len(errs) == 0 {
		return "none"
	}
	kinds := slices.Collect(maps.Keys(errs))
	slices.SortFunc(kinds, func(a, b string) int {
		if errs[a] != errs[b] {
			return int(errs[b] - errs[a])
		}
		return strings.Compare(a, b)
	})
	var parts []string
	for _, k := range kinds {
		p := fmt.Sprintf("%s: %d", k, errs[k])
		if s := samples[k]; s != "" {
			p += fmt.Sprintf(" (%s)", s)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

// errorMaps splits an errorSet into counts and samples for a report.
func errorMaps(e errorSet) (map[string]int64, map[string]string) {
	counts := make(map[string]int64, len(e))
	var samples map[string]string
	for k, c := range e {
		counts[k] = c.n
		if c.sample != "" {
			if samples == nil {
				samples = make(map[string]string)
			}
			samples[k] = c.sample
		}
	}
	return counts, samples
}

// fmtUS formats microseconds with three significant digits and a unit.
func fmtUS(us float64) string {
	d := usDuration(us)
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return trim3(float64(d)/1e3) + "µs"
	case d < time.Second:
		return trim3(float64(d)/1e6) + "ms"
	default:
		return trim3(float64(d)/1e9) + "s"
	}
}

func trim3(f float64) string {
	switch {
	case f >= 100:
		return fmt.Sprintf("%.0f", f)
	case f >= 10:
		return fmt.Sprintf("%.1f", f)
	default:
		return fmt.Sprintf("%.2f", f)
	}
}

// perSec returns n per second of d, rounded to 0.1.
func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return math.Round(float64(n)/d.Seconds()*10) / 10
}

// seconds returns d in seconds, rounded to the millisecond.
func seconds(d time.Duration) float64 { return math.Round(d.Seconds()*1000) / 1000 }
