// Package promtext parses the Prometheus text exposition format (version
// 0.0.4) as strictly as Prometheus does: the test-only alternative to
// importing github.com/prometheus/common/expfmt and its dependencies.
package promtext

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// Sample is one line of an exposition: a series and its value.
type Sample struct {
	Name   string
	Labels map[string]string
	Value  float64
}

// Family is a metric of an exposition: its samples share its name (plus
// _bucket, _sum and _count for a histogram), type and help.
type Family struct {
	Name, Type, Help string
	Samples          []Sample
}

// Exposition is a parsed scrape of /metrics.
type Exposition struct {
	Families map[string]*Family
	Order    []string // family names in the order they appeared
}

// Value returns the value of the sample name{labels}, where labels are
// name, value pairs, and whether it exists.
func (e *Exposition) Value(name string, labels ...string) (float64, bool) {
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	for _, f := range e.Families {
		for _, s := range f.Samples {
			if s.Name == name && mapsEqual(s.Labels, want) {
				return s.Value, true
			}
		}
	}
	return 0, false
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func validName(s string, colon bool) bool {
	if s == "" {
		return false
	}
	for i, c := range s {
		ok := c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || i > 0 && '0' <= c && c <= '9' || colon && c == ':'
		if !ok {
			return false
		}
	}
	return true
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	if strings.ContainsAny(s, "iInN_") { // Go's ParseFloat takes "inf", "nan" and underscores too
		return 0, fmt.Errorf("bad value %q", s)
	}
	return strconv.ParseFloat(s, 64)
}

// Parse parses text, and checks what Prometheus checks: names, escapes,
// one TYPE and HELP per family before its samples, families not
// interleaved, no repeated series, and for histograms buckets in order,
// cumulative, with a +Inf bucket equal to _count, and a _sum.
func Parse(text string) (*Exposition, error) {
	p := &parser{e: &Exposition{Families: map[string]*Family{}}, closed: map[string]bool{}, seen: map[string]bool{}}
	if text == "" {
		return p.e, nil
	}
	if !strings.HasSuffix(text, "\n") {
		return nil, fmt.Errorf("the exposition does not end with a newline")
	}
	for n, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		var err error
		if strings.HasPrefix(line, "#") {
			err = p.comment(line)
		} else {
			err = p.sample(line)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %v", n+1, line, err)
		}
	}
	for _, f := range p.e.Families {
		if f.Type == "histogram" {
			if err := checkHistogram(f); err != nil {
				return nil, fmt.Errorf("histogram %s: %v", f.Name, err)
			}
		}
	}
	return p.e, nil
}

// parser is the state of one Parse.
type parser struct {
	e       *Exposition
	current string          // the family of the last line
	closed  map[string]bool // families another has followed
	seen    map[string]bool // series keys
}

// family returns the family name, started if new, or nil if it continues
// after another family's lines.
func (p *parser) family(name string) *Family {
	f := p.e.Families[name]
	if f == nil {
		f = &Family{Name: name}
		p.e.Families[name] = f
	}
	if p.current != name {
		if p.closed[name] {
			return nil
		}
		if p.current != "" {
			p.closed[p.current] = true
		}
		p.current = name
		p.e.Order = append(p.e.Order, name)
	}
	return f
}

// comment parses a # HELP or # TYPE line.
func (p *parser) comment(line string) error {
	fields := strings.SplitN(line, " ", 4)
	if len(fields) < 4 || fields[0] != "#" || (fields[1] != "HELP" && fields[1] != "TYPE") {
		return errors.New("want # HELP name text or # TYPE name type")
	}
	name := fields[2]
	if !validName(name, true) {
		return errors.New("bad metric name")
	}
	f := p.family(name)
	if f == nil {
		return fmt.Errorf("family %s continues after another", name)
	}
	if len(f.Samples) > 0 {
		return fmt.Errorf("%s after samples", fields[1])
	}
	if fields[1] == "HELP" {
		if f.Help != "" {
			return errors.New("second HELP")
		}
		help, err := unescape(fields[3], false)
		if err != nil {
			return err
		}
		f.Help = help
		return nil
	}
	if f.Type != "" {
		return errors.New("second TYPE")
	}
	switch fields[3] {
	case "counter", "gauge", "histogram", "summary", "untyped":
	default:
		return errors.New("unknown type")
	}
	f.Type = fields[3]
	return nil
}

// sample parses a sample line into its family.
func (p *parser) sample(line string) error {
	s, err := parseSampleLine(line)
	if err != nil {
		return err
	}
	fname := s.Name
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(s.Name, suffix); ok && p.e.Families[base] != nil && p.e.Families[base].Type == "histogram" {
			fname = base
		}
	}
	f := p.family(fname)
	switch {
	case f == nil:
		return fmt.Errorf("family %s continues after another", fname)
	case f.Type == "":
		return errors.New("sample without a TYPE")
	case f.Type == "histogram" && fname == s.Name:
		return errors.New("histogram sample without _bucket, _sum or _count")
	}
	if _, ok := s.Labels["le"]; ok != strings.HasSuffix(s.Name, "_bucket") && f.Type == "histogram" {
		return errors.New("le label on a sample that is not a bucket, or a bucket without it")
	}
	if f.Type == "counter" && (s.Value < 0 || math.IsNaN(s.Value)) {
		return errors.New("negative counter")
	}
	key := seriesKey(s.Name, s.Labels)
	if p.seen[key] {
		return errors.New("repeated series")
	}
	p.seen[key] = true
	f.Samples = append(f.Samples, s)
	return nil
}

