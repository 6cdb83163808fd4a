package httpapi_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

func newAPI(t *testing.T, opts httpapi.Options) (*httptest.Server, *kv.Store) {
	t.Helper()
	if opts.Store == nil {
		opts.Store = kv.New(kv.Options{})
		t.Cleanup(func() { opts.Store.Close() })
	}
	h := httpapi.New(opts)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, opts.Store
}

type answer struct {
	code   int
	header http.Header
	body   string
}

func do(t *testing.T, method, url, body string) answer {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(t.Context(), method, url, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

// TestRoutes checks every route's success answer, byte for byte.
func TestRoutes(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	u := srv.URL
	steps := []struct {
		name, method, path, body string
		wantCode                 int
		wantBody                 string
	}{
		{"empty getall", "GET", "/getall", "", 200, `{}`},
		{"set string", "POST", "/set", `{"Key": "City", "Value": "Ahmedabad"}`, 200, `{"Key":"City","Revision":1}`},
		{"get by body", "POST", "/get", `{"Key": "City"}`, 200, `{"Key":"City","Value":"Ahmedabad","Revision":1,"CreateRevision":1,"Version":1}`},
		{"get by query", "GET", "/get?key=City", "", 200, `{"Key":"City","Value":"Ahmedabad","Revision":1,"CreateRevision":1,"Version":1}`},
		{"get by GET body", "GET", "/get", `{"key":"City"}`, 200, `{"Key":"City","Value":"Ahmedabad","Revision":1,"CreateRevision":1,"Version":1}`},
		{"put set", "PUT", "/set", `{"key":"n","value":1.50}`, 200, `{"Key":"n","Revision":2}`},
		{"getall", "POST", "/getall", "", 200, `{"City":"Ahmedabad","n":1.50}`},
		{"getall prefix", "GET", "/getall?prefix=C", "", 200, `{"City":"Ahmedabad"}`},
		{"getall prefix none", "GET", "/getall?prefix=zz", "", 200, `{}`},
		{"delete by body", "POST", "/delete", `{"Key":"n"}`, 200, `{"Key":"n","Revision":3}`},
		{"delete by query", "DELETE", "/delete?key=City", "", 200, `{"Key":"City","Revision":4}`},
		{"delete by DELETE body", "DELETE", "/delete", `{"Key":"City"}`, 404, `{"error":"key not found"}`},
		{"healthz", "GET", "/healthz", "", 200, `{"status":"ok"}`},
		{"readyz", "GET", "/readyz", "", 200, `{"status":"ready"}`},
	}
	for _, st := range steps {
		a := do(t, st.method, u+st.path, st.body)
		if a.code != st.wantCode || a.body != st.wantBody+"\n" {
			t.Fatalf("%s: got %d %q, want %d %q", st.name, a.code, a.body, st.wantCode, st.wantBody+"\n")
		}
		if ct := a.header.Get("Content-Type"); ct != "application/json" {
			t.Fatalf("%s: Content-Type %q, want application/json", st.name, ct)
		}
	}
}

// TestBadInput sends each kind of bad request and checks the documented
// status with a JSON error body; afterwards the server still serves and
// holds exactly the data it held before.
func TestBadInput(t *testing.T) {
	srv, store := newAPI(t, httpapi.Options{MaxValueBytes: 50000})
	u := srv.URL
	if a := do(t, "POST", u+"/set", `{"Key":"keep","Value":{"a":1}}`); a.code != 200 {
		t.Fatalf("setup: %d %s", a.code, a.body)
	}
	long := strings.Repeat("k", kv.MaxKeyBytes+1)
	tests := []struct {
		name, method, path, body string
		wantCode                 int
		wantErr                  string // substring of the error message
	}{
		{"malformed JSON", "POST", "/set", `{"Key":"a","Value":}`, 400, "malformed JSON"},
		{"truncated JSON", "POST", "/set", `{"Key":"a","Val`, 400, "malformed JSON"},
		{"not an object", "POST", "/set", `["a",1]`, 400, "JSON object"},
		{"empty body", "POST", "/set", ``, 400, "empty request body"},
		{"empty body get", "POST", "/get", ``, 400, "empty request body"},
		{"null body", "POST", "/set", `null`, 400, "missing \"Key\""},
		{"missing key", "POST", "/set", `{"Value":1}`, 400, "missing \"Key\""},
		{"key not a string", "POST", "/set", `{"Key":12,"Value":1}`, 400, "must be a JSON string"},
		{"empty key", "POST", "/set", `{"Key":"","Value":1}`, 400, "must not be empty"},
		{"key too long", "POST", "/set", `{"Key":"` + long + `","Value":1}`, 400, "longer than 1024"},
		{"key invalid UTF-8", "POST", "/set", "{\"Key\":\"a\xffb\",\"Value\":1}", 400, "not valid UTF-8"},
		{"key with NUL", "POST", "/set", `{"Key":"a\u0000b","Value":1}`, 400, "control characters"},
		{"key with newline", "POST", "/get", `{"Key":"a\nb"}`, 400, "control characters"},
		{"value null", "POST", "/set", `{"Key":"a","Value":null}`, 400, "must not be null"},
		{"value missing", "POST", "/set", `{"Key":"a"}`, 400, "missing \"Value\""},
		{"value invalid UTF-8", "POST", "/set", "{\"Key\":\"a\",\"Value\":\"\xc3\"}", 400, "not valid UTF-8"},
		{"value too large", "POST", "/set", `{"Key":"a","Value":"` + strings.Repeat("v", 50000) + `"}`, 413, "over the limit"},
		{"body too large", "POST", "/set", `{"Key":"a","Value":"` + strings.Repeat("v", 120<<10) + `"}`, 413, "over the limit"},
		{"trailing data", "POST", "/set", `{"Key":"a","Value":1} {"Key":"b"}`, 400, "malformed JSON"},
		{"trailing garbage", "POST", "/get", `{"Key":"a"}x`, 400, "malformed JSON"},
		{"deep nesting", "POST", "/set", `{"Key":"a","Value":` + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + `}`, 400, "exceeded max depth"},
		{"IfRevision string", "POST", "/set", `{"Key":"a","Value":1,"IfRevision":"3"}`, 400, "IfRevision"},
		{"IfRevision negative", "POST", "/set", `{"Key":"a","Value":1,"IfRevision":-1}`, 400, "IfRevision"},
		{"IfRevision fraction", "POST", "/delete", `{"Key":"a","IfRevision":1.5}`, 400, "IfRevision"},
		{"get missing", "POST", "/get", `{"Key":"nope"}`, 404, "key not found"},
		{"get query missing key", "GET", "/get", ``, 400, "missing key"},
		{"get query empty key", "GET", "/get?key=", ``, 400, "must not be empty"},
		{"get query key twice", "GET", "/get?key=keep&key=other", ``, 400, "more than once"},
		{"get query key in two cases", "GET", "/get?key=keep&KEY=other", ``, 400, "more than once"},
		{"delete query IfRevision twice", "DELETE", "/delete?key=keep&IfRevision=1&ifrevision=2", ``, 400, "more than once"},
		{"get query bad key", "GET", "/get?key=a%00", ``, 400, "control characters"},
		{"delete missing", "POST", "/delete", `{"Key":"nope"}`, 404, "key not found"},
		{"delete query IfRevision bad", "DELETE", "/delete?key=keep&IfRevision=x", ``, 400, "IfRevision"},
		{"getall bad prefix", "GET", "/getall?prefix=%01", ``, 400, "bad prefix"},
		{"wrong method get", "PUT", "/get", `{"Key":"a"}`, 405, "method not allowed"},
		{"wrong method set", "GET", "/set", ``, 405, "method not allowed"},
		{"wrong method getall", "DELETE", "/getall", ``, 405, "method not allowed"},
		{"unknown route", "GET", "/nope", ``, 404, "not found"},
		{"unknown route post", "POST", "/set/extra", `{}`, 404, "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, tt.method, u+tt.path, tt.body)
			if a.code != tt.wantCode {
				t.Fatalf("got %d %s, want %d", a.code, a.body, tt.wantCode)
			}
			if ct := a.header.Get("Content-Type"); ct != "application/json" {
				t.Fatalf("Content-Type %q, want application/json", ct)
			}
			var e struct {
				Error *string `json:"error"`
			}
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Error == nil {
				t.Fatalf("body %q is not a JSON error: %v", a.body, err)
			}
			if !strings.Contains(*e.Error, tt.wantErr) {
				t.Fatalf("error %q does not mention %q", *e.Error, tt.wantErr)
			}
			if tt.wantCode == 405 && a.header.Get("Allow") == "" {
				t.Fatal("405 without an Allow header")
			}
		})
	}
	if a := do(t, "GET", u+"/getall", ""); a.code != 200 || a.body != `{"keep":{"a":1}}`+"\n" {
		t.Fatalf("after bad input: getall %d %q, want only the key set before", a.code, a.body)
	}
	if store.Rev() != 1 {
		t.Fatalf("bad input took revisions: Rev %d, want 1", store.Rev())
	}
}

// TestValuesAreByteExact: a value comes back exactly as its compact JSON
// text was sent: number spellings, escapes and member order kept, <>& not
// escaped.
func TestValuesAreByteExact(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	tests := []struct {
		name, sent, want string
	}{
		{"html characters", `"<b>&amp;</b>"`, `"<b>&amp;</b>"`},
		{"escaped html", `"\u003cb\u003e"`, `"\u003cb\u003e"`},
		{"number spellings", `[1.0,1e3,1E+03,-0,0.50,12345678901234567890123]`, `[1.0,1e3,1E+03,-0,0.50,12345678901234567890123]`},
		{"member order and duplicates", `{"z":1,"a":2,"z":3}`, `{"z":1,"a":2,"z":3}`},
		{"whitespace removed", "{ \"a\" : [ 1 , 2 ] ,\n\t\"b\" : \"x y\" }", `{"a":[1,2],"b":"x y"}`},
		{"unicode and escapes", `"é\n\"\\\/ \ud83d\ude00"`, `"é\n\"\\\/ \ud83d\ude00"`},
		{"line separators", "\"\u2028\"", "\"\u2028\""},
		{"bool", `true`, `true`},
		{"empty object", `{}`, `{}`},
		{"empty string", `""`, `""`},
	}
	for i, tt := range tests {
		key := "k" + strconv.Itoa(i)
		if a := do(t, "POST", srv.URL+"/set", `{"Key":"`+key+`","Value":`+tt.sent+`}`); a.code != 200 {
			t.Fatalf("%s: set: %d %s", tt.name, a.code, a.body)
		}
		a := do(t, "POST", srv.URL+"/get", `{"Key":"`+key+`"}`)
		var got struct{ Value json.RawMessage }
		if err := json.Unmarshal([]byte(a.body), &got); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if string(got.Value) != tt.want {
			t.Errorf("%s: /get value %s, want %s", tt.name, got.Value, tt.want)
		}
		if !strings.Contains(a.body, `"Value":`+tt.want+`,`) {
			t.Errorf("%s: /get body %s does not hold the value verbatim", tt.name, a.body)
		}
		all := do(t, "GET", srv.URL+"/getall?prefix="+key, "")
		if all.body != `{"`+key+`":`+tt.want+"}\n" {
			t.Errorf("%s: /getall %s, want the value verbatim", tt.name, all.body)
		}
	}
}

func TestKeysAreExact(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	keys := []string{"<img src=x onerror=alert(1)>", `quote" and \ backslash`, "ключ/鍵 😀", "a&b", strings.Repeat("x", kv.MaxKeyBytes), "\u2028"}
	for _, k := range keys {
		kj, _ := json.Marshal(k)
		if a := do(t, "POST", srv.URL+"/set", `{"Key":`+string(kj)+`,"Value":1}`); a.code != 200 {
			t.Fatalf("set %q: %d %s", k, a.code, a.body)
		}
		a := do(t, "POST", srv.URL+"/get", `{"Key":`+string(kj)+`}`)
		var e httpapi.Entry
		if err := json.Unmarshal([]byte(a.body), &e); err != nil || e.Key != k {
			t.Fatalf("get %q: got %q (%v)", k, e.Key, err)
		}
		if strings.Contains(k, "<") && !strings.Contains(a.body, "<img") {
			t.Fatalf("key HTML-escaped in %s", a.body)
		}
	}
	a := do(t, "GET", srv.URL+"/getall", "")
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(a.body), &m); err != nil || len(m) != len(keys) {
		t.Fatalf("getall: %d keys (%v), want %d", len(m), err, len(keys))
	}
}

