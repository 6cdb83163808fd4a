package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

// A transaction is one record of the Kafka log, applied all or nothing by
// every instance when it reads it, its conditions decided then:
//
//   - Its Kafka key is TxnKey, the same for every transaction and never a
//     store key (it starts with a NUL byte), so that compaction keeps only
//     the newest transaction record.
//   - Its value is the transaction as JSON (txnRecord): conditions and the
//     two lists of operations, values as their compact JSON text.
//   - Its headers are kvs-origin, kvs-request and kvs-txn (the format
//     version, "1").
//
// After applying one, every instance owes a restore record (see kv.Record)
// for each key that either list writes, holding the key's entry right
// after the transaction: the writer writes them at once, the others if it
// does not. So the effects of a transaction also reach each key's own
// records, which is what survives compaction, and what other Kafka
// consumers of the topic see as changes.
const (
	// TxnKey is the Kafka key of every transaction record.
	TxnKey = "\x00kvs-txn"
	// HeaderTxn marks a transaction record; its value is the version of
	// the record's format.
	HeaderTxn = "kvs-txn"
)

// txnRecord is the value of a transaction record.
type txnRecord struct {
	If   []txnCond `json:",omitempty"`
	Then []txnOp   `json:",omitempty"`
	Else []txnOp   `json:",omitempty"`
}

type txnCond struct {
	Key string
	// Target is "revision", "exists" or "value".
	Target string
	// Compare is "=" (omitted), "!=", "<" or ">".
	Compare  string          `json:",omitempty"`
	Revision int64           `json:",omitempty"`
	Exists   bool            `json:",omitempty"`
	Value    json.RawMessage `json:",omitempty"`
}

type txnOp struct {
	// Op is "set", "delete" or "get".
	Op    string
	Key   string
	Value json.RawMessage `json:",omitempty"`
	// Lease is the lease a set attaches its key to.
	Lease int64 `json:",omitempty"`
}

// The names of targets, comparisons and operations in a transaction
// record, both ways.
var (
	targetNames   = map[kv.Target]string{kv.TargetRevision: "revision", kv.TargetExists: "exists", kv.TargetValue: "value"}
	targetByName  = map[string]kv.Target{"revision": kv.TargetRevision, "exists": kv.TargetExists, "value": kv.TargetValue}
	compareNames  = map[kv.Compare]string{kv.CompareEqual: "", kv.CompareNotEqual: "!=", kv.CompareLess: "<", kv.CompareGreater: ">"}
	compareByName = map[string]kv.Compare{"": kv.CompareEqual, "!=": kv.CompareNotEqual, "<": kv.CompareLess, ">": kv.CompareGreater}
	opNames       = map[kv.Op]string{kv.OpSet: "set", kv.OpDelete: "delete", kv.OpGet: "get"}
	opByName      = map[string]kv.Op{"set": kv.OpSet, "delete": kv.OpDelete, "get": kv.OpGet}
)

