package bus

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/kvsdb/kvs/kv"
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

// maxKeepAliveIDs bounds the leases of one keep-alive record.
const maxKeepAliveIDs = 100000

// leaseKinds maps the values of HeaderLeaseOp to kinds, both ways.
var (
	leaseKinds    = map[string]kv.LeaseKind{"grant": kv.LeaseGrant, "keepalive": kv.LeaseKeepAlive, "revoke": kv.LeaseRevoke, "expire": kv.LeaseExpire, "restore": kv.LeaseRestore}
	leaseKindName = map[kv.LeaseKind]string{kv.LeaseGrant: "grant", kv.LeaseKeepAlive: "keepalive", kv.LeaseRevoke: "revoke", kv.LeaseExpire: "expire", kv.LeaseRestore: "restore"}
)

// leaseKey returns the Kafka key of lease id's records.
func leaseKey(id int64) string { return LeaseKeyPrefix + strconv.FormatInt(id, 10) }

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

// isLeaseKey reports whether a Kafka key is that of a lease record.
func isLeaseKey(key string) bool {
	return key == KeepAliveKey || strings.HasPrefix(key, LeaseKeyPrefix)
}

// recordKeys returns the keys, in the log's bookkeeping of restores, whose
// last record r is: a key, a transaction's writes, or a lease.
func recordKeys(r *kv.Record) []string {
	switch {
	case r.Txn != nil:
		return r.Txn.WriteKeys()
	case r.LeaseOp == nil:
		return []string{r.Key}
	case r.LeaseOp.Kind == kv.LeaseKeepAlive:
		return nil
	}
	return []string{leaseKey(r.LeaseOp.ID)}
}

// restoreKey returns the key of a restore in the log's bookkeeping.
func restoreKey(r *kv.Restore) string {
	if r.Lease != 0 {
		return leaseKey(r.Lease)
	}
	return r.Key
}