func TestCaseInsensitiveMembers(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	for i, body := range []string{
		`{"Key":"a","Value":1}`,
		`{"key":"a","value":2}`,
		`{"KEY":"a","VALUE":3,"ifrevision":2}`,
		`{"kEy":"a","vAlUe":4,"IFREVISION":3,"Unknown":[1,2]}`,
	} {
		a := do(t, "POST", srv.URL+"/set", body)
		if a.code != 200 || a.body != `{"Key":"a","Revision":`+strconv.Itoa(i+1)+"}\n" {
			t.Fatalf("%s: got %d %s", body, a.code, a.body)
		}
	}
}

func TestConflictBody(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	tests := []struct {
		name, body, want string
	}{
		{"missing key with IfRevision", `{"Key":"a","Value":1,"IfRevision":7}`,
			`{"error":"revision condition failed","Current":null}`},
		{"create", `{"Key":"a","Value":1,"IfRevision":0}`, ``},
		{"create again", `{"Key":"a","Value":2,"IfRevision":0}`,
			`{"error":"revision condition failed","Current":{"Key":"a","Value":1,"Revision":1,"CreateRevision":1,"Version":1}}`},
		{"stale", `{"Key":"a","Value":2,"IfRevision":5}`,
			`{"error":"revision condition failed","Current":{"Key":"a","Value":1,"Revision":1,"CreateRevision":1,"Version":1}}`},
	}
	for _, tt := range tests {
		a := do(t, "POST", srv.URL+"/set", tt.body)
		if tt.want == "" {
			if a.code != 200 {
				t.Fatalf("%s: got %d %s", tt.name, a.code, a.body)
			}
			continue
		}
		if a.code != 409 || a.body != tt.want+"\n" {
			t.Fatalf("%s: got %d %s, want 409 %s", tt.name, a.code, a.body, tt.want)
		}
	}
	a := do(t, "POST", srv.URL+"/delete", `{"Key":"a","IfRevision":3}`)
	if a.code != 409 || !strings.Contains(a.body, `"Current":{"Key":"a"`) {
		t.Fatalf("conditional delete: got %d %s, want 409 with Current", a.code, a.body)
	}
	a = do(t, "DELETE", srv.URL+"/delete?key=a&IfRevision=1", "")
	if a.code != 200 {
		t.Fatalf("conditional delete by query: got %d %s", a.code, a.body)
	}
}

