package httpapi

import (
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/kv"
)

func newTestHandler(t *testing.T, opts Options) *Handler {
	t.Helper()
	store := kv.New(kv.Options{})
	t.Cleanup(func() { store.Close() })
	opts.Store = store
	return New(opts)
}

func serve(h http.Handler, method, target string, hdr map[string]string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func embedded(t *testing.T, name string) string {
	t.Helper()
	b, err := fs.ReadFile(consoleFiles, "ui/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// assetURL returns the URL that the served page names the asset with.
func assetURL(t *testing.T, page, name string) string {
	t.Helper()
	m := regexp.MustCompile(`"(/ui/` + regexp.QuoteMeta(name) + `\?v=[A-Za-z0-9_-]+)"`).FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("the page does not name /ui/%s with a version:\n%s", name, page)
	}
	return m[1]
}

// TestConsoleServed checks that / and the console's files are served with
// their content types, cache policies and security headers.
func TestConsoleServed(t *testing.T) {
	h := newTestHandler(t, Options{})
	page := serve(h, "GET", "/", nil).Body.String()
	tests := []struct {
		name, target, wantType, wantCache string
		wantBody                          string // "" = do not compare
	}{
		{"page", "/", "text/html; charset=utf-8", "no-cache", ""},
		{"script with its version", assetURL(t, page, "app.js"), "text/javascript; charset=utf-8", "public, max-age=31536000, immutable", embedded(t, "app.js")},
		{"style with its version", assetURL(t, page, "app.css"), "text/css; charset=utf-8", "public, max-age=31536000, immutable", embedded(t, "app.css")},
		{"icon with its version", assetURL(t, page, "favicon.svg"), "image/svg+xml", "public, max-age=31536000, immutable", embedded(t, "favicon.svg")},
		{"script without a version", "/ui/app.js", "text/javascript; charset=utf-8", "no-cache", embedded(t, "app.js")},
		{"script with an old version", "/ui/app.js?v=old", "text/javascript; charset=utf-8", "no-cache", embedded(t, "app.js")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, method := range []string{"GET", "HEAD"} {
				w := serve(h, method, tt.target, nil)
				if w.Code != http.StatusOK {
					t.Fatalf("%s %s: got status %d, want 200", method, tt.target, w.Code)
				}
				for name, want := range map[string]string{
					"Content-Type":           tt.wantType,
					"Cache-Control":          tt.wantCache,
					"X-Content-Type-Options": "nosniff",
					"X-Frame-Options":        "DENY",
					"Content-Security-Policy": "default-src 'self'; connect-src 'self' ws://example.com wss://example.com; " +
						"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
				} {
					if got := w.Header().Get(name); got != want {
						t.Errorf("%s %s: %s: got %q, want %q", method, tt.target, name, got, want)
					}
				}
				if etag := w.Header().Get("ETag"); !regexp.MustCompile(`^"[A-Za-z0-9_-]{16}"$`).MatchString(etag) {
					t.Errorf("%s %s: ETag: got %q, want a strong hash", method, tt.target, etag)
				}
				if method == "GET" && tt.wantBody != "" && w.Body.String() != tt.wantBody {
					t.Errorf("GET %s: the body is not the embedded file", tt.target)
				}
				if method == "HEAD" && w.Body.Len() != 0 {
					t.Errorf("HEAD %s: got a body of %d bytes", tt.target, w.Body.Len())
				}
			}
		})
	}
}

// TestConsoleRevalidate checks that a browser revalidating with the ETag
// gets 304 without a body, and the whole file when it changed.
func TestConsoleRevalidate(t *testing.T) {
	h := newTestHandler(t, Options{})
	for _, target := range []string{"/", "/ui/app.js"} {
		etag := serve(h, "GET", target, nil).Header().Get("ETag")
		w := serve(h, "GET", target, map[string]string{"If-None-Match": etag})
		if w.Code != http.StatusNotModified || w.Body.Len() != 0 {
			t.Errorf("GET %s with If-None-Match: %s: got %d with %d bytes, want 304 without a body", target, etag, w.Code, w.Body.Len())
		}
		w = serve(h, "GET", target, map[string]string{"If-None-Match": `"stale"`})
		if w.Code != http.StatusOK || w.Body.Len() == 0 {
			t.Errorf(`GET %s with If-None-Match: "stale": got %d with %d bytes, want 200 with the file`, target, w.Code, w.Body.Len())
		}
	}
}

// TestConsoleVersions checks that the page names each file with a version
// that changes with the file's content.
func TestConsoleVersions(t *testing.T) {
	c := newConsole()
	page := string(c.index.body)
	for name, f := range c.assets {
		if !strings.Contains(page, `"/ui/`+name+`?v=`+f.version+`"`) {
			t.Errorf("the page does not name %s with its version %s", name, f.version)
		}
	}
	a, b := newConsoleFile("a.js", []byte("1")), newConsoleFile("a.js", []byte("2"))
	if a.version == b.version || a.etag == b.etag {
		t.Errorf("two contents got the same version %q or ETag %q", a.version, a.etag)
	}
}

// TestConsoleDisabled checks that DisableUI (kvsd -ui=false) takes the
// console away, and nothing else.
func TestConsoleDisabled(t *testing.T) {
	h := newTestHandler(t, Options{DisableUI: true})
	for _, target := range []string{"/", "/ui/app.js", "/ui/app.css"} {
		w := serve(h, "GET", target, nil)
		if w.Code != http.StatusNotFound {
			t.Errorf("GET %s: got status %d, want 404", target, w.Code)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET %s: Content-Type: got %q, want application/json", target, ct)
		}
	}
	if w := serve(h, "GET", "/healthz", nil); w.Code != http.StatusOK {
		t.Errorf("GET /healthz: got status %d, want 200", w.Code)
	}
}

// TestConsoleNotFound checks the answers for paths near the console's.
func TestConsoleNotFound(t *testing.T) {
	h := newTestHandler(t, Options{})
	tests := []struct {
		name, method, target string
		want                 int
	}{
		{"unknown file", "GET", "/ui/nope.js", http.StatusNotFound},
		{"the folder", "GET", "/ui/", http.StatusNotFound},
		{"index by name", "GET", "/ui/index.html", http.StatusNotFound},
		{"a path under /", "GET", "/nope", http.StatusNotFound},
		{"post to /", "POST", "/", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := serve(h, tt.method, tt.target, nil)
			if w.Code != tt.want {
				t.Errorf("%s %s: got status %d, want %d", tt.method, tt.target, w.Code, tt.want)
			}
			if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s %s: Content-Type: got %q, want application/json", tt.method, tt.target, ct)
			}
		})
	}
}

