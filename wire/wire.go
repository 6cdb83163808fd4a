// Package wire defines the kvs protocol as it appears on the wire: the JSON
// bodies of the HTTP API and the events of the change feed, the header and
// parameter names, the WebSocket close codes and the close reasons, and the
// JSON string encoding both sides use (AppendString). kvsd
// (package httpapi), the Go client (package client), kvscli and kvsbench all
// speak through it. It also defines the format of backups (GET /snapshot):
// BackupWriter writes one, BackupReader reads and checks one. It imports
// only the standard library, so that a client program does not link the
// server.
//
// Field names are the JSON member names. The server matches member and
// parameter names case-insensitively and ignores unknown members; it writes
// them as spelled here. Values are JSON text, stored and returned byte for
// byte, so they are json.RawMessage here.
package wire

import (
	"encoding/json"
	"strconv"
	"strings"
)

// Routes of the HTTP API.
const (
	PathGet       = "/get"       // POST {"Key"}, or GET ?key=K: an Entry
	PathSet       = "/set"       // POST or PUT a WriteRequest: a WriteResult
	PathDelete    = "/delete"    // POST {"Key"}, or DELETE ?key=K: a WriteResult
	PathTxn       = "/txn"       // POST a TxnRequest: a TxnResult
	PathList      = "/list"      // GET ?prefix=P, or POST a ListRequest: a List
	PathGetAll    = "/getall"    // GET ?prefix=P: a flat object {"key": value, ...}
	PathSubscribe = "/subscribe" // the change feed over WebSocket: Events
	PathHealthz   = "/healthz"   // 200 while the process serves
	PathReadyz    = "/readyz"    // 200 when it serves current data, else 503 with an Error
	PathSnapshot  = "/snapshot"  // GET: a backup of the whole store (BackupWriter's format); HEAD: the revision alone

	PathLeaseGrant     = "/lease/grant"     // POST a LeaseGrantRequest: a Lease
	PathLeaseKeepAlive = "/lease/keepalive" // POST a LeaseRequest (ID or IDs): a LeaseKeepAliveResult
	PathLeaseRevoke    = "/lease/revoke"    // POST a LeaseRequest: a LeaseRevokeResult
	PathLeaseTTL       = "/lease/ttl"       // POST a LeaseRequest, or GET ?id=N: a Lease with its Keys
	PathLeaseList      = "/lease/list"      // GET: a LeaseList
)

// RevisionHeader is the response header that gives the revision a listing
// (/list, /getall) is consistent with: it holds exactly the changes up to
// and including that revision. HEAD /list gives the current revision alone.
const RevisionHeader = "Kvs-Revision"

// Query parameters.
const (
	ParamKey         = "key"         // /get, /delete, /subscribe: one key
	ParamPrefix      = "prefix"      // /list, /getall, /subscribe: keys that start with it
	ParamFrom        = "from"        // /subscribe: the first revision to deliver
	ParamConsistency = "consistency" // reads: ConsistencyLocal to read the instance's own state
	ParamID          = "id"          // /lease/ttl: the lease
)

// ConsistencyLocal is the value of ParamConsistency that lets a read be
// answered from the instance's own state, which in Kafka mode may be behind
// writes already acknowledged by other instances. Reads are linearizable
// without it.
const ConsistencyLocal = "local"

// Entry is a key's current state: the answer to /get, an element of a
// List, and the Current entry of a 409.
type Entry struct {
	Key   string
	Value json.RawMessage // the value's compact JSON text, never null
	// Revision is the revision of the key's last change.
	Revision int64
	// CreateRevision is the revision of the change that created the key.
	CreateRevision int64
	// Version is 1 when the key is created and grows by 1 with each set.
	Version int64
	// Lease is the lease the key is attached to (omitted: none): the key
	// is deleted when the lease expires or is revoked. TTL is the time
	// left until it expires, as the server counted it when it answered.
	Lease int64    `json:",omitempty"`
	TTL   Duration `json:",omitempty"`
}