func TestVersionRules(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	get := func() httpapi.Entry {
		t.Helper()
		var e httpapi.Entry
		a := do(t, "GET", srv.URL+"/get?key=v", "")
		if err := json.Unmarshal([]byte(a.body), &e); err != nil {
			t.Fatalf("%s: %v", a.body, err)
		}
		return e
	}
	want := []struct{ rev, create, version int64 }{{1, 1, 1}, {2, 1, 2}, {3, 1, 3}}
	for i, w := range want {
		do(t, "POST", srv.URL+"/set", `{"Key":"v","Value":`+strconv.Itoa(i)+`}`)
		if e := get(); e.Revision != w.rev || e.CreateRevision != w.create || e.Version != w.version {
			t.Fatalf("after set %d: got %+v, want %+v", i+1, e, w)
		}
	}
	do(t, "POST", srv.URL+"/delete", `{"Key":"v"}`)
	do(t, "POST", srv.URL+"/set", `{"Key":"v","Value":9}`)
	if e := get(); e.Revision != 5 || e.CreateRevision != 5 || e.Version != 1 {
		t.Fatalf("after delete and set: got %+v, want revision 5, created 5, version 1", e)
	}
}

func TestGetallRevisionHeader(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	a := do(t, "GET", srv.URL+"/getall", "")
	if got := a.header.Get(httpapi.RevisionHeader); got != "0" {
		t.Fatalf("empty store: Kvs-Revision %q, want 0", got)
	}
	do(t, "POST", srv.URL+"/set", `{"Key":"a","Value":1}`)
	do(t, "POST", srv.URL+"/set", `{"Key":"b","Value":2}`)
	a = do(t, "GET", srv.URL+"/getall", "")
	if got := a.header.Get(httpapi.RevisionHeader); got != "2" {
		t.Fatalf("Kvs-Revision %q, want 2", got)
	}
	a = do(t, "HEAD", srv.URL+"/getall?prefix=zz", "")
	if got := a.header.Get(httpapi.RevisionHeader); a.code != 200 || got != "2" || a.body != "" {
		t.Fatalf("HEAD: got %d, Kvs-Revision %q, body %q; want 200, 2 and no body", a.code, got, a.body)
	}
}

