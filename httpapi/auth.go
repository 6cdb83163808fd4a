package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// CookieName is the cookie that POST /login sets: a browser cannot put an
// Authorization header on a WebSocket handshake, so it proves the token
// with this cookie instead.
const CookieName = "kvs_token"

// unauthorizedBody is the answer to a request without the right token. It
// does not say whether the token was missing or wrong.
const unauthorizedBody = `{"error":"unauthorized: this kvsd needs a token: send the header Authorization: Bearer <token>"}`

// auth checks the token of a request in constant time.
type auth struct {
	// digest is the SHA-256 of the token: comparing digests of equal
	// length keeps the token's length secret too.
	digest [sha256.Size]byte
	// cookie is the value of CookieName that proves the token: an HMAC of
	// a fixed text keyed by the token. It is not the token itself, and
	// changing the token invalidates every cookie.
	cookie string
}

func newAuth(token string) *auth {
	if token == "" {
		return nil
	}
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("kvs_token cookie v1"))
	return &auth{
		digest: sha256.Sum256([]byte(token)),
		cookie: base64.RawURLEncoding.EncodeToString(mac.Sum(nil)),
	}
}

// validToken reports whether token is the token.
func (a *auth) validToken(token string) bool {
	d := sha256.Sum256([]byte(token))
	return subtle.ConstantTimeCompare(d[:], a.digest[:]) == 1
}

// allowed reports whether r carries the token: as the header
// "Authorization: Bearer <token>" (the scheme in any case), or as the
// cookie that /login sets.
func (a *auth) allowed(r *http.Request) bool {
	if vals := r.Header.Values("Authorization"); len(vals) == 1 {
		scheme, token, ok := strings.Cut(vals[0], " ")
		if ok && strings.EqualFold(scheme, "Bearer") && a.validToken(strings.TrimLeft(token, " ")) {
			return true
		}
	}
	for _, c := range r.CookiesNamed(CookieName) {
		if subtle.ConstantTimeCompare([]byte(c.Value), []byte(a.cookie)) == 1 {
			return true
		}
	}
	return false
}

// exempt reports whether the route pattern serves requests without a
// token: /healthz (liveness probes), /login (which checks the token
// itself), and the web console's page (/ and /ui/...), which asks the user
// for the token. Every other pattern, and a request that matches none,
// needs the token.
func exempt(pattern string) bool {
	_, path, ok := strings.Cut(pattern, " ")
	if !ok {
		path = pattern
	}
	return path == "/healthz" || path == "/login" || path == "/{$}" || strings.HasPrefix(path, "/ui/")
}

func writeUnauthorized(w http.ResponseWriter) {
	w.Header().Set("WWW-Authenticate", `Bearer realm="kvs"`)
	writeJSON(w, http.StatusUnauthorized, []byte(unauthorizedBody))
}

// maxLoginBody limits the body of POST /login.
const maxLoginBody = 4 << 10

// login serves POST /login: with the right token in the body it sets the
// cookie that proves it; with a wrong one it answers 401. On a server
// without a token it answers 200 and sets nothing.
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
	if h.auth != nil {
		if !h.auth.validToken(*req.Token) {
			writeUnauthorized(w)
			return
		}
		http.SetCookie(w, &http.Cookie{
			Name:     CookieName,
			Value:    h.auth.cookie,
			Path:     "/",
			HttpOnly: true,
			Secure:   r.TLS != nil,
			SameSite: http.SameSiteStrictMode,
		})
	}
	writeJSON(w, http.StatusOK, []byte(`{"status":"ok"}`))
}
