package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
)

// # The Kafka record protocol
//
// This comment and the file that holds it, bus/kafka_record.go, are the
// whole wire format of the Kafka log: every kind of record that kvs writes
// to its topic, how it is encoded, and the rules a record must keep to be
// applied. kv.Record is what a record means once decoded (it explains
// claims and restores, and why they are needed); kv.Restore is a restore
// record still to be written.
//
// The topic has one partition and is compacted (cleanup.policy=compact): in
// the end Kafka keeps only the last record of each Kafka key. A record's
// revision is its offset + 1, or in a topic seeded from a backup its
// offset + the seed record's revision. Every record kvs writes carries
// kvs-origin, the random id of the kvsd instance that wrote it; numbers in
// headers are decimal text. Headers whose names do not start with "kvs-"
// belong to other programs and are ignored. The Kafka key tells the kinds
// apart:
//
//   - A change: the Kafka key is the store key, the value the compact JSON
//     value, or a tombstone (no value) for a delete, so that any Kafka
//     consumer can read the topic as a changelog. Headers: kvs-origin,
//     kvs-request (the request id at that instance), kvs-if-revision on a
//     conditional change; and on a set, its claim (the entry it expects to
//     make): kvs-version, kvs-create-revision (absent: the set creates the
//     key) and kvs-lease when it attaches the key to a lease. A record that
//     another program writes has no kvs-origin: it may carry
//     kvs-if-revision and no other kvs header, and it claims nothing.
//   - A restore: the Kafka key is the store key; it holds the key's entry
//     right after a record whose claim did not hold. Headers: kvs-origin,
//     kvs-restores (the revision of the entry that record claimed, 0 for
//     an absence) and, for an entry (a set), kvs-revision, kvs-version,
//     kvs-create-revision and kvs-lease of the entry; a tombstone when the
//     key is absent. No request, no condition. The instance that wrote the
//     record writes its restore at once, the others after
//     KafkaOptions.RestoreAfter if none came (the writer died); the topic
//     leaves records an hour before compacting them, so the restore lands
//     first.
//   - A transaction: the Kafka key is TxnKey, the value the transaction as
//     JSON; see TxnKey.
//   - A lease's grant, keep-alive, end or restore: the Kafka key is
//     LeaseKeyPrefix + the lease's ID, or KeepAliveKey; see LeaseKeyPrefix.
//   - The seed record, the first of a topic seeded from a backup (see
//     Seed): the Kafka key is "\x00kvs-seed", headers kvs-origin, kvs-seed
//     and kvs-seed-records, value {"Revision":R,"Records":N} for the eye.
//     The N records of the backup follow it: a grant of each lease, then a
//     restore of each key's entry with kvs-restores 0.
//
// Every instance decides alone, from a record and MaxValueBytes, whether
// it is applied, so every instance skips the same records (see
// Kafka.Skipped): a key that is not a store key, a value that is not JSON,
// a kvs header that is unknown, given twice, not a number in range, or that
// does not belong on the kind of record it is on, makes the whole record
// skipped, never applied in part.
const (
	// HeaderOrigin is the id of the kvsd instance that wrote the record.
	HeaderOrigin = "kvs-origin"
	// HeaderRequest is the request id, at that instance, of the change.
	HeaderRequest = "kvs-request"
	// HeaderIfRevision is the change's condition, on a conditional change.
	HeaderIfRevision = "kvs-if-revision"
	// HeaderVersion and HeaderCreateRevision are a set's claim: the
	// entry's Version and CreateRevision after the set, as its writer
	// expected them (CreateRevision absent: the set creates the key). On a
	// restore they describe the restored entry.
	HeaderVersion        = "kvs-version"
	HeaderCreateRevision = "kvs-create-revision"
	// HeaderRestores makes the record a restore of the key's entry right
	// after the record at that revision (see kv.Record); HeaderRevision is
	// then the restored entry's revision.
	HeaderRestores = "kvs-restores"
	HeaderRevision = "kvs-revision"
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

// The records of leases (see kv.LeaseOp). A lease's grant, its end and
// the restores of its state have the Kafka key LeaseKeyPrefix + its ID in
// decimal, so that compaction keeps each lease's last one: the grant while
// the lease lives, or what ended it. A keep-alive renews many leases in one
// record, with the Kafka key KeepAliveKey: compaction keeps only the newest,
// and a replica that replays the topic renews every lease anyway (its time
// counts from when it applied the lease's last grant or keep-alive).
//
//   - grant: value {"ID":7,"TTLMillis":30000}, header kvs-lease-op: grant.
//   - keepalive: value {"IDs":[7,8]}, header kvs-lease-op: keepalive.
//   - revoke, expire: a tombstone; an expire has kvs-lease-renewed, the
//     revision of the renewal it was proposed after (it ends the lease only
//     if that is still its last one).
//   - restore: the lease's state after a record whose claim did not hold:
//     a grant's value, or a tombstone for a lease that does not exist.
//
// Each may carry kvs-origin and kvs-request (with kvs-origin only), and no
// other kvs header. A set (and a key's restore) with a lease carries
// kvs-lease, the lease's ID.
const (
	// LeaseKeyPrefix starts the Kafka key of a lease's records: not a
	// valid store key (it starts with a NUL byte).
	LeaseKeyPrefix = "\x00kvs-lease/"
	// KeepAliveKey is the Kafka key of every keep-alive record.
	KeepAliveKey = "\x00kvs-keepalive"
	// HeaderLease is the lease a set attaches its key to.
	HeaderLease = "kvs-lease"
	// HeaderLeaseOp makes a record a lease record: grant, keepalive,
	// revoke, expire or restore.
	HeaderLeaseOp = "kvs-lease-op"
	// HeaderLeaseRenewed is the condition of an expire record.
	HeaderLeaseRenewed = "kvs-lease-renewed"
)

// The records of a topic seeded from a backup (see Seed).
const (
	// HeaderSeed marks the seed record, the first of a seeded topic: its
	// value is the record's revision, from which the revisions of the
	// topic count on (a record's revision is its offset + 1 + that
	// revision - 1 then). HeaderSeedRecords is the number of records of
	// the backup that follow it.
	HeaderSeed        = "kvs-seed"
	HeaderSeedRecords = "kvs-seed-records"
	// seedKey is the Kafka key of the seed record: not a valid store key,
	// and never written again, so that compaction keeps the record.
	seedKey = "\x00kvs-seed"
)

// maxKeepAliveIDs bounds the leases of one keep-alive record.
const maxKeepAliveIDs = 100000

// errSkip marks a record that is not a change kvs can apply.
var errSkip = errors.New("not a kvs change")

// The kvs headers, as bits of a set.
var headerBits = map[string]uint{
	HeaderOrigin:         1 << 0,
	HeaderRequest:        1 << 1,
	HeaderIfRevision:     1 << 2,
	HeaderVersion:        1 << 3,
	HeaderCreateRevision: 1 << 4,
	HeaderRestores:       1 << 5,
	HeaderRevision:       1 << 6,
	HeaderTxn:            1 << 7,
	HeaderLease:          1 << 8,
	HeaderLeaseOp:        1 << 9,
	HeaderLeaseRenewed:   1 << 10,
}

// encode returns the Kafka record of r.
func (k *Kafka) encode(r kv.Record) kafka.Record {
	if r.Txn != nil {
		return k.encodeTxnRecord(r.Txn, r.Request)
	}
	if r.LeaseOp != nil {
		return k.encodeLeaseRecord(r.LeaseOp, r.Request)
	}
	h := make([]kafka.Header, 0, 6)
	num := func(key string, n int64) {
		h = append(h, kafka.Header{Key: key, Value: strconv.AppendInt(nil, n, 10)})
	}
	h = append(h, kafka.Header{Key: HeaderOrigin, Value: []byte(k.origin)})
	if r.IsRestore {
		num(HeaderRestores, r.Restores)
	} else {
		num(HeaderRequest, int64(r.Request))
		if r.Cond {
			num(HeaderIfRevision, r.IfRevision)
		}
	}
	var value []byte
	if r.Op == kv.OpSet {
		value = r.Value
		if r.IsRestore {
			num(HeaderRevision, r.EntryRevision)
		}
		if r.CreateRevision != 0 {
			num(HeaderCreateRevision, r.CreateRevision)
		}
		num(HeaderVersion, r.Version)
		if r.Change.Lease != 0 {
			num(HeaderLease, r.Change.Lease)
		}
	}
	return kafka.Record{Key: kafka.NewBytes([]byte(r.Key)), Value: kafka.NewBytes(value), Headers: h}
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

// encodeLeaseRecord returns the Kafka record of a lease operation proposed
// with request id req (0 for a restore, which has none).
func (k *Kafka) encodeLeaseRecord(op *kv.LeaseOp, req uint64) kafka.Record {
	h := []kafka.Header{
		{Key: HeaderOrigin, Value: []byte(k.origin)},
		{Key: HeaderLeaseOp, Value: []byte(leaseKindName[op.Kind])},
	}
	if req != 0 {
		h = append(h, kafka.Header{Key: HeaderRequest, Value: strconv.AppendUint(nil, req, 10)})
	}
	key := leaseKey(op.ID)
	var value []byte
	switch op.Kind {
	case kv.LeaseGrant, kv.LeaseRestore:
		if op.TTL > 0 {
			value, _ = json.Marshal(leaseGrant{ID: op.ID, TTLMillis: int64(op.TTL / time.Millisecond)})
		}
	case kv.LeaseKeepAlive:
		key = KeepAliveKey
		value, _ = json.Marshal(leaseKeepAlive{IDs: op.IDs})
	case kv.LeaseExpire:
		h = append(h, kafka.Header{Key: HeaderLeaseRenewed, Value: strconv.AppendInt(nil, op.Renewed, 10)})
	}
	rec := kafka.Record{Key: kafka.NewBytes([]byte(key)), Headers: h}
	if value != nil {
		rec.Value = kafka.NewBytes(value)
	}
	return rec
}

// decode returns the change of a fetched record, or why it is skipped,
// counting the skipped records (Skipped).
func (k *Kafka) decode(m *kafka.Record) (kv.Record, error) {
	r, err := k.decodeRecord(m)
	if err != nil {
		k.skipped.Add(1)
	}
	return r, err
}

// decodeRecord returns the change of a fetched record. A record that breaks
// a rule that a write over HTTP is held to (the key, the value: JSON other
// than null, valid UTF-8, at most KafkaOptions.MaxValueBytes once compact),
// or carries kvs headers that kvs does not write that way (a number that
// does not parse or is out of range, a header twice, one it does not know,
// one that does not belong on that record), is refused as a whole: it is
// never applied in part. The verdict depends on the record alone (and on
// MaxValueBytes, which every instance of a cluster must share), so every
// instance skips the same records. A record written by another program
// (no kvs-origin) may carry kvs-if-revision, to be applied conditionally,
// and no other kvs header. A transaction record (key TxnKey) carries
// kvs-txn and may carry kvs-origin and kvs-request (the latter only with
// the former), and no other; its keys and values keep the same rules.
func (k *Kafka) decodeRecord(m *kafka.Record) (kv.Record, error) {
	var r kv.Record
	key, err := kafka.ReadAll(m.Key)
	if err != nil {
		return r, err
	}
	value, err := kafka.ReadAll(m.Value)
	if err != nil {
		return r, err
	}
	txn := string(key) == TxnKey // a transaction (see TxnKey)
	lease := isLeaseKey(string(key))
	r.Key = string(key)
	if !txn && !lease && !kv.ValidKey(r.Key) {
		return r, fmt.Errorf("%w: invalid key %.80q", errSkip, key)
	}
	r.Op = kv.OpDelete
	if value != nil {
		r.Op, r.Value = kv.OpSet, value
	}
	h, err := k.readHeaders(&r, m.Headers)
	if err == nil {
		switch {
		case lease:
			r, err = leaseRecord(r, h, value)
		case txn:
			if err = txnRules(h); err == nil {
				return k.decodeTxnRecord(r, value)
			}
		default:
			r, err = k.changeRecord(r, h, key, value)
		}
	}
	if err != nil {
		return kv.Record{}, fmt.Errorf("%w: key %.80q: %v", errSkip, key, err)
	}
	return r, nil
}

// kvsHeaders is what the kvs headers of a record say besides what
// readHeaders sets in its kv.Record.
type kvsHeaders struct {
	seen    uint   // the headers present, as headerBits
	leaseOp string // kvs-lease-op
	renewed int64  // kvs-lease-renewed, 0 when absent
}

// has reports whether any of the headers of bits is present.
func (h kvsHeaders) has(bits uint) bool { return h.seen&bits != 0 }

// readHeaders reads the kvs headers of a record into r, or returns the
// first that kvs does not write that way: unknown, given twice, or a
// number that does not parse or is out of range.
func (k *Kafka) readHeaders(r *kv.Record, headers []kafka.Header) (kvsHeaders, error) {
	var h kvsHeaders
	var err error
	for _, hd := range headers {
		if !strings.HasPrefix(hd.Key, "kvs-") {
			continue // another program's header
		}
		bit, ok := headerBits[hd.Key]
		switch {
		case !ok:
			return h, fmt.Errorf("unknown header %.40q (written by a newer kvs?)", hd.Key)
		case h.seen&bit != 0:
			return h, fmt.Errorf("header %s given twice", hd.Key)
		}
		h.seen |= bit
		if hd.Key == HeaderOrigin {
			r.Ours = string(hd.Value) == k.origin
			continue
		}
		if hd.Key == HeaderRequest {
			if r.Request, err = strconv.ParseUint(string(hd.Value), 10, 64); err != nil {
				return h, fmt.Errorf("header %s %.40q is not a request id", hd.Key, hd.Value)
			}
			continue
		}
		if hd.Key == HeaderTxn {
			if string(hd.Value) != "1" {
				return h, fmt.Errorf("header %s %.40q: a transaction format this kvs does not know (written by a newer kvs?)", hd.Key, hd.Value)
			}
			continue
		}
		if hd.Key == HeaderLeaseOp {
			h.leaseOp = string(hd.Value)
			continue
		}
		n, err := strconv.ParseInt(string(hd.Value), 10, 64)
		low := int64(1) // versions and revisions start at 1
		if hd.Key == HeaderIfRevision || hd.Key == HeaderRestores {
			low = 0 // 0: the key absent
		}
		if err != nil || n < low {
			return h, fmt.Errorf("header %s %.40q is not a number from %d", hd.Key, hd.Value, low)
		}
		switch hd.Key {
		case HeaderIfRevision:
			r.Cond, r.IfRevision = true, n
		case HeaderVersion:
			r.Version = n
		case HeaderCreateRevision:
			r.CreateRevision = n
		case HeaderRestores:
			r.IsRestore, r.Restores = true, n
		case HeaderRevision:
			r.EntryRevision = n
		case HeaderLease:
			if n > kv.MaxLeaseID {
				return h, fmt.Errorf("header %s %d is not a lease ID", hd.Key, n)
			}
			r.Change.Lease = n
		case HeaderLeaseRenewed:
			h.renewed = n
		}
	}
	return h, nil
}

// leaseRecord returns the lease operation of r, a record whose Kafka key
// is a lease's (see LeaseKeyPrefix) and whose kvs headers are h, or the
// rule it breaks.
func leaseRecord(r kv.Record, h kvsHeaders, value []byte) (kv.Record, error) {
	leaseHeaders := headerBits[HeaderOrigin] | headerBits[HeaderRequest] | headerBits[HeaderLeaseOp] | headerBits[HeaderLeaseRenewed]
	switch {
	case !h.has(headerBits[HeaderLeaseOp]):
		return kv.Record{}, fmt.Errorf("a lease record without %s", HeaderLeaseOp)
	case h.has(^leaseHeaders):
		return kv.Record{}, fmt.Errorf("kvs headers other than %s, %s, %s and %s on a lease record", HeaderOrigin, HeaderRequest, HeaderLeaseOp, HeaderLeaseRenewed)
	case !h.has(headerBits[HeaderOrigin]) && h.has(headerBits[HeaderRequest]):
		return kv.Record{}, fmt.Errorf("%s without %s", HeaderRequest, HeaderOrigin)
	}
	op, err := decodeLeaseRecord(r.Key, h.leaseOp, h.renewed, value)
	if err != nil {
		return kv.Record{}, err
	}
	rec := kv.Record{LeaseOp: op, Ours: r.Ours}
	if r.Ours {
		rec.Request = r.Request
	}
	return rec, nil
}

// txnRules returns the rule that the kvs headers h of a transaction record
// break, or nil.
func txnRules(h kvsHeaders) error {
	txnHeaders := headerBits[HeaderOrigin] | headerBits[HeaderRequest] | headerBits[HeaderTxn] // no lease headers
	switch {
	case !h.has(headerBits[HeaderTxn]):
		return fmt.Errorf("a transaction record without %s", HeaderTxn)
	case h.has(^txnHeaders):
		return fmt.Errorf("kvs headers other than %s, %s and %s on a transaction", HeaderOrigin, HeaderRequest, HeaderTxn)
	case !h.has(headerBits[HeaderOrigin]) && h.has(headerBits[HeaderRequest]):
		return fmt.Errorf("%s without %s", HeaderRequest, HeaderOrigin)
	}
	return nil
}

// changeRecord returns r, a change or a restore of Kafka key key whose kvs
// headers are h, or the rule it breaks.
func (k *Kafka) changeRecord(r kv.Record, h kvsHeaders, key, value []byte) (kv.Record, error) {
	kvs := h.has(headerBits[HeaderOrigin])
	entry := headerBits[HeaderVersion] | headerBits[HeaderCreateRevision] | headerBits[HeaderRevision]
	var err error
	switch {
	case h.has(headerBits[HeaderTxn]):
		err = fmt.Errorf("header %s outside a transaction", HeaderTxn)
	case h.has(headerBits[HeaderLeaseOp] | headerBits[HeaderLeaseRenewed]):
		err = fmt.Errorf("headers of a lease record on a record of key %.80q", key)
	case r.Op == kv.OpDelete && h.has(headerBits[HeaderLease]):
		err = fmt.Errorf("a delete with header %s", HeaderLease)
	case !kvs && h.has(^headerBits[HeaderIfRevision]):
		err = fmt.Errorf("kvs headers other than %s without %s", HeaderIfRevision, HeaderOrigin)
	case r.IsRestore && h.has(headerBits[HeaderRequest]|headerBits[HeaderIfRevision]):
		err = errors.New("a restore with a request or a condition")
	case !r.IsRestore && h.has(headerBits[HeaderRevision]):
		err = fmt.Errorf("header %s outside a restore", HeaderRevision)
	case r.Op == kv.OpDelete && h.has(entry):
		err = errors.New("a delete with the headers of an entry")
	case r.IsRestore && r.Op == kv.OpSet && (r.EntryRevision == 0 || r.Version == 0):
		err = errors.New("restore without its entry")
	}
	if err != nil {
		return kv.Record{}, err
	}
	if !r.Ours {
		r.Request = 0
	}
	if r.Op == kv.OpSet {
		if r.Value, err = k.checkValue(value, !kvs); err != nil {
			return kv.Record{}, err
		}
	}
	return r, nil
}

// checkValue returns value, a value that a record sets, stored compact
// when compact (written by another program), or why it breaks the rules of
// a value: JSON other than null, valid UTF-8, at most
// KafkaOptions.MaxValueBytes once compact.
func (k *Kafka) checkValue(value []byte, compact bool) ([]byte, error) {
	switch {
	case !utf8.Valid(value):
		return nil, errors.New("value is not valid UTF-8")
	case !json.Valid(value) || string(value) == "null":
		return nil, errors.New("value is not a JSON value other than null")
	}
	if compact {
		var b bytes.Buffer
		json.Compact(&b, value)
		value = b.Bytes()
	}
	if k.maxValue > 0 && len(value) > k.maxValue {
		return nil, fmt.Errorf("value of %d bytes is over the limit of %d (-max-value-bytes)", len(value), k.maxValue)
	}
	return value, nil
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

// decodeLeaseRecord returns the lease operation of a fetched record whose
// Kafka key is key (LeaseKeyPrefix + an ID, or KeepAliveKey), given op, the
// value of its kvs-lease-op header, renewed, that of kvs-lease-renewed (0
// when absent), and value. A record that breaks a rule is skipped whole.
func decodeLeaseRecord(key string, op string, renewed int64, value []byte) (*kv.LeaseOp, error) {
	kind, ok := leaseKinds[op]
	if !ok {
		return nil, fmt.Errorf("header %s %.40q: a lease operation this kvs does not know (written by a newer kvs?)", HeaderLeaseOp, op)
	}
	if (key == KeepAliveKey) != (kind == kv.LeaseKeepAlive) {
		return nil, fmt.Errorf("a %s record with the Kafka key %.60q", op, key)
	}
	if (renewed != 0) != (kind == kv.LeaseExpire) {
		return nil, fmt.Errorf("header %s on a %s record, or an expire without it", HeaderLeaseRenewed, op)
	}
	lo := &kv.LeaseOp{Kind: kind, Renewed: renewed}
	if kind == kv.LeaseKeepAlive {
		var ka leaseKeepAlive
		if err := strictJSON(value, &ka); err != nil {
			return nil, fmt.Errorf("keep-alive: %v", err)
		}
		if len(ka.IDs) == 0 || len(ka.IDs) > maxKeepAliveIDs {
			return nil, fmt.Errorf("keep-alive of %d leases: from 1 to %d", len(ka.IDs), maxKeepAliveIDs)
		}
		for _, id := range ka.IDs {
			if id < 1 || id > kv.MaxLeaseID {
				return nil, fmt.Errorf("keep-alive of lease %d: out of range", id)
			}
		}
		lo.IDs = ka.IDs
		return lo, nil
	}
	idText := strings.TrimPrefix(key, LeaseKeyPrefix)
	id, err := strconv.ParseInt(idText, 10, 64)
	if err != nil || id < 1 || id > kv.MaxLeaseID || strconv.FormatInt(id, 10) != idText {
		return nil, fmt.Errorf("Kafka key %.60q does not name a lease", key)
	}
	lo.ID = id
	switch {
	case kind == kv.LeaseGrant && value == nil:
		return nil, errors.New("a grant without its TTL")
	case (kind == kv.LeaseRevoke || kind == kv.LeaseExpire) && value != nil:
		return nil, fmt.Errorf("a %s with a value", op)
	case value != nil:
		var g leaseGrant
		if err := strictJSON(value, &g); err != nil {
			return nil, fmt.Errorf("%s: %v", op, err)
		}
		if g.ID != id || g.TTLMillis < 1 || g.TTLMillis > int64(1<<62/time.Millisecond) {
			return nil, fmt.Errorf("%s of lease %d with ID %d and TTL of %d ms", op, id, g.ID, g.TTLMillis)
		}
		lo.TTL = time.Duration(g.TTLMillis) * time.Millisecond
	}
	return lo, nil
}

// isLeaseKey reports whether a Kafka key is that of a lease record.
func isLeaseKey(key string) bool {
	return key == KeepAliveKey || strings.HasPrefix(key, LeaseKeyPrefix)
}

// leaseKey returns the Kafka key of lease id's records.
func leaseKey(id int64) string { return LeaseKeyPrefix + strconv.FormatInt(id, 10) }

// encodeSeedRecord returns the seed record of a topic seeded from a backup
// (see Seed): of revision rev, and followed by n records.
func (k *Kafka) encodeSeedRecord(rev, n int64) kafka.Record {
	h := []kafka.Header{
		{Key: HeaderOrigin, Value: []byte(k.origin)},
		{Key: HeaderSeed, Value: strconv.AppendInt(nil, rev, 10)},
		{Key: HeaderSeedRecords, Value: strconv.AppendInt(nil, n, 10)},
	}
	value := fmt.Appendf(nil, `{"Revision":%d,"Records":%d}`, rev, n)
	return kafka.Record{Key: kafka.NewBytes([]byte(seedKey)), Value: kafka.NewBytes(value), Headers: h}
}

// seedRecord returns the revision and the number of records that follow
// of a seed record, and false for any other record.
func seedRecord(m *kafka.Record) (rev, records int64, ok bool) {
	var seed, recs bool
	for _, h := range m.Headers {
		switch h.Key {
		case HeaderSeed:
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			rev, seed = n, err == nil && n >= 0
		case HeaderSeedRecords:
			n, err := strconv.ParseInt(string(h.Value), 10, 64)
			records, recs = n, err == nil && n >= 0
		}
	}
	return rev, records, seed && recs
}

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

// leaseKinds maps the values of HeaderLeaseOp to kinds, both ways.
var (
	leaseKinds    = map[string]kv.LeaseKind{"grant": kv.LeaseGrant, "keepalive": kv.LeaseKeepAlive, "revoke": kv.LeaseRevoke, "expire": kv.LeaseExpire, "restore": kv.LeaseRestore}
	leaseKindName = map[kv.LeaseKind]string{kv.LeaseGrant: "grant", kv.LeaseKeepAlive: "keepalive", kv.LeaseRevoke: "revoke", kv.LeaseExpire: "expire", kv.LeaseRestore: "restore"}
)

// leaseGrant is the value of a grant or of the restore of a lease that
// exists.
type leaseGrant struct {
	ID        int64
	TTLMillis int64
}

// leaseKeepAlive is the value of a keep-alive record.
type leaseKeepAlive struct {
	IDs []int64
}

// strictJSON decodes data into v, refusing unknown members and trailing
// data.
func strictJSON(data []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(data))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return errors.New("data after the value")
	}
	return nil
}
