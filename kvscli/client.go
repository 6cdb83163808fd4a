package main

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
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/kvsdb/kvs/httpapi"
)

// defaultPort is the port of an address given without one.
const defaultPort = "23333"

// parseAddress turns a server address into the base URL of the API:
// host:port (or a bare host, port 23333) means http://host:port, and an
// http:// or https:// URL is used as is, with its path as a prefix.
func parseAddress(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		if _, _, err := net.SplitHostPort(s); err != nil {
			s = net.JoinHostPort(strings.Trim(s, "[]"), defaultPort)
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
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		return nil, errors.New("want host:port, or an http:// or https:// URL without user, query or fragment")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// endpoint returns the URL of path (such as "/get") on the server.
func (c *cli) endpoint(path string, query url.Values) *url.URL {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	return &u
}

func (c *cli) client() *http.Client {
	if c.httpClient != nil {
		return c.httpClient
	}
	return http.DefaultClient
}

// header returns the headers of every request.
func (c *cli) header() http.Header {
	h := http.Header{"User-Agent": {"kvscli"}}
	if c.token != "" {
		h.Set("Authorization", "Bearer "+c.token)
	}
	return h
}

// withTimeout bounds ctx by -timeout, unless it is 0.
func (c *cli) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeoutCause(ctx, c.timeout, errTimeout)
}

// errTimeout is the cause of a context ended by -timeout.
var errTimeout = errors.New("kvscli: -timeout exceeded")

// apiError is an answer other than 2xx.
type apiError struct {
	status int
	// body is the decoded error; body.Error is empty when the answer was
	// not a kvs JSON error, and raw then holds its start.
	body httpapi.Error
	raw  string
}

func (e *apiError) Error() string {
	if e.body.Error != "" {
		return fmt.Sprintf("%d %s", e.status, e.body.Error)
	}
	return fmt.Sprintf("%d %s", e.status, e.raw)
}

func newAPIError(status int, body []byte) *apiError {
	e := &apiError{status: status}
	if json.Unmarshal(body, &e.body) != nil || e.body.Error == "" {
		e.body = httpapi.Error{}
		raw := strings.TrimSpace(string(body))
		if len(raw) > 200 {
			raw = raw[:200] + "..."
		}
		if raw == "" {
			raw = strings.ToLower(http.StatusText(status))
		}
		e.raw = raw
	}
	return e
}

// transportError is a request that got no answer.
type transportError struct {
	err      error
	timedOut bool // by -timeout
}

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// call sends a request with a JSON body (when body is not nil) and returns
// the answer's header and body if its status is 2xx. Other answers are an
// *apiError, no answer a *transportError; a cancelled ctx is ctx's error.
func (c *cli) call(ctx context.Context, method, path string, query url.Values, body any) (http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(body); err != nil {
			return nil, nil, usageErrorf("encoding the request: %v", err)
		}
		rd = &buf
	}
	rctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, method, c.endpoint(path, query).String(), rd)
	if err != nil {
		return nil, nil, usageErrorf("-server-address %q: %v", c.addr, err)
	}
	req.Header = c.header()
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.client().Do(req)
	if err == nil {
		var b []byte
		b, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			if resp.StatusCode/100 != 2 {
				return resp.Header, b, newAPIError(resp.StatusCode, b)
			}
			return resp.Header, b, nil
		}
	}
	if ctx.Err() != nil {
		return nil, nil, ctx.Err()
	}
	return nil, nil, &transportError{err: err, timedOut: errors.Is(context.Cause(rctx), errTimeout)}
}

