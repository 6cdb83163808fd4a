package httpapi_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
	"github.com/kvsdb/kvs/wire"
)

// readAllBackup reads a whole backup.
func readAllBackup(t *testing.T, r io.Reader) (wire.BackupInfo, []wire.Entry) {
	t.Helper()
	br, err := wire.NewBackupReader(r)
	if err != nil {
		t.Fatal(err)
	}
	var es []wire.Entry
	for {
		e, err := br.Next()
		if err == io.EOF {
			return br.Info(), es
		}
		if err != nil {
			t.Fatal(err)
		}
		es = append(es, e)
	}
}

// TestSnapshot checks that GET /snapshot answers a backup that holds
// exactly what /list holds, at the revision of its header and of
// Kvs-Revision, and that HEAD answers the revision alone.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	srv, _ := newAPI(t, httpapi.Options{})
	a := do(t, "GET", srv.URL+"/snapshot", "")
	if a.code != 200 || a.header.Get(wire.RevisionHeader) != "0" {
		t.Fatalf("empty store: got %d, Kvs-Revision %q", a.code, a.header.Get(wire.RevisionHeader))
	}
	if info, es := readAllBackup(t, strings.NewReader(a.body)); info.Revision != 0 || len(es) != 0 {
		t.Fatalf("empty store: backup at %d with %d entries", info.Revision, len(es))
	}
	for _, body := range []string{
		`{"Key":"City","Value":"Ahmedabad"}`,
		`{"Key":"n","Value":1.50}`,
		`{"Key":"City","Value":"Mumbai"}`,
		`{"Key":"Name","Value":{"a":[1, 2]}}`,
		`{"Key":"gone","Value":true}`,
		`{"Key":"big","Value":"` + strings.Repeat("b", 100<<10) + `"}`,
	} {
		if a := do(t, "POST", srv.URL+"/set", body); a.code != 200 {
			t.Fatalf("set: %d %s", a.code, a.body)
		}
	}
	if a := do(t, "POST", srv.URL+"/delete", `{"Key":"gone"}`); a.code != 200 {
		t.Fatalf("delete: %d %s", a.code, a.body)
	}
	a = do(t, "GET", srv.URL+"/snapshot", "")
	if a.code != 200 {
		t.Fatalf("got %d %s", a.code, a.body)
	}
	for name, want := range map[string]string{
		"Content-Type":        "application/octet-stream",
		wire.RevisionHeader:   "7",
		"Content-Disposition": `attachment; filename="kvs-backup-7.snap"`,
		"Cache-Control":       "no-store",
	} {
		if got := a.header.Get(name); got != want {
			t.Errorf("%s: got %q, want %q", name, got, want)
		}
	}
	info, es := readAllBackup(t, strings.NewReader(a.body))
	var l wire.List
	if err := json.Unmarshal([]byte(do(t, "GET", srv.URL+"/list", "").body), &l); err != nil {
		t.Fatal(err)
	}
	if info.Revision != l.Revision || info.Entries != int64(len(l.Entries)) || !reflect.DeepEqual(es, l.Entries) {
		t.Fatalf("backup at %d: %+v\n/list at %d: %+v", info.Revision, es, l.Revision, l.Entries)
	}
	if info.Size != int64(len(a.body)) || time.Since(info.Created) > time.Minute {
		t.Fatalf("backup info %+v for %d bytes", info, len(a.body))
	}
	a = do(t, "HEAD", srv.URL+"/snapshot", "")
	if a.code != 200 || a.header.Get(wire.RevisionHeader) != "7" || a.body != "" {
		t.Fatalf("HEAD: got %d, Kvs-Revision %q, body of %d bytes", a.code, a.header.Get(wire.RevisionHeader), len(a.body))
	}
	if a := do(t, "POST", srv.URL+"/snapshot", ""); a.code != 405 || a.header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST: got %d %v", a.code, a.header)
	}
}

