package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/kvstest"
)

// client talks to one kvsd over keep-alive connections.
type client struct {
	t    *testing.T
	url  string
	http *http.Client
}

func newClient(t *testing.T, srv *kvstest.Server) *client {
	return &client{t: t, url: srv.URL, http: &http.Client{
		Timeout:   30 * time.Second, // a hang guard
		Transport: &http.Transport{MaxIdleConnsPerHost: 32},
	}}
}

// post sends body to path and returns the status and the answer.
func (c *client) post(path string, body any) (int, []byte, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.http.Post(c.url+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(resp.Body)
	return resp.StatusCode, ans, err
}

// set sets key to the JSON value and returns the revision.
func (c *client) set(key, value string) int64 {
	c.t.Helper()
	code, ans, err := c.post("/set", httpapi.WriteRequest{Key: key, Value: json.RawMessage(value)})
	if err != nil || code != http.StatusOK {
		c.t.Fatalf("set %s: %d %s %v", key, code, ans, err)
	}
	var res httpapi.WriteResult
	if err := json.Unmarshal(ans, &res); err != nil {
		c.t.Fatal(err)
	}
	return res.Revision
}

// get returns key's entry, or nil if it is missing.
func (c *client) get(key string) *httpapi.Entry {
	c.t.Helper()
	return c.getFrom("/get", key)
}

// getFrom is get with the path (and query) of the request.
func (c *client) getFrom(path, key string) *httpapi.Entry {
	c.t.Helper()
	code, ans, err := c.post(path, httpapi.WriteRequest{Key: key})
	switch {
	case err != nil:
		c.t.Fatalf("%s %s: %v", path, key, err)
	case code == http.StatusNotFound:
		return nil
	case code != http.StatusOK:
		c.t.Fatalf("%s %s: %d %s", path, key, code, ans)
	}
	var e httpapi.Entry
	if err := json.Unmarshal(ans, &e); err != nil {
		c.t.Fatal(err)
	}
	return &e
}

// getall returns every key's JSON value and the listing's revision.
func (c *client) getall() (map[string]string, int64) {
	c.t.Helper()
	resp, err := c.http.Get(c.url + "/getall")
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		c.t.Fatal(err)
	}
	rev, err := strconv.ParseInt(resp.Header.Get(httpapi.RevisionHeader), 10, 64)
	if err != nil {
		c.t.Fatal(err)
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = string(v)
	}
	return out, rev
}

// keyState is what a key must hold after a restart.
type keyState struct {
	value                string // JSON text
	rev, create, version int64
	live                 bool
}

// op is a write whose answer was lost in a crash: it may or may not have
// been applied.
type op struct {
	key, value string // value "" for a delete
}

// crashRuns returns the number of kills KVS_CRASH_RUNS asks for, or def.
func crashRuns(t *testing.T, def int) int {
	t.Helper()
	v := os.Getenv("KVS_CRASH_RUNS")
	if v == "" {
		return def
	}
	runs, err := strconv.Atoi(v)
	if err != nil || runs < 1 {
		t.Fatalf("KVS_CRASH_RUNS=%q: want a positive number", v)
	}
	return runs
}

