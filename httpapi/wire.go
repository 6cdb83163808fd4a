package httpapi

import "github.com/kvsdb/kvs/wire"

// The JSON bodies of the API are defined in package wire, which clients
// import without linking the server. The names below are the same types,
// kept so that code written against httpapi keeps compiling; new code uses
// package wire.

// Entry is wire.Entry.
type Entry = wire.Entry

// WriteRequest is wire.WriteRequest.
type WriteRequest = wire.WriteRequest

// WriteResult is wire.WriteResult.
type WriteResult = wire.WriteResult

// Error is wire.Error.
type Error = wire.Error

// Event is wire.Event.
type Event = wire.Event

// RevisionHeader is wire.RevisionHeader: the revision a listing is
// consistent with.
const RevisionHeader = wire.RevisionHeader

// TxnRequest is wire.TxnRequest.
type TxnRequest = wire.TxnRequest

// TxnCond is wire.TxnCond.
type TxnCond = wire.TxnCond

// TxnOp is wire.TxnOp.
type TxnOp = wire.TxnOp

// TxnResult is wire.TxnResult.
type TxnResult = wire.TxnResult

// TxnOpResult is wire.TxnOpResult.
type TxnOpResult = wire.TxnOpResult
