package httpapi

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// CookieName is the cookie that POST /login sets: a browser cannot put an
// Authorization header on a WebSocket handshake, so it proves the token
// with this cookie instead. It holds a session, not the token.
const CookieName = "kvs_token"

// SessionHeader is set on the answers to requests that the session cookie
// authorized: when the session expires (RFC 3339). The console shows its
// log-out control when it sees it.
const SessionHeader = "Kvs-Session-Expires"

// DefaultSessionTTL is how long a session of POST /login lasts by default.
const DefaultSessionTTL = 12 * time.Hour

// unauthorizedBody is the answer to a request without the right token. It
// does not say whether the token was missing or wrong.
const unauthorizedBody = `{"error":"unauthorized: this kvsd needs a token: send the header Authorization: Bearer <token>"}`

// auth checks the token of a request in constant time, and the sessions
// that POST /login hands out.
type auth struct {
	// digest is the SHA-256 of the token: comparing digests of equal
	// length keeps the token's length secret too.
	digest [sha256.Size]byte
	// key signs sessions. It is derived from the token, so that changing
	// the token invalidates every session.
	key []byte
	ttl time.Duration
	// wrong limits, per client address, the wrong tokens presented.
	wrong *limiter

	// mu guards revoked.
	mu sync.Mutex
	// revoked holds the sessions ended by POST /logout, by id, with their
	// expiry (after which they need no longer be remembered).
	revoked map[sessionID]time.Time
}

// sessionID names one session.
type sessionID [16]byte

// maxRevoked bounds the sessions remembered as revoked; past it, expired
// ones are forgotten, then any.
const maxRevoked = 100000

func newAuth(token string, ttl time.Duration, burst int) *auth {
	if token == "" {
		return nil
	}
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("kvs session key v1"))
	return &auth{
		digest:  sha256.Sum256([]byte(token)),
		key:     mac.Sum(nil),
		ttl:     ttl,
		wrong:   newLimiter(burst),
		revoked: make(map[sessionID]time.Time),
	}
}

// validToken reports whether token is the token.
func (a *auth) validToken(token string) bool {
	d := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(d[:], a.digest[:]) == 1
}

// bearer returns the token of r's Authorization header, "Bearer <token>"
// (the scheme in any case), and whether r has one such header.
func bearer(r *http.Request) (string, bool) {
	vals := r.Header.Values("Authorization")
	if len(vals) != 1 {
		return "", false
	}
	scheme, token, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimLeft(token, " "), true
}

// A session cookie is the base64 of: the session's expiry (Unix seconds,
// 8 bytes, big-endian), its id (16 random bytes), and an HMAC-SHA256 of
// both keyed by auth.key.
const (
	sessionPayload = 8 + len(sessionID{})
	sessionLen     = sessionPayload + sha256.Size
)

// newSession returns the cookie value of a new session, and its expiry.
func (a *auth) newSession(now time.Time) (string, time.Time) {
	exp := now.Add(a.ttl + time.Second - 1).Truncate(time.Second) // whole seconds, at least ttl
	b := make([]byte, sessionPayload, sessionLen)
	binary.BigEndian.PutUint64(b, uint64(exp.Unix()))
	rand.Read(b[8:sessionPayload])
	mac := hmac.New(sha256.New, a.key)
	mac.Write(b)
	return base64.RawURLEncoding.EncodeToString(mac.Sum(b)), exp
}

// session returns the id and expiry of the session that value, a cookie
// value, proves, if it is valid at now: signed with the key, not expired,
// not revoked.
func (a *auth) session(value string, now time.Time) (sessionID, time.Time, bool) {
	id, exp, ok := a.signedSession(value)
	if !ok || !now.Before(exp) {
		return id, time.Time{}, false
	}
	a.mu.Lock()
	_, revoked := a.revoked[id]
	a.mu.Unlock()
	return id, exp, !revoked
}

// signedSession returns the id and expiry that value, a cookie value,
// holds, if it is signed with the key, expired or revoked or not.
func (a *auth) signedSession(value string) (sessionID, time.Time, bool) {
	var id sessionID
	b, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(b) != sessionLen {
		return id, time.Time{}, false
	}
	mac := hmac.New(sha256.New, a.key)
	mac.Write(b[:sessionPayload])
	if !hmac.Equal(mac.Sum(nil), b[sessionPayload:]) {
		return id, time.Time{}, false
	}
	copy(id[:], b[8:sessionPayload])
	return id, time.Unix(int64(binary.BigEndian.Uint64(b)), 0), true
}

// cookieSession returns the id and expiry of the valid session among r's
// cookies.
func (a *auth) cookieSession(r *http.Request, now time.Time) (sessionID, time.Time, bool) {
	for _, c := range r.CookiesNamed(CookieName) {
		if id, exp, ok := a.session(c.Value, now); ok {
			return id, exp, true
		}
	}
	return sessionID{}, time.Time{}, false
}

// isRevoked reports whether the session id was revoked.
func (a *auth) isRevoked(id sessionID) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.revoked[id]
	return ok
}

// feedSession returns the session that authorized r, an upgrade to the
// feed, when r does not carry the token itself: the feed ends with the
// session. A session that was valid when r was authorized may have been
// revoked or have expired since: it is returned all the same, and the
// feed ends at once (taking it for no session would keep the feed open
// for good).
func (h *Handler) feedSession(r *http.Request) *session {
	if h.auth == nil {
		return nil
	}
	if token, ok := bearer(r); ok && h.auth.validToken(token) {
		return nil
	}
	id, exp, ok := h.auth.cookieSession(r, h.now())
	if !ok {
		for _, c := range r.CookiesNamed(CookieName) {
			if id, exp, ok = h.auth.signedSession(c.Value); ok {
				break
			}
		}
	}
	if !ok {
		return nil // not authorized by a session: authorize refused r
	}
	return &session{id: id, exp: exp}
}