// TestCrashRecovery runs concurrent writers against kvsd, kills it with
// SIGKILL at a random moment, restarts it on the same data directory, and
// checks that every acknowledged write is there with its revision (and
// create revision and version), that nothing else is, and that revisions
// continue above every acknowledged one. Snapshots are small so that kills
// land before, during and after them. KVS_CRASH_RUNS sets the number of
// kills (default 10).
func TestCrashRecovery(t *testing.T) {
	runs := crashRuns(t, 10)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))

	const writers = 8
	dir := t.TempDir()
	owned := make([]map[string]*keyState, writers) // each writer's keys
	for w := range owned {
		owned[w] = make(map[string]*keyState)
	}
	pending := make([]*op, writers)
	revs := make(map[int64]string) // every acknowledged revision, and its key
	var maxAcked int64
	touched := make(map[string]bool) // keys written since the last full check

	for run := 0; ; run++ {
		srv := kvstest.Start(t, "-data", dir, "-snapshot-bytes", "16384")
		c := newClient(t, srv)

		// Resolve the writes that were in flight at the kill.
		for w, p := range pending {
			if p == nil {
				continue
			}
			pending[w] = nil
			st := owned[w][p.key]
			e := c.get(p.key)
			switch {
			case st.matches(e):
				// not applied
			case p.value == "" && e == nil:
				st.live = false
			case p.value != "" && e != nil && string(e.Value) == p.value:
				if (st.live && (e.CreateRevision != st.create || e.Version != st.version+1)) ||
					(!st.live && (e.CreateRevision != e.Revision || e.Version != 1)) {
					t.Fatalf("run %d: in-flight set of %s applied as %+v over %+v", run, p.key, e, st)
				}
				if k, dup := revs[e.Revision]; dup {
					t.Fatalf("run %d: revision %d given to both %s and %s", run, e.Revision, k, p.key)
				}
				revs[e.Revision] = p.key
				maxAcked = max(maxAcked, e.Revision)
				*st = keyState{value: p.value, rev: e.Revision, create: e.CreateRevision, version: e.Version, live: true}
			default:
				t.Fatalf("run %d: %s is %+v: neither %+v nor the in-flight write %+v", run, p.key, e, st, p)
			}
		}

		// Every acknowledged write is there, and nothing else: values for
		// every key, and revisions, create revisions and versions for the
		// keys written in the last run (for all of them in the last check).
		all, rev := c.getall()
		if rev < maxAcked {
			t.Fatalf("run %d: store at revision %d after restart, below the acknowledged %d", run, rev, maxAcked)
		}
		want := make(map[string]string)
		for w := range owned {
			for k, st := range owned[w] {
				if st.live {
					want[k] = st.value
				}
			}
		}
		if !maps.Equal(all, want) {
			for k, v := range want {
				if all[k] != v {
					t.Errorf("run %d: %s: got %q, want %q", run, k, all[k], v)
				}
			}
			for k, v := range all {
				if _, ok := want[k]; !ok {
					t.Errorf("run %d: unexpected key %s = %s", run, k, v)
				}
			}
			t.FailNow()
		}
		for w := range owned {
			for k, st := range owned[w] {
				if touched[k] || run == runs {
					if e := c.get(k); !st.matches(e) {
						t.Fatalf("run %d: %s: got %+v, want %+v", run, k, e, st)
					}
				}
			}
		}
		clear(touched)
		if run == runs {
			if code := srv.Stop(); code != 0 {
				t.Fatalf("exit code after SIGTERM: %d", code)
			}
			break
		}

		// Write until the kill. Each writer creates, updates and deletes
		// keys of its own, one request at a time.
		type ack struct {
			rev int64
			key string
		}
		acks := make([][]ack, writers)
		var wg sync.WaitGroup
		for w := range writers {
			wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
			wg.Go(func() {
				var live []string
				for k, st := range owned[w] {
					if st.live {
						live = append(live, k)
					}
				}
				for n := 0; ; n++ {
					p := op{key: fmt.Sprintf("w%d/r%d/n%d", w, run, n), value: strconv.Quote(fmt.Sprintf("w%d r%d n%d", w, run, n))}
					if r := wrng.IntN(100); r < 40 && len(live) > 0 {
						p.key = live[wrng.IntN(len(live))] // update
					} else if r < 55 && len(live) > 0 {
						i := wrng.IntN(len(live)) // delete
						p.key, p.value = live[i], ""
						live = append(live[:i], live[i+1:]...)
					}
					path, body := "/set", httpapi.WriteRequest{Key: p.key, Value: json.RawMessage(p.value)}
					if p.value == "" {
						path, body.Value = "/delete", nil
					}
					code, ans, err := c.post(path, body)
					if err == nil && code != http.StatusOK {
						t.Errorf("%s %s: %d %s", path, p.key, code, ans)
					}
					if err != nil || code != http.StatusOK {
						pending[w] = &p
						if _, ok := owned[w][p.key]; !ok {
							owned[w][p.key] = &keyState{}
						}
						return
					}
					var res httpapi.WriteResult
					if err := json.Unmarshal(ans, &res); err != nil {
						t.Error(err)
						return
					}
					acks[w] = append(acks[w], ack{res.Revision, p.key})
					st := owned[w][p.key]
					switch {
					case p.value == "":
						st.live = false
					case st == nil || !st.live:
						if st == nil {
							live = append(live, p.key)
						}
						owned[w][p.key] = &keyState{value: p.value, rev: res.Revision, create: res.Revision, version: 1, live: true}
					default:
						st.value, st.rev = p.value, res.Revision
						st.version++
					}
				}
			})
		}
		time.Sleep(time.Duration(100+rng.IntN(400)) * time.Millisecond)
		srv.Kill()
		wg.Wait()
		n := 0
		for w := range acks {
			for _, a := range acks[w] {
				n++
				if a.rev <= rev {
					t.Fatalf("run %d: revision %d acknowledged for %s, not above the %d the store restarted at", run, a.rev, a.key, rev)
				}
				if k, dup := revs[a.rev]; dup {
					t.Fatalf("run %d: revision %d acknowledged for both %s and %s", run, a.rev, k, a.key)
				}
				revs[a.rev] = a.key
				maxAcked = max(maxAcked, a.rev)
				touched[a.key] = true
			}
		}
		for _, p := range pending {
			if p != nil {
				touched[p.key] = true
			}
		}
		t.Logf("run %d: %d writes acknowledged before the kill, up to revision %d", run, n, maxAcked)
	}
}

