package kv

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// ErrNotEmpty is returned by CreateDataDir for a directory that already
// holds files.
var ErrNotEmpty = errors.New("kv: data directory not empty")

// CreateDataDir makes dir a new data directory whose store holds entries
// and leases at revision rev, for Open: it writes them as the directory's
// snapshot
// (to a temporary file, fsynced, renamed, and the directory fsynced), and
// nothing else. A store opened on it starts at revision rev, its next
// change gets rev + 1, and its change feed starts after rev. entries must
// be sorted by key, each with revisions at most rev, and are not changed.
//
// dir must be missing or empty (a lost+found directory aside); otherwise
// CreateDataDir fails with ErrNotEmpty (wrapped), having written nothing.
// If it fails later, it removes what it wrote. It fails with ErrLocked
// (wrapped) while another process has dir open.
func CreateDataDir(dir string, entries []*Entry, leases []Lease, rev int64) (err error) {
	des, err := os.ReadDir(dir)
	created := false
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		created = true
	case err != nil:
		return err
	}
	var names []string
	for _, de := range des {
		if de.Name() != "lost+found" {
			names = append(names, de.Name())
		}
	}
	if len(names) > 0 {
		if len(names) > 3 {
			names = append(names[:3], "...")
		}
		return fmt.Errorf("%w: %s holds %s", ErrNotEmpty, dir, strings.Join(names, ", "))
	}
	lock, err := lockDir(dir)
	if err != nil {
		if created {
			os.Remove(dir)
		}
		return err
	}
	path := filepath.Join(dir, fileName(rev, snapExt))
	tmp := path + tmpExt
	defer func() {
		lock.Close()
		if err != nil {
			os.Remove(tmp)
			os.Remove(path)
			os.Remove(filepath.Join(dir, "LOCK"))
			if created {
				os.Remove(dir)
			}
		}
	}()
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	err = writeSnapshot(f, entries, leases, rev, nil)
	if err == nil {
		err = datasync(f)
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err == nil && created {
		err = syncDir(filepath.Dir(filepath.Clean(dir)))
	}
	return err
}