// KeyRequest is the body of POST /get and of an unconditional POST /delete.
type KeyRequest struct {
	Key string
}

// WriteRequest is the body of /set and /delete. Value is required by /set
// and ignored by /delete. IfRevision, when not nil, makes the change
// conditional on the key's current revision (0: only if the key is absent);
// a failed condition is a 409 with the current entry. On /set, Lease
// attaches the key to a lease (404 if it does not exist; a set without it
// detaches the key from its lease), and TTL, instead, grants the key a
// lease of its own with that TTL.
type WriteRequest struct {
	Key        string
	Value      json.RawMessage `json:",omitempty"`
	IfRevision *int64          `json:",omitempty"`
	Lease      int64           `json:",omitempty"`
	TTL        Duration        `json:",omitempty"`
}

// WriteResult is the answer to a successful /set or /delete: the revision
// of the change, and on a set with a lease (or a TTL) the lease.
type WriteResult struct {
	Key      string
	Revision int64
	Lease    int64 `json:",omitempty"`
}

// TxnRequest is the body of POST /txn, a transaction: when every condition
// of If holds (or there is none), Then runs, else Else. The changes of the
// list that runs apply together, at one revision. Each list holds at most
// the server's -max-txn-ops operations (128), as many as If may hold, and
// may change a key once.
type TxnRequest struct {
	If   []TxnCond `json:",omitempty"`
	Then []TxnOp   `json:",omitempty"`
	Else []TxnOp   `json:",omitempty"`
}

// TxnCond is one condition of a transaction. It tests one of Revision (the
// key's revision, 0 when the key is absent), Exists (true: present, false:
// absent) or Value (the key's value, as compact JSON text byte for byte;
// never holds for an absent key). Compare is "=" (empty), "!=", "<" or ">";
// "<" and ">" compare revisions only, and Exists takes none.
type TxnCond struct {
	Key      string
	Compare  string          `json:",omitempty"`
	Revision *int64          `json:",omitempty"`
	Exists   *bool           `json:",omitempty"`
	Value    json.RawMessage `json:",omitempty"`
}

// The operations of a transaction (TxnOp.Op).
const (
	OpSet    = "set"
	OpDelete = "delete"
	OpGet    = "get"
)

// TxnOp is one operation of a transaction: OpSet (with Value), OpDelete (a
// missing key is no error) or OpGet (read at the transaction's revision,
// after its writes).
//
// A set may attach its key to a Lease: if the lease does not exist when the
// transaction runs, the whole transaction fails with 404 and changes
// nothing.
type TxnOp struct {
	Op    string
	Key   string
	Value json.RawMessage `json:",omitempty"`
	Lease int64           `json:",omitempty"`
}

// TxnResult is the answer to POST /txn (also in the RevisionHeader).
// Succeeded says whether Then ran (else Else did). Revision is the
// transaction's revision, which every key it changed has; when it changed
// nothing it is the revision its gets read at (with the Kafka backend,
// every transaction is a record and has one). Results holds one result per
// operation of the list that ran, in order.
type TxnResult struct {
	Succeeded bool
	Revision  int64
	Results   []TxnOpResult
}

// TxnOpResult is the result of one operation of a transaction. Found says
// whether a get or delete found its key (a delete of a missing key changes
// nothing); a set and a found get carry the entry after the transaction
// (Value, Revision, CreateRevision, Version); a found delete carries the
// transaction's revision.
type TxnOpResult struct {
	Op             string
	Key            string
	Found          bool
	Value          json.RawMessage `json:",omitempty"`
	Revision       int64           `json:",omitempty"`
	CreateRevision int64           `json:",omitempty"`
	Version        int64           `json:",omitempty"`
	Lease          int64           `json:",omitempty"`
	TTL            Duration        `json:",omitempty"`
}

// ListRequest is the body of POST /list. An empty Prefix lists every key.
type ListRequest struct {
	Prefix string `json:",omitempty"`
}

