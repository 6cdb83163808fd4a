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
// change up to it has been sent.
type Event struct {
	Type     string
	Key      string          `json:",omitempty"`
	Value    json.RawMessage `json:",omitempty"`
	Revision int64
}

// RevisionHeader is the response header of /getall that holds the revision
// the listing is consistent with.
const RevisionHeader = "Kvs-Revision"