// matches reports whether e, the answer to a get (nil for a 404), is what
// st says.
func (st *keyState) matches(e *httpapi.Entry) bool {
	if !st.live {
		return e == nil
	}
	return e != nil && string(e.Value) == st.value && e.Revision == st.rev &&
		e.CreateRevision == st.create && e.Version == st.version
}

// TestFeedHistoryAfterRestart subscribes with from across restarts: the
// changes logged after the newest snapshot are replayed, older ones are
// answered 410.
func TestFeedHistoryAfterRestart(t *testing.T) {
	dir := t.TempDir()
	srv := kvstest.Start(t, "-data", dir)
	c := newClient(t, srv)
	for i := 1; i <= 5; i++ {
		if rev := c.set("k"+strconv.Itoa(i), strconv.Itoa(i)); rev != int64(i) {
			t.Fatalf("set %d: revision %d", i, rev)
		}
	}
	if code := srv.Stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}

	srv = kvstest.Start(t, "-data", dir, "-snapshot-bytes", "256")
	c = newClient(t, srv)
	ws := subscribe(t, srv, 2)
	for rev := int64(2); rev <= 5; rev++ {
		if ev := next(t, ws); ev.Revision != rev || ev.Key != "k"+strconv.FormatInt(rev, 10) {
			t.Fatalf("replay after restart: got %+v, want revision %d", ev, rev)
		}
	}
	c.set("k6", "6")
	if ev := next(t, ws); ev.Revision != 6 {
		t.Fatalf("live after replay: got %+v, want revision 6", ev)
	}
	ws.CloseNow()
	// Write past the snapshot threshold and wait for a snapshot.
	for i := 7; i <= 30; i++ {
		c.set("k"+strconv.Itoa(i), strconv.Itoa(i))
	}
	waitLog(t, srv, `"msg":"snapshot written"`)
	if code := srv.Stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}

	srv = kvstest.Start(t, "-data", dir)
	snapRev := recoveredSnapshotRev(t, srv)
	if snapRev == 0 {
		t.Fatal("no snapshot after restart")
	}
	if _, _, err := websocket.Dial(t.Context(), "ws://"+srv.Addr+"/subscribe?from="+strconv.FormatInt(snapRev, 10), nil); err == nil ||
		!strings.Contains(err.Error(), "410") {
		t.Fatalf("subscribe from the snapshot's revision %d: got %v, want 410", snapRev, err)
	}
	ws = subscribe(t, srv, snapRev+1)
	c = newClient(t, srv)
	c.set("last", "31")
	for rev := snapRev + 1; rev <= 31; rev++ {
		if ev := next(t, ws); ev.Revision != rev {
			t.Fatalf("replay from %d: got %+v, want revision %d", snapRev+1, ev, rev)
		}
	}
}

func subscribe(t *testing.T, srv *kvstest.Server, from int64) *websocket.Conn {
	t.Helper()
	ws, _, err := websocket.Dial(t.Context(), fmt.Sprintf("ws://%s/subscribe?from=%d", srv.Addr, from), nil)
	if err != nil {
		t.Fatalf("subscribe from %d: %v", from, err)
	}
	t.Cleanup(func() { ws.CloseNow() })
	return ws
}

// next returns the next change event, skipping progress events.
func next(t *testing.T, ws *websocket.Conn) httpapi.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard
	defer cancel()
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			t.Fatalf("reading the feed: %v", err)
		}
		var ev httpapi.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Type != "progress" {
			return ev
		}
	}
}

