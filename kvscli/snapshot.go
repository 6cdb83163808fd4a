package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/kvsdb/kvs/wire"
)

const snapshotUsage = "usage: kvscli [global flags] snapshot save FILE | status FILE"

func defineSnapshot(*flag.FlagSet) func(context.Context, *cli) error {
	return func(ctx context.Context, c *cli) error {
		if len(c.args) == 0 {
			return usageErrorf("snapshot: give save FILE or status FILE\n%s", snapshotUsage)
		}
		action := c.args[0]
		if action != "save" && action != "status" {
			return usageErrorf("snapshot: unknown action %q: give save FILE or status FILE\n%s", action, snapshotUsage)
		}
		switch len(c.args) {
		case 1:
			return usageErrorf("snapshot %s: give the FILE\n%s", action, snapshotUsage)
		case 2:
		default:
			return usageErrorf("snapshot %s: unexpected argument %q after the FILE\n%s", action, c.args[2], snapshotUsage)
		}
		if action == "save" {
			return c.snapshotSave(ctx, c.args[1])
		}
		return c.snapshotStatus(c.args[1])
	}
}

// snapshotSave writes a backup of the server to path atomically: to a
// temporary file in the same directory, fsynced, renamed to path, and the
// directory fsynced. It prints the backup's revision. Nothing is left
// behind when it fails: an existing file at path is untouched.
func (c *cli) snapshotSave(ctx context.Context, path string) error {
	const what = "snapshot save"
	dir, base := filepath.Split(path)
	if base == "" || base == "." || base == ".." {
		return usageErrorf("%s: %q is a directory: give a file name", what, path)
	}
	if dir == "" {
		dir = "."
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return usageErrorf("%s: %s is a directory: give a file name", what, path)
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err // its path is the temporary file's
		}
		return &exitError{exitFailed, fmt.Sprintf("%s: cannot write a file in %s: %v", what, filepath.Clean(dir), err)}
	}
	tmp, saved := f.Name(), false
	defer func() {
		if !saved {
			f.Close()
			os.Remove(tmp)
		}
	}()
	w := bufio.NewWriterSize(f, 1<<20)
	info, err := c.kvs.Snapshot(ctx, w)
	var (
		pe *fs.PathError
		be *wire.BackupError
	)
	switch {
	case errors.As(err, &pe):
		return &exitError{exitFailed, fmt.Sprintf("%s: cannot write the backup to %s: %v; nothing was saved", what, path, pe.Err)}
	case errors.As(err, &be):
		return &exitError{exitServer, fmt.Sprintf("%s: the backup from kvsd at %s arrived cut short or damaged (%v); nothing was saved; try again",
			what, c.addr, be)}
	case err != nil:
		return c.fail(err, what, false)
	}
	if err := errors.Join(w.Flush(), f.Sync(), f.Close()); err != nil {
		return &exitError{exitFailed, fmt.Sprintf("%s: cannot write the backup to %s: %v; nothing was saved", what, path, err)}
	}
	if err := os.Rename(tmp, path); err != nil {
		return &exitError{exitFailed, fmt.Sprintf("%s: %v; nothing was saved", what, err)}
	}
	saved = true
	if err := syncDir(dir); err != nil {
		return &exitError{exitFailed, fmt.Sprintf("%s: the backup is in %s, but syncing its directory failed: %v", what, path, err)}
	}
	fmt.Fprintf(c.stderr, "kvscli: %s: saved the backup of kvsd at %s to %s: revision %d, %d keys, %d bytes\n",
		what, c.addr, path, info.Revision, info.Entries, info.Size)
	return c.writeOut(fmt.Appendf(nil, "%d\n", info.Revision))
}

// syncDir fsyncs a directory, so that a rename in it is durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}

// snapshotStatus checks the backup in path, all of it, and prints what it
// holds.
func (c *cli) snapshotStatus(path string) error {
	const what = "snapshot status"
	f, err := os.Open(path)
	if err != nil {
		return &exitError{exitFailed, fmt.Sprintf("%s: %v", what, err)}
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.IsDir() {
		return usageErrorf("%s: %s is a directory: give a backup file", what, path)
	}
	info, err := wire.VerifyBackup(f)
	switch {
	case errors.Is(err, wire.ErrBadBackup):
		return &exitError{exitFailed, fmt.Sprintf("%s: %s is not a valid kvs backup: %v", what, path, err)}
	case err != nil:
		return &exitError{exitFailed, fmt.Sprintf("%s: reading %s: %v", what, path, err)}
	}
	taken := "unknown"
	if !info.Created.IsZero() {
		taken = info.Created.UTC().Format(time.RFC3339Nano)
	}
	return c.writeOut(fmt.Appendf(nil, "revision\t%d\nkeys\t%d\nleases\t%d\nsize\t%d\ntaken\t%s\nchecksum\t%08x\n",
		info.Revision, info.Entries, info.Leases, info.Size, taken, info.Checksum))
}