// TestGetallSortedAndLarge lists enough keys to need several writes.
func TestGetallSortedAndLarge(t *testing.T) {
	store := kv.New(kv.Options{})
	t.Cleanup(func() { store.Close() })
	srv, _ := newAPI(t, httpapi.Options{Store: store})
	const n = 3000
	for i := range n {
		if _, err := store.Set(t.Context(), "key"+strconv.Itoa(i), []byte(`"`+strings.Repeat("v", 20)+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	a := do(t, "GET", srv.URL+"/getall", "")
	dec := json.NewDecoder(strings.NewReader(a.body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("getall does not start with an object: %v %v", tok, err)
	}
	prev, count := "", 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		k := tok.(string)
		if k <= prev {
			t.Fatalf("keys not sorted: %q after %q", k, prev)
		}
		prev = k
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		count++
	}
	if count != n {
		t.Fatalf("got %d keys, want %d", count, n)
	}
}

func TestReadyz(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{Ready: func() error { return errors.New("replaying the log") }})
	a := do(t, "GET", srv.URL+"/readyz", "")
	if a.code != 503 || !strings.Contains(a.body, "replaying the log") {
		t.Fatalf("got %d %s, want 503 naming the reason", a.code, a.body)
	}
	if a := do(t, "GET", srv.URL+"/healthz", ""); a.code != 200 {
		t.Fatalf("healthz while not ready: got %d, want 200", a.code)
	}
}

func TestUnavailableLogIs503(t *testing.T) {
	store := kv.New(kv.Options{Log: brokenLog{}})
	t.Cleanup(func() { store.Close() })
	srv, _ := newAPI(t, httpapi.Options{Store: store})
	a := do(t, "POST", srv.URL+"/set", `{"Key":"a","Value":1}`)
	if a.code != 503 || !strings.Contains(a.body, `"error":"the log is unavailable`) || strings.Contains(a.body, "disk") {
		t.Fatalf("got %d %s, want 503 with a JSON error", a.code, a.body)
	}
}

type brokenLog struct{}

func (brokenLog) Append([]kv.Change) error { return errors.New("disk") }
func (brokenLog) Close() error             { return nil }

// TestHandlerRecorder exercises the handler without a network, as
// expvar's tests do.
func TestHandlerRecorder(t *testing.T) {
	store := kv.New(kv.Options{})
	t.Cleanup(func() { store.Close() })
	h := httpapi.New(httpapi.Options{Store: store})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/set", bytes.NewBufferString(`{"Key":"x","Value":[1]}`)))
	if rec.Code != 200 || rec.Body.String() != `{"Key":"x","Revision":1}`+"\n" {
		t.Fatalf("got %d %q", rec.Code, rec.Body.String())
	}
}

func FuzzSetBody(f *testing.F) {
	for _, s := range []string{
		`{"Key":"a","Value":1}`, `{"key":"a","value":{"b":[1,2]},"IfRevision":0}`, `{"Key":"a"}`,
		`{"Key":"a","Value":null}`, `{"Key":"\u0000","Value":1}`, "{\"Key\":\"\xff\",\"Value\":1}", `[]`, `{`,
	} {
		f.Add([]byte(s))
	}
	store := kv.New(kv.Options{})
	defer store.Close()
	h := httpapi.New(httpapi.Options{Store: store, MaxValueBytes: 4096})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/set", bytes.NewReader(body)))
		var reply map[string]json.RawMessage
		if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
			t.Fatalf("answer %q is not a JSON object: %v", rec.Body.String(), err)
		}
		switch rec.Code {
		case 200:
			var req struct {
				Key string
			}
			json.Unmarshal(body, &req)
			e, ok := store.Get(req.Key)
			if !ok || !json.Valid(e.Value) || !kv.ValidKey(e.Key) {
				t.Fatalf("accepted %q but stored %+v", body, e)
			}
		case 400, 409, 413:
			if _, ok := reply["error"]; !ok {
				t.Fatalf("status %d without error member: %s", rec.Code, rec.Body.String())
			}
		default:
			t.Fatalf("status %d for %q", rec.Code, body)
		}
	})
}
