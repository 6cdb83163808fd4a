package httpapi

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kvsdb/kvs/kv"
)

// TestFeedSessionEndedSinceAuthorized: the feed of an upgrade authorized
// by a session gets that session even when it was revoked by /logout, or
// expired, after the request was authorized (the handler runs a moment
// later: on a busy machine the /logout that follows the upgrade at once
// can come first), so that the feed ends at once; taken for no session,
// the feed stayed open for good (httpapi TestSessionEndsFeed failed 4
// times in 30 under load). A request with the token gets no session.
func TestFeedSessionEndedSinceAuthorized(t *testing.T) {
	store := kv.New(kv.Options{})
	defer store.Close()
	const token = "s3cret-token-for-tests"
	h := New(Options{Store: store, Token: token, SessionTTL: time.Hour})
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h.now = func() time.Time { return clock }
	value, exp := h.auth.newSession(clock)
	upgrade := func(authorization string) *session {
		r := httptest.NewRequest("GET", "/subscribe", nil)
		r.Header.Set("Cookie", CookieName+"="+value)
		if authorization != "" {
			r.Header.Set("Authorization", authorization)
		}
		return h.feedSession(r)
	}
	valid := upgrade("")
	if valid == nil || !valid.exp.Equal(exp) {
		t.Fatalf("a valid session: got %v, want its expiry %v", valid, exp)
	}
	if s := upgrade("Bearer " + token); s != nil {
		t.Fatalf("with the token: got session %v, want none", s)
	}

	clock = exp.Add(time.Second)
	if s := upgrade(""); s == nil || s.id != valid.id || !s.exp.Equal(exp) {
		t.Fatalf("a session that expired since: got %v, want it (%v)", s, valid)
	}
	clock = exp.Add(-time.Minute)
	h.auth.revoke(valid.id, exp, clock)
	if s := upgrade(""); s == nil || s.id != valid.id || !h.auth.isRevoked(s.id) {
		t.Fatalf("a session revoked since: got %v, want it, revoked (%v)", s, valid)
	}
}
