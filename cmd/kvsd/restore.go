package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"os"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/kv"
	"github.com/kvsdb/kvs/wire"
)

// defaultRestoreBump is the default of -restore-bump: more changes than a
// store makes in hours at full speed.
const defaultRestoreBump = 1_000_000_000

// restoreConfig is the configuration of -restore.
type restoreConfig struct {
	file string
	bump int64
}

func (c *restoreConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.file, "restore", "", "start from this backup (kvscli snapshot save): the file backend builds -data from it, which must be missing or empty; "+
		"memory loads it; kafka seeds -kafka-topic with it, which must be new or empty. Then serve. Drop the flag for later starts")
	fs.Int64Var(&c.bump, "restore-bump", defaultRestoreBump, "with -restore: the store's revision starts at the backup's + this, and older revisions are compacted (410), "+
		"so that a client that saw revisions of the old store after the backup lists again rather than miss changes; 0 continues right after the backup's revision")
}

func (c *restoreConfig) check() error {
	if c.bump < 0 || c.bump > 1<<60 {
		return fmt.Errorf("-restore-bump %d: must be between 0 and 2^60", c.bump)
	}
	return nil
}

// restoredLog is the memory log of a store restored from a backup: it
// writes nothing, and recovers the backup's entries.
type restoredLog struct{ rec kv.Recovery }

func (l *restoredLog) Append([]kv.Change) error            { return nil }
func (l *restoredLog) Close() error                        { return nil }
func (l *restoredLog) Recover(func() *kv.View) kv.Recovery { return l.rec }

var _ kv.Recoverer = (*restoredLog)(nil)

// restore builds the state of cfg's backend from the backup of -restore,
// having checked all of the backup first: it creates the data directory
// (file), seeds the topic (kafka), or returns the log to start the store
// with (memory). It returns the revision the store starts at. When the
// backup is damaged, or the data directory or topic is not empty, it
// fails having written nothing.
func restore(ctx context.Context, cfg *config, log *slog.Logger) (kv.Log, int64, error) {
	file := cfg.restore.file
	info, err := verifyBackup(file)
	if err != nil {
		return nil, 0, err
	}
	at := info.Revision + cfg.restore.bump
	log.Info("restoring from a backup", "file", file, "backend", cfg.backend, "backup_rev", info.Revision,
		"keys", info.Entries, "leases", info.Leases, "rev", at, "taken", info.Created)
	leases, err := backupLeases(file)
	if err != nil {
		return nil, 0, fmt.Errorf("-restore %s: %v; nothing was written", file, err)
	}
	switch cfg.backend {
	case "kafka":
		rev, err := bus.Seed(ctx, cfg.kafka.options(nil, cfg.maxValueBytes, log), at, leases, info.Entries, backupEntries(file))
		switch {
		case errors.Is(err, bus.ErrTopicNotEmpty):
			return nil, 0, fmt.Errorf("-restore %s: %v; nothing was written (-restore seeds a new topic; to serve the topic as it is, start without -restore)", file, err)
		case err != nil:
			return nil, 0, fmt.Errorf("-restore %s: %v", file, err)
		}
		log.Info("seeded the topic from the backup", "topic", cfg.kafka.topic, "records", info.Leases+info.Entries+1, "rev", rev)
		return nil, rev, nil
	}
	var entries []*kv.Entry
	for e, err := range backupEntries(file) {
		if err != nil {
			return nil, 0, fmt.Errorf("-restore %s: %v; nothing was written", file, err)
		}
		entries = append(entries, e)
	}
	if cfg.backend == "memory" {
		return &restoredLog{kv.Recovery{Entries: func(yield func(kv.Entry) bool) {
			for _, e := range entries {
				if !yield(*e) {
					return
				}
			}
		}, Len: len(entries), Leases: leases, Rev: at}}, at, nil
	}
	if err := kv.CreateDataDir(cfg.data, entries, leases, at); err != nil {
		if errors.Is(err, kv.ErrNotEmpty) {
			return nil, 0, fmt.Errorf("-restore %s: %v; nothing was written "+
				"(-restore builds a new data directory: give a new or empty -data, or start without -restore to serve %s as it is)", file, err, cfg.data)
		}
		return nil, 0, fmt.Errorf("-restore %s: creating -data %s: %v", file, cfg.data, err)
	}
	return nil, at, nil
}

// verifyBackup reads and checks all of the backup in file.
func verifyBackup(file string) (wire.BackupInfo, error) {
	f, err := os.Open(file)
	if err != nil {
		return wire.BackupInfo{}, fmt.Errorf("-restore: %v", err)
	}
	defer f.Close()
	info, err := wire.VerifyBackup(f)
	switch {
	case errors.Is(err, wire.ErrBadBackup):
		return info, fmt.Errorf("-restore %s: not a valid kvs backup: %v; nothing was written", file, err)
	case err != nil:
		return info, fmt.Errorf("-restore %s: reading it: %v; nothing was written", file, err)
	}
	return info, nil
}

// backupLeases returns the leases of the backup in file, each with its
// TTL: a restored store grants it its whole TTL again, as a restart does.
func backupLeases(file string) ([]kv.Lease, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	br, err := wire.NewBackupReader(bufio.NewReaderSize(f, 1<<20))
	if err != nil {
		return nil, err
	}
	var out []kv.Lease
	for _, l := range br.Leases() {
		out = append(out, kv.Lease{ID: l.ID, TTL: l.TTL})
	}
	return out, nil
}

// backupEntries yields the entries of the backup in file, and an error
// if it cannot be read whole.
func backupEntries(file string) iter.Seq2[*kv.Entry, error] {
	return func(yield func(*kv.Entry, error) bool) {
		f, err := os.Open(file)
		if err != nil {
			yield(nil, err)
			return
		}
		defer f.Close()
		br, err := wire.NewBackupReader(bufio.NewReaderSize(f, 1<<20))
		if err != nil {
			yield(nil, err)
			return
		}
		for {
			e, err := br.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				yield(nil, err)
				return
			}
			if !yield(&kv.Entry{Key: e.Key, Value: e.Value, Revision: e.Revision, CreateRevision: e.CreateRevision, Version: e.Version, Lease: e.Lease}, nil) {
				return
			}
		}
	}
}
