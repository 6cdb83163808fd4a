package httpapi_test

import (
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/httpapi"
)

// TestTxnRoute runs transactions through POST /txn and checks each answer
// byte for byte: the README's "move an item between two keys", its retry
// after the condition failed, and a read-only one.
func TestTxnRoute(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	u := srv.URL
	steps := []struct {
		name, path, body string
		wantCode         int
		wantBody         string
		wantRev          string
	}{
		{"set todo", "/set", `{"Key": "todo", "Value": ["milk", "eggs"]}`, 200, `{"Key":"todo","Revision":1}`, ""},
		{"set done", "/set", `{"Key": "done", "Value": []}`, 200, `{"Key":"done","Revision":2}`, ""},
		{"move eggs", "/txn", `{"If": [{"Key": "todo", "Revision": 1}, {"Key": "done", "Revision": 2}],
		  "Then": [{"Op": "set", "Key": "todo", "Value": ["milk"]}, {"Op": "set", "Key": "done", "Value": ["eggs"]}],
		  "Else": [{"Op": "get", "Key": "todo"}, {"Op": "get", "Key": "done"}]}`, 200,
			`{"Succeeded":true,"Revision":3,"Results":[{"Op":"set","Key":"todo","Found":true,"Value":["milk"],"Revision":3,"CreateRevision":1,"Version":2},{"Op":"set","Key":"done","Found":true,"Value":["eggs"],"Revision":3,"CreateRevision":2,"Version":2}]}`, "3"},
		{"move again: conditions fail, else reads", "/txn", `{"if": [{"key": "todo", "revision": 1}], "then": [{"op": "delete", "key": "todo"}],
		  "else": [{"op": "get", "key": "todo"}, {"op": "get", "key": "nothing"}]}`, 200,
			`{"Succeeded":false,"Revision":3,"Results":[{"Op":"get","Key":"todo","Found":true,"Value":["milk"],"Revision":3,"CreateRevision":1,"Version":2},{"Op":"get","Key":"nothing","Found":false}]}`, "3"},
		{"delete found and missing, value and existence conditions", "/txn", `{"If": [{"Key": "done", "Value": [ "eggs" ]}, {"Key": "nothing", "Exists": false},
		  {"Key": "todo", "Revision": 3, "Compare": "<"}, {"Key": "todo", "Value": 1, "Compare": "!="}],
		  "Else": [{"Op": "delete", "Key": "todo"}, {"Op": "delete", "Key": "nothing"}, {"Op": "get", "Key": "todo"}]}`, 200,
			`{"Succeeded":false,"Revision":4,"Results":[{"Op":"delete","Key":"todo","Found":true,"Revision":4},{"Op":"delete","Key":"nothing","Found":false},{"Op":"get","Key":"todo","Found":false}]}`, "4"},
		{"empty", "/txn", `{}`, 200, `{"Succeeded":true,"Revision":4,"Results":[]}`, "4"},
		{"getall", "/getall", ``, 200, `{"done":["eggs"]}`, "4"},
	}
	for _, st := range steps {
		a := do(t, "POST", u+st.path, st.body)
		if a.code != st.wantCode || a.body != st.wantBody+"\n" {
			t.Fatalf("%s: got %d %s, want %d %s", st.name, a.code, a.body, st.wantCode, st.wantBody)
		}
		if st.wantRev != "" {
			if got := a.header.Get(httpapi.RevisionHeader); got != st.wantRev {
				t.Fatalf("%s: %s %q, want %q", st.name, httpapi.RevisionHeader, got, st.wantRev)
			}
		}
		if strings.HasPrefix(st.path, "/txn") {
			var res httpapi.TxnResult
			if err := json.Unmarshal([]byte(a.body), &res); err != nil {
				t.Fatalf("%s: the answer does not decode as TxnResult: %v", st.name, err)
			}
		}
	}
}