// fail turns an error of call or of the watch dial into an *exitError with
// a message that names the server and says what to do. what names the
// operation ("set", "watch") and change is whether it may have changed
// data (its outcome is unknown when the answer is lost).
func (c *cli) fail(err error, what string, change bool) error {
	var (
		ee *exitError
		ae *apiError
		te *transportError
	)
	unknown := ""
	if change {
		unknown = "; the change may or may not have been made"
	}
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return err
	case errors.Is(err, context.Canceled):
		return &exitError{exitServer, fmt.Sprintf("%s: interrupted%s", what, unknown)}
	case errors.As(err, &te) && te.timedOut:
		return &exitError{exitServer, fmt.Sprintf("%s: kvsd at %s did not answer within %v%s; is it overloaded? raise -timeout",
			what, c.addr, c.timeout, unknown)}
	case errors.As(err, &te):
		return &exitError{exitServer, fmt.Sprintf("%s: cannot reach kvsd at %s: %s%s", what, c.addr, c.cause(te.err), unknown)}
	case errors.As(err, &ae):
		msg := ae.body.Error
		if msg == "" {
			msg = ae.raw
		}
		switch {
		case ae.status == http.StatusBadRequest && ae.body.Error == "" && strings.Contains(ae.raw, "HTTPS server"):
			return &exitError{exitUsage, fmt.Sprintf("%s: kvsd at %s serves HTTPS: use an https:// address (and -cacert if its certificate is not from a CA this machine trusts)", what, c.addr)}
		case ae.status == http.StatusBadRequest || ae.status == http.StatusRequestEntityTooLarge:
			return &exitError{exitUsage, fmt.Sprintf("%s: kvsd at %s rejected the request: %s", what, c.addr, msg)}
		case ae.status == http.StatusUnauthorized || ae.status == http.StatusForbidden:
			return &exitError{exitServer, fmt.Sprintf("%s: kvsd at %s refused the request (%d): %s; set -token or KVS_TOKEN",
				what, c.addr, ae.status, msg)}
		case ae.body.Error == "":
			return &exitError{exitServer, fmt.Sprintf("%s: the server at %s answered %d %q, not as kvsd does; check -server-address (http:// or https://?)",
				what, c.addr, ae.status, msg)}
		case ae.status >= 500:
			return &exitError{exitServer, fmt.Sprintf("%s: kvsd at %s failed (%d): %s%s; try again, or see its logs",
				what, c.addr, ae.status, msg, unknown)}
		default:
			return &exitError{exitServer, fmt.Sprintf("%s: kvsd at %s answered %d: %s", what, c.addr, ae.status, msg)}
		}
	default:
		return &exitError{exitServer, fmt.Sprintf("%s: %v", what, err)}
	}
}

// cause explains why a request got no answer, and what to do.
func (c *cli) cause(err error) string {
	var (
		se  *os.SyscallError
		dns *net.DNSError
		rhe tls.RecordHeaderError
		uae x509.UnknownAuthorityError
		che x509.HostnameError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused; is it running? set -server-address or KVS_ADDRESS"
	case errors.As(err, &dns):
		return dns.Err + " " + strconv.Quote(dns.Name) + "; set -server-address or KVS_ADDRESS"
	case errors.As(err, &rhe):
		return "it does not speak TLS; use http:// or host:port"
	case errors.As(err, &uae):
		return "its TLS certificate is not signed by a CA this machine trusts; pass the CA's certificate with -cacert or KVS_CACERT"
	case errors.As(err, &che):
		return "its TLS certificate is for another name (" + che.Error() + "); connect by a name the certificate holds"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed before an answer; is it a kvsd? (http:// or https://?)"
	case errors.As(err, &se):
		return se.Err.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return err.Error()
}

// backoffDelay returns how long to wait before reconnection attempt n
// (from 0): doubling from lo, capped at hi, and jittered down by up to a
// half so that clients disconnected together do not return together.
// rnd(k) returns a number in [0, k).
func backoffDelay(n int, lo, hi time.Duration, rnd func(int64) int64) time.Duration {
	d := hi
	if n < 32 && lo<<n < hi && lo<<n > 0 {
		d = lo << n
	}
	return d - time.Duration(rnd(int64(d/2)+1))
}
