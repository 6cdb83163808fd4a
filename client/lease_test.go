package client_test

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/wire"
)

// leaseClient returns a client of a new server.
func leaseClient(t *testing.T) *client.Client {
	t.Helper()
	srv := newServer(t, bus.Options{}, httpapi.Options{})
	c, err := client.New(srv.Addr, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestLeases runs the lease calls against a server: grant, set with a
// lease or a TTL, get and list showing the lease and its time, keep-alive
// of several leases in one call, time to live with the keys, the leases,
// revoke, a transaction's set with a lease, and the errors.
func TestLeases(t *testing.T) {
	t.Parallel()
	c := leaseClient(t)
	ctx := t.Context()
	l, err := c.Grant(ctx, time.Minute, nil)
	if err != nil || l.ID <= 0 || l.GrantedTTL != wire.Duration(time.Minute) {
		t.Fatalf("grant: got %+v, %v", l, err)
	}
	mine, err := c.Grant(ctx, time.Hour, &client.GrantOptions{ID: 42})
	if err != nil || mine.ID != 42 {
		t.Fatalf("grant of ID 42: got %+v, %v", mine, err)
	}
	if _, err := c.Grant(ctx, time.Hour, &client.GrantOptions{ID: 42}); !errors.Is(err, client.ErrConditionFailed) {
		t.Fatalf("grant of an ID in use: got %v, want ErrConditionFailed", err)
	}
	if _, err := c.Set(ctx, "a", client.String("x"), &client.WriteOptions{Lease: l.ID}); err != nil {
		t.Fatal(err)
	}
	w, err := c.Write(ctx, "b", client.String("y"), &client.WriteOptions{TTL: 30 * time.Second})
	if err != nil || w.Lease == 0 || w.Lease == l.ID {
		t.Fatalf("set with a TTL: got %+v, %v, want a lease of its own", w, err)
	}
	e, err := c.Get(ctx, "a", nil)
	if err != nil || e.Lease != l.ID || e.TTL <= 0 || time.Duration(e.TTL) > time.Minute {
		t.Fatalf("get: got %+v, %v, want lease %d with time left", e, err, l.ID)
	}
	list, err := c.List(ctx, "", nil)
	if err != nil || len(list.Entries) != 2 || list.Entries[1].Lease != w.Lease || list.Entries[1].TTL <= 0 {
		t.Fatalf("list: got %+v, %v", list, err)
	}
	ka, err := c.KeepAlive(ctx, l.ID, 7, w.Lease)
	if err != nil || len(ka.Leases) != 2 || !slices.Equal(ka.NotFound, []int64{7}) {
		t.Fatalf("keep-alive: got %+v, %v", ka, err)
	}
	if _, err := c.KeepAlive(ctx, 7, 8); !errors.Is(err, client.ErrLeaseNotFound) || errors.Is(err, client.ErrNotFound) {
		t.Fatalf("keep-alive of unknown leases: got %v, want ErrLeaseNotFound alone", err)
	}
	ttl, err := c.TimeToLive(ctx, l.ID, nil)
	if err != nil || !slices.Equal(ttl.Keys, []string{"a"}) {
		t.Fatalf("time to live: got %+v, %v", ttl, err)
	}
	ls, err := c.Leases(ctx, nil)
	if err != nil || len(ls) != 3 {
		t.Fatalf("leases: got %+v, %v", ls, err)
	}
	res, err := c.Txn(ctx, &client.TxnRequest{Then: []client.TxnOp{client.SetLeaseOp("c", client.String("z"), 42)}})
	if err != nil || !res.Succeeded || res.Results[0].Lease != 42 {
		t.Fatalf("transaction with a lease: got %+v, %v", res, err)
	}
	if _, err := c.Txn(ctx, &client.TxnRequest{Then: []client.TxnOp{client.SetLeaseOp("d", client.String("z"), 7)}}); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Fatalf("transaction with an unknown lease: got %v", err)
	}
	rev, err := c.Revoke(ctx, l.ID)
	if err != nil || rev != 4 {
		t.Fatalf("revoke: got %d, %v, want 4", rev, err)
	}
	if _, err := c.Get(ctx, "a", nil); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get of a revoked lease's key: got %v", err)
	}
	for _, err := range []error{
		func() error { _, err := c.Revoke(ctx, l.ID); return err }(),
		func() error { _, err := c.TimeToLive(ctx, l.ID, nil); return err }(),
		func() error {
			_, err := c.Set(ctx, "a", client.String("x"), &client.WriteOptions{Lease: l.ID})
			return err
		}(),
	} {
		if !errors.Is(err, client.ErrLeaseNotFound) || errors.Is(err, client.ErrNotFound) {
			t.Errorf("a call on a revoked lease: got %v, want ErrLeaseNotFound alone", err)
		}
	}
	for _, err := range []error{
		func() error { _, err := c.Grant(ctx, 0, nil); return err }(),
		func() error { _, err := c.Grant(ctx, -time.Second, nil); return err }(),
		func() error { _, err := c.Grant(ctx, 1000000*time.Hour, nil); return err }(),
		func() error {
			_, err := c.Set(ctx, "a", client.String("x"), &client.WriteOptions{Lease: 42, TTL: time.Second})
			return err
		}(),
		func() error { _, err := c.KeepAlive(ctx); return err }(),
	} {
		if !errors.Is(err, client.ErrInvalid) {
			t.Errorf("a bad lease call: got %v, want ErrInvalid", err)
		}
	}
}

