// Package client is the Go client of kvs: it gets, sets, deletes and lists
// keys on a kvsd server, watches its change feed without ever losing or
// repeating a change, and keeps a local mirror of a prefix up to date.
//
// New makes a Client of one kvsd; every call takes a context, and a Client
// is safe for concurrent use. Values are JSON text (json.RawMessage);
// String makes one of a string. Errors match the sentinels of this package
// with errors.Is (ErrNotFound, ErrConditionFailed, ErrUnauthorized,
// ErrUnreachable, ErrTooLarge, ...), and errors.As finds the details: an
// *Error for an answer of kvsd (with the current entry of a failed
// condition), an *UnreachableError when no answer came.
//
//	c, err := client.New("127.0.0.1:23333", client.Options{Timeout: 5 * time.Second})
//	if err != nil {
//		return err
//	}
//	rev, err := c.Set(ctx, "app/mode", client.String("blue"), nil)
//	if err != nil {
//		return err
//	}
//	e, err := c.Get(ctx, "app/mode", nil)
//	if errors.Is(err, client.ErrNotFound) {
//		// ...
//	}
//	// A compare-and-swap: fails with ErrConditionFailed if someone else
//	// changed the key since revision e.Revision.
//	_, err = c.Set(ctx, "app/mode", client.String("green"), &client.WriteOptions{IfRevision: &e.Revision})
//
//	// List, then watch from the listing's revision + 1: every later
//	// change, once, across reconnects.
//	l, err := c.List(ctx, "app/", nil)
//	if err != nil {
//		return err
//	}
//	for ev, err := range c.Watch(ctx, client.WatchOptions{Prefix: "app/", From: l.Revision + 1}) {
//		if err != nil {
//			return err // ctx ended, ErrCompacted, ErrUnauthorized, ...
//		}
//		fmt.Println(ev.Revision, ev.Type, ev.Key, string(ev.Value))
//	}
//
// Most programs want the last two steps done for them: Mirror keeps a map
// of a prefix that is always the server's exact state at a known revision.
//
// # Addresses and the environment
//
// An address is host:port, a bare host (port 23333), or an http:// or
// https:// URL. The package never reads the environment; Environment
// returns the defaults that KVS_ADDRESS, KVS_TOKEN and KVS_CACERT give,
// for a program to pass to New (kvscli does).
//
// # Consistency
//
// Reads are linearizable by default. ReadOptions.Local lets a kvsd in a
// Kafka cluster answer from its own state at once, possibly missing writes
// that another instance has acknowledged.
//
// # The change feed
//
// Watch returns an iterator of events that reconnects with jittered
// backoff and resumes where it stopped: after the server restarts (1001),
// closes a consumer that reads too slowly (4408), or the connection is
// lost. When the server no longer has the revision to resume from, the
// watch ends with ErrCompacted, or with WatchOptions.Relist lists the keys
// again and goes on. Subscribe opens one connection without reconnecting,
// for tools that measure the feed itself.
//
// # Leases
//
// A lease is a time to live that keys attach to (WriteOptions.Lease, or
// WriteOptions.TTL for a lease of the key's own): Grant makes one,
// KeepAlive renews many in one request, Keep renews one in the background
// until its context ends, Revoke ends one, and TimeToLive and Leases
// describe them. When a lease expires (its TTL after its last renewal) or
// is revoked, all its keys are deleted at one revision; the watch shows
// each delete with Reason "expired" or "revoked". See Example_lock.
//
// # Backups
//
// Snapshot copies a backup of the whole store (every key with its
// revisions, at one revision) to an io.Writer, checking it as it arrives;
// kvsd -restore starts a server from it. Package wire reads and checks a
// saved one (wire.VerifyBackup).
package client
