package httpapi_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// benchHandler returns a handler over a memory store holding k0..k9999.
func benchHandler(b *testing.B) http.Handler {
	store := kv.New(kv.Options{})
	b.Cleanup(func() { store.Close() })
	for i := range 10000 {
		if _, err := store.Set(b.Context(), "k"+strconv.Itoa(i), []byte(`"0123456789abcdef"`)); err != nil {
			b.Fatal(err)
		}
	}
	return httpapi.New(httpapi.Options{Store: store})
}

// discard is a ResponseWriter that keeps nothing, so that the benchmarks
// measure the handler rather than the recorder.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

func benchRoute(b *testing.B, path string, body func(i int) []byte) {
	h := benchHandler(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discard{h: make(http.Header)}
		r := httptest.NewRequest("POST", path, nil)
		rd := bytes.NewReader(nil)
		i := 0
		for pb.Next() {
			rd.Reset(body(i % 10000))
			r.Body = readCloser{rd}
			clear(w.h)
			h.ServeHTTP(w, r)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
			i++
		}
	})
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

func BenchmarkGet(b *testing.B) {
	bodies := make([][]byte, 10000)
	for i := range bodies {
		bodies[i] = []byte(`{"Key":"k` + strconv.Itoa(i) + `"}`)
	}
	benchRoute(b, "/get", func(i int) []byte { return bodies[i] })
}

func BenchmarkSet(b *testing.B) {
	bodies := make([][]byte, 10000)
	for i := range bodies {
		bodies[i] = []byte(`{"Key":"k` + strconv.Itoa(i) + `","Value":"abcdefghijklmnop"}`)
	}
	benchRoute(b, "/set", func(i int) []byte { return bodies[i] })
}

// BenchmarkTxn is the "move an item between two keys" transaction of the
// README: two existence conditions and two sets.
func BenchmarkTxn(b *testing.B) {
	bodies := make([][]byte, 10000)
	for i := range bodies {
		x, y := "k"+strconv.Itoa(i), "k"+strconv.Itoa((i+1)%10000)
		bodies[i] = []byte(`{"If":[{"Key":"` + x + `","Exists":true},{"Key":"` + y + `","Exists":true}],` +
			`"Then":[{"Op":"set","Key":"` + x + `","Value":"0123456789abcdef"},{"Op":"set","Key":"` + y + `","Value":"fedcba9876543210"}]}`)
	}
	benchRoute(b, "/txn", func(i int) []byte { return bodies[i] })
}
