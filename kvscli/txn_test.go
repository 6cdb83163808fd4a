package main_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestTxnCommands runs kvscli txn against the real kvsd, one step after
// the other, and compares what it prints and its exit code with the golden
// files testdata/NAME.golden.
func TestTxnCommands(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory", "-max-txn-ops", "3")
	file := filepath.Join(t.TempDir(), "txn.json")
	if err := os.WriteFile(file, []byte(`{"If": [{"Key": "done list", "Exists": false}],
		"Then": [{"Op": "set", "Key": "done list", "Value": ["eggs"]}, {"Op": "get", "Key": "done list"}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	a := []string{"-server-address", "ADDR", "txn"}
	tests := []struct {
		name string
		args []string
		code int
	}{
		{"txn_create", append(a, "-if", "todo absent", "-then", "set todo milk & eggs", "-then", "get todo"), 0},
		{"txn_move", append(a, "-if", "todo rev=1", "-if", "done absent", "-then", `set todo ["milk"]`, "-then", `set done ["eggs"]`,
			"-else", "get todo", "-else", "get done", "-json-value"), 0},
		{"txn_move_again", append(a, "-if", "todo rev=1", "-if", "done absent", "-then", `set todo ["milk"]`, "-then", `set done ["eggs"]`,
			"-else", "get todo", "-else", "get done", "-else", "get nothing", "-json-value"), 1},
		{"txn_conditions", append(a, "-if", "todo rev>1", "-if", "todo rev!=7", "-if", "done exists",
			"-then", "del todo", "-then", "set done eggs and milk", "-then", "get todo"), 0},
		{"txn_value", append(a, "-if", "done value=eggs and milk", "-then", "get done", "-json"), 0},
		{"txn_value_json", append(a, "-if", `done value!="eggs and milk"`, "-else", "get done", "-json-value"), 1},
		{"txn_file", append(a, "-file", file), 0},
		{"txn_file_again", append(a, "-file", file, "-json"), 1},
		{"txn_file_missing", append(a, "-file", filepath.Join(filepath.Dir(file), "nope.json")), 2},
		{"txn_twice", append(a, "-then", "set a 1", "-then", "del a"), 2},
		{"txn_too_many", append(a, "-then", "get a", "-then", "get b", "-then", "get c", "-then", "get d"), 2},
		{"txn_bad_cond", append(a, "-if", "todo rev<=3"), 2},
		{"txn_bad_op", append(a, "-then", "put a 1"), 2},
		{"txn_bad_json_value", append(a, "-then", "set a {", "-json-value"), 2},
		{"txn_nothing", a, 2},
		{"txn_file_and_flags", append(a, "-file", file, "-then", "get a"), 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := kvscli(t, nil, withAddr(tt.args, srv.Addr)...)
			if r.code != tt.code {
				t.Errorf("exit code: got %d, want %d (stderr: %s)", r.code, tt.code, r.stderr)
			}
			got := formatGolden(tt.args, hideAddr(r, srv.Addr))
			checkGolden(t, tt.name, strings.ReplaceAll(got, filepath.Dir(file), "DIR"))
		})
	}

	// -file - reads the transaction from stdin.
	cmd := exec.Command(kvstest.Binary(t, "kvscli"), "-server-address", srv.Addr, "txn", "-file", "-")
	cmd.Env = cliEnv()
	cmd.Stdin = strings.NewReader(`{"Then":[{"Op":"set","Key":"from stdin","Value":1},{"Op":"get","Key":"from stdin"}]}`)
	out, err := cmd.Output()
	if err != nil || !strings.HasSuffix(string(out), "\nfrom stdin\t1\n") {
		t.Fatalf("txn -file -: %v, %q", err, out)
	}
}

// TestTxnUsage checks txn -h, which needs no server.
func TestTxnUsage(t *testing.T) {
	t.Parallel()
	args := []string{"txn", "-h"}
	r := kvscli(t, cliEnv("KVS_ADDRESS=127.0.0.1:1"), args...)
	if r.code != 0 {
		t.Errorf("exit code: got %d, want 0 (stderr: %s)", r.code, r.stderr)
	}
	checkGolden(t, "usage_txn_help", formatGolden(args, r))
}
