package kv

import (
	"errors"
	"fmt"
)

// A transaction (Txn) tests conditions on several keys and, depending on
// the outcome, runs one of two lists of operations. The writes of the list
// that runs apply together, at one revision: every key they change gets
// that revision, readers see all of them or none, the log holds them as
// one unit, and the feed delivers them as one unit. A transaction whose
// list changes nothing (only gets, or deletes of missing keys) takes no
// revision with the memory and file logs; with a Replicated log it is a
// record like any other and takes the record's revision.

// ErrInvalidTxn is returned (wrapped, with the reason) for a transaction
// that the store cannot run: a bad key, an unknown operation or condition,
// a set without a value, or a key written twice in one list.
var ErrInvalidTxn = errors.New("kv: invalid transaction")

// OpGet is an operation of a transaction that reads a key. It is never the
// Op of a Change.
const OpGet Op = 3

// Target is what a condition of a transaction tests.
type Target uint8

// The targets of a condition.
const (
	// TargetRevision compares the key's revision (of its last change; 0
	// when the key is absent) with Cond.Revision.
	TargetRevision Target = iota + 1
	// TargetExists holds when the key exists and Cond.Exists is true, or
	// the key is absent and Cond.Exists is false.
	TargetExists
	// TargetValue compares the key's value with Cond.Value, as compact
	// JSON text, byte for byte (1.0 is not 1). On an absent key it never
	// holds, whatever the comparison.
	TargetValue
)

// Compare is how a condition compares. The zero value is CompareEqual.
type Compare uint8

// The comparisons of a condition. CompareLess and CompareGreater apply to
// revisions only.
const (
	CompareEqual Compare = iota
	CompareNotEqual
	CompareLess
	CompareGreater
)

// Cond is one condition of a transaction.
type Cond struct {
	Key     string
	Target  Target
	Compare Compare
	// Revision is the revision TargetRevision compares with.
	Revision int64
	// Exists is what TargetExists expects: true for present, false for
	// absent.
	Exists bool
	// Value is the compact JSON text TargetValue compares with.
	Value []byte
}

// holds reports whether c holds for e, the key's entry (nil when absent).
func (c *Cond) holds(e *Entry) bool {
	switch c.Target {
	case TargetRevision:
		have := int64(0)
		if e != nil {
			have = e.Revision
		}
		switch c.Compare {
		case CompareEqual:
			return have == c.Revision
		case CompareNotEqual:
			return have != c.Revision
		case CompareLess:
			return have < c.Revision
		case CompareGreater:
			return have > c.Revision
		}
	case TargetExists:
		return (e != nil) == c.Exists
	case TargetValue:
		if e == nil {
			return false
		}
		switch c.Compare {
		case CompareEqual:
			return string(e.Value) == string(c.Value)
		case CompareNotEqual:
			return string(e.Value) != string(c.Value)
		}
	}
	return false
}

// TxnOp is one operation of a transaction: OpSet, OpDelete or OpGet.
type TxnOp struct {
	Op  Op
	Key string
	// Value is the compact JSON text that OpSet stores.
	Value []byte
	// Lease is the lease OpSet attaches the key to (0: none). A lease that
	// does not exist when the transaction is decided fails the whole
	// transaction with ErrLeaseNotFound: nothing is changed.
	Lease int64
}

// Txn is a transaction: when every condition of If holds (or If is
// empty), Then runs, else Else. A Txn handed to a Store must not be
// modified until the call returns.
type Txn struct {
	If   []Cond
	Then []TxnOp
	Else []TxnOp
}

// Check returns nil if the store can run t, and otherwise an error
// wrapping ErrInvalidTxn that says why. It does not bound the number of
// conditions or operations: that is the caller's limit.
func (t *Txn) Check() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidTxn, fmt.Sprintf(format, args...))
	}
	for i := range t.If {
		c := &t.If[i]
		if !ValidKey(c.Key) {
			return bad("condition %d: invalid key %q", i, c.Key)
		}
		switch c.Target {
		case TargetRevision:
			if c.Compare > CompareGreater {
				return bad("condition %d: unknown comparison %d", i, c.Compare)
			}
			if c.Revision < 0 {
				return bad("condition %d: negative revision %d", i, c.Revision)
			}
		case TargetExists:
			if c.Compare != CompareEqual {
				return bad("condition %d: an existence test takes no comparison", i)
			}
		case TargetValue:
			if c.Compare != CompareEqual && c.Compare != CompareNotEqual {
				return bad("condition %d: a value compares only for equality or inequality", i)
			}
			if len(c.Value) == 0 || string(c.Value) == "null" {
				return bad("condition %d: a value condition needs a value other than null", i)
			}
		default:
			return bad("condition %d: unknown target %d", i, c.Target)
		}
	}
	for _, branch := range [...]struct {
		name string
		ops  []TxnOp
	}{{"then", t.Then}, {"else", t.Else}} {
		var written map[string]bool // for long lists; short ones are scanned
		for i := range branch.ops {
			op := &branch.ops[i]
			if !ValidKey(op.Key) {
				return bad("%s operation %d: invalid key %q", branch.name, i, op.Key)
			}
			switch op.Op {
			case OpSet:
				if len(op.Value) == 0 || string(op.Value) == "null" {
					return bad("%s operation %d: a set needs a value other than null", branch.name, i)
				}
				if op.Lease != 0 && checkLeaseID(op.Lease) != nil {
					return bad("%s operation %d: lease %d out of range", branch.name, i, op.Lease)
				}
			case OpDelete, OpGet:
				if op.Lease != 0 {
					return bad("%s operation %d: only a set takes a lease", branch.name, i)
				}
			default:
				return bad("%s operation %d: unknown operation %d", branch.name, i, op.Op)
			}
			if op.Op == OpGet {
				continue
			}
			twice := false
			if len(branch.ops) <= 16 {
				for _, o := range branch.ops[:i] {
					twice = twice || o.Op != OpGet && o.Key == op.Key
				}
			} else {
				if written == nil {
					written = make(map[string]bool)
				}
				twice, written[op.Key] = written[op.Key], true
			}
			if twice {
				return bad("%s writes key %q twice", branch.name, op.Key)
			}
		}
	}
	return nil
}