func seriesKey(name string, labels map[string]string) string {
	var parts []string
	for k, v := range labels {
		parts = append(parts, k+"="+strconv.Quote(v))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

func unescape(s string, quote bool) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b.WriteByte(c)
			continue
		}
		i++
		switch {
		case i == len(s):
			return "", fmt.Errorf("trailing backslash")
		case s[i] == '\\':
			b.WriteByte('\\')
		case s[i] == 'n':
			b.WriteByte('\n')
		case s[i] == '"' && quote:
			b.WriteByte('"')
		default:
			return "", fmt.Errorf("bad escape \\%c", s[i])
		}
	}
	return b.String(), nil
}

func parseSampleLine(line string) (Sample, error) {
	s := Sample{Labels: map[string]string{}}
	i := strings.IndexAny(line, "{ ")
	if i < 0 {
		return s, fmt.Errorf("no value")
	}
	s.Name = line[:i]
	if !validName(s.Name, true) {
		return s, fmt.Errorf("bad metric name %q", s.Name)
	}
	rest := line[i:]
	if rest[0] == '{' {
		rest = rest[1:]
		for {
			if strings.HasPrefix(rest, "}") {
				rest = rest[1:]
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return s, fmt.Errorf("bad label")
			}
			name := rest[:eq]
			if !validName(name, false) || strings.HasPrefix(name, "__") {
				return s, fmt.Errorf("bad label name %q", name)
			}
			rest = rest[eq+2:]
			end := -1
			for j := 0; j < len(rest); j++ {
				if rest[j] == '\\' {
					j++
					continue
				}
				if rest[j] == '"' {
					end = j
					break
				}
			}
			if end < 0 {
				return s, fmt.Errorf("unterminated label value")
			}
			v, err := unescape(rest[:end], true)
			if err != nil {
				return s, err
			}
			if _, dup := s.Labels[name]; dup {
				return s, fmt.Errorf("label %s twice", name)
			}
			s.Labels[name] = v
			rest = rest[end+1:]
			if strings.HasPrefix(rest, ",") {
				rest = rest[1:]
			} else if !strings.HasPrefix(rest, "}") {
				return s, fmt.Errorf("want , or } after a label")
			}
		}
	}
	fields := strings.Split(strings.TrimPrefix(rest, " "), " ")
	if !strings.HasPrefix(rest, " ") || len(fields) < 1 || len(fields) > 2 {
		return s, fmt.Errorf("want one space, a value and an optional timestamp")
	}
	v, err := parseValue(fields[0])
	if err != nil {
		return s, err
	}
	s.Value = v
	if len(fields) == 2 {
		if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
			return s, fmt.Errorf("bad timestamp")
		}
	}
	return s, nil
}

func checkHistogram(f *Family) error {
	type group struct {
		les         []float64
		counts      []float64
		sum, count  float64
		hasSum, has bool
	}
	groups := map[string]*group{}
	for _, s := range f.Samples {
		labels := map[string]string{}
		for k, v := range s.Labels {
			if k != "le" {
				labels[k] = v
			}
		}
		key := seriesKey("", labels)
		g := groups[key]
		if g == nil {
			g = &group{}
			groups[key] = g
		}
		switch {
		case strings.HasSuffix(s.Name, "_bucket"):
			le, err := parseValue(s.Labels["le"])
			if err != nil {
				return fmt.Errorf("%s: bad le: %v", key, err)
			}
			g.les = append(g.les, le)
			g.counts = append(g.counts, s.Value)
		case strings.HasSuffix(s.Name, "_sum"):
			g.sum, g.hasSum = s.Value, true
		case strings.HasSuffix(s.Name, "_count"):
			g.count, g.has = s.Value, true
		}
	}
	for key, g := range groups {
		switch {
		case !g.has || !g.hasSum:
			return fmt.Errorf("%s: no _count or _sum", key)
		case len(g.les) == 0 || !math.IsInf(g.les[len(g.les)-1], 1):
			return fmt.Errorf("%s: no +Inf bucket last", key)
		case !strictlyIncreasing(g.les):
			return fmt.Errorf("%s: buckets not in increasing order: %v", key, g.les)
		case !slices.IsSorted(g.counts):
			return fmt.Errorf("%s: bucket counts not cumulative: %v", key, g.counts)
		case g.counts[len(g.counts)-1] != g.count:
			return fmt.Errorf("%s: +Inf bucket %v != _count %v", key, g.counts[len(g.counts)-1], g.count)
		}
	}
	return nil
}

func strictlyIncreasing(v []float64) bool {
	for i := 1; i < len(v); i++ {
		if !(v[i] > v[i-1]) {
			return false
		}
	}
	return true
}
