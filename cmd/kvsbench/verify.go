package main

import "sort"

// feedCheck follows the revisions of the set and delete events that one
// subscriber receives, and at the end compares them with the revisions of
// the sets that were acknowledged. A correct feed delivers exactly the
// acknowledged revisions, each once, in increasing order.
//
// Memory stays small for long runs: revisions that arrive in order are
// kept as ranges of consecutive numbers (one range per subscriber when
// nothing else writes to the server). Not safe for concurrent use.
type feedCheck struct {
	runs []revRange // what arrived in order: increasing, disjoint ranges
	// late holds revisions that arrived after a higher one, the first
	// time they arrived.
	late map[int64]struct{}
	dups int64 // deliveries of a revision already delivered
	last int64 // highest revision delivered
	n    int64 // deliveries
}

type revRange struct{ lo, hi int64 }

// add records the delivery of revision rev.
func (f *feedCheck) add(rev int64) {
	f.n++
	if rev > f.last {
		if k := len(f.runs); k > 0 && f.runs[k-1].hi == rev-1 {
			f.runs[k-1].hi = rev
		} else {
			f.runs = append(f.runs, revRange{rev, rev})
		}
		f.last = rev
		return
	}
	if f.inOrder(rev) {
		f.dups++
		return
	}
	if _, ok := f.late[rev]; ok {
		f.dups++
		return
	}
	if f.late == nil {
		f.late = make(map[int64]struct{})
	}
	f.late[rev] = struct{}{}
}

// inOrder reports whether rev arrived in order.
func (f *feedCheck) inOrder(rev int64) bool {
	i := sort.Search(len(f.runs), func(i int) bool { return f.runs[i].hi >= rev })
	return i < len(f.runs) && f.runs[i].lo <= rev
}

// verdict is the outcome of checking one or more subscribers' feeds.
type verdict struct {
	// Expected counts the acknowledged revisions each subscriber should
	// have received; Delivered counts the set and delete events received.
	Expected  int64 `json:"expected"`
	Delivered int64 `json:"delivered"`
	// Lost counts acknowledged revisions never delivered.
	Lost int64 `json:"lost"`
	// Duplicated counts deliveries of a revision delivered before.
	Duplicated int64 `json:"duplicated"`
	// Reordered counts revisions delivered after a higher revision.
	Reordered int64 `json:"out_of_order"`
	// Unexpected counts revisions delivered that no acknowledged set of
	// this run had (a set that timed out on the client may still apply).
	Unexpected int64 `json:"unexpected"`
}

// ok reports whether the feed was exactly right.
func (v verdict) ok() bool {
	return v.Lost == 0 && v.Duplicated == 0 && v.Reordered == 0 && v.Unexpected == 0
}

func (v *verdict) add(o verdict) {
	v.Expected += o.Expected
	v.Delivered += o.Delivered
	v.Lost += o.Lost
	v.Duplicated += o.Duplicated
	v.Reordered += o.Reordered
	v.Unexpected += o.Unexpected
}

// verify compares the deliveries with acked, the revisions expected: the
// acknowledged ones, in increasing order (for a subscriber that the server
// closed and that did not resume, only those up to where it was closed).
func (f *feedCheck) verify(acked []int64) verdict {
	v := verdict{
		Expected:   int64(len(acked)),
		Delivered:  f.n,
		Duplicated: f.dups,
		Reordered:  int64(len(f.late)),
	}
	var matched int64
	r := 0
	for _, a := range acked {
		for r < len(f.runs) && f.runs[r].hi < a {
			r++
		}
		if r < len(f.runs) && f.runs[r].lo <= a {
			matched++
			continue
		}
		if _, ok := f.late[a]; ok {
			matched++
			continue
		}
		v.Lost++
	}
	distinct := int64(len(f.late))
	for _, rr := range f.runs {
		distinct += rr.hi - rr.lo + 1
	}
	v.Unexpected = distinct - matched
	return v
}