// TestKeep checks the background keep-alive: it keeps a lease alive past
// its TTL for as long as its context lives; the lease then expires; and a
// Keeper whose lease is revoked stops with ErrLeaseNotFound.
func TestKeep(t *testing.T) {
	t.Parallel()
	c := leaseClient(t)
	const ttl = 300 * time.Millisecond
	l, err := c.Grant(t.Context(), ttl, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Set(t.Context(), "held", client.String("x"), &client.WriteOptions{Lease: l.ID}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	k := c.Keep(ctx, l.ID)
	began := time.Now()
	for time.Since(began) < 4*ttl {
		if _, err := c.Get(t.Context(), "held", nil); err != nil {
			t.Fatalf("%v into the keep-alive of a lease of %v: %v", time.Since(began), ttl, err)
		}
		time.Sleep(ttl / 10)
	}
	cancel()
	<-k.Done()
	if !errors.Is(k.Err(), context.Canceled) {
		t.Fatalf("Keeper after its context ended: %v", k.Err())
	}
	renewed := k.Renewed()
	waitUntil(t, "the lease to expire", func() bool {
		_, err := c.Get(t.Context(), "held", nil)
		return errors.Is(err, client.ErrNotFound)
	})
	if since := time.Since(renewed); since < ttl {
		t.Fatalf("the key was deleted %v after the last renewal, before the TTL of %v", since, ttl)
	}

	l, err = c.Grant(t.Context(), time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	k = c.Keep(t.Context(), l.ID)
	waitUntil(t, "a renewal", func() bool { return !k.Renewed().IsZero() })
	if _, err := c.Revoke(t.Context(), l.ID); err != nil {
		t.Fatal(err)
	}
	// The next renewal is due a third of a minute later: revoking the
	// lease ends the Keeper only then. A lease it never had ends it at
	// once.
	k2 := c.Keep(t.Context(), l.ID)
	<-k2.Done()
	if !errors.Is(k2.Err(), client.ErrLeaseNotFound) {
		t.Fatalf("Keeper of a revoked lease: %v, want ErrLeaseNotFound", k2.Err())
	}
}

// TestMirrorLeases checks that a mirror's entries carry their lease, and
// that TTL asks the server for the time left on it.
func TestMirrorLeases(t *testing.T) {
	t.Parallel()
	c := leaseClient(t)
	ctx := t.Context()
	l, _ := c.Grant(ctx, time.Hour, nil)
	c.Set(ctx, "listed", client.String("1"), &client.WriteOptions{Lease: l.ID})
	m, err := c.Mirror(ctx, client.MirrorOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	rev, _ := c.Set(ctx, "followed", client.String("2"), &client.WriteOptions{Lease: l.ID})
	if err := m.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"listed", "followed"} {
		e, _ := m.Get(k)
		lease, left, err := m.TTL(ctx, k)
		if e.Lease != l.ID || lease != l.ID || err != nil || left <= 0 || left > time.Hour {
			t.Errorf("%s in the mirror: entry %+v, TTL %d %v %v", k, e, lease, left, err)
		}
	}
	rev, _ = c.Revoke(ctx, l.ID)
	if err := m.WaitRevision(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if m.Len() != 0 {
		t.Fatalf("mirror after the revocation: %d keys", m.Len())
	}
}
