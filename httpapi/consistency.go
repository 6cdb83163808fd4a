package httpapi

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/kvsdb/kvs/wire"
)

// localRead reports whether the query string asks for a local read
// (wire.ParamConsistency, "consistency": "linearizable", the default, or
// wire.ConsistencyLocal, this instance's own state, which in Kafka mode may
// miss writes acknowledged by other instances, like etcd's serializable
// reads). Any other value, or the parameter given twice, is a 400.
func localRead(rawQuery string) (bool, error) {
	local, seen := false, false
	for rawQuery != "" {
		var seg string
		seg, rawQuery, _ = strings.Cut(rawQuery, "&")
		name, value, _ := strings.Cut(seg, "=")
		if strings.ContainsAny(name, "%+") {
			n, err := url.QueryUnescape(name)
			if err != nil {
				return false, badRequest("malformed query string: " + err.Error())
			}
			name = n
		}
		if !strings.EqualFold(name, wire.ParamConsistency) {
			continue
		}
		if seen {
			return false, badRequest("parameter " + strconv.Quote(name) + " given more than once")
		}
		seen = true
		v, err := url.QueryUnescape(value)
		if err != nil {
			return false, badRequest("malformed query string: " + err.Error())
		}
		switch {
		case strings.EqualFold(v, wire.ConsistencyLocal):
			local = true
		case strings.EqualFold(v, "linearizable"):
		default:
			return false, badRequest("bad consistency " + strconv.Quote(v) + ": want linearizable (the default) or local")
		}
	}
	return local, nil
}

// readBarrier returns once r may read the store: at once for a read with
// consistency=local or a store that needs no barrier (Options.ReadBarrier
// nil), otherwise once Options.ReadBarrier has confirmed that this instance
// holds every write acknowledged before r began. Its errors are answers:
// 400 for a bad parameter, 503 when the barrier failed.
func (h *Handler) readBarrier(r *http.Request) error {
	local, err := localRead(r.URL.RawQuery)
	if err != nil || local || h.barrier == nil {
		return err
	}
	if err := h.barrier(r.Context()); err != nil {
		if r.Context().Err() != nil {
			return &statusError{http.StatusServiceUnavailable, "request cancelled before the read was confirmed current"}
		}
		h.log.Warn("linearizable read failed", "path", r.URL.Path, "err", err)
		return &statusError{http.StatusServiceUnavailable, "cannot confirm that this instance holds every acknowledged write (" +
			err.Error() + "): try again, or read this instance's possibly stale state with ?consistency=local"}
	}
	return nil
}
