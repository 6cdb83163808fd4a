package main_test

import (
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestNewestSegmentDamage is issue 14's finding on the real kvsd: with a
// snapshot and a newest segment holding the last acknowledged writes,
// deleting that segment or emptying it used to give exit 0, an older
// revision, and the next write a revision given before. kvsd must refuse
// to start instead, naming the file and the missing revisions, and leave
// the directory as it is.
func TestNewestSegmentDamage(t *testing.T) {
	for _, damage := range []string{"deleted", "emptied"} {
		t.Run(damage, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			args := []string{"-data", dir, "-snapshot-bytes", "4096"}
			srv := kvstest.Start(t, args...)
			const n = 200
			for i := 1; i <= n; i++ {
				resp, err := http.Post(srv.URL+"/set", "", strings.NewReader(`{"Key":"k`+strconv.Itoa(i%20)+`","Value":"`+strings.Repeat("v", 100)+`"}`))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
			}
			if code := srv.Stop(); code != 0 {
				t.Fatalf("kvsd exited %d", code)
			}
			segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
			snaps, _ := filepath.Glob(filepath.Join(dir, "*.snap"))
			if len(segs) == 0 || len(snaps) == 0 {
				t.Fatalf("want a snapshot and segments, got %v and %v", snaps, segs)
			}
			slices.Sort(segs)
			newest := segs[len(segs)-1]
			if damage == "deleted" {
				os.Remove(newest)
			} else {
				os.Truncate(newest, 0)
			}
			r := runBinary(t, "kvsd", cleanEnv(), append(args, "-addr", "127.0.0.1:0")...)
			want := "the newest segment is missing"
			if damage == "emptied" {
				want = "but the revisions up to " + strconv.Itoa(n) + " were acknowledged"
			}
			if r.code != 1 || !strings.Contains(r.stderr, filepath.Base(newest)) || !strings.Contains(r.stderr, want) {
				t.Fatalf("kvsd after the newest segment was %s: exit %d\n%s\nwant exit 1 naming %s and saying %q", damage, r.code, r.stderr, filepath.Base(newest), want)
			}
			if after, _ := filepath.Glob(filepath.Join(dir, "*.wal")); len(after) != len(segs)-map[string]int{"deleted": 1, "emptied": 0}[damage] {
				t.Fatalf("the refused start changed the segments: %v, then %v", segs, after)
			}
		})
	}
}
