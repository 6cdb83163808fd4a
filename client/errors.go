package client

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/kvsdb/kvs/wire"
)

// Errors that callers test with errors.Is. Every error a call returns for
// an answer of kvsd is an *Error, for no answer an *UnreachableError, and
// for an answer that is not from kvsd a *ProtocolError; each matches the
// sentinels below that describe it.
var (
	// ErrNotFound: the key does not exist (404).
	ErrNotFound = errors.New("client: key not found")
	// ErrLeaseNotFound: the lease does not exist (404): never granted,
	// revoked, or expired.
	ErrLeaseNotFound = errors.New("client: lease not found")
	// ErrConditionFailed: an IfRevision condition did not hold (409). The
	// *Error's Current holds the key's entry then, or nil if it is absent.
	ErrConditionFailed = errors.New("client: condition failed")
	// ErrUnauthorized: the token is missing or wrong (401), or the request
	// was refused (403).
	ErrUnauthorized = errors.New("client: unauthorized")
	// ErrTooLarge: the request is over the server's limit (413): a value
	// over -max-value-bytes, or a body over -max-body-bytes.
	ErrTooLarge = errors.New("client: request too large")
	// ErrInvalid: the request is malformed (400), for example an invalid
	// key or a value that is not JSON; the client reports some of these
	// itself, before sending anything.
	ErrInvalid = errors.New("client: invalid request")
	// ErrUnavailable: the server cannot serve the request now (503): a
	// log that cannot be written, a Kafka broker out of reach, a server
	// not ready or shutting down. Retrying later may succeed.
	ErrUnavailable = errors.New("client: server unavailable")
	// ErrUnreachable: no answer came: the connection failed, or
	// Options.Timeout passed first.
	ErrUnreachable = errors.New("client: server unreachable")
	// ErrCompacted: the server no longer has the revision a watch must
	// start or resume from (410, or close code 4410). List again, and
	// watch from the listing's revision + 1 (what WatchOptions.Relist
	// and Mirror do).
	ErrCompacted = errors.New("client: history compacted")
	// ErrProtocol: the answer is not one that kvsd gives: the address
	// may point at another server.
	ErrProtocol = errors.New("client: not a kvs answer")
)

// Error is an error answer from kvsd: its HTTP status and message.
type Error struct {
	// Op names the call ("get", "set", ...) and Key its key, if any.
	Op, Key string
	// Status is the HTTP status code.
	Status int
	// Message is the server's error message.
	Message string
	// Current is, on a 409 (ErrConditionFailed), the key's entry that the
	// condition was checked against, or nil if the key is absent.
	Current *Entry
}

func (e *Error) Error() string {
	s := "client: " + e.Op
	if e.Key != "" {
		s += " " + strconv.Quote(e.Key)
	}
	return s + ": " + strconv.Itoa(e.Status) + " " + e.Message
}

// Is reports whether the status of e is the one target stands for.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Status == http.StatusNotFound && !e.leaseNotFound()
	case ErrLeaseNotFound:
		return e.Status == http.StatusNotFound && e.leaseNotFound()
	case ErrConditionFailed:
		return e.Status == http.StatusConflict
	case ErrUnauthorized:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrTooLarge:
		return e.Status == http.StatusRequestEntityTooLarge
	case ErrInvalid:
		return e.Status == http.StatusBadRequest
	case ErrUnavailable:
		return e.Status == http.StatusServiceUnavailable
	case ErrCompacted:
		return e.Status == http.StatusGone
	}
	return false
}

// leaseNotFound reports whether e says that a lease was not found.
func (e *Error) leaseNotFound() bool { return strings.HasPrefix(e.Message, "lease not found") }

// Temporary reports whether the same request may succeed later: the
// server was unavailable (503), overloaded (429), or timed out (408).
func (e *Error) Temporary() bool {
	return e.Status >= 500 || e.Status == http.StatusTooManyRequests || e.Status == http.StatusRequestTimeout
}

// UnreachableError is a request that got no answer. It matches
// ErrUnreachable, and unwraps to the cause (a *net.OpError, an x509 error,
// context.DeadlineExceeded when Options.Timeout passed, ...).
type UnreachableError struct {
	Op string
	// Addr is the server address as given to New.
	Addr string
	Err  error
	// Timeout is true when Options.Timeout passed before an answer came.
	Timeout bool
}

func (e *UnreachableError) Error() string {
	if e.Timeout {
		return fmt.Sprintf("client: %s: no answer from %s within the timeout: %v", e.Op, e.Addr, e.Err)
	}
	return fmt.Sprintf("client: %s: cannot reach %s: %v", e.Op, e.Addr, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// Is reports whether target is ErrUnreachable.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// ProtocolError is an answer that kvsd would not give: not JSON, or not
// the JSON a call expects. It matches ErrProtocol.
type ProtocolError struct {
	Op string
	// Status is the HTTP status of the answer.
	Status int
	// Body is the start of the answer's body.
	Body string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("client: %s: the server answered %d %q, not as kvsd does", e.Op, e.Status, e.Body)
}

// Is reports whether target is ErrProtocol.
func (e *ProtocolError) Is(target error) bool { return target == ErrProtocol }

// CompactedError says that the server no longer has the revision a watch
// needs. It matches ErrCompacted.
type CompactedError struct {
	// Next is the revision the watch needed.
	Next int64
	// Oldest is the oldest revision the server still has, 0 if unknown.
	Oldest int64
	// Message is the server's message or close reason.
	Message string
}

func (e *CompactedError) Error() string {
	s := "client: history compacted: the server no longer has revision " + strconv.FormatInt(e.Next, 10)
	if e.Oldest > 0 {
		s += " (the oldest it has is " + strconv.FormatInt(e.Oldest, 10) + ")"
	}
	return s
}

// Is reports whether target is ErrCompacted.
func (e *CompactedError) Is(target error) bool { return target == ErrCompacted }

// CloseError is how the server ended a subscription: the WebSocket close
// code (wire.CloseGoingAway on shutdown, wire.CloseSlowConsumer, ...) and
// reason. A 4410 close is a *CompactedError instead.
type CloseError struct {
	Code   int
	Reason string
	// Resume is the revision to resume from that the reason gives, 0 if
	// none.
	Resume int64
}

func (e *CloseError) Error() string {
	return "client: the server closed the feed: " + strconv.Itoa(e.Code) + " " + e.Reason
}

// newCloseError returns the error for a close with code and reason, at a
// subscription whose next revision was next.
func newCloseError(code int, reason string, next int64) error {
	if code == wire.CloseCompacted {
		oldest, _ := wire.ParseOldest(reason)
		return &CompactedError{Next: next, Oldest: oldest, Message: reason}
	}
	r, _ := wire.ParseResume(reason)
	return &CloseError{Code: code, Reason: reason, Resume: r}
}
