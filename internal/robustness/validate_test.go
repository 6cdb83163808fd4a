package robustness

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// watchStats counts what the watch validators saw.
type watchStats struct {
	events, progress, closes int
	byCode                   map[int]int // closes by close status
}

// validateWatches checks what the watchers received against the feed's
// guarantees, and returns the feed they agree on (every change, in order,
// each with the earliest time a watcher received it):
//   - each watcher's events come in increasing revision order, with no
//     duplicate, and match what it watches;
//   - the events of a revision (a transaction's) come together, each but
//     the last with More, and a connection that kvsd closes (4408, 1001)
//     ends between revisions; a revision cut short by a lost connection
//     is dropped (the watcher resumes from its start);
//   - a progress event at R comes after every matching change up to R that
//     the feed holds, and no later event is at or below R;
//   - a connection closed with "resume from R" had sent everything before
//     R (R is the revision after the last one received);
//   - no watcher is refused or closed for a gap (410, 4410);
//   - every watcher gets the same sequence: the events of a watcher of
//     every key (one that passed the checks above, with the most events),
//     restricted to what it watches.
//
// Every watcher subscribes from revision 1, so the sequences are whole.
func validateWatches(ws []*watcher) (feed []event, stats watchStats, problems []string) {
	stats.byCode = make(map[int]int)
	type progressAt struct {
		before int // events received before it
		rev    int64
	}
	events := make([][]watchItem, len(ws))
	progress := make([][]progressAt, len(ws))
	clean := make([]bool, len(ws)) // no problem of its own
	for i, w := range ws {
		before := len(problems)
		add := func(format string, args ...any) {
			problems = append(problems, w.name+": "+fmt.Sprintf(format, args...))
		}
		var (
			last    int64       // the last whole revision received, or progress
			pending []watchItem // a revision's events so far, the last with More
		)
		whole := func() {
			events[i] = append(events[i], pending...)
			stats.events += len(pending)
			last = max(last, pending[0].Rev)
			pending = nil
		}
		for _, it := range w.received() {
			change := it.Kind == "set" || it.Kind == "delete"
			if len(pending) > 0 && it.Kind != "closed" && !(change && it.Rev == pending[0].Rev) {
				p := pending[len(pending)-1]
				add("revision %d split: %s %s with More, then %s at revision %d", p.Rev, p.Kind, p.Key, it.Kind, it.Rev)
				whole()
			}
			switch it.Kind {
			case "set", "delete":
				if len(pending) > 0 {
					if slices.ContainsFunc(pending, func(p watchItem) bool { return p.Key == it.Key }) {
						add("%s %s twice at revision %d", it.Kind, it.Key, it.Rev)
					}
				} else if it.Rev <= last {
					more := ""
					if it.Rev == last {
						more = ", or a revision's events without More"
					}
					add("%s %s at revision %d after revision %d: a duplicate or out of order%s", it.Kind, it.Key, it.Rev, last, more)
				}
				if !w.matches(it.Key) {
					add("got %s %s at revision %d, which it does not watch", it.Kind, it.Key, it.Rev)
				}
				pending = append(pending, it)
				if !it.More {
					whole()
				}
			case "progress":
				if it.Rev < last {
					add("progress at revision %d after revision %d", it.Rev, last)
				}
				last = max(last, it.Rev)
				progress[i] = append(progress[i], progressAt{len(events[i]), it.Rev})
				stats.progress++
			case "closed":
				stats.closes++
				stats.byCode[it.Code]++
				if len(pending) > 0 {
					// A client drops a revision it did not get whole, and
					// resumes from its start. Only a lost connection may
					// end inside one: kvsd closes between revisions.
					if it.Code > 0 {
						add("closed with %d (%s) inside revision %d, after %d of its events", it.Code, it.Reason, pending[0].Rev, len(pending))
					}
					pending = nil
				}
				if it.Code == 4410 || it.Code == 410 {
					add("closed for a gap (%d %s) at revision %d", it.Code, it.Reason, last)
				}
				if _, r, ok := strings.Cut(it.Reason, "resume from "); ok {
					if n, err := strconv.ParseInt(r, 10, 64); err != nil || n != last+1 {
						add("closed with %q after receiving up to revision %d: want resume from %d", it.Reason, last, last+1)
					}
				}
			default:
				add("event of type %q", it.Kind)
			}
		}
		// A revision still pending here was cut short by the end of the
		// run.
		clean[i] = len(problems) == before
		problems = append(problems[:before], capped(problems[before:], 10)...)
	}

	// The reference: of the watchers of every key, one without a problem
	// of its own if there is one, and of those one with the most events.
	ref := -1
	better := func(i int) bool {
		if clean[i] != clean[ref] {
			return clean[i]
		}
		return len(events[i]) > len(events[ref])
	}
	for i, w := range ws {
		if w.key == "" && w.prefix == "" && (ref < 0 || better(i)) {
			ref = i
		}
	}
	if ref < 0 {
		return nil, stats, append(problems, "no watcher of every key")
	}
	first := make(map[int64]int64) // revision -> earliest receipt
	for i, w := range ws {
		var want []watchItem
		for _, it := range events[ref] {
			if w.matches(it.Key) {
				want = append(want, it)
			}
		}
		if d := firstDifference(events[i], want); d != "" {
			problems = append(problems, fmt.Sprintf("%s differs from %s: %s", w.name, ws[ref].name, d))
		}
		for _, it := range events[i] {
			if at, ok := first[it.Rev]; !ok || it.At < at {
				first[it.Rev] = it.At
			}
		}
		for _, p := range progress[i] {
			n := 0
			for _, it := range want {
				if it.Rev <= p.rev {
					n++
				}
			}
			if n != p.before {
				problems = append(problems, fmt.Sprintf("%s: progress at revision %d after %d events, but the feed has %d matching changes up to it", w.name, p.rev, p.before, n))
			}
		}
	}
	for _, it := range events[ref] {
		feed = append(feed, event{Type: it.Kind, Key: it.Key, Value: it.Value, Rev: it.Rev, At: first[it.Rev]})
	}
	return feed, stats, problems
}

// capped returns at most n of problems, and says how many it left out.
func capped(problems []string, n int) []string {
	if len(problems) <= n {
		return problems
	}
	return append(problems[:n:n], fmt.Sprintf("... and %d more", len(problems)-n))
}

// firstDifference describes where got and want first differ, "" if they
// do not.
func firstDifference(got, want []watchItem) string {
	same := func(a, b watchItem) bool {
		return a.Kind == b.Kind && a.Key == b.Key && a.Value == b.Value && a.Rev == b.Rev
	}
	show := func(it watchItem) string {
		return fmt.Sprintf("%s %s=%s at %d", it.Kind, it.Key, short(it.Value), it.Rev)
	}
	for i := range min(len(got), len(want)) {
		if !same(got[i], want[i]) {
			return fmt.Sprintf("event %d: got %s, want %s", i, show(got[i]), show(want[i]))
		}
	}
	switch {
	case len(got) > len(want):
		return fmt.Sprintf("%d events more, from %s", len(got)-len(want), show(got[len(want)]))
	case len(got) < len(want):
		return fmt.Sprintf("%d events missing, from %s", len(want)-len(got), show(want[len(got)]))
	}
	return ""
}
