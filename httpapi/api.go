// Package httpapi serves the kvs HTTP API: /get, /set, /delete, /txn,
// /list, /getall, /snapshot (backups), the /subscribe change feed over
// WebSocket, /healthz and /readyz, /login and /logout, /metrics in the
// Prometheus text format, and a web console at /.
//
// Every answer but /metrics is JSON; every error is {"error": "..."} with a
// 4xx or 5xx status. With Options.Token set, every route but /healthz,
// /login, /logout and the web console's page needs the token. Before any
// route, a request must name an allowed Host, a write must not come from
// another site's page, and a query parameter may be given once. A Handler
// is safe for concurrent use.
package httpapi

import (
	"bufio"
	"cmp"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvsdb/kvs/kv"
)

// DefaultMaxValueBytes is the default limit on a value's compact JSON size.
const DefaultMaxValueBytes = 1 << 20

// DefaultMaxSubscribers is the default limit on open /subscribe connections.
const DefaultMaxSubscribers = 10000

// bodySlack is what a request body may hold beyond the value: the key, the
// member names, whitespace.
const bodySlack = 64 << 10

// Options configures a Handler. The zero value of every field but Store
// means its default.
type Options struct {
	// Store is the store to serve. Required.
	Store *kv.Store
	// MaxValueBytes limits a value's compact JSON size: 413 beyond. Zero
	// means DefaultMaxValueBytes.
	MaxValueBytes int
	// MaxBodyBytes limits a request body: 413 beyond. Zero means
	// MaxValueBytes + 64 KiB (room for the key, the member names and
	// whitespace).
	MaxBodyBytes int
	// MaxTxnOps limits the conditions of a transaction, and the
	// operations of each of its lists: 400 beyond. Zero means
	// DefaultMaxTxnOps.
	MaxTxnOps int
	// MaxLeaseTTL limits the TTL of a lease (POST /lease/grant, a /set
	// with a TTL): 400 beyond. Zero means DefaultMaxLeaseTTL.
	MaxLeaseTTL time.Duration
	// Ready reports why the server is not ready to serve current data, or
	// nil when it is. Nil means always ready.
	Ready func() error
	// ReadBarrier, when set, is called before each read that did not ask
	// for consistency=local (wire.ParamConsistency): it returns once the
	// store holds every write acknowledged, by any instance, before it was
	// called, or an error (answered 503). A store shared through Kafka
	// needs it for linearizable reads (bus.Kafka.ReadBarrier). Nil means
	// the store is linearizable on its own, as the memory and file
	// backends are.
	ReadBarrier func(ctx context.Context) error
	// Logger receives server errors. Nil means discard.
	Logger *slog.Logger

	// Token, when not empty, is the secret that every request needs, as
	// the header "Authorization: Bearer <token>" or as the session cookie
	// that POST /login sets (CookieName), except GET /healthz, POST /login,
	// POST /logout and the web console's page (GET /{$}, GET /ui/...).
	// Without it the answer is 401, the same whether the token was missing
	// or wrong. Empty means no authentication.
	Token string
	// SessionTTL is how long a session that POST /login starts lasts:
	// its cookie is refused after that. Zero means DefaultSessionTTL.
	SessionTTL time.Duration
	// WrongTokenBurst is how many wrong tokens (to /login, or as a bearer
	// token) one client address may present before it is slowed to one a
	// second; meanwhile its requests with a token get 429. IPv6 addresses
	// count by /64. Zero means 10.
	WrongTokenBurst int
	// Pprof mounts net/http/pprof's handlers under /debug/pprof/ (behind
	// Token like every route). False, the default, leaves them out.
	Pprof bool
	// LogStats returns the log's counters for /metrics (batch sizes, fsync
	// times). Nil means none, as for the memory log.
	LogStats func() kv.LogStats
	// ExtraMetrics returns more samples for /metrics; it is called at each
	// scrape. The Kafka log reports its lag here. Nil means none.
	ExtraMetrics func() []Sample

	// Feed is the change feed served at /subscribe. Nil means none: 404.
	Feed Feed
	// OriginPatterns lists the origins, besides the request's own host,
	// whose pages may open /subscribe and send writes (every request but
	// GET and HEAD): path.Match patterns matched against the Origin's host
	// ("*.example.com"), or against scheme://host when the pattern holds
	// "://" (see websocket.AcceptOptions). Other cross-origin handshakes
	// and writes get 403, and so do writes without Origin whose
	// Sec-Fetch-Site is cross-site or same-site. Nil means same-origin
	// only. Requests without either header (not from a browser) are
	// allowed.
	OriginPatterns []string
	// AllowedHosts lists the host patterns (path.Match, lower case, no
	// port: "kvs.example.com", "*.example.com") that requests may name in
	// their Host header; a request for another host gets 421 on every
	// route, so that a page whose DNS name an attacker points at this
	// server (DNS rebinding) cannot use it. IP addresses are always
	// allowed. Nil means every host; LoopbackHosts suits a server that
	// listens on a loopback address only.
	AllowedHosts []string
	// MaxSubscribers limits the /subscribe connections open at once; a
	// handshake beyond it gets 429 with Retry-After, before the upgrade.
	// Zero means DefaultMaxSubscribers.
	MaxSubscribers int
	// ProgressInterval is the longest an idle subscriber waits for a
	// progress event; each wait is jittered down by up to a quarter. Zero
	// means 10s.
	ProgressInterval time.Duration
	// PingInterval is how often subscribers are pinged to detect dead
	// peers. Zero means 30s.
	PingInterval time.Duration
	// WriteTimeout bounds each write to a subscriber, and each wait for a
	// pong. Zero means 10s.
	WriteTimeout time.Duration

	// MaxSnapshots limits the backups (GET /snapshot) streamed at once;
	// one more gets 429 with Retry-After. Zero means DefaultMaxSnapshots.
	MaxSnapshots int

	// DisableUI turns off the web console, GET / and its files under
	// /ui/: they answer 404. False serves it.
	DisableUI bool
}

