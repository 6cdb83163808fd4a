package robustness

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"github.com/anishathalye/porcupine"
)

// The model: kvs as one sequential store, a register with revisions per
// key and one global revision order, against which porcupine checks that
// a history is linearizable. An operation's input is a request and its
// output a response. A transaction is one operation over several keys at
// one revision (txn_test.go), its gets part of its output. Leases fit in as
// more kinds of request (a lease ID on entries, an expiry as a logged
// delete), with their cases in step.

// maxKeys is the largest key space of one round. The state holds an entry
// per key in an array, so that states compare with == and copy cheaply.
const maxKeys = 8

// opKind is the kind of an operation.
type opKind uint8

const (
	opGet    opKind = iota + 1 // GET /get
	opSet                      // POST /set, conditional with Cond
	opDelete                   // POST /delete, conditional with Cond
	opList                     // GET /list?prefix= (the round's keys)
	opTxn                      // POST /txn (Txn)
)

func (k opKind) String() string {
	switch k {
	case opGet:
		return "get"
	case opSet:
		return "set"
	case opDelete:
		return "delete"
	case opList:
		return "list"
	case opTxn:
		return "txn"
	}
	return fmt.Sprintf("opKind(%d)", uint8(k))
}

// request is an operation's input.
type request struct {
	Kind opKind
	// Key is the key's index in the round's key space; not used by opList.
	Key int
	// Value is a set's value as JSON text, unique in the run, so that the
	// feed and the reads name the write they show.
	Value string
	// Cond makes a set or delete conditional on the key's revision being
	// IfRev (0: the key is absent).
	Cond  bool
	IfRev int64
	// Txn is a transaction (opTxn).
	Txn *txn
}

// writes reports whether the request may change the store.
func (in request) writes() bool {
	switch in.Kind {
	case opSet, opDelete:
		return true
	case opTxn:
		return in.Txn.writes()
	}
	return false
}

// response is an operation's output.
type response struct {
	// Unknown: no answer (a timeout, a lost connection, a 503 to a write):
	// the operation may have taken effect or not. The history is patched
	// from the feed before it is checked (see patch).
	Unknown bool
	// Code is the HTTP status: 200, 404 or 409.
	Code int
	// Rev is a write's revision, a listing's Kvs-Revision, or a
	// transaction's revision (when it changed nothing, the one it read
	// at; a record's in Kafka mode).
	Rev int64
	// Entry is what a get returned, or the current entry of a 409 (the
	// zero entry: absent).
	Entry entry
	// List is a listing: each key's entry (the zero entry: absent).
	List [maxKeys]entry
	// Succeeded says whether a transaction's Then ran (else Else did),
	// and Results holds a result per operation of the list that ran.
	Succeeded bool
	Results   []opResult
}

// entry is a key's state: Rev 0 means absent.
type entry struct {
	Value   string
	Rev     int64
	Create  int64
	Version int64
}

func (e entry) String() string {
	if e.Rev == 0 {
		return "absent"
	}
	return fmt.Sprintf("%s@%d(c%d,v%d)", short(e.Value), e.Rev, e.Create, e.Version)
}

// state is the model's state.
type state struct {
	// Last is the revision of the last write.
	Last int64
	// Floor is the highest revision a listing showed: later writes must
	// come after it.
	Floor int64
	Keys  [maxKeys]entry
}

// order is the global revision order of a history's writes, taken from
// the acknowledged revisions and the feed: the model applies the writes
// in that order and no other, which is what makes a history with many
// concurrent writes quick to check.
type order struct {
	prev map[int64]int64 // a write's revision -> the revision of the write before it (0: the first)
	next map[int64]int64 // a write's revision (or 0) -> the revision of the write after it
}

// newOrder returns the order of the writes with the given revisions.
func newOrder(revs []int64) *order {
	revs = slices.Clone(revs)
	slices.Sort(revs)
	o := &order{prev: make(map[int64]int64, len(revs)), next: make(map[int64]int64, len(revs)+1)}
	var p int64
	for _, r := range revs {
		o.prev[r] = p
		o.next[p] = r
		p = r
	}
	return o
}

// after returns the revision of the write after the one at rev.
func (o *order) after(rev int64) int64 {
	if n, ok := o.next[rev]; ok {
		return n
	}
	return math.MaxInt64
}

// readAt reports whether a read that changes nothing, answered with
// revision rev, can take effect in state s: rev is at least the last
// write's and below the next one's (another round's writes, a quiet key's,
// and in Kafka mode records that change nothing, take revisions too).
func (o *order) readAt(s state, rev int64) bool {
	return rev >= s.Last && rev < o.after(s.Last)
}