// List is the answer to /list: the entries whose keys start with the
// prefix, sorted by key (by bytes), exactly as they were at Revision (also
// in the RevisionHeader). Subscribing from Revision + 1 continues the
// listing without a gap.
type List struct {
	Revision int64
	Entries  []Entry
}

// Error is the body of every error answer. Current is set only on a 409
// (condition failed), where it holds the key's current entry, or JSON null
// when the key is absent.
type Error struct {
	Error   string `json:"error"`
	Current *Entry `json:",omitempty"`
}

// Types of Event.
const (
	EventSet      = "set"
	EventDelete   = "delete"
	EventProgress = "progress"
)

// Event is one message of the change feed. A set event carries the new
// value; a delete has no Value; a progress event has only a Revision and
// says that every matching change up to it has been sent.
type Event struct {
	Type  string
	Key   string          `json:",omitempty"`
	Value json.RawMessage `json:",omitempty"`
	// Revision is the revision of the change (every event of a
	// transaction has the same one), or of a progress event the revision
	// up to which the subscriber has been sent everything.
	Revision int64
	// More is true when another event of the same revision follows in
	// the feed: a revision is complete at its event without More. The
	// server closes a feed only between revisions.
	More bool `json:",omitempty"`
	// Reason says why a change happened when a client did not ask for it
	// directly: ReasonExpired or ReasonRevoked on the delete of a lease's
	// key. Empty for ordinary changes.
	Reason string `json:",omitempty"`
	// Lease is, on a set, the lease the key is attached to (omitted:
	// none); on a delete with a Reason, the lease that ended.
	Lease int64 `json:",omitempty"`
}

// The reasons of an Event.
const (
	ReasonExpired = "expired" // the key's lease expired
	ReasonRevoked = "revoked" // the key's lease was revoked
)

// Close codes of the change feed, besides the WebSocket protocol's own.
const (
	// CloseGoingAway (1001) ends every subscription when the server shuts
	// down; the reason says where to resume.
	CloseGoingAway = 1001
	// CloseSlowConsumer (4408) ends a subscription that fell behind by
	// more than its queue; the reason says where to resume.
	CloseSlowConsumer = 4408
	// CloseCompacted (4410) ends a subscription that could only go on with
	// a gap: the next revision it needs is no longer retained. The reason
	// names the oldest retained revision.
	CloseCompacted = 4410
	// CloseSessionEnded (4401) ends a subscription that a login session
	// (the cookie of POST /login, as browsers use) authorized, when the
	// session expires or POST /logout ends it; the reason says where to
	// resume once logged in again. Subscriptions made with the token
	// itself never get it.
	CloseSessionEnded = 4401
)

// resumeMarker precedes the revision in a close reason that says where to
// resume.
const resumeMarker = ", resume from "

// ResumeReason returns the close reason "<why>, resume from <next>".
func ResumeReason(why string, next int64) string {
	return why + resumeMarker + strconv.FormatInt(next, 10)
}

// ParseResume returns the revision in a close reason made by ResumeReason,
// and false if reason holds none.
func ParseResume(reason string) (int64, bool) {
	i := strings.LastIndex(reason, resumeMarker)
	if i < 0 {
		return 0, false
	}
	r, err := strconv.ParseInt(reason[i+len(resumeMarker):], 10, 64)
	return r, err == nil && r > 0
}

// CompactedReason returns the 4410 close reason: "history compacted, oldest
// retained revision <oldest>".
func CompactedReason(oldest int64) string {
	return "history compacted, oldest retained revision " + strconv.FormatInt(oldest, 10)
}

// ParseOldest returns the oldest retained revision that a 4410 close reason
// or a 410 error message names (the first number after the word "oldest"),
// and false if it names none.
func ParseOldest(msg string) (int64, bool) {
	i := strings.Index(msg, "oldest")
	if i < 0 {
		return 0, false
	}
	s := msg[i:]
	start := strings.IndexAny(s, "0123456789")
	if start < 0 {
		return 0, false
	}
	end := start
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	r, err := strconv.ParseInt(s[start:end], 10, 64)
	return r, err == nil
}
