package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

// FuzzSubscribeParams fuzzes the query string of /subscribe: every query
// is either refused with a 400 or gives a valid key or prefix (not both)
// and a from >= 0, the ones the query holds.
func FuzzSubscribeParams(f *testing.F) {
	for _, s := range []string{"", "key=a", "prefix=app/", "prefix=", "from=0", "from=42&prefix=a", "key=a&prefix=b",
		"from=-1", "from=99999999999999999999", "key=%00", "key=%ff", "topic=x", "key=a&key=a", "from=1e3", "%zz", "key=a;b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		r := &http.Request{URL: &url.URL{Path: "/subscribe", RawQuery: query}}
		key, prefix, from, err := feedParams(r)
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) || se.code != http.StatusBadRequest {
				t.Fatalf("?%s: error %v, want a 400", query, err)
			}
			return
		}
		q, perr := url.ParseQuery(query)
		if perr != nil {
			t.Fatalf("?%s: accepted a query that does not parse: %v", query, perr)
		}
		switch {
		case key != "" && prefix != "":
			t.Fatalf("?%s: key %q and prefix %q", query, key, prefix)
		case key != "" && (!kv.ValidKey(key) || key != q.Get("key")):
			t.Fatalf("?%s: key %q", query, key)
		case prefix != "" && (!kv.ValidKey(prefix) || prefix != q.Get("prefix")):
			t.Fatalf("?%s: prefix %q", query, prefix)
		case q.Has("key") && key == "":
			t.Fatalf("?%s: key parameter dropped", query)
		case from < 0:
			t.Fatalf("?%s: from %d", query, from)
		case q.Has("from") && from == 0:
			t.Fatalf("?%s: from given but 0", query)
		case !q.Has("from") && from != 0:
			t.Fatalf("?%s: from %d without a from parameter", query, from)
		}
		if q.Has("from") {
			n, _ := strconv.ParseInt(q.Get("from"), 10, 64)
			if max(n, 1) != from {
				t.Fatalf("?%s: from %d", query, from)
			}
		}
		for name := range q {
			if name != "key" && name != "prefix" && name != "from" {
				t.Fatalf("?%s: unknown parameter %q accepted", query, name)
			}
		}
	})
}
