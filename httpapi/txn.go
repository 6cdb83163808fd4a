package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/kvsdb/kvs/kv"
)

// DefaultMaxTxnOps is the default limit on the conditions of a transaction,
// and on the operations of each of its lists.
const DefaultMaxTxnOps = 128

// POST /txn runs a transaction (see kv.Txn):
//
//	{"If":   [{"Key":"k","Revision":5}, {"Key":"k","Revision":5,"Compare":"<"},
//	          {"Key":"k","Exists":false}, {"Key":"k","Value":<JSON>,"Compare":"!="}],
//	 "Then": [{"Op":"set","Key":"k","Value":<JSON>}, {"Op":"delete","Key":"k"}, {"Op":"get","Key":"k"}],
//	 "Else": [...]}
//
// A condition names one of Revision, Exists or Value; Compare is "=" (the
// default), "!=", "<" or ">" ("<" and ">" for revisions only). The answer
// says which list ran, the transaction's revision, and one result for each
// operation of that list:
//
//	{"Succeeded":true,"Revision":7,"Results":[
//	  {"Op":"set","Key":"k","Found":true,"Value":<JSON>,"Revision":7,"CreateRevision":3,"Version":2},
//	  {"Op":"delete","Key":"j","Found":true,"Revision":7},
//	  {"Op":"get","Key":"x","Found":false}]}
//
// The wire types are TxnRequest and TxnResult (wire.go).

// txnBody is a /txn body as the client sent it: members matched
// case-insensitively, kept raw so that each is checked before use.
type txnBody struct {
	If   []txnCondBody
	Then []txnOpBody
	Else []txnOpBody
}

type txnCondBody struct {
	Key      json.RawMessage
	Compare  json.RawMessage
	Revision json.RawMessage
	Exists   json.RawMessage
	Value    json.RawMessage
}

type txnOpBody struct {
	Op    json.RawMessage
	Key   json.RawMessage
	Value json.RawMessage
	Lease json.RawMessage
}

// decodeTxn decodes and checks a /txn body.
func decodeTxn(data []byte, maxValue, maxOps int) (*kv.Txn, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, badRequest(`empty request body: send a JSON object such as {"If":[...],"Then":[...],"Else":[...]}`)
	}
	var b txnBody
	if !scanTxnBody(data, &b) {
		b = txnBody{}
		if err := json.Unmarshal(data, &b); err != nil {
			return nil, badRequest("malformed JSON: " + jsonErrorText(err))
		}
	}
	if len(b.If) > maxOps || len(b.Then) > maxOps || len(b.Else) > maxOps {
		return nil, badRequest("a transaction has at most " + strconv.Itoa(maxOps) +
			" conditions and as many operations in each of Then and Else; this one has " +
			strconv.Itoa(len(b.If)) + ", " + strconv.Itoa(len(b.Then)) + " and " + strconv.Itoa(len(b.Else)))
	}
	t := &kv.Txn{}
	for i := range b.If {
		c, err := decodeCond(&b.If[i], maxValue)
		if err != nil {
			return nil, prefixError("If["+strconv.Itoa(i)+"]: ", err)
		}
		t.If = append(t.If, c)
	}
	var err error
	if t.Then, err = decodeOps("Then", b.Then, maxValue); err != nil {
		return nil, err
	}
	if t.Else, err = decodeOps("Else", b.Else, maxValue); err != nil {
		return nil, err
	}
	return t, nil
}

func decodeCond(b *txnCondBody, maxValue int) (kv.Cond, error) {
	var c kv.Cond
	key, err := decodeKey(b.Key)
	if err != nil {
		return c, err
	}
	c.Key = key
	given := 0
	for _, m := range []json.RawMessage{b.Revision, b.Exists, b.Value} {
		if len(m) > 0 && string(m) != "null" {
			given++
		}
	}
	if given != 1 {
		return c, badRequest(`a condition tests one of "Revision", "Exists" or "Value"`)
	}
	cmp := ""
	if len(b.Compare) > 0 && string(b.Compare) != "null" {
		var ok bool
		if cmp, ok = jsonString(b.Compare); !ok {
			return c, badRequest(`"Compare" must be one of "=", "!=", "<" or ">"`)
		}
	}
	switch cmp {
	case "", "=", "==":
		c.Compare = kv.CompareEqual
	case "!=":
		c.Compare = kv.CompareNotEqual
	case "<":
		c.Compare = kv.CompareLess
	case ">":
		c.Compare = kv.CompareGreater
	default:
		return c, badRequest(`"Compare" must be one of "=", "!=", "<" or ">", not ` + strconv.Quote(cmp))
	}
	switch {
	case len(b.Revision) > 0 && string(b.Revision) != "null":
		c.Target = kv.TargetRevision
		rev, err := strconv.ParseInt(string(b.Revision), 10, 64)
		if err != nil || rev < 0 {
			return c, badRequest(`"Revision" must be a non-negative integer (0: the key is absent)`)
		}
		c.Revision = rev
	case len(b.Exists) > 0 && string(b.Exists) != "null":
		c.Target = kv.TargetExists
		switch string(b.Exists) {
		case "true":
			c.Exists = true
		case "false":
		default:
			return c, badRequest(`"Exists" must be true or false`)
		}
		if cmp != "" {
			return c, badRequest(`an "Exists" condition takes no "Compare"`)
		}
	default:
		c.Target = kv.TargetValue
		if c.Value, err = decodeValue(b.Value, maxValue); err != nil {
			return c, err
		}
		if c.Compare != kv.CompareEqual && c.Compare != kv.CompareNotEqual {
			return c, badRequest(`a "Value" condition compares with "=" or "!=" only`)
		}
	}
	return c, nil
}

