package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/wire"
)

const leaseUsage = "usage: kvscli [global flags] lease grant TTL [-id N] | keepalive ID... [-once] | revoke ID | ttl ID [-keys] [-json] | list [-json]"

const leaseDoc = `Manage leases: a key set with -lease ID (or -ttl) is deleted when its lease
expires (its TTL after the last keep-alive) or is revoked, together with every
other key of the lease, at one revision.

  grant TTL        grant a lease of TTL (30s, 1m30s, or a number of seconds) and
                   print its ID; -id N asks for that ID
  keepalive ID...  keep the leases alive until Ctrl-C (exit 0), renewing them
                   every third of their TTL; if one is lost (it expired or was
                   revoked), say so and exit 1. With -once, renew them once and
                   print ID<TAB>TTL for each; exit 1 if one is not found
  revoke ID        end the lease now: delete its keys; print the revision
  ttl ID           print the time left on the lease; with -keys, its keys after
                   it, one per line
  list             print every lease as ID<TAB>TTL<TAB>GRANTED-TTL lines

A lease that does not exist (never granted, revoked or expired) exits 1.`

func defineLease(fs *flag.FlagSet) func(context.Context, *cli) error {
	id := fs.Int64("id", 0, "grant: the lease's `ID` (default: the server chooses)")
	once := fs.Bool("once", false, "keepalive: renew once and print the leases' time")
	keys := fs.Bool("keys", false, "ttl: print the lease's keys too")
	asJSON := fs.Bool("json", false, "ttl, list: print the server's JSON")
	return func(ctx context.Context, c *cli) error {
		if len(c.args) == 0 {
			return usageErrorf("lease: give grant, keepalive, revoke, ttl or list\n%s", leaseUsage)
		}
		action, args := c.args[0], c.args[1:]
		set := given(fs)
		only := map[string][]string{"grant": {"id"}, "keepalive": {"once"}, "revoke": nil, "ttl": {"keys", "json"}, "list": {"json"}}
		allowed, ok := only[action]
		if !ok {
			return usageErrorf("lease: unknown action %q: give grant, keepalive, revoke, ttl or list\n%s", action, leaseUsage)
		}
		for name := range set {
			if (name == "id" || name == "once" || name == "keys" || name == "json") && !contains(allowed, name) {
				return usageErrorf("lease %s: -%s is not a flag of %s\n%s", action, name, action, leaseUsage)
			}
		}
		want := map[string]int{"grant": 1, "revoke": 1, "ttl": 1, "list": 0}
		if n, ok := want[action]; ok && len(args) != n {
			what := map[string]string{"grant": "the TTL", "revoke": "the lease ID", "ttl": "the lease ID", "list": "nothing"}[action]
			return usageErrorf("lease %s takes %s, got %d arguments\n%s", action, what, len(args), leaseUsage)
		}
		switch action {
		case "grant":
			return c.leaseGrant(ctx, args[0], *id)
		case "list":
			return c.leaseList(ctx, *asJSON)
		}
		if len(args) == 0 {
			return usageErrorf("lease %s: give the lease IDs\n%s", action, leaseUsage)
		}
		ids := make([]int64, len(args))
		for i, a := range args {
			n, err := strconv.ParseInt(a, 10, 64)
			if err != nil || n < 1 || n > 1<<53-1 {
				return usageErrorf("lease %s: %q is not a lease ID (an integer from 1 to 2^53-1)", action, a)
			}
			ids[i] = n
		}
		switch action {
		case "revoke":
			rev, err := c.kvs.Revoke(ctx, ids[0])
			if err != nil {
				return c.leaseFail(err, "lease revoke", ids[0])
			}
			return c.writeOut(strconv.AppendInt(nil, rev, 10), '\n')
		case "ttl":
			return c.leaseTTL(ctx, ids[0], *keys, *asJSON)
		}
		if *once {
			return c.keepAliveOnce(ctx, ids)
		}
		return c.keepAliveLoop(ctx, ids)
	}
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// parseTTL reads a TTL as Go duration text, or a number of seconds.
func parseTTL(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := wire.ParseDuration([]byte(s))
	return time.Duration(d), err
}

// leaseFail reports the error of a lease call.
func (c *cli) leaseFail(err error, what string, id int64) error {
	if errors.Is(err, client.ErrLeaseNotFound) {
		return &exitError{exitFailed, fmt.Sprintf("%s: lease %d not found at kvsd %s: never granted, revoked, or expired", what, id, c.addr)}
	}
	return c.fail(err, what, what != "lease ttl")
}

func (c *cli) leaseGrant(ctx context.Context, ttlArg string, id int64) error {
	ttl, err := parseTTL(ttlArg)
	if err != nil {
		return usageErrorf("lease grant: TTL %q: give a duration such as 30s or 1m30s, or a number of seconds", ttlArg)
	}
	if id < 0 || id > 1<<53-1 {
		return usageErrorf("lease grant: -id %d: a lease ID is an integer from 1 to 2^53-1", id)
	}
	l, err := c.kvs.Grant(ctx, ttl, &client.GrantOptions{ID: id})
	if errors.Is(err, client.ErrConditionFailed) {
		return &exitError{exitFailed, fmt.Sprintf("lease grant: a lease with ID %d exists at kvsd %s", id, c.addr)}
	}
	if err != nil {
		return c.fail(err, "lease grant", true)
	}
	return c.writeOut(strconv.AppendInt(nil, l.ID, 10), '\n')
}

func (c *cli) leaseTTL(ctx context.Context, id int64, keys, asJSON bool) error {
	l, err := c.kvs.TimeToLive(ctx, id, nil)
	if err != nil {
		return c.leaseFail(err, "lease ttl", id)
	}
	if asJSON {
		if !keys {
			l.Keys = nil
		}
		return c.writeOut(encodeJSON(&l))
	}
	out := []byte(l.TTL.String() + "\n")
	if keys {
		for _, k := range l.Keys {
			out = append(append(out, k...), '\n')
		}
	}
	return c.writeOut(out)
}

func (c *cli) leaseList(ctx context.Context, asJSON bool) error {
	ls, err := c.kvs.Leases(ctx, nil)
	if err != nil {
		return c.fail(err, "lease list", false)
	}
	if asJSON {
		return c.writeOut(encodeJSON(&wire.LeaseList{Leases: ls}))
	}
	var out []byte
	for _, l := range ls {
		out = fmt.Appendf(out, "%d\t%v\t%v\n", l.ID, l.TTL, l.GrantedTTL)
	}
	return c.writeOut(out)
}

// keepAliveOnce renews ids once and prints each renewed lease's time.
func (c *cli) keepAliveOnce(ctx context.Context, ids []int64) error {
	res, err := c.kvs.KeepAlive(ctx, ids...)
	if errors.Is(err, client.ErrLeaseNotFound) {
		return &exitError{exitFailed, fmt.Sprintf("lease keepalive: %s not found at kvsd %s: never granted, revoked, or expired", leaseNames(ids), c.addr)}
	}
	if err != nil {
		return c.fail(err, "lease keepalive", true)
	}
	var out []byte
	for _, l := range res.Leases {
		out = fmt.Appendf(out, "%d\t%v\n", l.ID, l.TTL)
	}
	if err := c.writeOut(out); err != nil {
		return err
	}
	if len(res.NotFound) > 0 {
		return &exitError{exitFailed, fmt.Sprintf("lease keepalive: %s not found at kvsd %s: never granted, revoked, or expired", leaseNames(res.NotFound), c.addr)}
	}
	return nil
}

// keepAliveLoop renews ids until Ctrl-C, every third of their shortest
// TTL, retrying failures every tenth of it; it ends with exit code 1 when
// one is lost.
func (c *cli) keepAliveLoop(ctx context.Context, ids []int64) error {
	res, err := c.kvs.KeepAlive(ctx, ids...)
	if err == nil && len(res.NotFound) > 0 {
		err = &client.Error{Status: 404, Message: "lease not found"}
		ids = res.NotFound
	}
	if errors.Is(err, client.ErrLeaseNotFound) {
		return &exitError{exitFailed, fmt.Sprintf("lease keepalive: %s not found at kvsd %s: never granted, revoked, or expired", leaseNames(ids), c.addr)}
	}
	if err != nil {
		return c.fail(err, "lease keepalive", true)
	}
	every := time.Duration(res.Leases[0].GrantedTTL)
	for _, l := range res.Leases {
		every = min(every, time.Duration(l.GrantedTTL))
	}
	c.interruptCode.Store(exitOK)
	fmt.Fprintf(c.stderr, "kvscli: lease keepalive: keeping %s alive at kvsd %s (Ctrl-C to stop)\n", leaseNames(ids), c.addr)
	wait := every / 3
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		res, err := c.kvs.KeepAlive(ctx, ids...)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil && len(res.NotFound) == 0:
			wait = every / 3
		case err == nil || errors.Is(err, client.ErrLeaseNotFound):
			lost := ids
			if err == nil {
				lost = res.NotFound
			}
			return &exitError{exitFailed, fmt.Sprintf("lease keepalive: %s lost at kvsd %s: expired or revoked", leaseNames(lost), c.addr)}
		default:
			fmt.Fprintf(c.stderr, "kvscli: lease keepalive: %v; retrying\n", strings.TrimPrefix(err.Error(), "client: "))
			wait = every / 10
		}
	}
}

// leaseNames names leases in a message: "lease 7", "leases 7, 8".
func leaseNames(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	if len(ids) == 1 {
		return "lease " + s[0]
	}
	return "leases " + strings.Join(s, ", ")
}
