package main_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
	"github.com/kvsdb/kvs/wire"
)

var (
	takenLine    = regexp.MustCompile(`(?m)^taken\t.*$`)
	checksumLine = regexp.MustCompile(`(?m)^checksum\t[0-9a-f]{8}$`)
)

// hideDir replaces dir in r's output with DIR, and the time and checksum
// of a backup, which change from run to run, with TIME and CRC.
func hideDir(r result, dir string) result {
	for _, s := range []*string{&r.stdout, &r.stderr} {
		*s = strings.ReplaceAll(*s, dir, "DIR")
		*s = takenLine.ReplaceAllString(*s, "taken\tTIME")
		*s = checksumLine.ReplaceAllString(*s, "checksum\tCRC")
	}
	return r
}

// leftovers returns the files in dir other than names.
func leftovers(t *testing.T, dir string, names ...string) []string {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var extra []string
	for _, de := range des {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+de.Name()+" ") {
			extra = append(extra, de.Name())
		}
	}
	return extra
}

// TestSnapshotCommands runs snapshot save and status against the real
// kvsd, on good and damaged files, and compares what they print and their
// exit codes with the golden files testdata/snapshot_*.golden.
func TestSnapshotCommands(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	for _, args := range [][]string{
		{"set", "-key", "City", "-value", "Ahmedabad"},
		{"set", "-key", "cfg", "-value", `{"retries":3}`, "-json-value"},
		{"set", "-key", "City", "-value", "Mumbai"},
	} {
		if r := kvscli(t, nil, append([]string{"-server-address", srv.Addr}, args...)...); r.code != 0 {
			t.Fatalf("%v: %d %s", args, r.code, r.stderr)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "backup.snap")
	run := func(name string, code int, args ...string) result {
		t.Helper()
		full := append([]string{"-server-address", "ADDR"}, args...)
		r := kvscli(t, nil, withAddr(full, srv.Addr)...)
		if r.code != code {
			t.Errorf("%s: exit code %d, want %d (stderr: %s)", name, r.code, code, r.stderr)
		}
		for i := range full {
			full[i] = strings.ReplaceAll(full[i], dir, "DIR")
		}
		checkGolden(t, "snapshot_"+name, formatGolden(full, hideDir(hideAddr(r, srv.Addr), dir)))
		return r
	}

	run("save", 0, "snapshot", "save", file)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	info, err := wire.VerifyBackup(bytes.NewReader(b))
	if err != nil || info.Revision != 3 || info.Entries != 2 {
		t.Fatalf("the saved backup: %+v, %v", info, err)
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("the backup's mode is %v, want 0600: it holds every value", fi.Mode().Perm())
	}
	if extra := leftovers(t, dir, "backup.snap"); extra != nil {
		t.Errorf("files left behind: %v", extra)
	}
	run("status", 0, "snapshot", "status", file)
	// Flags may come after the arguments.
	if r := kvscli(t, nil, "snapshot", "status", file, "-server-address", "127.0.0.1:1"); r.code != 0 {
		t.Errorf("status with a flag after the FILE: %d %s", r.code, r.stderr)
	}

	damaged := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	flipped := bytes.Clone(b)
	flipped[40] ^= 0x10
	newer := bytes.Clone(b)
	newer[7] = 3
	run("status_truncated", 1, "snapshot", "status", damaged("cut.snap", b[:len(b)/2]))
	run("status_bit_flipped", 1, "snapshot", "status", damaged("flipped.snap", flipped))
	run("status_newer_version", 1, "snapshot", "status", damaged("newer.snap", newer))
	run("status_not_a_backup", 1, "snapshot", "status", damaged("notes.txt", []byte("hello\n")))
	run("status_missing", 1, "snapshot", "status", filepath.Join(dir, "nothing.snap"))

	// A save that fails leaves the existing file as it was, and nothing
	// else: the server cuts the backup short, or refuses it.
	cut := fakeServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Write(b[:len(b)-5])
		w.(http.Flusher).Flush()
		conn, _, _ := http.NewResponseController(w).Hijack()
		conn.Close()
	})
	unauthorized := fakeServer(t, jsonAnswer(401, `{"error":"unauthorized"}`))
	if err := os.WriteFile(file, []byte("the old backup"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name, addr string
	}{
		{"save_cut_short", cut},
		{"save_unauthorized", unauthorized},
		{"save_down", kvstest.FreeAddr(t)},
	} {
		args := []string{"-server-address", "ADDR", "snapshot", "save", file}
		r := kvscli(t, nil, withAddr(args, tt.addr)...)
		if r.code != 3 {
			t.Errorf("%s: exit code %d, want 3 (stderr: %s)", tt.name, r.code, r.stderr)
		}
		args[4] = "DIR/backup.snap"
		checkGolden(t, "snapshot_"+tt.name, formatGolden(args, hideDir(hideAddr(r, tt.addr), dir)))
		if got, _ := os.ReadFile(file); string(got) != "the old backup" {
			t.Errorf("%s: the existing file changed", tt.name)
		}
	}
	run("save_no_directory", 1, "snapshot", "save", filepath.Join(dir, "none", "backup.snap"))
	run("save_to_directory", 2, "snapshot", "save", dir)
	if extra := leftovers(t, dir, "backup.snap", "cut.snap", "flipped.snap", "newer.snap", "notes.txt"); extra != nil {
		t.Errorf("files left behind: %v", extra)
	}
	// And a save over an existing file replaces it.
	run("save_again", 0, "snapshot", "save", file)
	if got, _ := os.ReadFile(file); !bytes.Equal(got[:8], []byte("KVSSNAP\x02")) {
		t.Errorf("the file was not replaced: %q", got[:min(len(got), 20)])
	}
}
