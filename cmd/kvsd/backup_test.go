package main_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	kvsclient "github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/wire"
)

// The guarantees of backup and restore, checked against the real kvsd:
// a backup taken under concurrent writers holds exactly the state at its
// revision; a store restored from it holds the same entries and goes on
// above it; a damaged backup is refused with nothing written.

// ackedWrite is a write that kvsd acknowledged.
type ackedWrite struct {
	rev   int64
	key   string
	value string // "" for a delete
}

// stateAt returns the entries that the acknowledged writes make up to and
// including revision rev, sorted by key, with the revisions and versions
// kvsd gives them.
func stateAt(writes []ackedWrite, rev int64) []wire.Entry {
	ws := slices.Clone(writes)
	slices.SortFunc(ws, func(a, b ackedWrite) int { return int(a.rev - b.rev) })
	m := make(map[string]*wire.Entry)
	for _, w := range ws {
		if w.rev > rev {
			break
		}
		e := m[w.key]
		switch {
		case w.value == "":
			delete(m, w.key)
		case e == nil:
			m[w.key] = &wire.Entry{Key: w.key, Value: []byte(w.value), Revision: w.rev, CreateRevision: w.rev, Version: 1}
		default:
			e.Value, e.Revision, e.Version = []byte(w.value), w.rev, e.Version+1
		}
	}
	out := make([]wire.Entry, 0, len(m))
	for _, e := range m {
		out = append(out, *e)
	}
	slices.SortFunc(out, func(a, b wire.Entry) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// backupEntries reads a backup whole.
func backupEntries(t *testing.T, b []byte) (wire.BackupInfo, []wire.Entry) {
	t.Helper()
	br, err := wire.NewBackupReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var es []wire.Entry
	for {
		e, err := br.Next()
		if err != nil {
			if err.Error() != "EOF" {
				t.Fatal(err)
			}
			return br.Info(), es
		}
		es = append(es, e)
	}
}

func diffEntries(got, want []wire.Entry) string {
	if reflect.DeepEqual(got, want) || len(got) == 0 && len(want) == 0 {
		return ""
	}
	var out []string
	gm := make(map[string]wire.Entry)
	for _, e := range got {
		gm[e.Key] = e
	}
	for _, w := range want {
		g, ok := gm[w.Key]
		if !ok {
			out = append(out, fmt.Sprintf("%s: missing, want %s@%d/%d/v%d", w.Key, w.Value, w.Revision, w.CreateRevision, w.Version))
		} else if !reflect.DeepEqual(g, w) {
			out = append(out, fmt.Sprintf("%s: got %s@%d/%d/v%d, want %s@%d/%d/v%d", w.Key, g.Value, g.Revision, g.CreateRevision, g.Version, w.Value, w.Revision, w.CreateRevision, w.Version))
		}
		delete(gm, w.Key)
	}
	for k, g := range gm {
		out = append(out, fmt.Sprintf("%s: got %s@%d, want none", k, g.Value, g.Revision))
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// writeUnderBackups runs 8 writers against c, which set and delete 40
// keys, while backups are taken from bc one after the other; it returns
// every acknowledged write and the backups, once the writers made n writes
// each.
func writeUnderBackups(t *testing.T, c, bc *kvsclient.Client, n int) ([]ackedWrite, [][]byte) {
	t.Helper()
	ctx := t.Context()
	var (
		mu      sync.Mutex
		writes  []ackedWrite
		backups [][]byte
		wg      sync.WaitGroup
		done    = make(chan struct{})
	)
	for w := range 8 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range n {
				key := fmt.Sprintf("key/%02d", rng.IntN(40))
				if rng.IntN(8) == 0 {
					rev, err := c.Delete(ctx, key, nil)
					if errors.Is(err, kvsclient.ErrNotFound) {
						continue
					}
					if err != nil {
						t.Errorf("delete %s: %v", key, err)
						return
					}
					mu.Lock()
					writes = append(writes, ackedWrite{rev, key, ""})
					mu.Unlock()
					continue
				}
				value := fmt.Sprintf(`{"w":%d,"i":%d,"pad":"%s"}`, w, i, strings.Repeat("p", rng.IntN(200)))
				rev, err := c.Set(ctx, key, []byte(value), nil)
				if err != nil {
					t.Errorf("set %s: %v", key, err)
					return
				}
				mu.Lock()
				writes = append(writes, ackedWrite{rev, key, value})
				mu.Unlock()
			}
		})
	}
	var bg sync.WaitGroup
	bg.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			var buf bytes.Buffer
			if _, err := bc.Snapshot(ctx, &buf); err != nil {
				t.Errorf("backup: %v", err)
				return
			}
			mu.Lock()
			backups = append(backups, buf.Bytes())
			mu.Unlock()
		}
	})
	wg.Wait()
	close(done)
	bg.Wait()
	return writes, backups
}

