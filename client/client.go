package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kvsdb/kvs/wire"
)

// DefaultAddress is the address of a kvsd with its default settings on
// this machine.
const DefaultAddress = "127.0.0.1:23333"

// DefaultPort is the port of an address given without one.
const DefaultPort = "23333"

// Options configures a Client. The zero value of every field means its
// default.
type Options struct {
	// Token, when not empty, is sent with every request as
	// "Authorization: Bearer <Token>": what a kvsd started with -token
	// needs. It must be printable ASCII without spaces.
	Token string
	// TLSConfig configures the TLS of https:// addresses. Nil means Go's
	// defaults: the system's CA certificates.
	TLSConfig *tls.Config
	// CAFile names a PEM file of CA certificates to trust for https://
	// addresses, besides those of TLSConfig.RootCAs (or the system's).
	// Empty means none.
	CAFile string
	// Timeout bounds each call: sending a request and reading its answer,
	// or opening a connection to the change feed (but not reading it).
	// Zero means no bound beyond the context's.
	Timeout time.Duration
	// HTTPClient sends the requests and opens the change feed's WebSocket
	// connections. Nil means a client of this package's own, which keeps
	// up to 64 idle connections. With HTTPClient set, TLSConfig and
	// CAFile must be empty: configure its Transport instead.
	HTTPClient *http.Client
	// UserAgent is the User-Agent header of every request. Empty means
	// "kvs-go-client".
	UserAgent string
}

// Environment returns the address and options that the environment gives,
// as getenv (usually os.Getenv) reads it: KVS_ADDRESS (DefaultAddress when
// empty), KVS_TOKEN (Options.Token) and KVS_CACERT (Options.CAFile). The
// package never reads the environment by itself; a program that wants
// these defaults passes them to New, after its own flags override them.
func Environment(getenv func(string) string) (addr string, opts Options) {
	addr = getenv("KVS_ADDRESS")
	if addr == "" {
		addr = DefaultAddress
	}
	return addr, Options{Token: getenv("KVS_TOKEN"), CAFile: getenv("KVS_CACERT")}
}

// Client calls one kvsd. It is safe for concurrent use, and holds no
// resource that needs closing beyond the idle connections of its
// HTTP client (CloseIdleConnections).
type Client struct {
	addr    string // as given to New, for messages
	base    string // the base URL, without a final slash
	hc      *http.Client
	timeout time.Duration
	// header is sent with every request, and headerJSON with those that
	// have a JSON body. Both are shared by concurrent requests and never
	// changed.
	header, headerJSON http.Header
	bufs               sync.Pool // of *[]byte, for bodies and answers
}

// New returns a Client of the kvsd at addr: host:port (a bare host means
// port DefaultPort), or an http:// or https:// URL, whose path is then a
// prefix of every route (for a kvsd behind a proxy). It fails when addr or
// opts are malformed, or Options.CAFile cannot be read; it does not
// connect.
func New(addr string, opts Options) (*Client, error) {
	u, err := ParseAddress(addr)
	if err != nil {
		return nil, fmt.Errorf("client: address %q: %w", addr, err)
	}
	for _, r := range opts.Token {
		if r < 0x21 || r > 0x7e {
			return nil, errors.New("client: a token is printable ASCII without spaces")
		}
	}
	if opts.Timeout < 0 {
		return nil, errors.New("client: negative timeout")
	}
	c := &Client{
		addr:    addr,
		base:    u.String(),
		hc:      opts.HTTPClient,
		timeout: opts.Timeout,
		bufs:    sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }},
	}
	if c.hc == nil {
		tlsConfig := opts.TLSConfig
		if opts.CAFile != "" {
			if tlsConfig, err = trust(tlsConfig, opts.CAFile); err != nil {
				return nil, fmt.Errorf("client: %w", err)
			}
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = tlsConfig
		tr.MaxIdleConnsPerHost = 64
		tr.DisableCompression = true // answers are small or already compact
		c.hc = &http.Client{Transport: tr}
	} else if opts.TLSConfig != nil || opts.CAFile != "" {
		return nil, errors.New("client: Options.HTTPClient with TLSConfig or CAFile: configure TLS in the HTTPClient's Transport")
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = "kvs-go-client"
	}
	c.header = http.Header{"User-Agent": {ua}}
	if opts.Token != "" {
		c.header.Set("Authorization", "Bearer "+opts.Token)
	}
	c.headerJSON = c.header.Clone()
	c.headerJSON.Set("Content-Type", "application/json")
	return c, nil
}

