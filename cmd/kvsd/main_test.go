package main_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestOriginalCurlCommands runs the original project's three curl commands,
// verbatim but for the address, against the real kvsd, then stops it with
// SIGTERM and expects a clean exit.
func TestOriginalCurlCommands(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	tests := []struct {
		name string
		args []string // curl arguments after the URL
		path string
		body string
		want string
	}{
		{"set", []string{"-d", `{"Key": "City", "Value": "Ahmedabad"}`}, "/set", `{"Key": "City", "Value": "Ahmedabad"}`,
			`{"Key":"City","Revision":1}` + "\n"},
		{"get", []string{"-d", `{"Key": "City"}`}, "/get", `{"Key": "City"}`,
			`{"Key":"City","Value":"Ahmedabad","Revision":1,"CreateRevision":1,"Version":1}` + "\n"},
		{"getall", nil, "/getall", "",
			`{"City":"Ahmedabad"}` + "\n"},
	}
	curl, _ := exec.LookPath("curl")
	for _, tt := range tests {
		var got string
		if curl != "" {
			out, err := exec.Command(curl, append([]string{"-sS", srv.Addr + tt.path}, tt.args...)...).Output()
			if err != nil {
				t.Fatalf("%s: curl: %v", tt.name, err)
			}
			got = string(out)
		} else {
			// What curl sends: POST with a form content type for -d, GET otherwise.
			var resp *http.Response
			var err error
			if tt.body != "" {
				resp, err = http.Post(srv.URL+tt.path, "application/x-www-form-urlencoded", strings.NewReader(tt.body))
			} else {
				resp, err = http.Get(srv.URL + tt.path)
			}
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = string(b)
		}
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	if code := srv.Stop(); code != 0 {
		t.Fatalf("kvsd exit code after SIGTERM: got %d, want 0", code)
	}
	if !bytes.Contains([]byte(srv.Logs()), []byte(`"msg":"stopped"`)) {
		t.Errorf("kvsd did not log a clean stop:\n%s", srv.Logs())
	}
}

// TestGracefulShutdown sends SIGTERM while writers are running and a
// subscriber is watching: kvsd closes the subscriber with 1001 and the
// revision to resume from, answers the writes in flight, exits 0, and a
// restart on the same data has every acknowledged write.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	srv := kvstest.Start(t, "-backend", "file", "-data", dir)
	ws := subscribe(t, srv, 1)
	c := newClient(t, srv)

	type ack struct {
		value string
		rev   int64
	}
	var (
		mu    sync.Mutex
		acked = map[string]ack{}
		wg    sync.WaitGroup
	)
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				key, value := fmt.Sprintf("w%d/%d", w, i), strconv.Itoa(i)
				code, ans, err := c.post("/set", httpapi.WriteRequest{Key: key, Value: json.RawMessage(value)})
				if err != nil {
					return // the server closed the connection or stopped listening
				}
				if code == http.StatusServiceUnavailable {
					continue
				}
				if code != http.StatusOK {
					t.Errorf("set during shutdown: %d %s", code, ans)
					return
				}
				var res httpapi.WriteResult
				if err := json.Unmarshal(ans, &res); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked[key] = ack{value, res.Revision}
				mu.Unlock()
			}
		})
	}
	// Let the writers run, then stop the server under them.
	for {
		mu.Lock()
		n := len(acked)
		mu.Unlock()
		if n >= 200 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	srv.Signal(syscall.SIGTERM)

	var last int64
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second) // a hang guard
	defer cancel()
	for {
		_, b, err := ws.Read(ctx)
		if err != nil {
			var ce websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway {
				t.Fatalf("subscriber: got %v, want close 1001", err)
			}
			if want := fmt.Sprintf("server shutting down, resume from %d", last+1); ce.Reason != want {
				t.Fatalf("close reason %q, want %q", ce.Reason, want)
			}
			break
		}
		var ev httpapi.Event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		if ev.Revision <= last {
			t.Fatalf("event at revision %d after %d", ev.Revision, last)
		}
		last = ev.Revision
	}
	wg.Wait()
	if code := srv.Wait(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM, want 0", code)
	}

	again := kvstest.Start(t, "-backend", "file", "-data", dir)
	state, _ := newClient(t, again).getall()
	for key, a := range acked {
		if got := state[key]; got != a.value {
			t.Fatalf("acknowledged %s=%s (revision %d) is %q after the restart", key, a.value, a.rev, got)
		}
	}
	t.Logf("%d writes acknowledged before and during the shutdown", len(acked))
}
