package main_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/kv"
)

// TestStartupTime measures how long kvsd takes to be ready, and the memory
// it holds, on a data directory of many keys (16-byte keys, 100-byte
// values). It reports and checks nothing about speed: it runs only when
// KVS_STARTUP_KEYS is set, e.g.
//
//	KVS_STARTUP_KEYS=1000000 go test ./cmd/kvsd -run TestStartupTime -v
//
// (without -race, for real numbers). The directory is generated through the
// store, as writes would make it: a snapshot and the log after it. Set
// KVS_STARTUP_DIR to keep it and reuse it in later runs.
func TestStartupTime(t *testing.T) {
	env := os.Getenv("KVS_STARTUP_KEYS")
	if env == "" {
		t.Skip("set KVS_STARTUP_KEYS to measure start-up time")
	}
	keys, err := strconv.Atoi(env)
	if err != nil || keys <= 0 {
		t.Fatalf("KVS_STARTUP_KEYS=%q: want a positive number", env)
	}
	dir := os.Getenv("KVS_STARTUP_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if m, _ := filepath.Glob(filepath.Join(dir, "*.wal")); len(m) == 0 {
		began := time.Now()
		generate(t, dir, keys)
		t.Logf("generated %d keys in %v", keys, time.Since(began).Round(time.Millisecond))
	}
	var sizes []string
	var total int64
	ms, _ := filepath.Glob(filepath.Join(dir, "*"))
	for _, m := range ms {
		if fi, err := os.Stat(m); err == nil && fi.Size() > 0 {
			sizes = append(sizes, fmt.Sprintf("%s %.1f MiB", filepath.Base(m), float64(fi.Size())/(1<<20)))
			total += fi.Size()
		}
	}
	t.Logf("data directory %s: %.1f MiB: %s", dir, float64(total)/(1<<20), strings.Join(sizes, ", "))

	for run := range 3 {
		began := time.Now()
		srv := kvstest.Start(t, "-data", dir)
		for {
			resp, err := http.Get(srv.URL + "/readyz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Since(began) > 5*time.Minute { // a hang guard
				t.Fatalf("not ready after %v", time.Since(began))
			}
			time.Sleep(time.Millisecond)
		}
		ready := time.Since(began)
		rss, hwm := procStatus(t, srv.PID(), "VmRSS"), procStatus(t, srv.PID(), "VmHWM")
		var recovered string
		for line := range strings.Lines(srv.Logs()) {
			if strings.Contains(line, `"msg":"recovered"`) {
				recovered = strings.TrimSpace(line)
			}
		}
		if !strings.Contains(recovered, fmt.Sprintf(`"keys":%d,`, keys)) {
			t.Fatalf("recovered line %s: want %d keys", recovered, keys)
		}
		t.Logf("run %d: ready in %v, RSS %s (peak %s); %s", run, ready.Round(time.Millisecond), rss, hwm, recovered)
		if code := srv.Stop(); code != 0 {
			t.Fatalf("exit code after SIGTERM: %d", code)
		}
	}
}

// generate sets keys keys in a store on dir, from 64 writers.
func generate(t *testing.T, dir string, keys int) {
	l, err := kv.Open(dir, kv.FileOptions{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	s := kv.New(kv.Options{Log: l})
	value := []byte(`"` + strings.Repeat("v", 98) + `"`)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(keys) {
					return
				}
				if _, err := s.Set(context.Background(), fmt.Sprintf("key-%012d", i), value); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// procStatus returns a field of /proc/PID/status, such as "VmRSS".
func procStatus(t *testing.T, pid int, field string) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