// trust returns a copy of cfg (or a new config) whose root CAs are those of
// cfg (or the system's) plus the PEM certificates in file.
func trust(cfg *tls.Config, file string) (*tls.Config, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		cfg = &tls.Config{}
	} else {
		cfg = cfg.Clone()
	}
	pool := cfg.RootCAs
	if pool == nil {
		if pool, err = x509.SystemCertPool(); err != nil {
			pool = x509.NewCertPool()
		}
	} else {
		pool = pool.Clone()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", file)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

// ParseAddress returns the base URL of the API at addr, an address in a
// form that New accepts: host:port or a bare host means
// http://host:port, and an http:// or https:// URL (without user, query or
// fragment) is used as is, its path a prefix of every route.
func ParseAddress(addr string) (*url.URL, error) {
	s := addr
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(strings.Trim(s, "[]"), DefaultPort)
		}
		s = "http://" + s
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, errors.New("want host:port, or an http:// or https:// URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, fmt.Errorf("scheme %q: want host:port, or an http:// or https:// URL", u.Scheme)
	case u.Host == "":
		return nil, errors.New("no host: want host:port, or an http:// or https:// URL")
	case u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, errors.New("want host:port, or an http:// or https:// URL without user, query or fragment")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// Address returns the address the Client was made with.
func (c *Client) Address() string { return c.addr }

// URL returns the base URL of the API, without a final slash.
func (c *Client) URL() string { return c.base }

// HTTPClient returns the HTTP client that the Client sends its requests
// with.
func (c *Client) HTTPClient() *http.Client { return c.hc }

// CloseIdleConnections closes the idle connections of the HTTP client.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// errTimeout is the cause of a context that Options.Timeout ended.
var errTimeout = errors.New("client: timeout")

// withTimeout bounds ctx by Options.Timeout, if set.
func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, c.timeout, errTimeout)
}

// request is one call's request.
type request struct {
	op, key string
	method  string
	path    string // a route of package wire
	query   string // encoded, without "?"
	body    []byte // JSON, or nil
}

// answer is a successful answer. data is only valid until the buffer it
// lives in is put back with c.putBuf.
type answer struct {
	header http.Header
	data   []byte
	buf    *[]byte
}

// do sends req and reads its answer. A 2xx answer is returned; any other
// is an *Error (or *ProtocolError when it is not a kvs error), no answer
// an *UnreachableError, and a ctx that ended first ctx's error.
func (c *Client) do(ctx context.Context, req request) (answer, error) {
	rctx, cancel := c.withTimeout(ctx)
	defer cancel()
	u := c.base + req.path
	if req.query != "" {
		u += "?" + req.query
	}
	var rd io.Reader
	hdr := c.header
	if req.body != nil {
		rd = bytes.NewReader(req.body)
		hdr = c.headerJSON
	}
	hreq, err := http.NewRequestWithContext(rctx, req.method, u, rd)
	if err != nil {
		return answer{}, fmt.Errorf("client: %s: %w", req.op, err)
	}
	if c.hc.Jar != nil {
		hdr = hdr.Clone() // the jar adds its cookies to the request's header
	}
	hreq.Header = hdr
	resp, err := c.hc.Do(hreq)
	var a answer
	if err == nil {
		a.buf = c.bufs.Get().(*[]byte)
		a.data, err = readAll(resp.Body, (*a.buf)[:0])
		*a.buf = a.data
		resp.Body.Close()
		if err == nil {
			a.header = resp.Header
			if resp.StatusCode/100 == 2 {
				return a, nil
			}
			err = c.answerError(req, resp.StatusCode, a.data)
			c.putBuf(a.buf)
			return answer{}, err
		}
		c.putBuf(a.buf)
	}
	return answer{}, c.transportError(ctx, rctx, req.op, err)
}

// transportError returns the error of a request that got no answer.
func (c *Client) transportError(ctx, rctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("client: %s: %w", op, context.Cause(ctx))
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is ours; the cause is what matters
	}
	timeout := errors.Is(context.Cause(rctx), errTimeout)
	if timeout {
		err = context.DeadlineExceeded
	}
	return &UnreachableError{Op: op, Addr: c.addr, Err: err, Timeout: timeout}
}

// answerError returns the error of an answer with a status other than 2xx.
func (c *Client) answerError(req request, status int, data []byte) error {
	var e wire.Error
	if len(data) == 0 && req.method == http.MethodHead {
		// A HEAD answer has no body: the status is all there is.
		e.Error = strings.ToLower(http.StatusText(status))
	} else if json.Unmarshal(data, &e) != nil || e.Error == "" {
		return &ProtocolError{Op: req.op, Status: status, Body: start(data)}
	}
	return &Error{Op: req.op, Key: req.key, Status: status, Message: e.Error, Current: e.Current}
}

// start returns the start of a body, for messages.
func start(data []byte) string {
	s := strings.TrimSpace(string(data[:min(len(data), 300)]))
	if len(data) > 200 {
		s = s[:min(len(s), 200)] + "..."
	}
	return s
}

// readAll appends what r holds to b.
func readAll(r io.Reader, b []byte) ([]byte, error) {
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := r.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		if err == io.EOF {
			return b, nil
		}
		if err != nil {
			return b, err
		}
	}
}

// getBuf returns an empty pooled buffer.
func (c *Client) getBuf() *[]byte {
	bp := c.bufs.Get().(*[]byte)
	*bp = (*bp)[:0]
	return bp
}

// putBuf returns a buffer to the pool unless it grew large.
func (c *Client) putBuf(bp *[]byte) {
	if bp != nil && cap(*bp) <= 64<<10 {
		c.bufs.Put(bp)
	}
}
