package httpapi

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/wire"
)

// FuzzLocalRead fuzzes the consistency parameter: every query string is
// either refused with a 400, or read as url.ParseQuery reads it: local
// exactly when it has one consistency parameter (any case) whose value is
// local (any case).
func FuzzLocalRead(f *testing.F) {
	for _, s := range []string{"", "consistency=local", "key=a&consistency=linearizable", "Consistency=LOCAL",
		"consistency=local&consistency=local", "consistency=stale", "consist%65ncy=local", "consistency=%zz",
		"%zz=1", "consistency", "a=b;c", "consistency=lo+cal", "consistency=local%20"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, query string) {
		local, err := localRead(query)
		if err != nil {
			var se *statusError
			if !errors.As(err, &se) || se.code != http.StatusBadRequest {
				t.Fatalf("?%s: error %v, want a 400", query, err)
			}
		}
		q, perr := url.ParseQuery(query)
		if perr != nil {
			return // ParseQuery rejects what localRead may ignore (";")
		}
		var vals []string
		for name, vs := range q {
			if strings.EqualFold(name, wire.ParamConsistency) {
				vals = append(vals, vs...)
			}
		}
		switch {
		case len(vals) > 1:
			if err == nil {
				t.Fatalf("?%s: %d consistency parameters accepted", query, len(vals))
			}
		case len(vals) == 0:
			if err != nil || local {
				t.Fatalf("?%s: no consistency parameter: got local %v, error %v", query, local, err)
			}
		case strings.EqualFold(vals[0], "local"):
			if err != nil || !local {
				t.Fatalf("?%s: got local %v, error %v, want a local read", query, local, err)
			}
		case strings.EqualFold(vals[0], "linearizable"):
			if err != nil || local {
				t.Fatalf("?%s: got local %v, error %v, want a linearizable read", query, local, err)
			}
		default:
			if err == nil {
				t.Fatalf("?%s: consistency %q accepted", query, vals[0])
			}
		}
	})
}