// wrote reports whether a write answered with revision rev can take effect
// in state s: it is the next write in revision order, after every listing.
func (o *order) wrote(s state, rev int64) bool {
	p, ok := o.prev[rev]
	return ok && p == s.Last && rev > s.Floor
}

// step is the model's step function.
func (o *order) step(s state, in request, out response) (bool, state) {
	if out.Unknown {
		// Not taking effect is always possible; patch turned those that
		// did (the feed shows them) into known writes.
		return true, s
	}
	switch in.Kind {
	case opGet:
		e := s.Keys[in.Key]
		switch out.Code {
		case 200:
			return e.Rev != 0 && out.Entry == e, s
		case 404:
			return e.Rev == 0, s
		}
		return false, s
	case opList:
		// A listing holds exactly the writes up to its revision.
		if out.Code != 200 || !o.readAt(s, out.Rev) || s.Keys != out.List {
			return false, s
		}
		s.Floor = max(s.Floor, out.Rev)
		return true, s
	case opSet, opDelete:
		e := s.Keys[in.Key]
		if in.Cond && e.Rev != in.IfRev {
			return out.Code == 409 && out.Entry == e, s
		}
		if in.Kind == opDelete && e.Rev == 0 {
			return out.Code == 404, s
		}
		if out.Code != 200 || !o.wrote(s, out.Rev) {
			return false, s
		}
		s.Last = out.Rev
		if in.Kind == opDelete {
			s.Keys[in.Key] = entry{}
			return true, s
		}
		s.Keys[in.Key] = e.set(in.Value, out.Rev)
		return true, s
	case opTxn:
		return o.stepTxn(s, in.Txn, out)
	}
	return false, s
}

// set returns the entry that a set of value at rev makes of e.
func (e entry) set(value string, rev int64) entry {
	n := entry{Value: value, Rev: rev, Create: rev, Version: 1}
	if e.Rev != 0 {
		n.Create, n.Version = e.Create, e.Version+1
	}
	return n
}

// model returns the porcupine model of a round with the given keys and
// write order.
func model(keys []string, o *order) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return state{} },
		Step: func(s, in, out any) (bool, any) {
			return o.step(s.(state), in.(request), out.(response))
		},
		Equal: func(a, b any) bool { return a.(state) == b.(state) },
		Hash: func(s any) uint64 {
			// A write's revision names its value, so the revisions and
			// versions are enough (equal states have equal hashes).
			st := s.(state)
			h := uint64(14695981039346656037)
			mix := func(v int64) { h = (h ^ uint64(v)) * 1099511628211 }
			mix(st.Last)
			mix(st.Floor)
			for _, e := range st.Keys {
				mix(e.Rev)
				mix(e.Create)
				mix(e.Version)
			}
			return h
		},
		DescribeOperation: func(in, out any) string { return describe(keys, in.(request), out.(response)) },
		DescribeState: func(s any) string {
			st := s.(state)
			var b strings.Builder
			fmt.Fprintf(&b, "last write %d, listed %d;", st.Last, st.Floor)
			for i, e := range st.Keys[:len(keys)] {
				fmt.Fprintf(&b, " %s=%v", keys[i], e)
			}
			return b.String()
		},
	}
}

// short returns a value cut to 60 bytes, for messages.
func short(v string) string {
	if len(v) <= 60 {
		return v
	}
	return v[:57] + "..."
}

// describe says what an operation was and what it answered.
func describe(keys []string, in request, out response) string {
	if in.Kind == opTxn {
		return describeTxn(keys, in.Txn, out)
	}
	var b strings.Builder
	switch in.Kind {
	case opList:
		b.WriteString("list")
	case opSet:
		fmt.Fprintf(&b, "set(%s, %s)", keys[in.Key], short(in.Value))
	default:
		fmt.Fprintf(&b, "%v(%s)", in.Kind, keys[in.Key])
	}
	if in.Cond {
		fmt.Fprintf(&b, " if rev %d", in.IfRev)
	}
	b.WriteString(" -> ")
	switch {
	case out.Unknown:
		b.WriteString("unknown")
	case in.Kind == opGet && out.Code == 200:
		b.WriteString(out.Entry.String())
	case in.Kind == opList:
		fmt.Fprintf(&b, "at %d:", out.Rev)
		for i := range keys {
			if e := out.List[i]; e.Rev != 0 {
				fmt.Fprintf(&b, " %s=%v", keys[i], e)
			}
		}
	case out.Code == 200:
		fmt.Fprintf(&b, "rev %d", out.Rev)
	case out.Code == 409:
		fmt.Fprintf(&b, "409, current %v", out.Entry)
	default:
		fmt.Fprint(&b, out.Code)
	}
	return b.String()
}
