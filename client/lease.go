package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/kvsdb/kvs/wire"
)

// Lease describes a lease: its ID, the time left until it expires (TTL,
// as the server counted it when it answered), the TTL each keep-alive
// renews it to (GrantedTTL), and, from TimeToLive, its keys.
type Lease = wire.Lease

// KeepAliveResult is the answer to KeepAlive: the leases renewed, and the
// IDs of those not found (expired or revoked).
type KeepAliveResult = wire.LeaseKeepAliveResult

// GrantOptions are the options of Grant. Nil means the defaults.
type GrantOptions struct {
	// ID asks for the lease to have this ID (1 to 2^53 - 1); Grant fails
	// with an *Error that matches ErrConditionFailed if a lease has it.
	// Zero, the default, lets the server choose.
	ID int64
}

// Grant grants a lease with the time to live ttl (a whole number of
// milliseconds, at most the server's -max-lease-ttl) and returns it. Keys
// set with WriteOptions.Lease are deleted, all at once, when it expires
// (ttl after its last keep-alive) or is revoked.
func (c *Client) Grant(ctx context.Context, ttl time.Duration, opts *GrantOptions) (Lease, error) {
	req := wire.LeaseGrantRequest{TTL: wire.Duration(ttl)}
	if opts != nil {
		req.ID = opts.ID
	}
	var l Lease
	err := c.leaseCall(ctx, "lease grant", wire.PathLeaseGrant, req, &l)
	if err == nil && l.ID <= 0 {
		return Lease{}, &ProtocolError{Op: "lease grant", Status: http.StatusOK, Body: fmt.Sprintf("%+v", l)}
	}
	return l, err
}

// KeepAlive renews the leases of ids with one request: each has its whole
// TTL left from when the server received it. The result lists the leases
// renewed and those not found; when none is found, KeepAlive fails with an
// *Error that matches ErrLeaseNotFound.
func (c *Client) KeepAlive(ctx context.Context, ids ...int64) (*KeepAliveResult, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("client: lease keepalive: %w: no lease IDs", ErrInvalid)
	}
	res := new(KeepAliveResult)
	if err := c.leaseCall(ctx, "lease keepalive", wire.PathLeaseKeepAlive, wire.LeaseRequest{IDs: ids}, res); err != nil {
		return nil, err
	}
	return res, nil
}

// Revoke ends lease id: its keys are deleted, all at the revision it
// returns (the current one when it had none). It fails with an *Error that
// matches ErrLeaseNotFound when the lease does not exist (expired or
// revoked already).
func (c *Client) Revoke(ctx context.Context, id int64) (int64, error) {
	var res wire.LeaseRevokeResult
	if err := c.leaseCall(ctx, "lease revoke", wire.PathLeaseRevoke, wire.LeaseRequest{ID: id}, &res); err != nil {
		return 0, err
	}
	return res.Revision, nil
}

// TimeToLive returns lease id with the time left on it and its keys, or an
// *Error that matches ErrLeaseNotFound.
func (c *Client) TimeToLive(ctx context.Context, id int64, opts *ReadOptions) (Lease, error) {
	q := joinQuery(opts.query(), wire.ParamID+"="+strconv.FormatInt(id, 10))
	a, err := c.do(ctx, request{op: "lease ttl", method: http.MethodGet, path: wire.PathLeaseTTL, query: q})
	if err != nil {
		return Lease{}, err
	}
	defer c.putBuf(a.buf)
	var l Lease
	if err := json.Unmarshal(a.data, &l); err != nil || l.ID != id {
		return Lease{}, &ProtocolError{Op: "lease ttl", Status: http.StatusOK, Body: start(a.data)}
	}
	return l, nil
}

// Leases returns every lease, sorted by ID, without their keys.
func (c *Client) Leases(ctx context.Context, opts *ReadOptions) ([]Lease, error) {
	a, err := c.do(ctx, request{op: "lease list", method: http.MethodGet, path: wire.PathLeaseList, query: opts.query()})
	if err != nil {
		return nil, err
	}
	defer c.putBuf(a.buf)
	var l wire.LeaseList
	if err := json.Unmarshal(a.data, &l); err != nil || l.Leases == nil {
		return nil, &ProtocolError{Op: "lease list", Status: http.StatusOK, Body: start(a.data)}
	}
	return l.Leases, nil
}

// leaseCall posts req to path and decodes the answer into out.
func (c *Client) leaseCall(ctx context.Context, op, path string, req, out any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("client: %s: %w: %v", op, ErrInvalid, err)
	}
	a, err := c.do(ctx, request{op: op, method: http.MethodPost, path: path, body: body})
	if err != nil {
		return err
	}
	defer c.putBuf(a.buf)
	if err := json.Unmarshal(a.data, out); err != nil {
		return &ProtocolError{Op: op, Status: http.StatusOK, Body: start(a.data)}
	}
	return nil
}

// Keeper keeps a lease alive in the background (see Client.Keep).
type Keeper struct {
	id   int64
	done chan struct{}

	mu      sync.Mutex
	err     error
	renewed time.Time // when the last keep-alive that renewed it was sent
	ttl     time.Duration
}

// Keep keeps lease id alive until ctx ends: it renews it at once, then
// every third of its TTL, and retries a failed renewal (the server
// unreachable or unavailable) every tenth of it. It stops when ctx ends
// (Err is then the context's error) or when the server answers that the
// lease is not found: it expired, because no renewal got through within
// its TTL, or was revoked (Err then matches ErrLeaseNotFound). Ending ctx
// does not revoke the lease: it expires a TTL after its last renewal,
// unless the caller revokes it.
func (c *Client) Keep(ctx context.Context, id int64) *Keeper {
	k := &Keeper{id: id, done: make(chan struct{})}
	go k.run(ctx, c)
	return k
}

func (k *Keeper) run(ctx context.Context, c *Client) {
	defer close(k.done)
	wait := time.Duration(0)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		t.Reset(wait)
		select {
		case <-ctx.Done():
			k.stop(ctx.Err())
			return
		case <-t.C:
		}
		sent := time.Now()
		res, err := c.KeepAlive(ctx, k.id)
		switch {
		case err == nil && len(res.Leases) == 1 && res.Leases[0].ID == k.id:
			ttl := time.Duration(res.Leases[0].GrantedTTL)
			k.mu.Lock()
			k.renewed, k.ttl = sent, ttl
			k.mu.Unlock()
			wait = max(ttl/3, time.Millisecond)
		case errors.Is(err, ErrLeaseNotFound):
			k.stop(err)
			return
		case ctx.Err() != nil:
			k.stop(ctx.Err())
			return
		case err != nil && !retryable(err):
			k.stop(err)
			return
		default:
			k.mu.Lock()
			wait = max(k.ttl/10, 50*time.Millisecond)
			k.mu.Unlock()
		}
	}
}

// retryable reports whether a renewal that failed with err may succeed if
// sent again.
func retryable(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	return errors.Is(err, ErrUnreachable)
}

func (k *Keeper) stop(err error) {
	k.mu.Lock()
	k.err = err
	k.mu.Unlock()
}

// Done returns a channel that is closed when the Keeper stops.
func (k *Keeper) Done() <-chan struct{} { return k.done }

// Err returns nil while the Keeper runs, and why it stopped once Done is
// closed.
func (k *Keeper) Err() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.err
}

// Renewed returns when the last renewal that the server acknowledged was
// sent (the zero time before the first): the lease lives at least its TTL
// from then.
func (k *Keeper) Renewed() time.Time {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.renewed
}
