package httpapi

import (
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/kvsdb/kvs/wire"
)

// DefaultMaxSnapshots is the default limit on backups (GET /snapshot)
// streamed at once.
const DefaultMaxSnapshots = 2

// snapshotStall bounds each write of a backup to its client: a client
// that takes longer to accept one frame (about 64 KiB) is cut off, and the
// memory its backup holds is released. It replaces the server's
// WriteTimeout, which would bound the whole transfer.
const snapshotStall = time.Minute

// octetStream is the Content-Type of a backup.
var octetStream = []string{"application/octet-stream"}

// snapshot serves GET /snapshot: a backup of the whole store, every entry
// with its revisions at one revision (wire.BackupWriter; the revision is
// also in the Kvs-Revision header), streamed as it is encoded. HEAD answers
// the current revision alone. At most Options.MaxSnapshots backups stream
// at once; one more gets 429.
//
// The entries and leases come from Store.View (a lease's TTL, not the time
// left on it: a restore grants it its whole TTL again), which does not
// stop writers: the backup holds the position of each entry of its
// revision (16 bytes a key), and the store's slabs that hold them, which
// writers may replace (compact) before it sends them: those stay until the
// backup ends.
func (h *Handler) snapshot(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	if r.Method == http.MethodHead {
		hdr["Content-Type"] = octetStream
		hdr[wire.RevisionHeader] = []string{strconv.FormatInt(h.store.Rev(), 10)}
		w.WriteHeader(http.StatusOK)
		return
	}
	select {
	case h.snapshots <- struct{}{}:
		defer func() { <-h.snapshots }()
	default:
		hdr.Set("Retry-After", "1")
		h.writeError(w, r, &statusError{http.StatusTooManyRequests, "too many backups at once: " +
			strconv.Itoa(cap(h.snapshots)) + " are being taken; try again when one has finished"})
		return
	}
	began := time.Now()
	v := h.store.View("")
	rev := v.Rev()
	leases := v.Leases()
	bl := make([]wire.BackupLease, len(leases))
	for i, l := range leases {
		bl[i] = wire.BackupLease{ID: l.ID, TTL: l.TTL}
	}
	hdr["Content-Type"] = octetStream
	hdr[wire.RevisionHeader] = []string{strconv.FormatInt(rev, 10)}
	hdr.Set("Content-Disposition", `attachment; filename="kvs-backup-`+strconv.FormatInt(rev, 10)+`.snap"`)
	hdr.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	sw := &stallWriter{w: w, rc: http.NewResponseController(w)}
	bw, err := wire.NewBackupWriterLeases(sw, wire.BackupHeader{Revision: rev, Entries: int64(v.Len()), Created: began}, bl)
	if err == nil {
		for e := range v.All() {
			if err = bw.Add(&wire.Entry{Key: e.Key, Value: e.Value, Revision: e.Revision, CreateRevision: e.CreateRevision, Version: e.Version, Lease: e.Lease}); err != nil {
				break
			}
		}
	}
	if err == nil {
		err = bw.Close()
	}
	if err != nil {
		h.log.Warn("backup cut short: the client has an incomplete file", "rev", rev, "remote", r.RemoteAddr, "err", err)
		return
	}
	h.log.Info("backup sent", "rev", rev, "keys", v.Len(), "leases", len(leases), "bytes", bw.Info().Size,
		"remote", r.RemoteAddr, "took", time.Since(began).Round(time.Millisecond))
}

// stallWriter gives each write to a backup's client snapshotStall.
type stallWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (sw *stallWriter) Write(p []byte) (int, error) {
	sw.rc.SetWriteDeadline(time.Now().Add(snapshotStall))
	return sw.w.Write(p)
}