// TestTxnBadInput sends each kind of bad transaction: a 4xx with a JSON
// error naming the problem, and nothing changed.
func TestTxnBadInput(t *testing.T) {
	srv, store := newAPI(t, httpapi.Options{MaxValueBytes: 1000, MaxTxnOps: 4})
	u := srv.URL
	if a := do(t, "POST", u+"/set", `{"Key":"keep","Value":1}`); a.code != 200 {
		t.Fatalf("setup: %d %s", a.code, a.body)
	}
	set := func(key string) string { return `{"Op":"set","Key":"` + key + `","Value":1}` }
	tests := []struct {
		name, body string
		wantCode   int
		wantErr    string
	}{
		{"empty body", ``, 400, "empty request body"},
		{"not an object", `[1]`, 400, "JSON object"},
		{"malformed", `{"If":[}`, 400, "malformed JSON"},
		{"trailing data", `{} {}`, 400, "malformed JSON"},
		{"If not a list", `{"If":{"Key":"a"}}`, 400, "If"},
		{"key written twice", `{"Then":[` + set("a") + `,{"Op":"delete","Key":"a"}]}`, 400, `Then[1]: key "a" written twice`},
		{"key set twice in Else", `{"Else":[` + set("a") + `,` + set("a") + `]}`, 400, "Else[1]"},
		{"too many conditions", `{"If":[{"Key":"a","Exists":true},{"Key":"a","Exists":true},{"Key":"a","Exists":true},{"Key":"a","Exists":true},{"Key":"a","Exists":true}]}`, 400, "at most 4"},
		{"too many operations", `{"Then":[` + set("a") + `,` + set("b") + `,` + set("c") + `,` + set("d") + `,` + set("e") + `]}`, 400, "at most 4"},
		{"condition without a test", `{"If":[{"Key":"a"}]}`, 400, `one of "Revision", "Exists" or "Value"`},
		{"condition with two tests", `{"If":[{"Key":"a","Revision":1,"Exists":true}]}`, 400, `one of "Revision"`},
		{"condition without a key", `{"If":[{"Revision":1}]}`, 400, `If[0]: missing "Key"`},
		{"condition bad key", `{"If":[{"Key":"a\u0000","Revision":1}]}`, 400, "control characters"},
		{"unknown comparison", `{"If":[{"Key":"a","Revision":1,"Compare":"<="}]}`, 400, `"Compare" must be`},
		{"comparison not a string", `{"If":[{"Key":"a","Revision":1,"Compare":1}]}`, 400, `"Compare" must be`},
		{"less on a value", `{"If":[{"Key":"a","Value":1,"Compare":"<"}]}`, 400, `"=" or "!=" only`},
		{"comparison on existence", `{"If":[{"Key":"a","Exists":true,"Compare":"!="}]}`, 400, "takes no"},
		{"existence not a bool", `{"If":[{"Key":"a","Exists":"yes"}]}`, 400, `"Exists" must be true or false`},
		{"negative revision", `{"If":[{"Key":"a","Revision":-1}]}`, 400, "non-negative"},
		{"fractional revision", `{"If":[{"Key":"a","Revision":1.5}]}`, 400, "non-negative"},
		{"value invalid UTF-8", "{\"If\":[{\"Key\":\"a\",\"Value\":\"\xff\"}]}", 400, "not valid UTF-8"},
		{"unknown op", `{"Then":[{"Op":"put","Key":"a","Value":1}]}`, 400, `Then[0]: "Op" must be`},
		{"missing op", `{"Then":[{"Key":"a"}]}`, 400, `"Op" must be`},
		{"set without value", `{"Then":[{"Op":"set","Key":"a"}]}`, 400, `Then[0]: missing "Value"`},
		{"set of null", `{"Then":[{"Op":"set","Key":"a","Value":null}]}`, 400, "must not be null"},
		{"get with a value", `{"Then":[{"Op":"get","Key":"a","Value":1}]}`, 400, `takes no "Value"`},
		{"op without key", `{"Else":[{"Op":"get"}]}`, 400, `Else[0]: missing "Key"`},
		{"value too large", `{"Then":[{"Op":"set","Key":"a","Value":"` + strings.Repeat("v", 1000) + `"}]}`, 413, "over the limit"},
		{"body too large", `{"Then":[{"Op":"set","Key":"a","Value":"` + strings.Repeat("v", 70<<10) + `"}]}`, 413, "over the limit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := do(t, "POST", u+"/txn", tt.body)
			var e httpapi.Error
			if err := json.Unmarshal([]byte(a.body), &e); err != nil || a.code != tt.wantCode || !strings.Contains(e.Error, tt.wantErr) {
				t.Fatalf("got %d %s, want %d with %q", a.code, a.body, tt.wantCode, tt.wantErr)
			}
		})
	}
	if store.Rev() != 1 || store.Len() != 1 {
		t.Fatalf("bad transactions changed the store: revision %d, %d keys", store.Rev(), store.Len())
	}
	if a := do(t, "GET", u+"/txn", ""); a.code != 405 {
		t.Fatalf("GET /txn: %d %s", a.code, a.body)
	}
}

