package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/kvsdb/kvs/kv"
	"github.com/kvsdb/kvs/wire"
)

// The lease routes (types in package wire):
//
//	POST /lease/grant     {"TTL":"30s"}, optional "ID"        → a Lease
//	POST /lease/keepalive {"ID":N} or {"IDs":[N, ...]}         → a LeaseKeepAliveResult (404: none found)
//	POST /lease/revoke    {"ID":N}                            → a LeaseRevokeResult
//	POST /lease/ttl       {"ID":N}, or GET /lease/ttl?id=N     → a Lease with its keys
//	GET  /lease/list                                           → a LeaseList
//
// A TTL is Go duration text ("30s", "1m", "500ms") or a number of seconds,
// a whole number of milliseconds up to Options.MaxLeaseTTL.

// DefaultMaxLeaseTTL is the default limit on a lease's TTL.
const DefaultMaxLeaseTTL = 30 * 24 * time.Hour

// DefaultMaxKeepAliveIDs is the most leases one keep-alive may renew.
const DefaultMaxKeepAliveIDs = 100000

func (h *Handler) routeLeases() {
	h.mux.HandleFunc("POST "+wire.PathLeaseGrant, h.leaseGrant)
	h.mux.HandleFunc("POST "+wire.PathLeaseKeepAlive, h.leaseKeepAlive)
	h.mux.HandleFunc("POST "+wire.PathLeaseRevoke, h.leaseRevoke)
	h.mux.HandleFunc("POST "+wire.PathLeaseTTL, h.leaseTTL)
	h.mux.HandleFunc("GET "+wire.PathLeaseTTL, h.leaseTTL)
	h.mux.HandleFunc("GET "+wire.PathLeaseList, h.leaseList)
}

// leaseBody is a lease request body as the client sent it.
type leaseBody struct {
	ID  json.RawMessage
	IDs json.RawMessage
	TTL json.RawMessage
}

// readLeaseBody reads and splits r's JSON body.
func (h *Handler) readLeaseBody(w http.ResponseWriter, r *http.Request, example string) (leaseBody, error) {
	var b leaseBody
	bp := h.bufs.Get().(*[]byte)
	defer h.putBuf(bp)
	data, err := readBody(r.Body, (*bp)[:0], h.maxBody)
	*bp = data
	if err != nil {
		return b, h.bodyError(w, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return b, badRequest("empty request body: send a JSON object such as " + example)
	}
	if err := json.Unmarshal(data, &b); err != nil {
		return b, badRequest("malformed JSON: " + jsonErrorText(err))
	}
	// Keep nothing that points into the pooled buffer.
	b.ID, b.IDs, b.TTL = bytes.Clone(b.ID), bytes.Clone(b.IDs), bytes.Clone(b.TTL)
	return b, nil
}

// decodeLeaseID decodes a lease ID, member name: 0 (or absent) is none
// unless required.
func decodeLeaseID(raw json.RawMessage, name string, required bool) (int64, error) {
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return 0, badRequest(`missing "` + name + `": the lease ID`)
		}
		return 0, nil
	}
	id, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || id < 0 || id > kv.MaxLeaseID || id == 0 && required {
		return 0, badRequest(`"` + name + `" must be a lease ID, an integer from 1 to ` + strconv.FormatInt(kv.MaxLeaseID, 10) + `, not ` + truncate(string(raw)))
	}
	return id, nil
}

// decodeTTL decodes and checks a TTL.
func decodeTTL(raw json.RawMessage, max time.Duration) (time.Duration, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, badRequest(`missing "TTL": a duration such as "30s", or a number of seconds`)
	}
	d, err := wire.ParseDuration(raw)
	if err != nil {
		return 0, badRequest(`"TTL" ` + truncate(string(raw)) + `: a TTL is a duration such as "30s" or "1m30s", or a number of seconds`)
	}
	if err := kv.CheckTTL(time.Duration(d), max); err != nil {
		return 0, badRequest(strings.TrimPrefix(err.Error(), "kv: invalid lease: "))
	}
	return time.Duration(d), nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

func (h *Handler) leaseGrant(w http.ResponseWriter, r *http.Request) {
	b, err := h.readLeaseBody(w, r, `{"TTL":"30s"}`)
	var (
		id  int64
		ttl time.Duration
	)
	if err == nil {
		id, err = decodeLeaseID(b.ID, "ID", false)
	}
	if err == nil {
		ttl, err = decodeTTL(b.TTL, h.maxLeaseTTL)
	}
	var l kv.Lease
	if err == nil {
		l, err = h.store.Grant(r.Context(), id, ttl)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, appendLease(nil, l))
}

