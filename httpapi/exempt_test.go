package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

func TestExempt(t *testing.T) {
	tests := []struct {
		pattern string
		want    bool
	}{
		{"GET /healthz", true},
		{"POST /login", true},
		{"GET /{$}", true},
		{"GET /ui/", true},
		{"GET /ui/{file...}", true},
		{"/ui/app.js", true},
		{"", false},
		{"GET /", false}, // a catch-all would exempt every unknown path
		{"GET /readyz", false},
		{"GET /metrics", false},
		{"GET /getall", false},
		{"GET /subscribe", false},
		{"GET /uix", false},
		{"GET /ui", false},
		{"GET /healthz/x", false},
		{"GET /debug/pprof/", false},
	}
	for _, tt := range tests {
		if got := exempt(tt.pattern); got != tt.want {
			t.Errorf("exempt(%q) = %v, want %v", tt.pattern, got, tt.want)
		}
	}
}

// TestConsoleExempt routes with the web console's patterns (GET /{$} and
// GET /ui/{file}) beside an API route, and checks that the console answers
// without the token while paths that only look like it do not.
func TestConsoleExempt(t *testing.T) {
	store := kv.New(kv.Options{})
	t.Cleanup(func() { store.Close() })
	h := New(Options{Store: store, Token: "t"})
	page := func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("page")) }
	h.mux = http.NewServeMux() // the console's routes alone, whether or not New adds them
	h.mux.HandleFunc("GET /{$}", page)
	h.mux.HandleFunc("GET /ui/{file}", page)
	h.mux.HandleFunc("GET /getall", h.getall)
	tests := []struct {
		method, target string
		want           int
	}{
		{"GET", "/", 200},
		{"HEAD", "/", 200},
		{"GET", "/ui/app.js", 200},
		{"GET", "/ui/app.js?v=1", 200},
		{"GET", "/ui/../getall", 401}, // the mux would redirect to /getall: routed, and checked, as /getall
		{"GET", "/ui/a/b", 401},       // matches no route
		{"POST", "/", 401},
		{"GET", "/index.html", 401},
		{"GET", "/getall", 401},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tt.method, tt.target, nil))
		if rec.Code != tt.want {
			t.Errorf("%s %s: got %d %s, want %d", tt.method, tt.target, rec.Code, rec.Body, tt.want)
		}
	}
}