// checkBackups checks that each backup holds exactly the state that the
// acknowledged writes make at its revision, and returns the last one.
func checkBackups(t *testing.T, writes []ackedWrite, backups [][]byte) ([]byte, int64) {
	t.Helper()
	if len(backups) < 2 {
		t.Fatalf("%d backups taken while writing, want several", len(backups))
	}
	var last []byte
	var lastRev int64
	inside := 0
	for i, b := range backups {
		info, es := backupEntries(t, b)
		if d := diffEntries(es, stateAt(writes, info.Revision)); d != "" {
			t.Fatalf("backup %d at revision %d differs from the acknowledged writes up to it:\n%s", i, info.Revision, d)
		}
		if info.Revision < lastRev {
			t.Fatalf("backup %d at revision %d, after one at %d", i, info.Revision, lastRev)
		}
		if info.Revision > 0 && info.Revision < writes[len(writes)-1].rev {
			inside++
		}
		last, lastRev = b, info.Revision
	}
	if inside == 0 {
		t.Fatal("no backup was taken while the writers wrote")
	}
	t.Logf("%d backups, %d of them while the writers wrote; %d writes", len(backups), inside, len(writes))
	return last, lastRev
}

// TestBackupUnderWriters checks, on the memory and file backends, that
// backups taken while 8 writers set and delete keys hold exactly the
// acknowledged writes up to their revision and none after, with each
// key's revision, create revision and version; and that a kvsd restored
// from the last one serves the same entries, goes on above the backup's
// revision, and answers 410 for the revisions before.
func TestBackupUnderWriters(t *testing.T) {
	for _, backend := range []string{"memory", "file"} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			srv := kvstest.Start(t, "-backend", backend)
			c, err := kvsclient.New(srv.Addr, kvsclient.Options{Timeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			writes, backups := writeUnderBackups(t, c, c, 150)
			// Revisions are consecutive on these backends: every change is
			// one of the writes seen.
			revs := make([]int64, len(writes))
			for i, w := range writes {
				revs[i] = w.rev
			}
			slices.Sort(revs)
			for i, r := range revs {
				if r != int64(i+1) {
					t.Fatalf("acknowledged revisions %v... are not 1, 2, 3, ...", revs[:min(len(revs), i+3)])
				}
			}
			backup, rev := checkBackups(t, writes, backups)
			_, want := backupEntries(t, backup)
			oldRev := revs[len(revs)-1]

			file := filepath.Join(t.TempDir(), "backup.snap")
			if err := os.WriteFile(file, backup, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, bump := range []int64{1000000000, 0} {
				t.Run(fmt.Sprint("bump ", bump), func(t *testing.T) {
					checkRestored(t, kvstest.Start(t, "-backend", backend, "-restore", file, "-restore-bump", fmt.Sprint(bump)),
						want, rev+bump, oldRev)
				})
			}
			// The restored data directory serves the same after a restart
			// without -restore.
			if backend == "file" {
				data := t.TempDir()
				r := kvstest.Start(t, "-data", data, "-restore", file)
				if code := r.Stop(); code != 0 {
					t.Fatalf("kvsd exited with %d", code)
				}
				checkRestored(t, kvstest.Start(t, "-data", data), want, rev+1000000000, oldRev)
			}
		})
	}
}

