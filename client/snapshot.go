package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/kvsdb/kvs/wire"
)

// BackupInfo describes a backup: its revision, number of entries, when it
// was taken, its size and checksum.
type BackupInfo = wire.BackupInfo

// ErrBadBackup is matched by the error of a backup that is damaged, cut
// short, or of a format this package does not read (a *wire.BackupError).
var ErrBadBackup = wire.ErrBadBackup

// Snapshot copies a backup of the whole store (GET /snapshot) to w as it
// arrives: every key with its value, revision, create revision and version,
// exactly as they were at one revision, which the returned info holds.
// kvsd takes it without stopping writes; in a Kafka cluster, at the
// revision the instance has applied.
//
// Snapshot checks the backup as it copies it (wire.BackupReader: every
// checksum, every entry, the end). It fails with an error matching
// ErrBadBackup when the backup is damaged or cut short, for example by a
// connection lost on the way; w then holds an incomplete file, which a
// caller must not keep. An error writing to w is returned as is, wrapped.
// Options.Timeout bounds the wait for the answer to begin and each wait
// for more of it, not the whole transfer.
func (c *Client) Snapshot(ctx context.Context, w io.Writer) (BackupInfo, error) {
	const op = "snapshot"
	rctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var stall *time.Timer
	if c.timeout > 0 {
		stall = time.AfterFunc(c.timeout, func() { cancel(errTimeout) })
		defer stall.Stop()
	}
	hreq, err := http.NewRequestWithContext(rctx, http.MethodGet, c.base+wire.PathSnapshot, nil)
	if err != nil {
		return BackupInfo{}, fmt.Errorf("client: %s: %w", op, err)
	}
	hreq.Header = c.header
	if c.hc.Jar != nil {
		hreq.Header = c.header.Clone()
	}
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return BackupInfo{}, c.transportError(ctx, rctx, op, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if err != nil {
			return BackupInfo{}, c.transportError(ctx, rctx, op, err)
		}
		return BackupInfo{}, c.answerError(request{op: op, method: http.MethodGet}, resp.StatusCode, data)
	}
	body := &stallReader{r: resp.Body, stall: stall, d: c.timeout}
	out := &errWriter{w: w}
	br, err := wire.NewBackupReader(io.TeeReader(body, out))
	var be *wire.BackupError
	if errors.As(err, &be) && be.Offset == 0 {
		return BackupInfo{}, &ProtocolError{Op: op, Status: resp.StatusCode, Body: "not a kvs backup"}
	}
	for err == nil {
		_, err = br.Next()
	}
	switch {
	case err == io.EOF:
		return br.Info(), nil
	case out.err != nil:
		return BackupInfo{}, fmt.Errorf("client: %s: writing the backup: %w", op, out.err)
	case errors.Is(err, wire.ErrBadBackup):
		return BackupInfo{}, fmt.Errorf("client: %s: the backup from %s is damaged or cut short: %w", op, c.addr, err)
	}
	return BackupInfo{}, c.transportError(ctx, rctx, op, err)
}

// stallReader reads a body, putting off the stall timer at each read.
type stallReader struct {
	r     io.Reader
	stall *time.Timer // nil: no timeout
	d     time.Duration
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 && s.stall != nil {
		s.stall.Reset(s.d)
	}
	return n, err
}

// errWriter keeps the error of its writer, so that it can be told from
// an error reading.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	n, err := e.w.Write(p)
	if err != nil && e.err == nil {
		e.err = err
	}
	return n, err
}
