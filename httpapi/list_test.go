package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
	"github.com/kvsdb/kvs/wire"
)

// TestList checks /list's answers byte for byte: entries with their
// revisions, sorted by key, the prefix taken from the query string (any
// letter case) or from a JSON body, and the revision in the body and in
// the Kvs-Revision header.
func TestList(t *testing.T) {
	t.Parallel()
	srv, _ := newAPI(t, httpapi.Options{})
	if a := do(t, "GET", srv.URL+"/list", ""); a.code != 200 || a.body != `{"Revision":0,"Entries":[]}`+"\n" || a.header.Get(wire.RevisionHeader) != "0" {
		t.Fatalf("empty store: got %d %q, Kvs-Revision %q", a.code, a.body, a.header.Get(wire.RevisionHeader))
	}
	for _, body := range []string{
		`{"Key":"City","Value":"Ahmedabad"}`,
		`{"Key":"n","Value":1.50}`,
		`{"Key":"City","Value":"Mumbai"}`,
		`{"Key":"Name","Value":{"a":[1, 2]}}`,
		`{"Key":"gone","Value":true}`,
	} {
		if a := do(t, "POST", srv.URL+"/set", body); a.code != 200 {
			t.Fatalf("set %s: %d %s", body, a.code, a.body)
		}
	}
	if a := do(t, "POST", srv.URL+"/delete", `{"Key":"gone"}`); a.code != 200 {
		t.Fatalf("delete: %d %s", a.code, a.body)
	}
	city := `{"Key":"City","Value":"Mumbai","Revision":3,"CreateRevision":1,"Version":2}`
	name := `{"Key":"Name","Value":{"a":[1,2]},"Revision":4,"CreateRevision":4,"Version":1}`
	n := `{"Key":"n","Value":1.50,"Revision":2,"CreateRevision":2,"Version":1}`
	all := `{"Revision":6,"Entries":[` + city + `,` + name + `,` + n + `]}` + "\n"
	none := `{"Revision":6,"Entries":[]}` + "\n"
	tests := []struct {
		name, method, path, body string
		want                     string
	}{
		{"all", "GET", "/list", "", all},
		{"prefix", "GET", "/list?prefix=N", "", `{"Revision":6,"Entries":[` + name + `]}` + "\n"},
		{"prefix case", "GET", "/list?Prefix=", "", all},
		{"prefix none", "GET", "/list?prefix=zz", "", none},
		{"prefix escaped", "GET", "/list?prefix=%43", "", `{"Revision":6,"Entries":[` + city + `]}` + "\n"},
		{"post empty", "POST", "/list", "", all},
		{"post object", "POST", "/list", `{}`, all},
		{"post prefix", "POST", "/list", `{"Prefix":"N"}`, `{"Revision":6,"Entries":[` + name + `]}` + "\n"},
		{"post prefix lower case", "POST", "/list", ` {"prefix" : "C", "other": [1]} `, `{"Revision":6,"Entries":[` + city + `]}` + "\n"},
		{"post prefix escaped", "POST", "/list", `{"Prefix":"\u0043"}`, `{"Revision":6,"Entries":[` + city + `]}` + "\n"},
		{"post null prefix", "POST", "/list", `{"Prefix":null}`, all},
		{"post query prefix", "POST", "/list?prefix=zz", "", none},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, tt.method, srv.URL+tt.path, tt.body)
			if a.code != 200 || a.body != tt.want {
				t.Errorf("got %d %s, want 200 %s", a.code, a.body, tt.want)
			}
			if got := a.header.Get(wire.RevisionHeader); got != "6" {
				t.Errorf("Kvs-Revision %q, want 6", got)
			}
			if got := a.header.Get("Content-Type"); got != "application/json" {
				t.Errorf("Content-Type %q, want application/json", got)
			}
		})
	}

	a := do(t, "HEAD", srv.URL+"/list?prefix=zz", "")
	if got := a.header.Get(wire.RevisionHeader); a.code != 200 || got != "6" || a.body != "" {
		t.Errorf("HEAD: got %d, Kvs-Revision %q, body %q; want 200, 6 and no body", a.code, got, a.body)
	}
}