func (h *Handler) leaseKeepAlive(w http.ResponseWriter, r *http.Request) {
	b, err := h.readLeaseBody(w, r, `{"ID":N} or {"IDs":[N, ...]}`)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	id, err := decodeLeaseID(b.ID, "ID", false)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var ids []int64
	if len(b.IDs) > 0 && string(b.IDs) != "null" {
		if err := json.Unmarshal(b.IDs, &ids); err != nil {
			h.writeError(w, r, badRequest(`"IDs" must be an array of lease IDs`))
			return
		}
		for _, x := range ids {
			if x < 1 || x > kv.MaxLeaseID {
				h.writeError(w, r, badRequest(`"IDs": `+strconv.FormatInt(x, 10)+` is not a lease ID, an integer from 1 to `+strconv.FormatInt(kv.MaxLeaseID, 10)))
				return
			}
		}
	}
	if id != 0 {
		ids = append(ids, id)
	}
	switch {
	case len(ids) == 0:
		h.writeError(w, r, badRequest(`missing "ID" or "IDs": the leases to keep alive`))
		return
	case len(ids) > DefaultMaxKeepAliveIDs:
		h.writeError(w, r, badRequest("a keep-alive renews at most "+strconv.Itoa(DefaultMaxKeepAliveIDs)+" leases; this one has "+strconv.Itoa(len(ids))))
		return
	}
	ls, err := h.store.KeepAlive(r.Context(), ids)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	var notFound []byte
	for _, l := range ls {
		if l.TTL == 0 {
			if len(notFound) > 0 {
				notFound = append(notFound, ',')
			}
			notFound = strconv.AppendInt(notFound, l.ID, 10)
		}
	}
	if len(notFound) > 0 {
		notFound = append(append([]byte(`"NotFound":[`), notFound...), ']')
	}
	if countFound(ls) == 0 {
		// Every lease asked for is gone: the answer says which, as a 404.
		writeJSON(w, http.StatusNotFound, append(append([]byte(`{"error":"lease not found",`), notFound...), '}'))
		return
	}
	bp := h.bufs.Get().(*[]byte)
	defer h.putBuf(bp)
	b2 := append((*bp)[:0], `{"Leases":[`...)
	n := 0
	for _, l := range ls {
		if l.TTL == 0 {
			continue
		}
		if n > 0 {
			b2 = append(b2, ',')
		}
		n++
		b2 = appendLease(b2, l)
	}
	b2 = append(b2, ']')
	if len(notFound) > 0 {
		b2 = append(append(b2, ','), notFound...)
	}
	*bp = append(b2, '}')
	writeJSON(w, http.StatusOK, *bp)
}

// countFound returns how many of ls were found.
func countFound(ls []kv.Lease) int {
	n := 0
	for _, l := range ls {
		if l.TTL != 0 {
			n++
		}
	}
	return n
}

func (h *Handler) leaseRevoke(w http.ResponseWriter, r *http.Request) {
	b, err := h.readLeaseBody(w, r, `{"ID":N}`)
	var id, rev int64
	if err == nil {
		id, err = decodeLeaseID(b.ID, "ID", true)
	}
	if err == nil {
		rev, err = h.store.Revoke(r.Context(), id)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	out := append([]byte(`{"ID":`), strconv.FormatInt(id, 10)...)
	out = append(append(out, `,"Revision":`...), strconv.FormatInt(rev, 10)...)
	writeJSON(w, http.StatusOK, append(out, '}'))
}

func (h *Handler) leaseTTL(w http.ResponseWriter, r *http.Request) {
	var (
		id  int64
		err error
	)
	if r.Method == http.MethodGet {
		id, err = h.queryLeaseID(r)
	} else {
		var b leaseBody
		if b, err = h.readLeaseBody(w, r, `{"ID":N}`); err == nil {
			id, err = decodeLeaseID(b.ID, "ID", true)
		}
	}
	if err == nil {
		err = h.readBarrier(r)
	}
	var l kv.Lease
	if err == nil {
		l, err = h.store.TimeToLive(id, true)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, appendLease(nil, l))
}

// queryLeaseID reads ?id=N (any letter case).
func (h *Handler) queryLeaseID(r *http.Request) (int64, error) {
	q, err := parseQuery(r)
	if err != nil {
		return 0, err
	}
	for name, vals := range q {
		if strings.EqualFold(name, wire.ParamID) {
			return decodeLeaseID(json.RawMessage(vals[0]), "id", true)
		}
	}
	return 0, badRequest("missing ?id=N: the lease ID")
}

func (h *Handler) leaseList(w http.ResponseWriter, r *http.Request) {
	if err := h.readBarrier(r); err != nil {
		h.writeError(w, r, err)
		return
	}
	ls := h.store.Leases()
	b := append(make([]byte, 0, 64+64*len(ls)), `{"Leases":[`...)
	for i, l := range ls {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendLease(b, l)
	}
	writeJSON(w, http.StatusOK, append(b, "]}"...))
}

// appendLease appends l as the Lease wire type.
func appendLease(b []byte, l kv.Lease) []byte {
	b = append(b, `{"ID":`...)
	b = strconv.AppendInt(b, l.ID, 10)
	b = append(b, `,"TTL":"`...)
	b = append(b, wire.Duration(max(l.Remaining, 0)).String()...)
	b = append(b, `","GrantedTTL":"`...)
	b = append(b, wire.Duration(l.TTL).String()...)
	b = append(b, '"')
	if l.Keys != nil {
		b = append(b, `,"Keys":[`...)
		for i, k := range l.Keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// setWithTTL serves a /set with a TTL: it grants the key a lease of its
// own, then sets the key with it. If the set fails, the lease is revoked
// (it has no key; were that to fail too, it would expire by itself).
func (h *Handler) setWithTTL(w http.ResponseWriter, r *http.Request, c kv.Change, ttl time.Duration) {
	l, err := h.store.Grant(r.Context(), 0, ttl)
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	c.Lease = l.ID
	rev, err := h.store.Submit(r.Context(), c)
	if err != nil {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		if _, rerr := h.store.Revoke(ctx, l.ID); rerr != nil && !errors.Is(rerr, kv.ErrLeaseNotFound) {
			h.log.Warn("cannot revoke the lease of a set that failed; it expires by itself", "lease", l.ID, "err", rerr)
		}
		cancel()
		h.writeError(w, r, err)
		return
	}
	bp := h.bufs.Get().(*[]byte)
	*bp = appendWriteResult((*bp)[:0], c.Key, rev, c.Lease)
	writeJSON(w, http.StatusOK, *bp)
	h.putBuf(bp)
}