// Handler serves the kvs HTTP API.
type Handler struct {
	store    *kv.Store
	maxValue int
	maxBody  int
	ready    func() error
	barrier  func(context.Context) error // nil: reads need none
	log      *slog.Logger
	mux      *http.ServeMux
	bufs     sync.Pool // of *[]byte, for request bodies and answers
	writers  sync.Pool // of *responseWriter

	maxTxnOps   int
	maxLeaseTTL time.Duration

	auth         *auth            // nil: no token
	now          func() time.Time // the clock of sessions and the wrong-token limit; tests replace it
	metrics      metrics
	logStats     func() kv.LogStats
	extraMetrics func() []Sample

	snapshots chan struct{} // a token per backup being streamed

	feed             Feed
	origins          []string
	hosts            []string
	maxSubs          int
	progressInterval time.Duration
	pingInterval     time.Duration
	writeTimeout     time.Duration

	// base is the context of every subscriber; Shutdown cancels it.
	base       context.Context
	cancelBase context.CancelFunc
	// mu guards shutdown and nsubs, and orders shutdown against subs.Add.
	mu       sync.Mutex
	shutdown bool
	nsubs    int // subscribers tracked in subs
	subs     sync.WaitGroup
}

var _ http.Handler = (*Handler)(nil)

// New returns a Handler serving opts.Store.
func New(opts Options) *Handler {
	h := &Handler{
		bufs:     sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }},
		writers:  sync.Pool{New: func() any { return new(responseWriter) }},
		store:    opts.Store,
		maxValue: opts.MaxValueBytes,
		maxBody:  opts.MaxBodyBytes,
		ready:    opts.Ready,
		barrier:  opts.ReadBarrier,
		log:      opts.Logger,
		mux:      http.NewServeMux(),

		maxTxnOps:   cmp.Or(opts.MaxTxnOps, DefaultMaxTxnOps),
		maxLeaseTTL: cmp.Or(opts.MaxLeaseTTL, DefaultMaxLeaseTTL),

		auth:         newAuth(opts.Token, cmp.Or(opts.SessionTTL, DefaultSessionTTL), cmp.Or(opts.WrongTokenBurst, 10)),
		now:          time.Now,
		logStats:     opts.LogStats,
		extraMetrics: opts.ExtraMetrics,

		snapshots:        make(chan struct{}, cmp.Or(max(opts.MaxSnapshots, 0), DefaultMaxSnapshots)),
		feed:             opts.Feed,
		origins:          opts.OriginPatterns,
		hosts:            opts.AllowedHosts,
		maxSubs:          cmp.Or(opts.MaxSubscribers, DefaultMaxSubscribers),
		progressInterval: cmp.Or(opts.ProgressInterval, 10*time.Second),
		pingInterval:     cmp.Or(opts.PingInterval, 30*time.Second),
		writeTimeout:     cmp.Or(opts.WriteTimeout, 10*time.Second),
	}
	h.base, h.cancelBase = context.WithCancel(context.Background())
	if h.maxValue <= 0 {
		h.maxValue = DefaultMaxValueBytes
	}
	if h.maxBody <= 0 {
		h.maxBody = h.maxValue + bodySlack
	}
	if h.ready == nil {
		h.ready = func() error { return nil }
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc("POST /get", h.get)
	h.mux.HandleFunc("GET /get", h.get)
	h.mux.HandleFunc("POST /set", h.set)
	h.mux.HandleFunc("PUT /set", h.set)
	h.mux.HandleFunc("POST /delete", h.del)
	h.mux.HandleFunc("DELETE /delete", h.del)
	h.mux.HandleFunc("POST /txn", h.txn)
	h.mux.HandleFunc("GET /getall", h.getall)
	h.mux.HandleFunc("POST /getall", h.getall)
	h.mux.HandleFunc("GET /list", h.list)
	h.mux.HandleFunc("POST /list", h.list)
	h.mux.HandleFunc("GET /snapshot", h.snapshot)
	h.routeLeases()
	h.mux.HandleFunc("GET /subscribe", h.subscribe)
	h.mux.HandleFunc("GET /healthz", h.healthz)
	h.mux.HandleFunc("GET /readyz", h.readyz)
	h.mux.HandleFunc("POST /login", h.login)
	h.mux.HandleFunc("POST /logout", h.logout)
	h.mux.HandleFunc("GET /metrics", h.serveMetrics)
	if opts.Pprof {
		// net/http/pprof also registers these on http.DefaultServeMux when
		// it is linked in; kvsd never serves that mux.
		h.mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		h.mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		h.mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		h.mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		h.mux.HandleFunc("POST /debug/pprof/symbol", pprof.Symbol)
		h.mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	if !opts.DisableUI {
		h.routeConsole()
	}
	return h
}

// ServeHTTP checks the Host, where a write comes from, the token and the
// query string, routes r, and counts the answer in /metrics. Requests that
// match no route get the mux's 404 or 405 (with its Allow header), with a
// JSON body.
//
// The handler found is called directly, to route once: r.PathValue is
// therefore not set, and handlers of patterns with wildcards parse
// r.URL.Path themselves.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	began := time.Now()
	handler, pattern := h.mux.Handler(r)
	rw := h.writers.Get().(*responseWriter)
	*rw = responseWriter{ResponseWriter: w}
	defer func() {
		*rw = responseWriter{}
		h.writers.Put(rw)
	}()
	switch {
	case !hostAllowed(r.Host, h.hosts):
		h.writeError(rw, r, misdirected(r.Host))
	case isWrite(r.Method) && checkCrossSite(r, h.origins) != nil:
		h.writeError(rw, r, checkCrossSite(r, h.origins))
	case h.auth != nil && !exempt(pattern) && !h.authorize(rw, r, pattern):
		// authorize answered
	case pattern == "":
		rw.jsonErrors = true
		handler.ServeHTTP(rw, r)
	case checkQuery(r.URL.RawQuery) != nil:
		h.writeError(rw, r, checkQuery(r.URL.RawQuery))
	default:
		handler.ServeHTTP(rw, r)
	}
	h.metrics.observe(pattern, cmp.Or(rw.code, http.StatusOK), began)
}

