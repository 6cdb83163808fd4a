package kv_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kvsdb/kvs/kv"
)

// TestLeaseFileRestart checks that leases survive a restart of the file
// log, with their keys, and that revocations do too; that the revisions
// are those of the changes alone; and that a restart renews every lease:
// its TTL starts again.
func TestLeaseFileRestart(t *testing.T) {
	t.Parallel()
	for _, snapshot := range []bool{false, true} {
		t.Run(fmt.Sprintf("snapshot=%v", snapshot), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			opts := kv.FileOptions{NoSync: true}
			if snapshot {
				opts.SnapshotBytes = 1 << 10
			}
			s := openFileStore(t, dir, opts)
			ctx := t.Context()
			a, err := s.Grant(ctx, 11, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			short, _ := s.Grant(ctx, 12, 800*time.Millisecond)
			gone, _ := s.Grant(ctx, 13, time.Minute)
			empty, _ := s.Grant(ctx, 14, time.Minute)
			granted := time.Now()
			setLease(t, s.Store, "a1", a.ID)
			setLease(t, s.Store, "a2", a.ID)
			setLease(t, s.Store, "s1", short.ID)
			setLease(t, s.Store, "g1", gone.ID)
			if snapshot {
				// Enough changes for several snapshots: the leases must
				// then come from a snapshot, the segments before it gone.
				for i := range 200 {
					mustSubmit(t, s.Store, setChange(fmt.Sprint("fill", i%10), fmt.Sprint(i)))
				}
				waitFor(t, "a snapshot", func() bool { return s.log.SnapshotRev() > 0 })
			}
			if _, err := s.Revoke(ctx, gone.ID); err != nil {
				t.Fatal(err)
			}
			want, rev := state(s.Store)
			// Let most of the short lease's TTL pass before the restart.
			for time.Since(granted) < 600*time.Millisecond {
				time.Sleep(10 * time.Millisecond)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}

			s = openFileStore(t, dir, opts)
			checkState(t, s.Store, want, rev)
			for _, k := range []string{"a1", "a2", "s1"} {
				if e, ok := s.Get(k); !ok || e.Lease == 0 {
					t.Errorf("key %s after restart: got %+v, want it with its lease", k, e)
				}
			}
			got := s.Leases()
			var ids []int64
			for _, l := range got {
				ids = append(ids, l.ID)
			}
			if !slices.Equal(ids, []int64{a.ID, short.ID, empty.ID}) {
				t.Fatalf("leases after restart: got %v, want %d, %d, %d", ids, a.ID, short.ID, empty.ID)
			}
			// The restart renewed the short lease: it has nearly its whole
			// TTL, not the 200ms that were left.
			if l, _ := s.TimeToLive(short.ID, true); l.Remaining < 600*time.Millisecond || !slices.Equal(l.Keys, []string{"s1"}) {
				t.Fatalf("short lease after restart: got %+v, want about 800ms left and key s1", l)
			}
			if l, _ := s.TimeToLive(a.ID, true); !slices.Equal(l.Keys, []string{"a1", "a2"}) {
				t.Fatalf("lease %d's keys after restart: got %v", a.ID, l.Keys)
			}
			if r, err := s.Revoke(ctx, a.ID); err != nil || r != rev+1 {
				t.Fatalf("revoke after restart: got %d, %v, want %d", r, err, rev+1)
			}
			waitFor(t, "the short lease to expire", func() bool { _, ok := s.Get("s1"); return !ok })
			if s.Rev() != rev+2 {
				t.Fatalf("revision after the expiry: got %d, want %d", s.Rev(), rev+2)
			}
			want, rev = state(s.Store)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openFileStore(t, dir, opts)
			checkState(t, s.Store, want, rev)
			if ls := s.Leases(); len(ls) != 1 || ls[0].ID != empty.ID {
				t.Fatalf("leases after the second restart: got %+v, want only %d", ls, empty.ID)
			}
			// Every delete replayed carries its reason.
			for _, c := range s.pub.changes {
				if c.Op == kv.OpDelete && c.Reason == kv.ReasonNone {
					t.Errorf("replayed delete without its reason: %+v", c)
				}
			}
		})
	}
}
