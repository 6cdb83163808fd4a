package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/kvsdb/kvs/wire"
)

// TxnRequest is a transaction: conditions (If) and two lists of
// operations; Then runs when every condition holds, else Else. The changes
// of the list that runs apply together, at one revision.
type TxnRequest = wire.TxnRequest

// TxnCond is one condition of a transaction (see wire.TxnCond).
type TxnCond = wire.TxnCond

// TxnOp is one operation of a transaction (see wire.TxnOp).
type TxnOp = wire.TxnOp

// TxnResult is the outcome of a transaction: which list ran (Succeeded),
// its revision, and one result per operation of that list.
type TxnResult = wire.TxnResult

// IfRevision is the condition that key's revision compares with rev as cmp
// says: "=" (or ""), "!=", "<" or ">". An absent key has revision 0.
func IfRevision(key, cmp string, rev int64) TxnCond {
	if cmp == "=" {
		cmp = ""
	}
	return TxnCond{Key: key, Compare: cmp, Revision: &rev}
}

// IfExists is the condition that key exists (exists true) or is absent
// (false).
func IfExists(key string, exists bool) TxnCond {
	return TxnCond{Key: key, Exists: &exists}
}

// IfValue is the condition that key's value is value, as compact JSON
// text byte for byte (never true for an absent key).
func IfValue(key string, value json.RawMessage) TxnCond {
	return TxnCond{Key: key, Value: value}
}

// SetOp sets key to value in a transaction.
func SetOp(key string, value json.RawMessage) TxnOp {
	return TxnOp{Op: wire.OpSet, Key: key, Value: value}
}

// SetLeaseOp sets key to value in a transaction, attached to lease: if the
// lease does not exist then, the whole transaction fails with an *Error
// that matches ErrLeaseNotFound, and changes nothing.
func SetLeaseOp(key string, value json.RawMessage, lease int64) TxnOp {
	return TxnOp{Op: wire.OpSet, Key: key, Value: value, Lease: lease}
}

// DeleteOp deletes key in a transaction; a missing key is no error.
func DeleteOp(key string) TxnOp { return TxnOp{Op: wire.OpDelete, Key: key} }

// GetOp reads key in a transaction, at its revision, after its writes.
func GetOp(key string) TxnOp { return TxnOp{Op: wire.OpGet, Key: key} }

// Txn runs a transaction and returns its result. Conditions that do not
// hold are no error: Else runs, and Succeeded is false. A transaction that
// the server refuses (a key written twice in one list, more operations
// than its -max-txn-ops, a bad condition) fails with an *Error that
// matches ErrInvalid or ErrTooLarge.
func (c *Client) Txn(ctx context.Context, t *TxnRequest) (*TxnResult, error) {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // values go as written, as with String
	if err := enc.Encode(t); err != nil {
		return nil, fmt.Errorf("client: txn: %w: %v", ErrInvalid, err)
	}
	a, err := c.do(ctx, request{op: "txn", method: http.MethodPost, path: wire.PathTxn, body: body.Bytes()})
	if err != nil {
		return nil, err
	}
	defer c.putBuf(a.buf)
	res := new(TxnResult)
	d := json.NewDecoder(bytes.NewReader(a.data))
	if err := d.Decode(res); err != nil || res.Results == nil {
		return nil, &ProtocolError{Op: "txn", Status: http.StatusOK, Body: start(a.data)}
	}
	return res, nil
}
