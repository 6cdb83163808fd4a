package httpapi

import (
	"net"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
)

// Checks that every request passes before its route sees it: the Host it
// was sent to (DNS rebinding), where a write comes from (cross-site
// requests) and the query string (malformed, or a parameter given twice).

// LoopbackHosts are the host patterns that a server listening on a
// loopback address only should allow (Options.AllowedHosts): the names
// that always resolve to the loopback address. IP addresses are allowed
// besides.
var LoopbackHosts = []string{"localhost", "*.localhost"}

// hostAllowed reports whether host, a Host header, names this server: an IP
// address, or a name that matches one of patterns (path.Match, in lower
// case, without the port and a final dot). Nil patterns allow every host;
// so does "*".
func hostAllowed(host string, patterns []string) bool {
	if patterns == nil || host == "" {
		return true
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if net.ParseIP(host) != nil {
		return true // a DNS rebinding needs a name
	}
	for _, p := range patterns {
		if ok, err := path.Match(p, host); ok && err == nil {
			return true
		}
	}
	return false
}

// ValidHostPattern reports whether p is a valid pattern for
// Options.AllowedHosts.
func ValidHostPattern(p string) bool {
	_, err := path.Match(p, "")
	return p != "" && err == nil && !strings.ContainsAny(p, ":/")
}

// misdirected is the answer to a request for a host that is not allowed.
func misdirected(host string) error {
	return &statusError{http.StatusMisdirectedRequest, "host " + strconv.Quote(host) +
		" refused: this kvsd answers only to the hosts in -allowed-hosts (a page of another site could reach it through a DNS name that points here)"}
}

// isWrite reports whether a request of method may change state: every
// method but GET and HEAD, so that a route added later is covered without
// being named here.
func isWrite(method string) bool {
	return method != http.MethodGet && method != http.MethodHead
}

// checkCrossSite refuses a request that a browser sent from a page of
// another site: one with an Origin other than the server's own and those
// that patterns allow, or, without Origin, with Sec-Fetch-Site cross-site
// or same-site. Requests from programs (curl, kvscli) carry neither.
func checkCrossSite(r *http.Request, patterns []string) error {
	if origin := r.Header.Get("Origin"); origin != "" {
		if originAllowed(r, origin, patterns) {
			return nil
		}
		return &statusError{http.StatusForbidden, "cross-site " + r.Method + " from origin " + strconv.Quote(origin) +
			" refused: kvsd takes writes from pages of its own origin and those in -allowed-origins"}
	}
	switch site := r.Header.Get("Sec-Fetch-Site"); site {
	case "cross-site", "same-site":
		return &statusError{http.StatusForbidden, "cross-site " + r.Method + " refused (Sec-Fetch-Site: " + site +
			"): kvsd takes writes from pages of its own origin and those in -allowed-origins"}
	}
	return nil
}

// originAllowed reports whether origin, an Origin header, is the server's
// own (its host is r's Host) or matches one of patterns, as
// websocket.Accept decides.
func originAllowed(r *http.Request, origin string, patterns []string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if strings.EqualFold(r.Host, u.Host) {
		return true
	}
	for _, p := range patterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, err := path.Match(strings.ToLower(p), strings.ToLower(target)); ok && err == nil {
			return true
		}
	}
	return false
}

// checkQuery refuses a query string that does not parse, or that gives a
// parameter more than once in any letter case (which of them a route
// would use is not for the client to guess). It allocates nothing for a
// query without escapes.
func checkQuery(raw string) error {
	if raw == "" {
		return nil
	}
	var arr [8]string
	names := arr[:0]
	for part := range strings.SplitSeq(raw, "&") {
		if strings.Contains(part, ";") {
			return badRequest("malformed query string: invalid semicolon separator in query")
		}
		if part == "" {
			continue
		}
		name, value, _ := strings.Cut(part, "=")
		if strings.ContainsAny(name, "%+") {
			n, err := url.QueryUnescape(name)
			if err != nil {
				return badRequest("malformed query string: " + err.Error())
			}
			name = n
		}
		if strings.Contains(value, "%") {
			if _, err := url.QueryUnescape(value); err != nil {
				return badRequest("malformed query string: " + err.Error())
			}
		}
		for _, seen := range names {
			if strings.EqualFold(seen, name) {
				return badRequest("parameter " + strconv.Quote(name) + " given more than once (names match in any letter case)")
			}
		}
		names = append(names, name)
	}
	return nil
}
