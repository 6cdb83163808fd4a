package httpapi

import "encoding/json"

// The wire types below are the JSON bodies of the HTTP API, for clients
// such as kvscli. Field names are the ones on the wire.

// Entry is the answer to /get, and the current entry of a 409.
type Entry struct {
	Key            string
	Value          json.RawMessage
	Revision       int64
	CreateRevision int64
	Version        int64
}

// WriteRequest is the body of /set and /delete. IfRevision, when not nil,
// makes the change conditional on the key's current revision (0 = absent).
type WriteRequest struct {
	Key        string
	Value      json.RawMessage `json:",omitempty"`
	IfRevision *int64          `json:",omitempty"`
}

// WriteResult is the answer to a successful /set or /delete.
type WriteResult struct {
	Key      string
	Revision int64
}

// Error is the body of every error answer. Current is set only on a 409,
// where it holds the key's current entry, or JSON null if the key is absent.
type Error struct {
	Error   string `json:"error"`
	Current *Entry `json:",omitempty"`
}

// Event is one message of the change feed: Type is "set", "delete" or
// "progress". A progress event carries only a Revision: every matching
// change up to it has been sent. More is true on an event that the stream
// follows with another event of the same revision (the changes of a
// transaction share one): a revision is complete at its event without
// More.
type Event struct {
	Type     string
	Key      string          `json:",omitempty"`
	Value    json.RawMessage `json:",omitempty"`
	Revision int64
	More     bool `json:",omitempty"`
}

// RevisionHeader is the response header of /getall that holds the revision
// the listing is consistent with.
const RevisionHeader = "Kvs-Revision"

// TxnRequest is the body of POST /txn: when every condition of If holds,
// Then runs, else Else.
type TxnRequest struct {
	If   []TxnCond `json:",omitempty"`
	Then []TxnOp   `json:",omitempty"`
	Else []TxnOp   `json:",omitempty"`
}

// TxnCond is one condition of a transaction. It tests one of Revision (the
// key's revision, 0 when absent), Exists (true: present, false: absent) or
// Value (the key's value as compact JSON text; never holds for an absent
// key). Compare is "=" (empty), "!=", "<" or ">"; "<" and ">" compare
// revisions only, and Exists takes none.
type TxnCond struct {
	Key      string
	Compare  string          `json:",omitempty"`
	Revision *int64          `json:",omitempty"`
	Exists   *bool           `json:",omitempty"`
	Value    json.RawMessage `json:",omitempty"`
}

// TxnOp is one operation of a transaction: Op is "set" (with Value),
// "delete" or "get".
type TxnOp struct {
	Op    string
	Key   string
	Value json.RawMessage `json:",omitempty"`
}

// TxnResult is the answer to POST /txn. Succeeded says whether Then ran
// (else Else did); Revision is the transaction's revision, which every key
// it changed has, or, when it changed nothing, the revision its gets were
// read at. Results holds one result per operation of the list that ran.
type TxnResult struct {
	Succeeded bool
	Revision  int64
	Results   []TxnOpResult
}

// TxnOpResult is the result of one operation of a transaction. Found says
// whether a get or delete found its key (a delete of a missing key changes
// nothing); a set and a found get carry the entry (Value, Revision,
// CreateRevision, Version), after the transaction's writes; a found delete
// carries the transaction's revision.
type TxnOpResult struct {
	Op             string
	Key            string
	Found          bool
	Value          json.RawMessage `json:",omitempty"`
	Revision       int64           `json:",omitempty"`
	CreateRevision int64           `json:",omitempty"`
	Version        int64           `json:",omitempty"`
}