// WriteKeys returns the keys that Then or Else sets or deletes, each once,
// in the order they first appear.
func (t *Txn) WriteKeys() []string {
	var keys []string
	seen := make(map[string]bool)
	for _, ops := range [][]TxnOp{t.Then, t.Else} {
		for _, op := range ops {
			if op.Op != OpGet && !seen[op.Key] {
				seen[op.Key] = true
				keys = append(keys, op.Key)
			}
		}
	}
	return keys
}

// TxnResult is the outcome of a transaction.
type TxnResult struct {
	// Succeeded is true when every condition held and Then ran; false
	// when Else ran.
	Succeeded bool
	// Revision is the transaction's revision when it changed something:
	// every key it changed has it. Otherwise it is the revision of the
	// state it was decided against and read at (with a Replicated log, its
	// record's revision either way).
	Revision int64
	// Results holds one result for each operation of the list that ran,
	// in order.
	Results []OpResult
}

// OpResult is the result of one operation of a transaction.
type OpResult struct {
	Op  Op
	Key string
	// Found reports, for a get or a delete, whether the key existed. A
	// delete of a missing key changes nothing. For a set it is true.
	Found bool
	// Entry is, for a set, the entry it made; for a get, the key's entry
	// at the transaction's revision, after its writes (nil when absent);
	// nil for a delete.
	Entry *Entry
}

// Changed reports whether the transaction changed anything: a set, or a
// delete of a key that existed.
func (r *TxnResult) Changed() bool {
	for i := range r.Results {
		if op := r.Results[i].Op; op == OpSet || op == OpDelete && r.Results[i].Found {
			return true
		}
	}
	return false
}

// decideTxn decides t against the state that cur returns (a key's entry
// as the transaction would see it, nil when absent) and live (whether a
// set may attach a key to a lease), giving its writes revision rev. It
// appends the changes and the entries they make to changes and entries,
// and returns the result, whose Revision the caller sets. The keys that
// one list writes are distinct, so its writes do not see each other; its
// gets see all of them. A set of the list that runs into a lease that is
// not live fails the transaction with ErrLeaseNotFound, and nothing is
// appended.
func decideTxn(t *Txn, cur func(string) *Entry, live func(int64) bool, rev int64, changes []Change, entries []*Entry) (*TxnResult, []Change, []*Entry, error) {
	res := &TxnResult{Succeeded: true}
	for i := range t.If {
		if !t.If[i].holds(cur(t.If[i].Key)) {
			res.Succeeded = false
			break
		}
	}
	ops := t.Then
	if !res.Succeeded {
		ops = t.Else
	}
	for i := range ops {
		if ops[i].Op == OpSet && ops[i].Lease != 0 && !live(ops[i].Lease) {
			return nil, changes, entries, fmt.Errorf("%w: lease %d of the set of %q", ErrLeaseNotFound, ops[i].Lease, ops[i].Key)
		}
	}
	res.Results = make([]OpResult, len(ops))
	first := len(changes)
	gets := false
	for i := range ops {
		op := &ops[i]
		r := &res.Results[i]
		r.Op, r.Key = op.Op, op.Key
		switch op.Op {
		case OpSet:
			c := Change{Op: OpSet, Key: op.Key, Value: op.Value, Revision: rev, Lease: op.Lease}
			e, _ := decide(cur(op.Key), c, rev)
			r.Found, r.Entry = true, e
			changes, entries = append(changes, c), append(entries, e)
		case OpDelete:
			if cur(op.Key) != nil {
				r.Found = true
				changes, entries = append(changes, Change{Op: OpDelete, Key: op.Key, Revision: rev}), append(entries, nil)
			}
		case OpGet:
			gets = true
		}
	}
	if gets {
		// Read after the writes: a key written here has its new entry.
		written := make(map[string]*Entry, len(changes)-first)
		for i := first; i < len(changes); i++ {
			written[changes[i].Key] = entries[i]
		}
		for i := range ops {
			if ops[i].Op != OpGet {
				continue
			}
			r := &res.Results[i]
			e, ok := written[r.Key]
			if !ok {
				e = cur(r.Key)
			}
			r.Found, r.Entry = e != nil, e
		}
	}
	return res, changes, entries, nil
}