// checkRestored checks that srv, restored from a backup of want, serves
// want at revision at, refuses subscriptions from the old store's
// revisions up to oldRev (410), and gives its next write revision at + 1.
func checkRestored(t *testing.T, srv *kvstest.Server, want []wire.Entry, at, oldRev int64) {
	t.Helper()
	c, err := kvsclient.New(srv.Addr, kvsclient.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	l, err := c.List(t.Context(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffEntries(l.Entries, want); d != "" || l.Revision != at {
		t.Fatalf("restored store at %d (want %d) differs from the backup:\n%s", l.Revision, at, d)
	}
	// A client of the old store resuming after the backup's revision, or
	// from before it, gets 410: never a silent jump.
	for _, from := range []int64{1, oldRev + 1, at} {
		if from > at {
			continue
		}
		_, resp, err := websocket.Dial(t.Context(), fmt.Sprintf("ws://%s/subscribe?from=%d", srv.Addr, from), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusGone {
			t.Errorf("subscribe from %d on the restored store: got %v, want 410", from, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	sub, err := c.Subscribe(ctx, kvsclient.SubscribeOptions{From: at + 1})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	key := "key/00"
	if len(want) > 0 {
		key = want[0].Key
	}
	next, err := c.Set(t.Context(), key, []byte(`"after"`), nil)
	if err != nil || next != at+1 {
		t.Fatalf("the first write after the restore: revision %d, %v; want %d", next, err, at+1)
	}
	ev, err := sub.Next()
	for err == nil && ev.Type == wire.EventProgress {
		ev, err = sub.Next()
	}
	if err != nil || ev.Revision != at+1 || ev.Key != key {
		t.Fatalf("the first event after the restore: %+v, %v; want %s at %d", ev, err, key, at+1)
	}
	e, err := c.Get(t.Context(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(want) > 0 && (e.CreateRevision != want[0].CreateRevision || e.Version != want[0].Version+1) {
		t.Fatalf("%s after a set: %+v, want create revision %d and version %d", key, e, want[0].CreateRevision, want[0].Version+1)
	}
}

// writeTestBackup writes a backup of a few entries at revision 30 to a
// new file and returns its path and bytes.
func writeTestBackup(t *testing.T) (string, []byte) {
	t.Helper()
	es := []wire.Entry{
		{Key: "City", Value: []byte(`"Mumbai"`), Revision: 12, CreateRevision: 3, Version: 4},
		{Key: "cfg", Value: []byte(`{"retries":3}`), Revision: 30, CreateRevision: 30, Version: 1},
		{Key: "n", Value: []byte(`1.50`), Revision: 7, CreateRevision: 1, Version: 2},
	}
	var buf bytes.Buffer
	bw, err := wire.NewBackupWriter(&buf, wire.BackupHeader{Revision: 30, Entries: int64(len(es)), Created: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range es {
		if err := bw.Add(&es[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := bw.Close(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	if err := os.WriteFile(file, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, buf.Bytes()
}

// damagedBackups returns damaged copies of backup: cut short, with a bit
// flipped, and of a newer format version, each with what kvsd must say.
func damagedBackups(t *testing.T, backup []byte) []struct{ name, file, want string } {
	t.Helper()
	dir := t.TempDir()
	flipped := bytes.Clone(backup)
	flipped[len(flipped)/2] ^= 4
	newer := bytes.Clone(backup)
	newer[7] = 3
	var out []struct{ name, file, want string }
	for _, d := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", backup[:len(backup)-20], "truncated"},
		{"bit flipped", flipped, "fails its checksum"},
		{"newer version", newer, "format version 3: this kvs reads version 2"},
		{"not a backup", []byte("{}\n"), "not a kvs backup"},
	} {
		f := filepath.Join(dir, strings.ReplaceAll(d.name, " ", "-"))
		if err := os.WriteFile(f, d.data, 0o600); err != nil {
			t.Fatal(err)
		}
		out = append(out, struct{ name, file, want string }{d.name, f, d.want})
	}
	return out
}

// TestRestoreRefuses checks that kvsd -restore refuses a damaged backup,
// and a data directory that is not empty, with a clear message, a non-zero
// exit, and nothing written.
func TestRestoreRefuses(t *testing.T) {
	t.Parallel()
	file, backup := writeTestBackup(t)
	for _, d := range damagedBackups(t, backup) {
		for _, backend := range []string{"file", "memory"} {
			t.Run(d.name+" "+backend, func(t *testing.T) {
				t.Parallel()
				data := filepath.Join(t.TempDir(), "data")
				code, stderr := runKvsd(t, "-backend", backend, "-restore", d.file, "-data", data)
				if code == 0 || !strings.Contains(stderr, "not a valid kvs backup") || !strings.Contains(stderr, d.want) ||
					!strings.Contains(stderr, "nothing was written") {
					t.Fatalf("exit %d, stderr:\n%s\nwant a non-zero exit saying %q", code, stderr, d.want)
				}
				if _, err := os.Stat(data); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("the data directory was created: %v", err)
				}
			})
		}
	}
	t.Run("data directory not empty", func(t *testing.T) {
		t.Parallel()
		data := t.TempDir()
		srv := kvstest.Start(t, "-data", data)
		setKey(t, srv.URL, "mine", "1")
		if code := srv.Stop(); code != 0 {
			t.Fatalf("exit %d", code)
		}
		before := kvstest.DirDigest(t, data)
		code, stderr := runKvsd(t, "-restore", file, "-data", data)
		if code == 0 || !strings.Contains(stderr, "data directory not empty") || !strings.Contains(stderr, "nothing was written") {
			t.Fatalf("exit %d, stderr:\n%s\nwant a non-zero exit saying the directory is not empty", code, stderr)
		}
		if after := kvstest.DirDigest(t, data); !reflect.DeepEqual(after, before) {
			t.Fatalf("the data directory changed: %v, was %v", after, before)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		code, stderr := runKvsd(t, "-restore", filepath.Join(t.TempDir(), "none.snap"), "-data", t.TempDir())
		if code == 0 || !strings.Contains(stderr, "no such file") {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
	})
	t.Run("bad bump", func(t *testing.T) {
		t.Parallel()
		code, stderr := runKvsd(t, "-restore", file, "-restore-bump", "-1", "-data", t.TempDir())
		if code == 0 || !strings.Contains(stderr, "-restore-bump -1") {
			t.Fatalf("exit %d, stderr:\n%s", code, stderr)
		}
	})
}

// TestKafkaBackupRestore checks backups in Kafka mode: taken from one
// instance while 8 writers write through another, each holds exactly the
// acknowledged writes up to the revision that instance had applied; seeding a new topic from one
// makes every instance of that topic serve the same entries, with the
// revisions going on above it and 410 for those of the old topic; a
// damaged backup, or a topic that is not empty, is refused with nothing
// written.
func TestKafkaBackupRestore(t *testing.T) {
	t.Parallel()
	b := startBroker(t, false)
	old := newTopic()
	a1, a2 := startKafkaKvsd(t, b, old), startKafkaKvsd(t, b, old)
	c, err := kvsclient.New(a1.Addr, kvsclient.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := kvsclient.New(a2.Addr, kvsclient.Options{Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	writes, backups := writeUnderBackups(t, c, bc, 40)
	backup, rev := checkBackups(t, writes, backups)
	_, want := backupEntries(t, backup)
	oldRev := int64(0)
	for _, w := range writes {
		oldRev = max(oldRev, w.rev)
	}
	file := filepath.Join(t.TempDir(), "backup.snap")
	if err := os.WriteFile(file, backup, 0o600); err != nil {
		t.Fatal(err)
	}

	// Damaged backups: refused before anything is written to the topic.
	for _, d := range damagedBackups(t, backup) {
		topic := newTopic()
		code, stderr := runKvsd(t, "-backend", "kafka", "-kafka-brokers", b.addr, "-kafka-topic", topic, "-restore", d.file)
		if code == 0 || !strings.Contains(stderr, d.want) || !strings.Contains(stderr, "nothing was written") {
			t.Fatalf("%s: exit %d, stderr:\n%s\nwant a non-zero exit saying %q", d.name, code, stderr, d.want)
		}
		// The topic is still free to be seeded.
		defer func() {
			startKafkaKvsd(t, b, topic, "-restore", file).Stop()
		}()
	}

	seeded := newTopic()
	at := rev + 1000000000 + int64(len(want)) // the seed's records take revisions too
	s1 := startKafkaKvsd(t, b, seeded, "-restore", file)
	checkRestored(t, s1, want, at, oldRev)
	// Another instance of the new topic replays the same.
	s2 := startKafkaKvsd(t, b, seeded)
	c1, _ := kvsclient.New(s1.Addr, kvsclient.Options{})
	c2, _ := kvsclient.New(s2.Addr, kvsclient.Options{})
	l1, err := c1.List(t.Context(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	l2, err := c2.List(t.Context(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := diffEntries(l2.Entries, l1.Entries); d != "" || l2.Revision != l1.Revision {
		t.Fatalf("the second instance at %d, the first at %d:\n%s", l2.Revision, l1.Revision, d)
	}

	// A topic that holds records is refused, and left as it was.
	code, stderr := runKvsd(t, "-backend", "kafka", "-kafka-brokers", b.addr, "-kafka-topic", seeded, "-restore", file)
	if code == 0 || !strings.Contains(stderr, "not empty") || !strings.Contains(stderr, "nothing was written") {
		t.Fatalf("seeding a topic that holds records: exit %d, stderr:\n%s", code, stderr)
	}
	if l, err := c2.List(t.Context(), "", nil); err != nil || l.Revision != l2.Revision {
		t.Fatalf("after the refused seed: revision %d, %v; want %d", l.Revision, err, l2.Revision)
	}
}