// responseWriter records the status of an answer for /metrics, and with
// jsonErrors turns the mux's plain-text errors into JSON ones.
type responseWriter struct {
	http.ResponseWriter
	code       int // the final status, once written
	jsonErrors bool
}

func (w *responseWriter) WriteHeader(code int) {
	if w.code != 0 {
		if !w.jsonErrors {
			w.ResponseWriter.WriteHeader(code) // net/http reports the superfluous call
		}
		return
	}
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.code = code
	}
	if !w.jsonErrors {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	msg := strings.ToLower(http.StatusText(code))
	if code == http.StatusMethodNotAllowed {
		msg += ": allowed: " + w.Header().Get("Allow")
	}
	w.Header().Del("X-Content-Type-Options")
	writeJSON(w.ResponseWriter, code, appendError(nil, msg, false, nil))
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if w.jsonErrors {
		return len(p), nil
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap returns the underlying ResponseWriter, for
// http.ResponseController.
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Hijack hands the connection over to the WebSocket handshake, also to
// wrappers that look for http.Hijacker rather than unwrapping.
func (w *responseWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

var _ http.Hijacker = (*responseWriter)(nil)

// jsonContentType is the Content-Type of every JSON answer (a shared,
// never modified header value, to set without an allocation).
var jsonContentType = []string{"application/json"}

// writeJSON writes body, which must be a JSON value, with a final newline.
func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(code)
	body = append(body, '\n')
	w.Write(body)
}

// writeError answers err with its status and a JSON error body. Server
// errors are logged and answered without details.
func (h *Handler) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		se   *statusError
		ce   *kv.ConflictError
		code int
		msg  = err.Error()
	)
	switch {
	case errors.As(err, &se):
		code = se.code
	case errors.As(err, &ce):
		writeJSON(w, http.StatusConflict, h.appendError(nil, "revision condition failed", true, ce.Current))
		return
	case errors.Is(err, kv.ErrNotFound):
		code, msg = http.StatusNotFound, "key not found"
	case errors.Is(err, kv.ErrLeaseNotFound):
		code, msg = http.StatusNotFound, "lease not found: never granted, revoked, or expired"
		if strings.Contains(err.Error(), " of the set of ") { // a transaction's
			msg = strings.TrimPrefix(err.Error(), "kv: ") + ": never granted, revoked, or expired; the transaction changed nothing"
		}
	case errors.Is(err, kv.ErrLeaseExists):
		code, msg = http.StatusConflict, "a lease with this ID exists"
	case errors.Is(err, kv.ErrInvalidLease):
		code, msg = http.StatusBadRequest, strings.TrimPrefix(msg, "kv: invalid lease: ")
	case errors.Is(err, kv.ErrInvalidKey):
		code = http.StatusBadRequest
	case errors.Is(err, kv.ErrInvalidTxn):
		code, msg = http.StatusBadRequest, strings.TrimPrefix(msg, "kv: ")
	case errors.Is(err, kv.ErrUnavailable):
		code, msg = http.StatusServiceUnavailable, "the log is unavailable and the write was not acknowledged: try again later"
		h.log.Warn("write failed", "path", r.URL.Path, "err", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code, msg = http.StatusServiceUnavailable, "request cancelled before the write was acknowledged"
	default:
		h.log.Error("request failed", "path", r.URL.Path, "err", err)
		code, msg = http.StatusInternalServerError, "internal server error"
	}
	writeJSON(w, code, appendError(nil, msg, false, nil))
}

// readRequest decodes r's JSON body. A get or delete without a body reads
// the key (and IfRevision) from the query string instead.
func (h *Handler) readRequest(r *http.Request, w http.ResponseWriter, needValue bool) (request, error) {
	bp := h.bufs.Get().(*[]byte)
	defer h.putBuf(bp)
	data, err := readBody(r.Body, (*bp)[:0], h.maxBody)
	*bp = data
	if err != nil {
		return request{}, h.bodyError(w, err)
	}
	if len(data) == 0 && !needValue && (r.URL.RawQuery != "" || r.Method == http.MethodGet || r.Method == http.MethodDelete) {
		return queryRequest(r)
	}
	return decodeBody(data, needValue, h.maxValue, h.maxLeaseTTL)
}

var errTooLarge = errors.New("request body too large")

// bodyError returns the client error for a request body that readBody
// could not read.
func (h *Handler) bodyError(w http.ResponseWriter, err error) error {
	if errors.Is(err, errTooLarge) {
		// readBody read and dropped up to drainBytes more of the body,
		// so that a client still sending gets to read the answer;
		// net/http closes the connection after it when more is left.
		// Closing it with the body unread would reset it, and the
		// client would see that instead.
		return &statusError{http.StatusRequestEntityTooLarge,
			"request body over the limit of " + strconv.Itoa(h.maxBody) + " bytes"}
	}
	return badRequest("reading the request body: " + err.Error())
}

// drainBytes is how much more of a body over the limit readBody reads and
// drops, as net/http does after a handler for a kept-alive connection (but
// not for a request with "Connection: close", which it answers and then
// resets when the body is unread).
const drainBytes = 256 << 10

// readBody appends body to b, up to limit bytes. Over the limit, it reads
// and drops up to drainBytes more, and returns errTooLarge.
func readBody(body io.Reader, b []byte, limit int) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := body.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if len(b) > limit {
			if err == nil {
				io.CopyN(io.Discard, body, drainBytes)
			}
			return b, errTooLarge
		}
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// putBuf returns a buffer to h.bufs unless it grew large.
func (h *Handler) putBuf(bp *[]byte) {
	if cap(*bp) <= 64<<10 {
		*bp = (*bp)[:0]
		h.bufs.Put(bp)
	}
}

func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	req, err := h.readRequest(r, w, false)
	if err == nil {
		err = h.readBarrier(r)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	e, ok := h.store.Lookup(req.key)
	if !ok {
		h.writeError(w, r, kv.ErrNotFound)
		return
	}
	bp := h.bufs.Get().(*[]byte)
	*bp = h.appendEntry((*bp)[:0], &e)
	writeJSON(w, http.StatusOK, *bp)
	h.putBuf(bp)
}

func (h *Handler) set(w http.ResponseWriter, r *http.Request) {
	req, err := h.readRequest(r, w, true)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	c := kv.Change{Op: kv.OpSet, Key: req.key, Value: req.value, Cond: req.cond, IfRevision: req.ifRev, Lease: req.lease}
	if req.ttl > 0 {
		h.setWithTTL(w, r, c, req.ttl)
		return
	}
	h.submit(w, r, c)
}

func (h *Handler) del(w http.ResponseWriter, r *http.Request) {
	req, err := h.readRequest(r, w, false)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	h.submit(w, r, kv.Change{Op: kv.OpDelete, Key: req.key, Cond: req.cond, IfRevision: req.ifRev})
}

func (h *Handler) submit(w http.ResponseWriter, r *http.Request, c kv.Change) {
	rev, err := h.store.Submit(r.Context(), c)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	bp := h.bufs.Get().(*[]byte)
	*bp = appendWriteResult((*bp)[:0], c.Key, rev, c.Lease)
	writeJSON(w, http.StatusOK, *bp)
	h.putBuf(bp)
}

func (h *Handler) getall(w http.ResponseWriter, r *http.Request) {
	var prefix string
	q, err := parseQuery(r)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	for name, vals := range q {
		if strings.EqualFold(name, "prefix") {
			prefix = vals[0]
		}
	}
	if prefix != "" {
		if err := checkKey(prefix); err != nil {
			h.writeError(w, r, badRequest("bad prefix: "+err.Error()))
			return
		}
	}
	if err := h.readBarrier(r); err != nil {
		h.writeError(w, r, err)
		return
	}
	hdr := w.Header()
	if r.Method == http.MethodHead {
		// No listing is sent, so no snapshot is taken: the revision is the
		// current one. (kvscli watch starts with this.)
		hdr["Content-Type"] = jsonContentType
		hdr[RevisionHeader] = []string{strconv.FormatInt(h.store.Rev(), 10)}
		w.WriteHeader(http.StatusOK)
		return
	}
	v := h.store.View(prefix)
	hdr["Content-Type"] = jsonContentType
	hdr[RevisionHeader] = []string{strconv.FormatInt(v.Rev(), 10)}
	w.WriteHeader(http.StatusOK)
	b := make([]byte, 0, 32<<10)
	b = append(b, '{')
	first := true
	for e := range v.All() {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, e.Key)
		b = append(b, ':')
		b = append(b, e.Value...)
		if len(b) >= 32<<10 {
			if _, err := w.Write(b); err != nil {
				return
			}
			b = b[:0]
		}
	}
	b = append(b, "}\n"...)
	w.Write(b)
}

func (h *Handler) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
}

func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	if err := h.ready(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, appendError(nil, "not ready: "+err.Error(), false, nil))
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"status":"ready"}`))
}