// waitLog waits until srv has logged a line containing s.
func waitLog(t *testing.T, srv *kvstest.Server, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second) // a hang guard
	for !strings.Contains(srv.Logs(), s) {
		if time.Now().After(deadline) {
			t.Fatalf("kvsd did not log %s:\n%s", s, srv.Logs())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// recoveredSnapshotRev returns the snapshot revision of srv's "recovered"
// log line.
func recoveredSnapshotRev(t *testing.T, srv *kvstest.Server) int64 {
	t.Helper()
	for line := range strings.Lines(srv.Logs()) {
		var rec struct {
			Msg         string
			SnapshotRev int64 `json:"snapshot_rev"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "recovered" {
			return rec.SnapshotRev
		}
	}
	t.Fatalf("no recovered line in the logs:\n%s", srv.Logs())
	return 0
}

// runKvsd runs kvsd with args until it exits, and returns its exit code and
// what it wrote to stderr.
func runKvsd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard
	defer cancel()
	cmd := exec.CommandContext(ctx, kvstest.Binary(t, "kvsd"), append([]string{"-addr", "127.0.0.1:0"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("kvsd %v: got %v, want it to exit with an error\n%s", args, err, stderr.String())
	}
	return ee.ExitCode(), stderr.String()
}

// TestRefusesDamagedLog damages a record before the end of the log: kvsd
// refuses to start, names the file and offset, exits non-zero, and
// changes nothing.
func TestRefusesDamagedLog(t *testing.T) {
	dir := t.TempDir()
	srv := kvstest.Start(t, "-data", dir)
	c := newClient(t, srv)
	for _, k := range []string{"a", "b", "c"} {
		c.set(k, `"a value long enough to damage"`)
	}
	if code := srv.Stop(); code != 0 {
		t.Fatalf("exit code after SIGTERM: %d", code)
	}
	seg := filepath.Join(dir, "00000000000000000001.wal")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	b[20] ^= 0x01 // inside the first record
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	before := kvstest.DirDigest(t, dir)

	code, stderr := runKvsd(t, "-data", dir, "-log-format", "json")
	if code == 0 || !strings.Contains(stderr, seg) || !strings.Contains(stderr, "damaged at offset 0") {
		t.Fatalf("kvsd on a damaged log: exit %d, stderr:\n%s\nwant a non-zero exit naming %s and offset 0", code, stderr, seg)
	}
	if strings.Contains(stderr, `"msg":"listening"`) {
		t.Errorf("kvsd listened on a damaged log:\n%s", stderr)
	}
	if after := kvstest.DirDigest(t, dir); !maps.Equal(before, after) {
		t.Errorf("kvsd changed the damaged directory:\nbefore %v\n after %v", before, after)
	}
}

// TestRefusesLockedData starts a second kvsd on the directory of a running
// one: it exits non-zero, naming the process that holds it.
func TestRefusesLockedData(t *testing.T) {
	dir := t.TempDir()
	srv := kvstest.Start(t, "-data", dir)
	code, stderr := runKvsd(t, "-data", dir)
	if code == 0 || !strings.Contains(stderr, "in use by another process") || !strings.Contains(stderr, strconv.Itoa(srv.PID())) {
		t.Fatalf("second kvsd: exit %d, stderr:\n%s\nwant a non-zero exit naming process %d", code, stderr, srv.PID())
	}
	newClient(t, srv).set("still", "1")
}

// TestFileBackendFlags checks that bad values of the file backend's flags,
// and of their environment twins, stop kvsd with a message.
func TestFileBackendFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"unknown backend", []string{"-backend", "disk"}, "", `-backend "disk"`},
		{"unknown fsync mode", []string{"-fsync", "sometimes"}, "", `-fsync "sometimes": want always or never`},
		{"fsync mode from the environment", nil, "KVS_FSYNC=often", `-fsync "often"`},
		{"snapshot threshold", []string{"-snapshot-bytes", "0"}, "", "-snapshot-bytes 0: must be positive"},
		{"snapshot threshold from the environment", nil, "KVS_SNAPSHOT_BYTES=-1", "-snapshot-bytes -1"},
		{"data directory that is a file", []string{"-data", "/dev/null"}, "", "/dev/null"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard
			defer cancel()
			args := append([]string{"-addr", "127.0.0.1:0"}, tt.args...)
			if !slices.Contains(tt.args, "-data") {
				args = append(args, "-data", t.TempDir())
			}
			cmd := exec.CommandContext(ctx, kvstest.Binary(t, "kvsd"), args...)
			cmd.Env = append(os.Environ(), tt.env)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(string(out), tt.want) {
				t.Fatalf("kvsd %v %s: got %v\n%s\nwant a non-zero exit and %q", tt.args, tt.env, err, out, tt.want)
			}
		})
	}
}