// TestTxnMetrics counts transactions by outcome.
func TestTxnMetrics(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{})
	u := srv.URL
	for _, body := range []string{
		`{"Then":[{"Op":"set","Key":"a","Value":1}]}`,
		`{"If":[{"Key":"a","Exists":true}],"Then":[{"Op":"get","Key":"a"}]}`,
		`{"If":[{"Key":"a","Exists":false}]}`,
		`{"Then":[{"Op":"nope"}]}`,
	} {
		do(t, "POST", u+"/txn", body)
	}
	e := scrape(t, u)
	wantValue(t, e, 2, "kvs_transactions_total", "outcome", "then")
	wantValue(t, e, 1, "kvs_transactions_total", "outcome", "else")
	wantValue(t, e, 1, "kvs_transactions_total", "outcome", "rejected")
	wantValue(t, e, 0, "kvs_transactions_total", "outcome", "failed")
	wantValue(t, e, 3, "kvs_http_requests_total", "route", "POST /txn", "code", "200")
	wantValue(t, e, 1, "kvs_http_requests_total", "route", "POST /txn", "code", "400")
}

// FuzzTxnBody sends any body to POST /txn: the answer is 200, 400 or 413
// with a JSON object, and only a 200 changes the store.
func FuzzTxnBody(f *testing.F) {
	for _, s := range []string{
		`{"If":[{"Key":"a","Revision":1}],"Then":[{"Op":"set","Key":"a","Value":2}],"Else":[{"Op":"get","Key":"a"}]}`,
		`{"if":[{"key":"b","exists":true},{"key":"a","value":1,"compare":"!="}],"then":[{"op":"delete","key":"b"}]}`,
		`{"If":[{"Key":"a","Revision":5,"Compare":">"}],"Then":[{"Op":"set","Key":"a","Value":1},{"Op":"set","Key":"a","Value":2}]}`,
		`{"Then":[{"Op":"get","Key":"\ud800"}]}`, `{}`, `{"If":null}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	h, store := fuzzHandler(f, httpapi.Options{MaxTxnOps: 8, MaxValueBytes: 256})
	f.Fuzz(func(t *testing.T, body []byte) {
		before := store.Rev()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", "/txn", strings.NewReader(string(body))))
		reply := checkAnswer(t, rec, body, 200, 400, 413)
		if rec.Code != 200 {
			if store.Rev() != before {
				t.Fatalf("%q: answered %d but changed the store", body, rec.Code)
			}
			return
		}
		var res httpapi.TxnResult
		b, _ := json.Marshal(reply)
		if err := json.Unmarshal(b, &res); err != nil {
			t.Fatalf("%q: answer %s: %v", body, rec.Body, err)
		}
		if res.Revision != store.Rev() {
			t.Fatalf("%q: revision %d, store at %d", body, res.Revision, store.Rev())
		}
	})
}
