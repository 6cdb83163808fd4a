package httpapi_test

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// The fuzz targets of the request decoders. Each checks that any input gets
// one of the documented statuses with a JSON answer, and that only a valid
// request changes or reveals anything. Seeds are in testdata/fuzz/; run one
// with, for example:
//
//	go test ./httpapi -run '^$' -fuzz FuzzGetBody -fuzztime 1m

// fuzzHandler returns a handler over a store holding "a" and "b".
func fuzzHandler(f *testing.F, opts httpapi.Options) (*httpapi.Handler, *kv.Store) {
	store := kv.New(kv.Options{})
	f.Cleanup(func() { store.Close() })
	for _, k := range []string{"a", "b"} {
		if _, err := store.Set(f.Context(), k, []byte(`1`)); err != nil {
			f.Fatal(err)
		}
	}
	opts.Store = store
	return httpapi.New(opts), store
}

// checkAnswer fails unless rec holds one of codes and a JSON object, with
// an "error" member unless it is a 200.
func checkAnswer(t *testing.T, rec *httptest.ResponseRecorder, in any, codes ...int) map[string]json.RawMessage {
	t.Helper()
	var reply map[string]json.RawMessage
	if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil {
		t.Fatalf("%q: answer %q is not a JSON object: %v", in, rec.Body.String(), err)
	}
	ok := false
	for _, c := range codes {
		ok = ok || rec.Code == c
	}
	if !ok {
		t.Fatalf("%q: status %d, want one of %v: %s", in, rec.Code, codes, rec.Body.String())
	}
	if _, hasErr := reply["error"]; hasErr != (rec.Code != 200) {
		t.Fatalf("%q: status %d with answer %s", in, rec.Code, rec.Body.String())
	}
	return reply
}

func FuzzGetBody(f *testing.F) {
	for _, s := range []string{`{"Key":"a"}`, `{"key":"b","Unknown":[1]}`, `{"Key":"zz"}`, `{"Key":1}`, `{"Key":"a"} x`} {
		f.Add([]byte(s))
	}
	h, store := fuzzHandler(f, httpapi.Options{})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/get", bytes.NewReader(body)))
		reply := checkAnswer(t, rec, body, 200, 400, 404)
		if rec.Code == 200 {
			var key string
			json.Unmarshal(reply["Key"], &key)
			e, ok := store.Get(key)
			if !ok || !bytes.Equal(e.Value, reply["Value"]) {
				t.Fatalf("%q: got %s for a key the store holds as %+v", body, rec.Body.String(), e)
			}
		}
	})
}

func FuzzDeleteBody(f *testing.F) {
	for _, s := range []string{`{"Key":"a"}`, `{"Key":"b","IfRevision":2}`, `{"Key":"b","IfRevision":1}`, `{"Key":"zz","IfRevision":0}`, `{"Key":"a","IfRevision":"1"}`} {
		f.Add([]byte(s))
	}
	h, store := fuzzHandler(f, httpapi.Options{})
	f.Fuzz(func(t *testing.T, body []byte) {
		before := store.Rev()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/delete", bytes.NewReader(body)))
		reply := checkAnswer(t, rec, body, 200, 400, 404, 409)
		if rec.Code != 200 {
			if store.Rev() != before {
				t.Fatalf("%q: answered %d but the store changed", body, rec.Code)
			}
			return
		}
		var key string
		json.Unmarshal(reply["Key"], &key)
		if _, ok := store.Get(key); ok {
			t.Fatalf("%q: deleted %q, which is still there", body, key)
		}
		store.Set(t.Context(), key, []byte(`1`)) // put it back for the next input
	})
}

// FuzzQueryRequest fuzzes the query string of GET /get and DELETE /delete.
func FuzzQueryRequest(f *testing.F) {
	for _, s := range []string{"key=a", "KEY=b&ifrevision=2", "key=%00", "key=a&key=b", "ifrevision=1", "key=%ff", "key=a;b", "%zz"} {
		f.Add(s)
	}
	h, store := fuzzHandler(f, httpapi.Options{})
	f.Fuzz(func(t *testing.T, query string) {
		for _, method := range []string{"GET", "DELETE"} {
			before := store.Rev()
			req := httptest.NewRequest(method, "/get", nil)
			if method == "DELETE" {
				req = httptest.NewRequest(method, "/delete", nil)
			}
			req.URL.RawQuery = query
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			reply := checkAnswer(t, rec, query, 200, 400, 404, 409)
			if method == "GET" && rec.Code == 409 || rec.Code != 200 && store.Rev() != before {
				t.Fatalf("%s ?%s: %d and the store went from %d to %d", method, query, rec.Code, before, store.Rev())
			}
			if method == "DELETE" && rec.Code == 200 {
				var key string
				json.Unmarshal(reply["Key"], &key)
				store.Set(t.Context(), key, []byte(`1`))
			}
		}
	})
}

func FuzzLogin(f *testing.F) {
	for _, s := range []string{`{"Token":"` + testToken + `"}`, `{"token":"x"}`, `{"Token":null}`, `{"Token":1}`, `{}`, `[]`, `{"Token":"` + testToken + `\u0000"}`} {
		f.Add([]byte(s))
	}
	h, _ := fuzzHandler(f, httpapi.Options{Token: testToken})
	f.Fuzz(func(t *testing.T, body []byte) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", bytes.NewReader(body)))
		checkAnswer(t, rec, body, 200, 400, 401, 413)
		cookie := rec.Header().Get("Set-Cookie") != ""
		if rec.Code == 200 {
			var req struct{ Token *string }
			if json.Unmarshal(body, &req) != nil || req.Token == nil || *req.Token != testToken || !cookie {
				t.Fatalf("%q: logged in (cookie %v) without the token", body, cookie)
			}
		} else if cookie {
			t.Fatalf("%q: status %d with a cookie", body, rec.Code)
		}
	})
}

// FuzzAuthorization fuzzes the Authorization header and the cookie: a
// request is let in only with the token or the cookie /login sets.
func FuzzAuthorization(f *testing.F) {
	h, _ := fuzzHandler(f, httpapi.Options{Token: testToken})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/login", strings.NewReader(`{"Token":"`+testToken+`"}`)))
	var cookie string
	for _, c := range rec.Result().Cookies() {
		cookie = c.Value
	}
	if cookie == "" {
		f.Fatal("no cookie from /login")
	}
	for _, s := range [][2]string{{"Bearer " + testToken, ""}, {"bearer  " + testToken, ""}, {"Bearer x", cookie}, {"Basic " + testToken, ""}, {"", cookie + "x"}, {"Bearer", ""}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, header, cookieValue string) {
		req := httptest.NewRequest("GET", "/getall", nil)
		req.Header.Set("Authorization", header)
		req.Header.Set("Cookie", "kvs_token="+cookieValue)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		checkAnswer(t, rec, header, 200, 401)
		scheme, token, _ := strings.Cut(header, " ")
		hasToken := strings.EqualFold(scheme, "bearer") && strings.TrimLeft(token, " ") == testToken
		hasCookie := false
		for _, c := range req.CookiesNamed(httpapi.CookieName) {
			hasCookie = hasCookie || c.Value == cookie
		}
		if (rec.Code == 200) != (hasToken || hasCookie) {
			t.Fatalf("Authorization %q, cookie %q: status %d", header, cookieValue, rec.Code)
		}
	})
}
