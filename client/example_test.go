package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"strconv"
	"time"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/httpapi"
)

// exampleServer starts a kvsd in the test process for an example and
// returns its address; a program passes the address of its kvsd instead
// (or client.Environment's).
func exampleServer() string {
	return newServer(nil, bus.Options{}, httpapi.Options{}).Addr
}

// List the keys under a prefix, then watch them from the listing's
// revision + 1: the watch continues the listing exactly, every later change
// once, across reconnects.
func Example_listThenWatch() {
	addr := exampleServer()
	ctx := context.Background()
	c, err := client.New(addr, client.Options{Timeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	c.Set(ctx, "app/mode", client.String("blue"), nil)
	c.Set(ctx, "app/replicas", json.RawMessage(`3`), nil)

	l, err := c.List(ctx, "app/", nil)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range l.Entries {
		fmt.Printf("%s = %s (revision %d)\n", e.Key, e.Value, e.Revision)
	}

	// Someone else changes the keys meanwhile.
	go func() {
		c.Set(ctx, "app/mode", client.String("green"), nil)
		c.Delete(ctx, "app/replicas", nil)
	}()

	n := 0
	for ev, err := range c.Watch(ctx, client.WatchOptions{Prefix: "app/", From: l.Revision + 1}) {
		if err != nil {
			log.Fatal(err) // ctx done, ErrCompacted, ErrUnauthorized, ...
		}
		fmt.Println(ev.Revision, ev.Type, ev.Key, string(ev.Value))
		if n++; n == 2 {
			break // or run until ctx is done
		}
	}
	// Output:
	// app/mode = "blue" (revision 1)
	// app/replicas = 3 (revision 2)
	// 3 set app/mode "green"
	// 4 delete app/replicas
}

// Increment a counter with compare-and-swap: read it, compute, and write it
// only if nobody changed it meanwhile; otherwise start again from the
// current entry, which the error carries.
func Example_casLoop() {
	addr := exampleServer()
	ctx := context.Background()
	c, err := client.New(addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}

	increment := func() (int, error) {
		e, err := c.Get(ctx, "counter", nil)
		var cond *int64 // nil: the key is absent, so create it (IfRevision 0)
		switch {
		case errors.Is(err, client.ErrNotFound):
			e, cond = client.Entry{Value: json.RawMessage("0")}, new(int64(0))
		case err != nil:
			return 0, err
		default:
			cond = &e.Revision
		}
		for {
			n, err := strconv.Atoi(string(e.Value))
			if err != nil {
				return 0, err
			}
			_, err = c.Set(ctx, "counter", json.RawMessage(strconv.Itoa(n+1)), &client.WriteOptions{IfRevision: cond})
			var ce *client.Error
			switch {
			case err == nil:
				return n + 1, nil
			case errors.As(err, &ce) && errors.Is(err, client.ErrConditionFailed) && ce.Current != nil:
				e, cond = *ce.Current, &ce.Current.Revision // changed meanwhile: retry from what it is now
			default:
				return 0, err
			}
		}
	}
	for range 3 {
		n, err := increment()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("counter:", n)
	}
	// Output:
	// counter: 1
	// counter: 2
	// counter: 3
}

// Keep a local copy of the keys under a prefix: the mirror is always the
// server's exact state at its revision, and OnChange hears of every change.
func ExampleClient_Mirror() {
	addr := exampleServer()
	ctx := context.Background()
	c, err := client.New(addr, client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	c.Set(ctx, "cfg/timeout", client.String("5s"), nil)

	changes := make(chan client.Change, 16)
	m, err := c.Mirror(ctx, client.MirrorOptions{
		Prefix:   "cfg/",
		OnChange: func(ch client.Change) { changes <- ch },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer m.Close()
	<-changes // the first listing

	rev, err := c.Set(ctx, "cfg/retries", json.RawMessage("3"), nil)
	if err != nil {
		log.Fatal(err)
	}
	// Wait until the mirror has the write: read your own writes.
	if err := m.WaitRevision(ctx, rev); err != nil {
		log.Fatal(err)
	}
	ch := <-changes
	fmt.Println("change at", ch.Revision, ch.Events[0].Type, ch.Events[0].Key)
	for _, e := range m.List().Entries {
		fmt.Printf("%s = %s\n", e.Key, e.Value)
	}
	// Output:
	// change at 2 set cfg/retries
	// cfg/retries = 3
	// cfg/timeout = "5s"
}

// Read the address, token and CA file from the environment, as kvscli
// does: KVS_ADDRESS, KVS_TOKEN, KVS_CACERT.
func ExampleEnvironment() {
	env := map[string]string{"KVS_ADDRESS": "https://kvs.example:23333", "KVS_TOKEN": "s3cret"}
	addr, opts := client.Environment(func(k string) string { return env[k] })
	opts.Timeout = 5 * time.Second
	c, err := client.New(addr, opts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.URL())
	// Output: https://kvs.example:23333
}

// A lock that frees itself: take it with a set that holds only if the key
// is absent, attached to a lease that Keep renews in the background. If
// the holder dies, its renewals stop and the lease, with the lock, expires
// a TTL later; a clean release revokes it at once.
func Example_lock() {
	addr := exampleServer()
	ctx := context.Background()
	c, err := client.New(addr, client.Options{Timeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	lock := func(owner string) (release func(), err error) {
		l, err := c.Grant(ctx, 10*time.Second, nil)
		if err != nil {
			return nil, err
		}
		absent := int64(0)
		if _, err := c.Set(ctx, "locks/report", client.String(owner), &client.WriteOptions{Lease: l.ID, IfRevision: &absent}); err != nil {
			c.Revoke(ctx, l.ID)
			return nil, err
		}
		kctx, stop := context.WithCancel(ctx)
		c.Keep(kctx, l.ID)
		return func() { stop(); c.Revoke(ctx, l.ID) }, nil
	}

	release, err := lock("worker 1")
	fmt.Println("worker 1:", err)
	_, err = lock("worker 2")
	fmt.Println("worker 2:", errors.Is(err, client.ErrConditionFailed))
	release()
	release, err = lock("worker 2")
	fmt.Println("worker 2 again:", err)
	release()
	// Output:
	// worker 1: <nil>
	// worker 2: true
	// worker 2 again: <nil>
}
