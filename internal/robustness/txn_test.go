package robustness

import (
	"cmp"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"

	"github.com/kvsdb/kvs/wire"
)

// Transactions (POST /txn) in the traffic and the model. A transaction is
// one operation over several keys of a round: its conditions are decided
// against the state it applies to, the list that runs changes its keys at
// one revision, and its gets, part of its output, read that revision after
// its writes. In the feed its changes are one revision. A branch that
// changes keys always sets one of them to a new value, unique in the run,
// which names the transaction (and the branch) in the feed: a
// transaction whose answer never came is patched from the feed like a
// single write.

// txn is a transaction's request.
type txn struct {
	If   []cond
	Then []txnOp
	Else []txnOp
}

// cond is a condition of a transaction: on the key's revision (0: absent),
// its existence, or its value (never true of an absent key).
type cond struct {
	Key     int
	Target  condTarget
	Compare string // "" (=), "!=", "<" or ">" (revisions only)
	Rev     int64
	Exists  bool
	Value   string
}

type condTarget uint8

const (
	onRevision condTarget = iota + 1
	onExists
	onValue
)

// txnOp is an operation of a transaction: opGet, opSet (with Value) or
// opDelete.
type txnOp struct {
	Kind  opKind
	Key   int
	Value string
}

// opResult is the result of one operation of a transaction. Found: a get
// or delete found its key (a set always does). Entry: the entry after the
// transaction of a set or a found get; a found delete's holds only the
// transaction's revision. Unknown: not known (a transaction patched from
// the feed): the model does not check it.
type opResult struct {
	Found   bool
	Entry   entry
	Unknown bool
}

// holds reports whether c holds of e.
func (c cond) holds(e entry) bool {
	switch c.Target {
	case onRevision:
		switch c.Compare {
		case "":
			return e.Rev == c.Rev
		case "!=":
			return e.Rev != c.Rev
		case "<":
			return e.Rev < c.Rev
		case ">":
			return e.Rev > c.Rev
		}
	case onExists:
		return (e.Rev != 0) == c.Exists
	case onValue:
		if e.Rev == 0 {
			return false
		}
		switch c.Compare {
		case "":
			return e.Value == c.Value
		case "!=":
			return e.Value != c.Value
		}
	}
	return false
}

// writes reports whether either list of t has a set or a delete.
func (t *txn) writes() bool {
	w := func(op txnOp) bool { return op.Kind != opGet }
	return slices.ContainsFunc(t.Then, w) || slices.ContainsFunc(t.Else, w)
}

// branch returns the list that ran, as out says.
func (t *txn) branch(out response) []txnOp {
	if out.Succeeded {
		return t.Then
	}
	return t.Else
}

// stepTxn is the model's step for a transaction: its conditions decide the
// list that runs; if that list changes anything (a set, a delete of a
// present key) it is the next write in revision order, its changes all at
// its revision, else it reads at a revision as a listing does; every
// result it answered must be what the model gives.
func (o *order) stepTxn(s state, t *txn, out response) (bool, state) {
	if out.Code != 200 {
		return false, s
	}
	holds := true
	for _, c := range t.If {
		if !c.holds(s.Keys[c.Key]) {
			holds = false
			break
		}
	}
	ops := t.Then
	if !holds {
		ops = t.Else
	}
	if out.Succeeded != holds || len(out.Results) != len(ops) {
		return false, s
	}
	n := s
	changed := false
	for _, op := range ops {
		switch e := s.Keys[op.Key]; op.Kind {
		case opSet:
			n.Keys[op.Key] = e.set(op.Value, out.Rev)
			changed = true
		case opDelete:
			n.Keys[op.Key] = entry{}
			changed = changed || e.Rev != 0
		}
	}
	if changed {
		if !o.wrote(s, out.Rev) {
			return false, s
		}
		n.Last = out.Rev
	} else {
		if !o.readAt(s, out.Rev) {
			return false, s
		}
		n.Floor = max(n.Floor, out.Rev)
	}
	for i, op := range ops {
		got := out.Results[i]
		if got.Unknown {
			continue
		}
		var want opResult
		switch op.Kind {
		case opSet:
			want = opResult{Found: true, Entry: n.Keys[op.Key]}
		case opDelete:
			if s.Keys[op.Key].Rev != 0 {
				want = opResult{Found: true, Entry: entry{Rev: out.Rev}}
			}
		case opGet:
			if e := n.Keys[op.Key]; e.Rev != 0 {
				want = opResult{Found: true, Entry: e}
			}
		}
		if got != want {
			return false, s
		}
	}
	return true, n
}

