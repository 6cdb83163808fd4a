package main_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	kvsclient "github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestLeaseBackupRestore takes a backup of a kvsd with leases and restores
// it on each backend: the restored store holds the leases, each with its
// whole TTL again (as after a restart), and the keys attached to them;
// a revocation deletes its keys, and a lease that nobody keeps alive
// expires a TTL after the restore.
func TestLeaseBackupRestore(t *testing.T) {
	t.Parallel()
	srv := kvstest.Start(t, "-backend", "memory")
	c := newClient(t, srv)
	long := c.grant(7, time.Hour)
	short := c.grant(8, 2*time.Second)
	c.grant(9, time.Hour) // without keys
	c.setLease("a", `1`, long)
	c.setLease("b", `2`, long)
	c.setLease("s", `3`, short)
	c.set("plain", `4`)
	kc, err := kvsclient.New(srv.Addr, kvsclient.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "leases.snap")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	info, err := kc.Snapshot(t.Context(), f)
	f.Close()
	if err != nil || info.Leases != 3 || info.Entries != 4 {
		t.Fatalf("backup: %+v, %v, want 3 leases and 4 entries", info, err)
	}

	b := startBroker(t, false)
	for _, backend := range []string{"memory", "file", "kafka"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			args := []string{"-backend", backend, "-restore", file}
			if backend == "kafka" {
				args = append(args, "-kafka-brokers", b.addr, "-kafka-topic", newTopic())
			}
			restored := kvstest.Start(t, args...)
			began := time.Now()
			waitReady(t, restored, http.StatusOK)
			rc := newClient(t, restored)
			for id, keys := range map[int64][]string{7: {"a", "b"}, 8: {"s"}, 9: nil} {
				l, ok := rc.leaseTTL(id)
				if !ok || !slices.Equal(l.Keys, keys) {
					t.Fatalf("lease %d after the restore: %+v (found %v), want keys %v", id, l, ok, keys)
				}
			}
			if e := rc.get("a"); e == nil || e.Lease != long {
				t.Fatalf("a after the restore: %+v, want lease %d", e, long)
			}
			if code, _, _ := rc.post("/lease/revoke", map[string]int64{"ID": long}); code != http.StatusOK {
				t.Fatalf("revoke after the restore: %d", code)
			}
			if rc.get("a") != nil || rc.get("b") != nil || rc.get("plain") == nil {
				t.Fatal("the revocation did not delete its keys alone")
			}
			for rc.get("s") != nil {
				if time.Since(began) > 2*time.Second+3*time.Second {
					t.Fatalf("s still there %v after the restore: its lease of 2s did not expire", time.Since(began))
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}
