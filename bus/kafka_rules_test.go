package bus

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestKafkaRecordRules produces records straight to the topic, as another
// program (kcat) could: each one that breaks the rules of a change (the
// key, the value and its size, the kvs headers; those of each key and
// value of a transaction) is skipped whole by every instance alike,
// counted in Skipped, and the records after it are applied as usual.
// Records that keep the rules are applied, a foreign one with
// kvs-if-revision conditionally, and a foreign transaction.
func TestKafkaRecordRules(t *testing.T) {
	c := newCluster(t)
	const topic = "kvs-rules"
	small := func(o *KafkaOptions) { o.MaxValueBytes = 1000 }
	a, b := newReplica(t, c, topic, small), newReplica(t, c, topic, small)
	origin := header(HeaderOrigin, "some-other-instance")
	rec := func(k string, v []byte, h ...kafka.Header) kafka.Record {
		return kafka.Record{Key: kafka.NewBytes([]byte(k)), Value: kafka.NewBytes(v), Headers: h}
	}
	str := func(n int) []byte { return []byte(`"` + strings.Repeat("x", n-2) + `"`) }
	// tx is a transaction that sets key (JSON) to value.
	tx := func(key, value string) []byte {
		return []byte(`{"Then":[{"Op":"set","Key":` + key + `,"Value":` + value + `}]}`)
	}
	txn1 := header(HeaderTxn, "1")
	bad := []kafka.Record{
		rec("big", str(1001)),
		rec("big-foreign", []byte(`[`+strings.Repeat(`1,`, 500)+`1]`)), // 1003 bytes, compact
		rec("big-kvs", str(1001), origin, header(HeaderRequest, "1"), header(HeaderVersion, "1")),
		rec("cond-nan", []byte(`1`), header(HeaderIfRevision, "x")),
		rec("cond-negative", []byte(`1`), header(HeaderIfRevision, "-1")),
		rec("cond-empty", []byte(`1`), header(HeaderIfRevision, "")),
		rec("cond-twice", []byte(`1`), header(HeaderIfRevision, "0"), header(HeaderIfRevision, "0")),
		rec("cond-huge", []byte(`1`), header(HeaderIfRevision, "99999999999999999999")),
		rec("version-zero", []byte(`1`), origin, header(HeaderVersion, "0")),
		rec("version-nan", []byte(`1`), origin, header(HeaderVersion, "one")),
		rec("request-negative", []byte(`1`), origin, header(HeaderRequest, "-5"), header(HeaderVersion, "1")),
		rec("foreign-claim", []byte(`1`), header(HeaderVersion, "3")),
		rec("foreign-restore", nil, header(HeaderRestores, "1")),
		rec("delete-with-entry", nil, origin, header(HeaderVersion, "1")),
		rec("revision-outside-restore", []byte(`1`), origin, header(HeaderVersion, "1"), header(HeaderRevision, "1")),
		rec("restore-with-condition", []byte(`1`), origin, header(HeaderRestores, "1"), header(HeaderRevision, "1"), header(HeaderVersion, "1"), header(HeaderIfRevision, "0")),
		rec("unknown-kvs-header", []byte(`1`), origin, header(HeaderVersion, "1"), header("kvs-frobnicate", "1")),
		rec("txn-header-outside-txn", []byte(`1`), origin, header(HeaderVersion, "1"), header(HeaderTxn, "1")),
		rec("bad-utf8", []byte("\"\xff\"")),
		rec(strings.Repeat("k", 1025), []byte(`1`)),
		rec("ctl\x01", []byte(`1`)),
		// Transactions: the same rules for their keys and values, and
		// their own for headers.
		rec(TxnKey, tx(`"t-big"`, string(str(1001))), txn1),
		rec(TxnKey, tx(`"t-big-foreign"`, `[`+strings.Repeat(`1,`, 500)+`1]`), txn1),
		rec(TxnKey, []byte(`{"If":[{"Key":"t-cond","Target":"value","Value":`+string(str(1001))+`}],"Then":[{"Op":"set","Key":"t-cond","Value":1}]}`), txn1),
		rec(TxnKey, tx(`"t-utf8"`, "\"\xff\""), txn1),
		rec(TxnKey, tx(`"t-null"`, `null`), txn1),
		rec(TxnKey, tx(`"t-ctl\u0001"`, `1`), txn1),
		rec(TxnKey, tx(`"`+strings.Repeat("k", 1025)+`"`, `1`), txn1),
		rec(TxnKey, []byte(`{"Then":[{"Op":"set","Key":"t-twice","Value":1},{"Op":"delete","Key":"t-twice"}]}`), txn1),
		rec(TxnKey, []byte(`{"Then":[`), txn1),
		rec(TxnKey, nil, txn1),
		rec(TxnKey, tx(`"t-no-header"`, `1`)),
		rec(TxnKey, tx(`"t-format-2"`, `1`), header(HeaderTxn, "2")),
		rec(TxnKey, tx(`"t-header-twice"`, `1`), txn1, txn1),
		rec(TxnKey, tx(`"t-version"`, `1`), origin, header(HeaderRequest, "1"), txn1, header(HeaderVersion, "1")),
		rec(TxnKey, tx(`"t-condition-header"`, `1`), txn1, header(HeaderIfRevision, "0")),
		rec(TxnKey, tx(`"t-request-foreign"`, `1`), txn1, header(HeaderRequest, "1")),
		rec(TxnKey, tx(`"t-unknown-header"`, `1`), txn1, header("kvs-frobnicate", "1")),
		rec(TxnKey, tx(`"t-lease-header"`, `1`), txn1, header(HeaderLease, "1")),
		// Leases: a set's lease, and the records of leases.
		rec("lease-zero", []byte(`1`), origin, header(HeaderVersion, "1"), header(HeaderLease, "0")),
		rec("lease-huge", []byte(`1`), origin, header(HeaderVersion, "1"), header(HeaderLease, "9007199254740992")),
		rec("lease-foreign", []byte(`1`), header(HeaderLease, "5")),
		rec("lease-on-delete", nil, origin, header(HeaderLease, "5")),
		rec("lease-op-on-key", []byte(`1`), origin, header(HeaderVersion, "1"), header(HeaderLeaseOp, "grant")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":1000}`)),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":1000}`), header(HeaderLeaseOp, "borrow")),
		rec(LeaseKeyPrefix+"5", []byte(`{"IDs":[5]}`), header(HeaderLeaseOp, "keepalive")),
		rec(LeaseKeyPrefix+"5", nil, header(HeaderLeaseOp, "grant")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":6,"TTLMillis":1000}`), header(HeaderLeaseOp, "grant")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":0}`), header(HeaderLeaseOp, "grant")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":1000,"Keys":[]}`), header(HeaderLeaseOp, "grant")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":1000}x`), header(HeaderLeaseOp, "grant")),
		rec(LeaseKeyPrefix+"05", []byte(`{"ID":5,"TTLMillis":1000}`), header(HeaderLeaseOp, "grant")),
		rec(LeaseKeyPrefix+"0", []byte(`{"ID":0,"TTLMillis":1000}`), header(HeaderLeaseOp, "grant")),
		rec(LeaseKeyPrefix+"x", nil, header(HeaderLeaseOp, "revoke")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":1000}`), header(HeaderLeaseOp, "revoke")),
		rec(LeaseKeyPrefix+"5", nil, header(HeaderLeaseOp, "expire")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":1000}`), header(HeaderLeaseOp, "grant"), header(HeaderLeaseRenewed, "3")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":1000}`), origin, header(HeaderLeaseOp, "grant"), header(HeaderVersion, "1")),
		rec(LeaseKeyPrefix+"5", []byte(`{"ID":5,"TTLMillis":1000}`), header(HeaderLeaseOp, "grant"), header(HeaderRequest, "1")),
		rec(KeepAliveKey, []byte(`{"IDs":[]}`), header(HeaderLeaseOp, "keepalive")),
		rec(KeepAliveKey, []byte(`{"IDs":[5,0]}`), header(HeaderLeaseOp, "keepalive")),
		rec(KeepAliveKey, []byte(`{"IDs":[5]}`), header(HeaderLeaseOp, "grant")),
		rec(KeepAliveKey, nil, header(HeaderLeaseOp, "keepalive")),
	}
	good := func(i int) kafka.Record { // a fresh record: produce reads each one's bytes
		return []kafka.Record{
			rec("at-limit", str(1000)),
			rec("foreign-compacted", []byte(`[ `+strings.Repeat(`1, `, 400)+`1 ]`)), // 801 bytes once compact
			rec("conditional", []byte(`"created"`), header(HeaderIfRevision, "0")),
			rec("conditional", []byte(`"again"`), header(HeaderIfRevision, "0")), // fails: the key exists
			rec("other-headers", []byte(`2`), header("traceparent", "00-abc"), header("content-type", "application/json")),
		}[i%5]
	}
	var all []kafka.Record
	for i, r := range bad {
		all = append(all, r, good(i)) // each bad record between good ones
	}
	all = append(all,
		// Another program's lease, and a set into it with kvs's headers.
		rec(LeaseKeyPrefix+"77", []byte(`{"ID":77,"TTLMillis":3600000}`), header(HeaderLeaseOp, "grant")),
		rec("leased", []byte(`1`), origin, header(HeaderVersion, "1"), header(HeaderLease, "77")),
		rec(KeepAliveKey, []byte(`{"IDs":[77,78]}`), header(HeaderLeaseOp, "keepalive")),
		rec(TxnKey, tx(`"t-foreign"`, `[ 1, 2 ]`), txn1, header("traceparent", "00-abc")),
		rec(TxnKey, []byte(`{"If":[{"Key":"t-foreign","Target":"exists","Exists":true}],"Then":[{"Op":"set","Key":"t-at-limit","Value":`+string(str(1000))+`}]}`),
			origin, header(HeaderRequest, "7"), txn1))
	produce(t, c, topic, all...)
	settled(t, topic, c, a, b)

	for _, r := range []*replica{a, b} {
		if got := r.k.Skipped(); got != int64(len(bad)) {
			t.Errorf("skipped %d records, want %d", got, len(bad))
		}
		got := state(r.s)
		for k, e := range got {
			if !slices.Contains([]string{"at-limit", "foreign-compacted", "conditional", "other-headers", "t-foreign", "t-at-limit", "leased"}, k) {
				t.Errorf("%.40q: applied as %+v, want it skipped", k, e)
			}
		}
		if e := got["leased"]; e.Lease != 77 {
			t.Errorf("leased: got %+v, want it attached to another program's lease 77", e)
		}
		if ls := r.s.Leases(); len(ls) != 1 || ls[0].ID != 77 || ls[0].TTL != time.Hour {
			t.Errorf("leases: got %+v, want only 77, of an hour", ls)
		}
		for _, k := range []string{"at-limit", "foreign-compacted", "other-headers", "t-foreign", "t-at-limit"} {
			if _, ok := got[k]; !ok {
				t.Errorf("%s: not applied", k)
			}
		}
		if e := got["conditional"]; string(e.Value) != `"created"` || e.Version != 1 || e.Revision != 6 {
			t.Errorf("conditional: got %+v, want the first (only if absent) and not the second", e)
		}
		if e := got["t-foreign"]; string(e.Value) != `[1,2]` {
			t.Errorf("t-foreign: got %+v, want the foreign transaction's value, compact", e)
		}
		if e := got["foreign-compacted"]; strings.Contains(string(e.Value), " ") {
			t.Errorf("foreign value stored as %.40q, want it compact", e.Value)
		}
	}
	if d := diff(state(a.s), state(b.s)); d != "" || a.s.Rev() != b.s.Rev() {
		t.Fatalf("the instances differ (revisions %d and %d):\n%s", a.s.Rev(), b.s.Rev(), d)
	}
}

// TestKafkaTxnRecordDecodes: a transaction record decodes to a record that
// is the transaction alone (its Change zero), whoever wrote it, with the
// request id of this instance's own only.
func TestKafkaTxnRecordDecodes(t *testing.T) {
	k := &Kafka{origin: "me", maxValue: 1000}
	value := []byte(`{"Then":[{"Op":"set","Key":"a","Value":1}]}`)
	for _, tt := range []struct {
		name    string
		headers []kafka.Header
		ours    bool
		request uint64
	}{
		{"ours", []kafka.Header{header(HeaderOrigin, "me"), header(HeaderRequest, "7"), header(HeaderTxn, "1")}, true, 7},
		{"another instance's", []kafka.Header{header(HeaderOrigin, "other"), header(HeaderRequest, "7"), header(HeaderTxn, "1")}, false, 0},
		{"another program's", []kafka.Header{header(HeaderTxn, "1")}, false, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := k.decodeRecord(&kafka.Record{Key: kafka.NewBytes([]byte(TxnKey)), Value: kafka.NewBytes(value), Headers: tt.headers})
			if err != nil {
				t.Fatal(err)
			}
			if r.Txn == nil || len(r.Txn.Then) != 1 || r.Change.Key != "" || r.Change.Value != nil || r.Change.Op != 0 {
				t.Fatalf("got %+v, want the transaction and a zero Change", r)
			}
			if r.Ours != tt.ours || r.Request != tt.request {
				t.Fatalf("Ours %v, Request %d; want %v, %d", r.Ours, r.Request, tt.ours, tt.request)
			}
		})
	}
}
