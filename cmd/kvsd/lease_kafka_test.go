package main_test

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/kvsdb/kvs/wire"
)

// keeper renews a lease through c every period until stopped, recording
// when it sent the last keep-alive that was acknowledged.
type keeper struct {
	mu     sync.Mutex
	last   time.Time
	failed int
	stop   context.CancelFunc
	done   chan struct{}
}

func keepLease(t *testing.T, c *client, id int64, period time.Duration) *keeper {
	ctx, cancel := context.WithCancel(t.Context())
	k := &keeper{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(k.done)
		for ctx.Err() == nil {
			sent := time.Now()
			code, _, err := c.post(wire.PathLeaseKeepAlive, wire.LeaseRequest{ID: id})
			k.mu.Lock()
			if err == nil && code == http.StatusOK {
				k.last = sent
			} else {
				k.failed++
			}
			k.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(period):
			}
		}
	}()
	return k
}

// end stops the keeper and returns when it sent its last acknowledged
// keep-alive.
func (k *keeper) end() time.Time {
	k.stop()
	<-k.done
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.last
}

// TestKafkaLeaseKeptOnOneInstance keeps a lease alive through instance A
// while instance B is killed with SIGKILL and restarted: the lease's keys
// stay on both (B, which did not receive the keep-alives, counts them from
// the log, and after its restart renews every lease it replays). Once the
// keep-alives stop, both delete the keys, at one revision with Reason
// expired, not before the TTL since the last acknowledged keep-alive and
// within the TTL and a second after it (A, which received them, proposes
// the end). Then A, holding another lease, is killed: B takes over and
// expires it within the TTL, -kafka-lease-takeover and a second.
func TestKafkaLeaseKeptOnOneInstance(t *testing.T) {
	t.Parallel()
	const ttl = 2 * time.Second
	b := startBroker(t, false)
	topic := newTopic()
	srvA, srvB := startKafkaKvsd(t, b, topic), startKafkaKvsd(t, b, topic)
	a, bc := newClient(t, srvA), newClient(t, srvB)
	id := a.grant(0, ttl)
	a.setLease("svc/a", `1`, id)
	rev := bc.setLease("svc/b", `2`, id)
	waitEntry(t, a, "svc/b", rev)

	k := keepLease(t, a, id, ttl/4)
	srvB.Kill()
	time.Sleep(ttl) // B is down for a TTL: A's keep-alives hold the lease
	srvB = startKafkaKvsd(t, b, topic)
	bc = newClient(t, srvB)
	for range 2 * 4 {
		for _, c := range []*client{a, bc} {
			for _, key := range []string{"svc/a", "svc/b"} {
				if c.get(key) == nil {
					t.Fatalf("%s: %s gone while its lease is kept alive through A", c.url, key)
				}
			}
		}
		time.Sleep(ttl / 4)
	}
	ws := subscribe(t, srvB, rev+1)
	last := k.end()
	for _, c := range []*client{a, bc} {
		for c.get("svc/a") != nil || c.get("svc/b") != nil {
			if time.Since(last) > ttl+time.Second {
				t.Fatalf("%s: keys still there %v after the last keep-alive, want deleted within the TTL of %v + 1s", c.url, time.Since(last), ttl)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if since := time.Since(last); since < ttl {
		t.Fatalf("keys deleted %v after the last keep-alive, before the TTL", since)
	}
	var deletes []wire.Event
	for len(deletes) < 2 {
		ev := next(t, ws)
		b, _ := json.Marshal(ev)
		var w wire.Event
		json.Unmarshal(b, &w)
		if w.Type == "delete" {
			deletes = append(deletes, w)
		}
	}
	if deletes[0].Revision != deletes[1].Revision || deletes[0].Reason != "expired" || deletes[1].Reason != "expired" || !deletes[0].More || deletes[1].More {
		t.Fatalf("the expiry on B's feed: %+v, want two deletes at one revision, expired", deletes)
	}
	_, revA := a.getall()
	_, revB := bc.getall()
	if revA != revB {
		t.Fatalf("revisions after the expiry: A %d, B %d", revA, revB)
	}

	// The instance that received the keep-alives dies: the other expires
	// the lease after the takeover.
	id = a.grant(0, ttl)
	rev = a.setLease("held", `3`, id)
	waitEntry(t, bc, "held", rev)
	k = keepLease(t, a, id, ttl/4)
	time.Sleep(ttl / 2)
	last = k.end()
	srvA.Kill()
	for bc.get("held") != nil {
		if time.Since(last) > ttl+2*time.Second+time.Second {
			t.Fatalf("key still there %v after the last keep-alive, with its holder dead: want the other instance to expire it within the TTL of %v, the takeover of 2s and 1s", time.Since(last), ttl)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if since := time.Since(last); since < ttl {
		t.Fatalf("key deleted %v after the last keep-alive, before the TTL", since)
	}
}

// TestKafkaLeaseBrokerOutage stops the broker for longer than a lease's
// TTL: no key expires while nothing can be written (the keep-alives fail
// with 503), and when the broker is back every instance gives every lease
// its whole TTL again, so that a client that resumes its keep-alives keeps
// its keys; when it does not, they expire a TTL after the broker came back.
func TestKafkaLeaseBrokerOutage(t *testing.T) {
	t.Parallel()
	b := startBroker(t, true)
	if b.external() {
		t.Skip("KVS_TEST_KAFKA: the broker cannot be stopped by the test")
	}
	const ttl = 2 * time.Second
	topic := newTopic()
	args := []string{"-kafka-write-timeout", "1s", "-kafka-read-timeout", "1s"}
	srvA, srvB := startKafkaKvsd(t, b, topic, args...), startKafkaKvsd(t, b, topic, args...)
	a, bc := newClient(t, srvA), newClient(t, srvB)
	kept, left := a.grant(0, ttl), a.grant(0, ttl)
	a.setLease("kept", `1`, kept)
	rev := a.setLease("left", `2`, left)
	waitEntry(t, bc, "left", rev)

	b.stop()
	waitReady(t, srvA, http.StatusServiceUnavailable)
	if code, _, _ := a.post(wire.PathLeaseKeepAlive, wire.LeaseRequest{IDs: []int64{kept}}); code != http.StatusServiceUnavailable {
		t.Fatalf("keep-alive while the broker is down: %d, want 503", code)
	}
	down := time.Now()
	for time.Since(down) < 2*ttl {
		for _, c := range []*client{a, bc} {
			for _, key := range []string{"kept", "left"} {
				if c.getLocal(key) == nil {
					t.Fatalf("%s: %s expired %v into the broker's outage, while nothing could be written", c.url, key, time.Since(down))
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.start()
	waitReady(t, srvA, http.StatusOK)
	waitReady(t, srvB, http.StatusOK)
	back := time.Now()
	k := keepLease(t, a, kept, ttl/4)
	for bc.get("left") != nil {
		if time.Since(back) > ttl+2*time.Second+time.Second {
			t.Fatalf("left still there %v after the broker came back, want it expired a TTL after", time.Since(back))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if since := time.Since(back); since < ttl-500*time.Millisecond {
		t.Fatalf("left expired %v after the broker came back: the outage was counted against its TTL", since)
	}
	for _, c := range []*client{a, bc} {
		if c.get("kept") == nil {
			t.Fatalf("%s: kept expired, although its keep-alives resumed when the broker came back", c.url)
		}
	}
	k.end()
	if l, ok := bc.leaseTTL(kept); !ok || !slices.Equal(l.Keys, []string{"kept"}) {
		t.Fatalf("lease kept on B: %+v, %v", l, ok)
	}
}