// TestListErrors checks that a bad /list request is a 400 (or 405, 413)
// with a JSON error, never a listing of something else.
func TestListErrors(t *testing.T) {
	t.Parallel()
	srv, _ := newAPI(t, httpapi.Options{MaxBodyBytes: 100})
	do(t, "POST", srv.URL+"/set", `{"Key":"a","Value":1}`)
	tests := []struct {
		name, method, path, body string
		code                     int
		msg                      string
	}{
		{"bad prefix", "GET", "/list?prefix=%01", "", 400, "bad prefix: key must not contain control characters"},
		{"prefix twice", "GET", "/list?prefix=a&prefix=b", "", 400, "given more than once"},
		{"prefix twice in two cases", "GET", "/list?prefix=a&Prefix=b", "", 400, "given more than once"},
		{"bad query", "GET", "/list?prefix=%zz", "", 400, "malformed query string"},
		{"invalid utf-8 in query", "GET", "/list?prefix=%ff", "", 400, "bad prefix: key is not valid UTF-8"},
		{"query and body", "POST", "/list?prefix=a", `{"Prefix":"a"}`, 400, "prefix given twice"},
		{"malformed body", "POST", "/list", `{"Prefix":`, 400, "malformed JSON"},
		{"trailing data", "POST", "/list", `{"Prefix":"a"} {}`, 400, "malformed JSON"},
		{"not an object", "POST", "/list", `["a"]`, 400, "malformed JSON"},
		{"prefix not a string", "POST", "/list", `{"Prefix":1}`, 400, `"Prefix" must be a JSON string`},
		{"invalid utf-8 in body", "POST", "/list", "{\"Prefix\":\"\xff\"}", 400, "prefix is not valid UTF-8"},
		{"lone surrogate", "POST", "/list", `{"Prefix":"\ud800"}`, 400, "lone surrogate"},
		{"control character", "POST", "/list", `{"Prefix":"\u0001"}`, 400, "control characters"},
		{"too large", "POST", "/list", `{"Prefix":"` + strings.Repeat("a", 200) + `"}`, 413, "over the limit"},
		{"wrong method", "DELETE", "/list", "", 405, "method not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, tt.method, srv.URL+tt.path, tt.body)
			var e wire.Error
			if a.code != tt.code || json.Unmarshal([]byte(a.body), &e) != nil || !strings.Contains(e.Error, tt.msg) {
				t.Errorf("got %d %s, want %d with an error containing %q", a.code, a.body, tt.code, tt.msg)
			}
		})
	}
}

// TestListLarge lists enough keys to need several writes, and checks that
// /list and /getall agree.
func TestListLarge(t *testing.T) {
	t.Parallel()
	store := kv.New(kv.Options{})
	t.Cleanup(func() { store.Close() })
	srv, _ := newAPI(t, httpapi.Options{Store: store})
	const n = 3000
	for i := range n {
		if _, err := store.Set(t.Context(), "key"+strconv.Itoa(i), []byte(`"`+strings.Repeat("v", 20)+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	var l wire.List
	a := do(t, "GET", srv.URL+"/list", "")
	dec := json.NewDecoder(strings.NewReader(a.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != n || l.Revision != n {
		t.Fatalf("got %d entries at revision %d, want %d at %d", len(l.Entries), l.Revision, n, n)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(do(t, "GET", srv.URL+"/getall", "").body), &m); err != nil {
		t.Fatal(err)
	}
	for i, e := range l.Entries {
		if i > 0 && l.Entries[i-1].Key >= e.Key {
			t.Fatalf("not sorted: %q before %q", l.Entries[i-1].Key, e.Key)
		}
		if !bytes.Equal(m[e.Key], e.Value) || e.Version != 1 || e.CreateRevision != e.Revision {
			t.Fatalf("entry %+v, /getall has %s", e, m[e.Key])
		}
	}
}

// TestListNeedsToken checks that /list is behind the token like the other
// reads.
func TestListNeedsToken(t *testing.T) {
	t.Parallel()
	srv, _ := newAPI(t, httpapi.Options{Token: "secret"})
	for _, method := range []string{"GET", "POST", "HEAD"} {
		if a := do(t, method, srv.URL+"/list", ""); a.code != http.StatusUnauthorized {
			t.Errorf("%s /list without the token: %d, want 401", method, a.code)
		}
		req, _ := http.NewRequestWithContext(t.Context(), method, srv.URL+"/list", nil)
		req.Header.Set("Authorization", "Bearer secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s /list with the token: %d, want 200", method, resp.StatusCode)
		}
	}
}