// session is a login session that authorized a feed.
type session struct {
	id  sessionID
	exp time.Time
}

// revoke ends the session id, which expires at exp.
func (a *auth) revoke(id sessionID, exp time.Time, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.revoked) >= maxRevoked {
		for k, e := range a.revoked {
			if !now.Before(e) {
				delete(a.revoked, k)
			}
		}
		for k := range a.revoked {
			if len(a.revoked) < maxRevoked {
				break
			}
			delete(a.revoked, k)
		}
	}
	a.revoked[id] = exp
}

// authorize reports whether r carries a valid session cookie or the token.
// When it does not, it has answered r: 401, or 429 to an address that
// presented too many wrong tokens, which is not checked (see limiter).
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, pattern string) bool {
	a, now := h.auth, h.now()
	if _, exp, ok := a.cookieSession(r, now); ok {
		w.Header().Set(SessionHeader, exp.UTC().Format(time.RFC3339))
		return true
	}
	token, ok := bearer(r)
	if !ok {
		writeUnauthorized(w)
		return false
	}
	return h.checkToken(w, r, pattern, token, now)
}

// checkToken reports whether token is the token. When it is not, it has
// answered r with 401, or 429 to an address that presented too many wrong
// tokens: their tokens are not even checked.
func (h *Handler) checkToken(w http.ResponseWriter, r *http.Request, pattern, token string, now time.Time) bool {
	addr := clientAddr(r)
	if wait, ok := h.auth.wrong.allow(addr, now); !ok {
		secs := strconv.Itoa(int(max(1, (wait+time.Second-1)/time.Second))) // rounded up
		w.Header().Set("Retry-After", secs)
		writeJSON(w, http.StatusTooManyRequests, appendError(nil,
			"too many wrong tokens from this address: try again in "+secs+" s", false, nil))
		return false
	}
	if h.auth.validToken(token) {
		return true
	}
	if limited := h.auth.wrong.fail(addr, now); limited {
		h.log.Warn("wrong token; this address is limited to one try a second now", "remote", addr, "route", pattern)
	} else {
		h.log.Warn("wrong token", "remote", addr, "route", pattern)
	}
	writeUnauthorized(w)
	return false
}

// exempt reports whether the route pattern serves requests without a
// token: /healthz (liveness probes), /login (which checks the token
// itself), /logout (which ends the caller's own session only), and the
// web console's page (/ and /ui/...), which asks the user for the token.
// Every other pattern, and a request that matches none, needs the token.
func exempt(pattern string) bool {
	_, path, ok := strings.Cut(pattern, " ")
	if !ok {
		path = pattern
	}
	return path == "/healthz" || path == "/login" || path == "/logout" || path == "/{$}" || strings.HasPrefix(path, "/ui/")
}

func writeUnauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="kvs"`)
	writeJSON(w, http.StatusUnauthorized, []byte(unauthorizedBody))
}

// maxLoginBody limits the body of POST /login.
const maxLoginBody = 4 << 10

// login serves POST /login: with the right token in the body it starts a
// session and sets the cookie that proves it; with a wrong one it answers
// 401, or 429 to an address that sent too many. On a server without a
// token it answers 200 and sets nothing.
func (h *Handler) login(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxLoginBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			h.writeError(w, r, &statusError{http.StatusRequestEntityTooLarge,
				"request body over the limit of " + strconv.Itoa(maxLoginBody) + " bytes"})
			return
		}
		h.writeError(w, r, badRequest("reading the request body: "+err.Error()))
		return
	}
	var req struct{ Token *string }
	if err := json.Unmarshal(data, &req); err != nil {
		h.writeError(w, r, badRequest("malformed JSON: "+jsonErrorText(err)+`: send {"Token":"..."}`))
		return
	}
	if req.Token == nil {
		h.writeError(w, r, badRequest(`missing "Token": send {"Token":"..."}`))
		return
	}
	if h.auth == nil {
		writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
		return
	}
	now := h.now()
	if !h.checkToken(w, r, "POST /login", *req.Token, now) {
		return
	}
	value, exp := h.auth.newSession(now)
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Value:    value,
		Path:     "/",
		Expires:  exp,
		MaxAge:   int(exp.Sub(now).Seconds()),
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	w.Header().Set(SessionHeader, exp.UTC().Format(time.RFC3339))
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok","Expires":"`+exp.UTC().Format(time.RFC3339)+`"}`))
}

// logout serves POST /logout: it ends the session of the request's cookie,
// if any, on this server, and tells the browser to forget the cookie. It
// needs no token: it can end only the caller's own session.
func (h *Handler) logout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if h.auth != nil {
		now := h.now()
		for _, c := range r.CookiesNamed(CookieName) {
			if id, exp, ok := h.auth.session(c.Value, now); ok {
				h.auth.revoke(id, exp, now)
			}
		}
	}
	http.SetCookie(w, &http.Cookie{
		Name:     CookieName,
		Path:     "/",
		MaxAge:   -1,
		HttpOnly: true,
		Secure:   r.TLS != nil,
		SameSite: http.SameSiteStrictMode,
	})
	writeJSON(w, http.StatusOK, []byte(`{"status":"logged out"}`))
}
