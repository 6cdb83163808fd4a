package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/kvsdb/kvs/wire"
)

// list serves GET /list?prefix=P and POST /list {"Prefix":P}: the entries
// whose keys start with P, with their revisions, sorted by key, as one
// consistent snapshot (wire.List), linearizable unless the request asks for
// consistency=local (see readBarrier). HEAD answers the current revision in
// the header alone, as for /getall.
func (h *Handler) list(w http.ResponseWriter, r *http.Request) {
	prefix, err := h.listPrefix(w, r)
	if err == nil {
		err = h.readBarrier(r)
	}
	if err != nil {
		h.writeError(w, r, err)
		return
	}
	hdr := w.Header()
	if r.Method == http.MethodHead {
		hdr["Content-Type"] = jsonContentType
		hdr[wire.RevisionHeader] = []string{strconv.FormatInt(h.store.Rev(), 10)}
		w.WriteHeader(http.StatusOK)
		return
	}
	v := h.store.View(prefix)
	rev := v.Rev()
	hdr["Content-Type"] = jsonContentType
	hdr[wire.RevisionHeader] = []string{strconv.FormatInt(rev, 10)}
	w.WriteHeader(http.StatusOK)
	b := make([]byte, 0, 32<<10)
	b = append(b, `{"Revision":`...)
	b = strconv.AppendInt(b, rev, 10)
	b = append(b, `,"Entries":[`...)
	first := true
	for e := range v.All() {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = h.appendEntry(b, &e)
		if len(b) >= 32<<10 {
			if _, err := w.Write(b); err != nil {
				return
			}
			b = b[:0]
		}
	}
	b = append(b, "]}\n"...)
	w.Write(b)
}

// listPrefix reads the prefix of a /list request: from the query string
// (prefix=P, any letter case), or from a JSON body {"Prefix":P}; not both.
func (h *Handler) listPrefix(w http.ResponseWriter, r *http.Request) (string, error) {
	q, err := parseQuery(r)
	if err != nil {
		return "", err
	}
	var prefix string
	inQuery := false
	for name, vals := range q {
		if !strings.EqualFold(name, wire.ParamPrefix) {
			continue
		}
		if inQuery || len(vals) > 1 {
			return "", badRequest("parameter " + strconv.Quote(name) + " given more than once")
		}
		inQuery = true
		prefix = vals[0]
	}
	if r.Method == http.MethodPost {
		bp := h.bufs.Get().(*[]byte)
		defer h.putBuf(bp)
		data, err := readBody(r.Body, (*bp)[:0], h.maxBody)
		*bp = data
		if err != nil {
			return "", h.bodyError(w, err)
		}
		if len(bytes.TrimSpace(data)) > 0 {
			var body struct{ Prefix json.RawMessage }
			if err := json.Unmarshal(data, &body); err != nil {
				return "", badRequest("malformed JSON: " + jsonErrorText(err))
			}
			if len(body.Prefix) > 0 && string(body.Prefix) != "null" {
				if inQuery {
					return "", badRequest(`prefix given twice: in the query string and as "Prefix" in the body`)
				}
				if prefix, err = decodePrefix(body.Prefix); err != nil {
					return "", err
				}
			}
		}
	}
	if prefix != "" {
		if err := checkKey(prefix); err != nil {
			return "", badRequest("bad prefix: " + err.Error())
		}
	}
	return prefix, nil
}

// decodePrefix decodes the raw JSON string of a body's "Prefix".
func decodePrefix(raw json.RawMessage) (string, error) {
	if raw[0] != '"' {
		return "", badRequest(`"Prefix" must be a JSON string`)
	}
	if !utf8.Valid(raw) {
		return "", badRequest("prefix is not valid UTF-8")
	}
	var p string
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", badRequest("malformed prefix: " + jsonErrorText(err))
	}
	if strings.Count(p, "\uFFFD") > replacementChars(raw) {
		return "", badRequest(`prefix holds a \u escape of a lone surrogate, which is not a character`)
	}
	return p, nil
}