// TestConsolePolicyHost checks that only a plain host:port goes into the
// Content-Security-Policy.
func TestConsolePolicyHost(t *testing.T) {
	tests := []struct{ host, wantConnect string }{
		{"127.0.0.1:23333", "connect-src 'self' ws://127.0.0.1:23333 wss://127.0.0.1:23333;"},
		{"[::1]:80", "connect-src 'self' ws://[::1]:80 wss://[::1]:80;"},
		{"kvs.example", "connect-src 'self' ws://kvs.example wss://kvs.example;"},
		{"a; script-src *", "connect-src 'self';"},
		{"a'b", "connect-src 'self';"},
		{"", "connect-src 'self';"},
	}
	for _, tt := range tests {
		if got := consolePolicy(tt.host); !strings.Contains(got, tt.wantConnect) || strings.Count(got, ";") != 4 {
			t.Errorf("consolePolicy(%q): got %q, want it to contain %q and nothing more", tt.host, got, tt.wantConnect)
		}
	}
}

// TestConsoleSelfContained checks that the page works offline: every file
// it loads is one of its own, and none of its files names another origin.
func TestConsoleSelfContained(t *testing.T) {
	c := newConsole()
	// What the page loads: scripts, style sheets, icons, images. Its one
	// link is the backup, a route of kvsd.
	refs := regexp.MustCompile(`<(?:script|link|img|iframe|source)\b[^>]*\b(?:src|href)="([^"]*)"`).FindAllStringSubmatch(string(c.index.body), -1)
	for _, m := range regexp.MustCompile(`<a\b[^>]*\bhref="([^"]*)"`).FindAllStringSubmatch(string(c.index.body), -1) {
		if m[1] != "/snapshot" {
			t.Errorf("the page links to %q, not a route of kvsd", m[1])
		}
	}
	if len(refs) < 3 {
		t.Fatalf("found %d references in the page, want at least the script, the style and the icon", len(refs))
	}
	for _, m := range refs {
		name, _, _ := strings.Cut(strings.TrimPrefix(m[1], "/ui/"), "?")
		if _, ok := c.assets[name]; !ok || !strings.HasPrefix(m[1], "/ui/") {
			t.Errorf("the page loads %q, which is not one of its files", m[1])
		}
	}
	for name, f := range c.assets {
		body := strings.ReplaceAll(string(f.body), `xmlns="http://www.w3.org/2000/svg"`, "")
		for _, bad := range []string{"http://", "https://", "@import", "url(", "import(", "importScripts"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}

// TestConsoleTextOnly checks that the script never turns text into HTML:
// it builds the page with textContent and createElement only.
func TestConsoleTextOnly(t *testing.T) {
	js := embedded(t, "app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "DOMParser", "createContextualFragment"} {
		if strings.Contains(js, bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	if !strings.Contains(js, "textContent") {
		t.Error("app.js never sets textContent: the test does not look at the right file")
	}
}
