package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestTxnMode runs the txn mode against a real kvsd: every transaction
// succeeds on the preloaded key space and sets two keys at one revision,
// and without the preload every one runs Else and is counted as an error.
func TestTxnMode(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	stdout, stderr, code := kvsbench(t, srv, "-json", "-progress", "200ms", "txn", "-c", "4", "-d", "1s", "-keys", "50", "-key-prefix", "txn/")
	if code != 0 {
		t.Fatalf("exit code %d, want 0\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	r := decode(t, stdout)
	if !r.OK || len(r.Errors) != 0 || r.Preload == nil || r.Preload.Keys != 50 {
		t.Fatalf("ok %v, errors %v, preload %+v: want ok, no errors, 50 keys preloaded", r.OK, r.Errors, r.Preload)
	}
	if r.Ops == 0 || r.Latency["txn"].Count != uint64(r.Ops) {
		t.Fatalf("ops %d, txn latencies %d: want equal and > 0", r.Ops, r.Latency["txn"].Count)
	}
	// Each transaction took one revision: the preload's 50, then one each.
	resp, err := http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := "kvs_transactions_total{outcome=\"then\"} " + strconv.FormatInt(r.Ops, 10); !strings.Contains(string(body), want+"\n") {
		t.Errorf("metrics: want %q in\n%s", want, body)
	}
	if want := "kvs_revision " + strconv.FormatInt(50+r.Ops, 10); !strings.Contains(string(body), want+"\n") {
		t.Errorf("metrics: want %q", want)
	}

	stdout, _, code = kvsbench(t, srv, "-json", "txn", "-c", "2", "-n", "10", "-keys", "50", "-key-prefix", "none/", "-preload", "0")
	var res struct {
		Errors map[string]int64
		OK     bool
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	if code != 1 || res.OK || res.Errors["txn: error"] != 10 {
		t.Fatalf("without the preload: exit %d, %+v; want exit 1 and 10 errors", code, res)
	}
}
