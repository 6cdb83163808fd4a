package httpapi

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// The web console: one page at / and its files under /ui/, embedded in the
// binary. The page is plain HTML, CSS and JavaScript with nothing to fetch
// from elsewhere, so it works offline.
//
//go:embed ui
var consoleFiles embed.FS

// consoleTypes are the content types of the console's files, by extension.
var consoleTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
	".svg":  "image/svg+xml",
}

// Cache policies: the page is revalidated on every load (its ETag makes
// that a 304), and names each file with the hash of its content, so a
// file asked for with its current hash never changes.
const (
	cacheRevalidate = "no-cache"
	cacheForever    = "public, max-age=31536000, immutable"
)

// consoleFile is one file of the console, ready to serve.
type consoleFile struct {
	body    []byte
	ctype   string
	etag    string // strong: a hash of body
	version string // the ?v= that the page names the file with
}

func newConsoleFile(name string, body []byte) consoleFile {
	sum := sha256.Sum256(body)
	return consoleFile{
		body:    body,
		ctype:   consoleTypes[path.Ext(name)],
		etag:    `"` + base64.RawURLEncoding.EncodeToString(sum[:12]) + `"`,
		version: base64.RawURLEncoding.EncodeToString(sum[:9]),
	}
}

// console serves the web console.
type console struct {
	index  consoleFile
	assets map[string]consoleFile // the files under /ui/, by name
}

// newConsole reads the embedded files and points the page at the current
// version of each.
func newConsole() *console {
	entries, err := fs.ReadDir(consoleFiles, "ui")
	if err != nil {
		panic("httpapi: embedded console: " + err.Error())
	}
	c := &console{assets: make(map[string]consoleFile)}
	var index []byte
	for _, e := range entries {
		body, err := consoleFiles.ReadFile("ui/" + e.Name())
		if err != nil {
			panic("httpapi: embedded console: " + err.Error())
		}
		if e.Name() == "index.html" {
			index = body
			continue
		}
		c.assets[e.Name()] = newConsoleFile(e.Name(), body)
	}
	for name, f := range c.assets {
		index = bytes.ReplaceAll(index, []byte(`"/ui/`+name+`"`), []byte(`"/ui/`+name+`?v=`+f.version+`"`))
	}
	c.index = newConsoleFile("index.html", index)
	return c
}

// routeConsole serves the console at GET / and GET /ui/{file}.
func (h *Handler) routeConsole() {
	c := newConsole()
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		serveConsoleFile(w, r, c.index, cacheRevalidate)
	})
	h.mux.HandleFunc("GET /ui/{file}", func(w http.ResponseWriter, r *http.Request) {
		// Handler.ServeHTTP routes with mux.Handler, which does not set
		// path values: r.PathValue("file") would be empty.
		f, ok := c.assets[strings.TrimPrefix(r.URL.Path, "/ui/")]
		if !ok {
			h.writeError(w, r, &statusError{http.StatusNotFound, "no such file in the console"})
			return
		}
		cache := cacheRevalidate
		if r.URL.Query().Get("v") == f.version {
			cache = cacheForever
		}
		serveConsoleFile(w, r, f, cache)
	})
}

func serveConsoleFile(w http.ResponseWriter, r *http.Request, f consoleFile, cache string) {
	hdr := w.Header()
	hdr.Set("Content-Type", f.ctype)
	hdr.Set("Cache-Control", cache)
	hdr.Set("ETag", f.etag)
	hdr.Set("Content-Security-Policy", consolePolicy(r.Host))
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("X-Frame-Options", "DENY")
	hdr.Set("Referrer-Policy", "no-referrer")
	// ServeContent answers If-None-Match with 304, and HEAD and Range.
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}

// consolePolicy is the Content-Security-Policy of the console: its own
// files only, no inline script or style, no framing, no form posts (the
// page sends its requests with fetch). connect-src names the WebSocket
// URLs of host too, for browsers whose 'self' does not cover ws: and wss:.
func consolePolicy(host string) string {
	connect := "'self'"
	if safeHost(host) {
		connect += " ws://" + host + " wss://" + host
	}
	return "default-src 'self'; connect-src " + connect +
		"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}

// safeHost reports whether host (from the request) can go into the policy
// as is: a host name or IP address and an optional port.
func safeHost(host string) bool {
	if host == "" || len(host) > 255 {
		return false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '.' || c == '-' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}
