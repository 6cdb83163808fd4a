package wire

import (
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"time"
)

// A lease is a time to live that keys can be attached to: granted with a
// TTL, renewed by keep-alives, and ended by a revocation or by its expiry,
// which deletes all its keys at one revision. IDs are from 1 to 2^53 - 1,
// so that JavaScript reads them exactly.

// LeaseGrantRequest is the body of POST /lease/grant. ID 0 (or omitted)
// lets the server choose the lease's ID; another one is taken if free,
// else the answer is 409.
type LeaseGrantRequest struct {
	ID  int64 `json:",omitempty"`
	TTL Duration
}

// LeaseRequest is the body of /lease/keepalive, /lease/revoke and
// /lease/ttl: the lease ID, or for a keep-alive, IDs to renew several at
// once (ID is then added to them).
type LeaseRequest struct {
	ID  int64   `json:",omitempty"`
	IDs []int64 `json:",omitempty"`
}

// Lease describes a lease: TTL is the time left until it expires, as the
// server counted it when it answered, GrantedTTL what each keep-alive
// renews it to. Keys are the keys attached to it, sorted, in the answer
// to /lease/ttl only.
type Lease struct {
	ID         int64
	TTL        Duration
	GrantedTTL Duration
	Keys       []string `json:",omitempty"`
}

// LeaseKeepAliveResult is the answer to /lease/keepalive: the leases
// renewed (each with its whole TTL left), and the IDs of those not found,
// never granted or already revoked or expired. The answer is 404 when
// none was found.
type LeaseKeepAliveResult struct {
	Leases   []Lease
	NotFound []int64 `json:",omitempty"`
}

// LeaseRevokeResult is the answer to /lease/revoke: the revision at which
// the lease's keys were deleted, all at once (the current revision when
// it had none).
type LeaseRevokeResult struct {
	ID       int64
	Revision int64
}

// LeaseList is the answer to GET /lease/list: every lease, sorted by ID,
// without its keys.
type LeaseList struct {
	Leases []Lease
}

// Duration is a length of time on the wire. It is written as Go duration
// text rounded to the millisecond ("9.5s", "1m30s", "250ms"), and read
// from such text or from a number of seconds (30, 0.5).
type Duration time.Duration

// String returns d as it is written on the wire.
func (d Duration) String() string {
	return time.Duration(d).Round(time.Millisecond).String()
}

// MarshalJSON writes d as a JSON string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return strconv.AppendQuote(nil, d.String()), nil
}

// UnmarshalJSON reads a JSON string of Go duration text, or a JSON number
// of seconds; null leaves d as it is.
func (d *Duration) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	v, err := ParseDuration(b)
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// ErrBadDuration is returned (wrapped) by ParseDuration for a value that is
// not a duration.
var ErrBadDuration = errors.New(`wire: a duration is a string such as "30s" or "1m30s", or a number of seconds`)

// ParseDuration reads a duration from JSON: a string of Go duration text,
// or a number of seconds.
func ParseDuration(raw []byte) (Duration, error) {
	if len(raw) > 0 && raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, ErrBadDuration
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, errors.Join(ErrBadDuration, err)
		}
		return Duration(d), nil
	}
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != f || f > float64(1<<62)/float64(time.Second) || f < -float64(1<<62)/float64(time.Second) {
		return 0, ErrBadDuration
	}
	return Duration(math.Round(f * float64(time.Second))), nil
}