// TestSnapshotToken checks that /snapshot needs the token, as a header or
// as the console's cookie.
func TestSnapshotToken(t *testing.T) {
	t.Parallel()
	const token = "0123456789abcdef0123"
	srv, _ := newAPI(t, httpapi.Options{Token: token})
	get := func(set func(r *http.Request)) *http.Response {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/snapshot", nil)
		set(req)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	for name, set := range map[string]func(*http.Request){
		"no token":    func(*http.Request) {},
		"wrong token": func(r *http.Request) { r.Header.Set("Authorization", "Bearer nope") },
		"bad cookie":  func(r *http.Request) { r.AddCookie(&http.Cookie{Name: httpapi.CookieName, Value: "x"}) },
	} {
		resp := get(set)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 401 || !strings.Contains(string(b), `"error":"unauthorized`) || bytes.Contains(b, []byte("KVSSNAP")) {
			t.Errorf("%s: got %d %q, want 401 JSON", name, resp.StatusCode, b)
		}
	}
	resp := get(func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) })
	if resp.StatusCode != 200 {
		t.Fatalf("with the token: got %d", resp.StatusCode)
	}
	readAllBackup(t, resp.Body)

	// The console's cookie, from /login.
	login, err := http.Post(srv.URL+"/login", "application/json", strings.NewReader(`{"Token":"`+token+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	login.Body.Close()
	resp = get(func(r *http.Request) {
		for _, c := range login.Cookies() {
			r.AddCookie(c)
		}
	})
	if resp.StatusCode != 200 {
		t.Fatalf("with the cookie: got %d", resp.StatusCode)
	}
	readAllBackup(t, resp.Body)
}

// fillStore sets n keys of size bytes each.
func fillStore(t testing.TB, store *kv.Store, n, size int) {
	t.Helper()
	v := []byte(`"` + strings.Repeat("v", size-2) + `"`)
	for i := range n {
		if _, err := store.Set(t.Context(), fmt.Sprintf("k%07d", i), v); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSnapshotSlowReader checks that a backup read slowly holds the state
// at its revision although every key changes while it is read, and that
// writers are not held up meanwhile.
func TestSnapshotSlowReader(t *testing.T) {
	t.Parallel()
	srv, store := newAPI(t, httpapi.Options{})
	const n = 2000
	fillStore(t, store, n, 2048)
	rev := store.Rev()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/snapshot", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	r := bufio.NewReaderSize(resp.Body, 1024)
	if _, err := r.Peek(1024); err != nil {
		t.Fatal(err)
	}
	// With the backup under way and unread, every key changes, and one
	// more is made.
	for i := range n {
		if _, err := store.Set(t.Context(), fmt.Sprintf("k%07d", i), []byte(`"new"`)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := store.Set(t.Context(), "later", []byte(`1`)); err != nil {
		t.Fatal(err)
	}
	info, es := readAllBackup(t, r)
	if info.Revision != rev || len(es) != n {
		t.Fatalf("backup at %d with %d entries, want %d with %d", info.Revision, len(es), rev, n)
	}
	for i, e := range es {
		if e.Key != fmt.Sprintf("k%07d", i) || len(e.Value) != 2048 || e.Revision != int64(i+1) || e.Version != 1 {
			t.Fatalf("entry %d: %s at %d, version %d, %d bytes", i, e.Key, e.Revision, e.Version, len(e.Value))
		}
	}
}

// TestSnapshotLimit checks that a backup beyond Options.MaxSnapshots gets
// 429 with Retry-After, and that the slot is free again once a backup is
// over, also one whose client went away.
func TestSnapshotLimit(t *testing.T) {
	t.Parallel()
	srv, store := newAPI(t, httpapi.Options{MaxSnapshots: 1})
	// More than the socket buffers hold, so that an unread backup stays
	// under way.
	fillStore(t, store, 24, 1<<20)
	req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/snapshot", nil)
	first, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if first.StatusCode != 200 {
		t.Fatalf("first backup: %d", first.StatusCode)
	}
	a := do(t, "GET", srv.URL+"/snapshot", "")
	if a.code != 429 || a.header.Get("Retry-After") == "" || !strings.Contains(a.body, `"error":"too many backups at once`) {
		t.Fatalf("second backup: got %d %v %s, want 429 JSON with Retry-After", a.code, a.header, a.body)
	}
	first.Body.Close() // the first client goes away
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		req, _ := http.NewRequestWithContext(t.Context(), "GET", srv.URL+"/snapshot", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == 200 {
			_, es := readAllBackup(t, resp.Body)
			resp.Body.Close()
			if len(es) != 24 {
				t.Fatalf("%d entries, want 24", len(es))
			}
			break
		}
		resp.Body.Close()
		if resp.StatusCode != 429 || time.Now().After(deadline) {
			t.Fatalf("after the first backup ended: got %d", resp.StatusCode)
		}
	}
}

// TestSnapshotCutShort checks that a backup cut short, at any point, is
// refused by the reader: a client cannot take a partial backup for a
// whole one.
func TestSnapshotCutShort(t *testing.T) {
	t.Parallel()
	srv, store := newAPI(t, httpapi.Options{})
	fillStore(t, store, 300, 1000)
	a := do(t, "GET", srv.URL+"/snapshot", "")
	for _, cut := range []int{0, 8, 100, len(a.body) / 2, len(a.body) - 13, len(a.body) - 1} {
		_, err := wire.VerifyBackup(strings.NewReader(a.body[:cut]))
		if !errors.Is(err, wire.ErrBadBackup) {
			t.Errorf("cut at %d of %d: got %v", cut, len(a.body), err)
		}
	}
	if _, err := wire.VerifyBackup(strings.NewReader(a.body)); err != nil {
		t.Fatal(err)
	}
	if got := a.header.Get(wire.RevisionHeader); got != strconv.Itoa(300) {
		t.Fatalf("Kvs-Revision %q", got)
	}
}