func decodeOps(list string, in []txnOpBody, maxValue int) ([]kv.TxnOp, error) {
	out := make([]kv.TxnOp, 0, len(in))
	for i := range in {
		b := &in[i]
		where := list + "[" + strconv.Itoa(i) + "]: "
		name, ok := jsonString(b.Op)
		if !ok {
			return nil, badRequest(where + `"Op" must be "set", "delete" or "get"`)
		}
		var op kv.TxnOp
		switch strings.ToLower(name) {
		case "set":
			op.Op = kv.OpSet
		case "delete":
			op.Op = kv.OpDelete
		case "get":
			op.Op = kv.OpGet
		default:
			return nil, badRequest(where + `"Op" must be "set", "delete" or "get", not ` + strconv.Quote(name))
		}
		key, err := decodeKey(b.Key)
		if err != nil {
			return nil, prefixError(where, err)
		}
		op.Key = key
		if op.Op == kv.OpSet {
			if op.Value, err = decodeValue(b.Value, maxValue); err != nil {
				return nil, prefixError(where, err)
			}
			if op.Lease, err = decodeLeaseID(b.Lease, "Lease", false); err != nil {
				return nil, prefixError(where, err)
			}
		} else if len(b.Value) > 0 {
			return nil, badRequest(where + "a " + name + ` takes no "Value"`)
		} else if len(b.Lease) > 0 {
			return nil, badRequest(where + "a " + name + ` takes no "Lease"`)
		}
		if op.Op != kv.OpGet && slices.ContainsFunc(out, func(o kv.TxnOp) bool { return o.Op != kv.OpGet && o.Key == key }) {
			return nil, badRequest(where + "key " + strconv.Quote(key) + " written twice: a transaction changes each key at most once")
		}
		out = append(out, op)
	}
	return out, nil
}

// jsonString returns the string that raw, a JSON value, holds, and false
// if it is not a string.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
}

// prefixError puts prefix before the message of a client error.
func prefixError(prefix string, err error) error {
	var se *statusError
	if errors.As(err, &se) {
		return &statusError{se.code, prefix + se.msg}
	}
	return err
}

func (h *Handler) txn(w http.ResponseWriter, r *http.Request) {
	t, err := h.readTxn(r, w)
	if err == nil {
		var res *kv.TxnResult
		if res, err = h.store.Txn(r.Context(), t); err == nil {
			h.metrics.countTxn(res.Succeeded)
			w.Header()[RevisionHeader] = []string{strconv.FormatInt(res.Revision, 10)}
			bp := h.bufs.Get().(*[]byte)
			*bp = appendTxnResult((*bp)[:0], res, h.store.LeaseRemaining)
			writeJSON(w, http.StatusOK, *bp)
			h.putBuf(bp)
			return
		}
	}
	h.metrics.countTxnError(err)
	h.writeError(w, r, err)
}

// readTxn reads and decodes r's body as a transaction.
func (h *Handler) readTxn(r *http.Request, w http.ResponseWriter) (*kv.Txn, error) {
	bp := h.bufs.Get().(*[]byte)
	defer h.putBuf(bp)
	data, err := readBody(r.Body, (*bp)[:0], h.maxBody)
	*bp = data
	if err != nil {
		return nil, h.bodyError(w, err)
	}
	return decodeTxn(data, h.maxValue, h.maxTxnOps)
}

// appendTxnResult appends the TxnResult wire type.
func appendTxnResult(b []byte, res *kv.TxnResult, ttl leaseTTL) []byte {
	b = append(b, `{"Succeeded":`...)
	b = strconv.AppendBool(b, res.Succeeded)
	b = append(b, `,"Revision":`...)
	b = strconv.AppendInt(b, res.Revision, 10)
	b = append(b, `,"Results":[`...)
	for i := range res.Results {
		r := &res.Results[i]
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"Op":"`...)
		b = append(b, r.Op.String()...)
		b = append(b, `","Key":`...)
		b = appendString(b, r.Key)
		b = append(b, `,"Found":`...)
		b = strconv.AppendBool(b, r.Found)
		switch {
		case r.Entry != nil:
			b = appendEntryMembers(b, r.Entry, ttl)
		case r.Op == kv.OpDelete && r.Found:
			b = append(b, `,"Revision":`...)
			b = strconv.AppendInt(b, res.Revision, 10)
		}
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// The outcomes of /txn that /metrics counts.
const (
	txnThen     = iota // the conditions held: Then ran
	txnElse            // Else ran
	txnRejected        // refused as malformed or too large (4xx)
	txnFailed          // not acknowledged: the log failed, or the client left (5xx)
	txnOutcomes
)

var txnOutcomeNames = [txnOutcomes]string{"then", "else", "rejected", "failed"}

func (m *metrics) countTxn(succeeded bool) {
	if succeeded {
		m.txns[txnThen].Add(1)
	} else {
		m.txns[txnElse].Add(1)
	}
}

// countTxnError counts a /txn answered with err.
func (m *metrics) countTxnError(err error) {
	var se *statusError
	if errors.As(err, &se) || errors.Is(err, kv.ErrInvalidTxn) || errors.Is(err, kv.ErrInvalidKey) {
		m.txns[txnRejected].Add(1)
	} else {
		m.txns[txnFailed].Add(1)
	}
}

func (m *metrics) txnFamily() *family {
	f := &family{name: "kvs_transactions_total", typ: "counter",
		help: `Transactions (POST /txn) by outcome: "then" (the conditions held), "else", "rejected" (4xx: malformed or too large), "failed" (5xx: not acknowledged).`}
	for i, name := range txnOutcomeNames {
		f.add(float64(m.txns[i].Load()), "outcome", name)
	}
	return f
}