// encodeTxn returns the value of t's record.
func encodeTxn(t *kv.Txn) []byte {
	var rec txnRecord
	for _, c := range t.If {
		rec.If = append(rec.If, txnCond{Key: c.Key, Target: targetNames[c.Target], Compare: compareNames[c.Compare],
			Revision: c.Revision, Exists: c.Exists, Value: c.Value})
	}
	ops := func(ops []kv.TxnOp) []txnOp {
		var out []txnOp
		for _, op := range ops {
			out = append(out, txnOp{Op: opNames[op.Op], Key: op.Key, Value: op.Value, Lease: op.Lease})
		}
		return out
	}
	rec.Then, rec.Else = ops(t.Then), ops(t.Else)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // values go byte for byte
	if err := enc.Encode(&rec); err != nil {
		panic("bus: encoding a transaction: " + err.Error()) // a checked Txn always encodes
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// decodeTxn decodes the value of a transaction record and checks it.
func decodeTxn(b []byte) (*kv.Txn, error) {
	var rec txnRecord
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&rec); err != nil {
		return nil, fmt.Errorf("transaction does not decode: %v", err)
	}
	if d.More() {
		return nil, errors.New("transaction: data after the record")
	}
	value := func(raw json.RawMessage) ([]byte, error) {
		if raw == nil {
			return nil, nil
		}
		var c bytes.Buffer
		if err := json.Compact(&c, raw); err != nil {
			return nil, err
		}
		return c.Bytes(), nil
	}
	t := &kv.Txn{}
	for i, c := range rec.If {
		target, ok := targetByName[c.Target]
		if !ok {
			return nil, fmt.Errorf("transaction: condition %d: unknown target %q", i, c.Target)
		}
		cmp, ok := compareByName[c.Compare]
		if !ok {
			return nil, fmt.Errorf("transaction: condition %d: unknown comparison %q", i, c.Compare)
		}
		v, err := value(c.Value)
		if err != nil {
			return nil, fmt.Errorf("transaction: condition %d: %v", i, err)
		}
		t.If = append(t.If, kv.Cond{Key: c.Key, Target: target, Compare: cmp, Revision: c.Revision, Exists: c.Exists, Value: v})
	}
	list := func(name string, in []txnOp) ([]kv.TxnOp, error) {
		var out []kv.TxnOp
		for i, o := range in {
			op, ok := opByName[o.Op]
			if !ok {
				return nil, fmt.Errorf("transaction: %s operation %d: unknown operation %q", name, i, o.Op)
			}
			v, err := value(o.Value)
			if err != nil {
				return nil, fmt.Errorf("transaction: %s operation %d: %v", name, i, err)
			}
			if op != kv.OpSet && v != nil {
				return nil, fmt.Errorf("transaction: %s operation %d: a %s has no value", name, i, o.Op)
			}
			out = append(out, kv.TxnOp{Op: op, Key: o.Key, Value: v, Lease: o.Lease})
		}
		return out, nil
	}
	var err error
	if t.Then, err = list("then", rec.Then); err != nil {
		return nil, err
	}
	if t.Else, err = list("else", rec.Else); err != nil {
		return nil, err
	}
	if err := t.Check(); err != nil {
		return nil, err
	}
	return t, nil
}

// encodeTxnRecord returns the Kafka record of a transaction proposed with
// request id req.
func (k *Kafka) encodeTxnRecord(t *kv.Txn, req uint64) kafka.Record {
	return kafka.Record{
		Key:   kafka.NewBytes([]byte(TxnKey)),
		Value: kafka.NewBytes(encodeTxn(t)),
		Headers: []kafka.Header{
			{Key: HeaderOrigin, Value: []byte(k.origin)},
			{Key: HeaderRequest, Value: strconv.AppendUint(nil, req, 10)},
			{Key: HeaderTxn, Value: []byte("1")},
		},
	}
}

// decodeTxnRecord returns the transaction of a fetched record whose Kafka
// key is TxnKey, given r, what the record's headers say (decodeRecord
// checked them: only Ours and Request count), and value, the transaction.
// Its keys and values are held to the rules of a single change's (see
// kv.Txn.Check, Kafka.checkValue): a transaction that breaks one is
// skipped whole.
func (k *Kafka) decodeTxnRecord(r kv.Record, value []byte) (kv.Record, error) {
	t, err := decodeTxn(value)
	if err == nil {
		err = k.checkTxnValues(t)
	}
	if err != nil {
		return kv.Record{}, fmt.Errorf("%w: %v", errSkip, err)
	}
	rec := kv.Record{Txn: t, Ours: r.Ours}
	if r.Ours {
		rec.Request = r.Request
	}
	return rec, nil
}

// checkTxnValues checks the values of t's conditions and sets (see
// Kafka.checkValue).
func (k *Kafka) checkTxnValues(t *kv.Txn) error {
	for i, c := range t.If {
		if c.Value == nil {
			continue
		}
		if _, err := k.checkValue(c.Value, false); err != nil {
			return fmt.Errorf("transaction: condition %d: %v", i, err)
		}
	}
	for _, branch := range [...]struct {
		name string
		ops  []kv.TxnOp
	}{{"then", t.Then}, {"else", t.Else}} {
		for i, op := range branch.ops {
			if op.Op != kv.OpSet {
				continue
			}
			if _, err := k.checkValue(op.Value, false); err != nil {
				return fmt.Errorf("transaction: %s operation %d: %v", branch.name, i, err)
			}
		}
	}
	return nil
}

// txnKeys returns the keys whose state t depends on or changes: those of
// its conditions and of its writes, and the leases its sets attach keys to.
func txnKeys(t *kv.Txn) []string {
	keys := t.WriteKeys()
	for _, c := range t.If {
		keys = append(keys, c.Key)
	}
	for _, ops := range [][]kv.TxnOp{t.Then, t.Else} {
		for _, op := range ops {
			if op.Lease != 0 {
				keys = append(keys, leaseKey(op.Lease))
			}
		}
	}
	return keys
}

// sawAll reports whether the fetch loop delivered a record of every one of
// keys since it started replaying. Only the fetch loop calls it.
func (k *Kafka) sawAll(keys []string) bool {
	for _, key := range keys {
		if _, ok := k.seen[key]; !ok {
			return false
		}
	}
	return true
}