// changes returns the changes that an operation's answer says it made, as
// feed events (without revision and time): nil for a read, a write that
// changed nothing or one whose answer never came.
func changes(keys []string, in request, out response) []event {
	if out.Unknown || out.Code != 200 {
		return nil
	}
	switch in.Kind {
	case opSet:
		return []event{{Type: "set", Key: keys[in.Key], Value: in.Value}}
	case opDelete:
		return []event{{Type: "delete", Key: keys[in.Key]}}
	case opTxn:
		var evs []event
		for i, op := range in.Txn.branch(out) {
			switch {
			case op.Kind == opSet:
				evs = append(evs, event{Type: "set", Key: keys[op.Key], Value: op.Value})
			case op.Kind == opDelete && out.Results[i].Found:
				evs = append(evs, event{Type: "delete", Key: keys[op.Key]})
			}
		}
		return evs
	}
	return nil
}

// sameChanges reports whether two lists of events make the same changes,
// in any order.
func sameChanges(a, b []event) bool {
	show := func(evs []event) []string {
		var s []string
		for _, ev := range evs {
			s = append(s, ev.Type+" "+ev.Key+"="+ev.Value)
		}
		slices.Sort(s)
		return s
	}
	return slices.Equal(show(a), show(b))
}

// showChanges says what a list of events changes, for messages.
func showChanges(evs []event) string {
	var parts []string
	for _, ev := range evs {
		if ev.Type == "set" {
			parts = append(parts, fmt.Sprintf("set %s=%s", ev.Key, short(ev.Value)))
		} else {
			parts = append(parts, ev.Type+" "+ev.Key)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// resolveTxn turns the answer of a transaction that never came into what
// the feed shows: the list that ran (the one holding the set whose value
// the feed has), at revision rev, with the deletes the feed holds; its
// sets' entries and its gets stay unknown. It returns the answer, or
// what in the feed the transaction cannot have made.
func resolveTxn(keys []string, t *txn, elseRan bool, rev int64, group []event) (response, string) {
	out := response{Code: 200, Rev: rev, Succeeded: !elseRan}
	ops := t.branch(out)
	inGroup := make(map[string]event, len(group))
	for _, ev := range group {
		inGroup[ev.Key] = ev
	}
	var made []event
	for _, op := range ops {
		r := opResult{Unknown: true}
		ev, ok := inGroup[keys[op.Key]]
		switch op.Kind {
		case opSet:
			if !ok || ev.Type != "set" || ev.Value != op.Value {
				return out, fmt.Sprintf("lacks its set of %s", keys[op.Key])
			}
			r.Found = true
			made = append(made, ev)
		case opDelete:
			r = opResult{}
			if ok && ev.Type == "delete" {
				r = opResult{Found: true, Entry: entry{Rev: rev}}
				made = append(made, ev)
			}
		}
		out.Results = append(out.Results, r)
	}
	if len(made) != len(group) {
		return out, "holds changes that its list does not make"
	}
	return out, ""
}

// describeTxn says what a transaction was and what it answered.
func describeTxn(keys []string, t *txn, out response) string {
	var b strings.Builder
	b.WriteString("txn(")
	for i, c := range t.If {
		if i > 0 {
			b.WriteString(", ")
		}
		op := cmp.Or(c.Compare, "=")
		switch c.Target {
		case onRevision:
			fmt.Fprintf(&b, "%s rev%s%d", keys[c.Key], op, c.Rev)
		case onExists:
			fmt.Fprintf(&b, "%s exists=%v", keys[c.Key], c.Exists)
		case onValue:
			fmt.Fprintf(&b, "%s value%s%s", keys[c.Key], op, short(c.Value))
		}
	}
	list := func(name string, ops []txnOp) {
		fmt.Fprintf(&b, "; %s", name)
		for _, op := range ops {
			if op.Kind == opSet {
				fmt.Fprintf(&b, " set %s=%s", keys[op.Key], short(op.Value))
			} else {
				fmt.Fprintf(&b, " %v %s", op.Kind, keys[op.Key])
			}
		}
	}
	list("then", t.Then)
	list("else", t.Else)
	b.WriteString(") -> ")
	if out.Unknown {
		b.WriteString("unknown")
		return b.String()
	}
	if out.Code != 200 {
		fmt.Fprint(&b, out.Code)
		return b.String()
	}
	fmt.Fprintf(&b, "%s at %d:", map[bool]string{true: "then", false: "else"}[out.Succeeded], out.Rev)
	for i, op := range t.branch(out) {
		if i >= len(out.Results) {
			break
		}
		r := out.Results[i]
		fmt.Fprintf(&b, " %v %s ", op.Kind, keys[op.Key])
		switch {
		case r.Unknown:
			b.WriteString("?")
		case !r.Found:
			b.WriteString("missing")
		case op.Kind == opDelete:
			b.WriteString("found")
		default:
			b.WriteString(r.Entry.String())
		}
	}
	return b.String()
}

// randomTxn returns a transaction on the round's keys, of one of four
// kinds, from what the client last saw of them:
//   - a move: if a is at the revision last seen and b is absent, delete a
//     and set b, and read both; else read both (an Else that changes
//     nothing);
//   - several sets and a get (of a key the transaction may set);
//   - gets only (a read-only transaction);
//   - a condition on a value or a revision with a change in each list.
func (cl *client) randomTxn() *txn {
	p := cl.rng.Perm(cl.cfg.keys)
	a, b, c := p[0], p[1%len(p)], p[2%len(p)] // distinct when there are 3 keys or more
	switch k := cl.rng.IntN(100); {
	case k < 35:
		return &txn{
			If:   []cond{{Key: a, Target: onRevision, Rev: cl.known[a]}, {Key: b, Target: onExists, Exists: false}},
			Then: []txnOp{{Kind: opDelete, Key: a}, {Kind: opSet, Key: b, Value: cl.value()}, {Kind: opGet, Key: a}, {Kind: opGet, Key: b}},
			Else: []txnOp{{Kind: opGet, Key: a}, {Kind: opGet, Key: b}},
		}
	case k < 55:
		return &txn{Then: []txnOp{{Kind: opSet, Key: a, Value: cl.value()}, {Kind: opSet, Key: b, Value: cl.value()}, {Kind: opGet, Key: c}}}
	case k < 75:
		return &txn{Then: []txnOp{{Kind: opGet, Key: a}, {Kind: opGet, Key: b}, {Kind: opGet, Key: c}}}
	}
	var cd cond
	switch cl.rng.IntN(5) {
	case 0:
		cd = cond{Key: a, Target: onValue, Value: cl.knownValue[a]}
	case 1:
		cd = cond{Key: a, Target: onValue, Compare: "!=", Value: cl.knownValue[a]}
	case 2:
		cd = cond{Key: a, Target: onRevision, Compare: "<", Rev: cl.known[a] + 1}
	case 3:
		cd = cond{Key: a, Target: onRevision, Compare: ">", Rev: cl.known[a]}
	default:
		cd = cond{Key: a, Target: onExists, Exists: true}
	}
	if cd.Target == onValue && cd.Value == "" {
		cd.Value = `"never"`
	}
	then := []txnOp{{Kind: opSet, Key: b, Value: cl.value()}}
	if c != a && c != b {
		then = append(then, txnOp{Kind: opDelete, Key: c})
	}
	return &txn{
		If:   []cond{cd},
		Then: then,
		Else: []txnOp{{Kind: opSet, Key: a, Value: cl.value()}, {Kind: opGet, Key: b}},
	}
}

// txnBody returns the body of POST /txn for t.
func txnBody(keys []string, t *txn) ([]byte, error) {
	var w wire.TxnRequest
	for _, c := range t.If {
		wc := wire.TxnCond{Key: keys[c.Key], Compare: c.Compare}
		switch c.Target {
		case onRevision:
			wc.Revision = &c.Rev
		case onExists:
			wc.Exists = &c.Exists
		case onValue:
			wc.Value = json.RawMessage(c.Value)
		}
		w.If = append(w.If, wc)
	}
	list := func(ops []txnOp) []wire.TxnOp {
		var l []wire.TxnOp
		for _, op := range ops {
			wo := wire.TxnOp{Op: op.Kind.String(), Key: keys[op.Key]}
			if op.Kind == opSet {
				wo.Value = json.RawMessage(op.Value)
			}
			l = append(l, wo)
		}
		return l
	}
	w.Then, w.Else = list(t.Then), list(t.Else)
	return json.Marshal(w)
}

// parseTxn reads kvsd's answer to a transaction into out.
func parseTxn(keys []string, t *txn, resp *http.Response, body []byte, out response) (response, error) {
	var r wire.TxnResult
	if err := json.Unmarshal(body, &r); err != nil {
		return out, fmt.Errorf("txn answer %q: %v", body, err)
	}
	if h := resp.Header.Get("Kvs-Revision"); h != strconv.FormatInt(r.Revision, 10) || r.Revision < 0 {
		return out, fmt.Errorf("txn answer at revision %d with Kvs-Revision %q", r.Revision, h)
	}
	out.Rev, out.Succeeded = r.Revision, r.Succeeded
	ops := t.branch(out)
	if len(r.Results) != len(ops) {
		return out, fmt.Errorf("txn answer %q: %d results for %d operations", body, len(r.Results), len(ops))
	}
	for i, op := range ops {
		w := r.Results[i]
		if w.Op != op.Kind.String() || w.Key != keys[op.Key] {
			return out, fmt.Errorf("txn answer %q: result %d is %s %s, want %v %s", body, i, w.Op, w.Key, op.Kind, keys[op.Key])
		}
		res := opResult{Found: w.Found}
		if w.Found {
			res.Entry = entry{Value: string(w.Value), Rev: w.Revision, Create: w.CreateRevision, Version: w.Version}
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}

// learnTxn updates what the client knows of its keys from a transaction's
// answer.
func (cl *client) learnTxn(t *txn, out response) {
	for i, op := range t.branch(out) {
		r := out.Results[i]
		switch {
		case op.Kind == opDelete && r.Found:
			cl.known[op.Key], cl.knownValue[op.Key] = 0, ""
		case op.Kind != opDelete:
			cl.known[op.Key], cl.knownValue[op.Key] = r.Entry.Rev, r.Entry.Value
		}
	}
}

// txnCounts counts a run's transactions by outcome, for its log.
type txnCounts struct {
	then, els, readOnly, multi, unknown int
}

func (c *txnCounts) count(keys []string, op porcupine.Operation) {
	in, out := op.Input.(request), op.Output.(response)
	switch {
	case in.Kind != opTxn:
	case out.Unknown:
		c.unknown++
	default:
		if out.Succeeded {
			c.then++
		} else {
			c.els++
		}
		switch n := len(changes(keys, in, out)); {
		case n == 0:
			c.readOnly++
		case n > 1:
			c.multi++
		}
	}
}

func (c txnCounts) String() string {
	return fmt.Sprintf("%d Then, %d Else, %d changing nothing, %d changing several keys, %d without an answer",
		c.then, c.els, c.readOnly, c.multi, c.unknown)
}
