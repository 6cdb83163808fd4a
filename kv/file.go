package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

var (
	// ErrCorrupt is returned by Open when the data directory holds damage
	// that recovery must not guess about. The error is a *CorruptError.
	ErrCorrupt = errors.New("kv: data corrupt")
	// ErrLocked is returned by Open when another process holds the data
	// directory.
	ErrLocked = errors.New("kv: data directory in use by another process")
)

// CorruptError reports damage in a file of the data directory: a record or
// snapshot that fails its checksum or does not decode, anywhere but in the
// last record of the log, or revisions missing from the log. Open changes
// nothing in the directory when it returns one. errors.Is(err, ErrCorrupt)
// is true for it.
type CorruptError struct {
	// File is the damaged file's path.
	File string
	// Offset is the byte offset of the damage in it, or -1 when the
	// damage is to the whole file (missing, or cut short).
	Offset int64
	// Reason says what is wrong there.
	Reason string
}

func (e *CorruptError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("kv: %s: %s (nothing was changed)", e.File, e.Reason)
	}
	return fmt.Sprintf("kv: %s is damaged at offset %d: %s (nothing was changed)", e.File, e.Offset, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// FileOptions configures a FileLog. The zero value of every field means its
// default.
type FileOptions struct {
	// NoSync skips the fsync of each batch: a change is acknowledged once
	// the operating system has it, so it survives a crash of the process
	// but maybe not one of the machine (power loss, kernel panic). Unsafe:
	// for tests and caches. False, the default, fsyncs every batch before
	// it is acknowledged. Snapshots and Close fsync either way.
	NoSync bool
	// SnapshotBytes is how large the log may grow after the newest snapshot
	// before a new snapshot is written, in the background. Zero means
	// 64 MiB.
	SnapshotBytes int64
	// Logger receives a warning when a torn record is truncated or a
	// snapshot fails, and a line for each snapshot. Nil means discard.
	Logger *slog.Logger
}

// FileLog is the durable Log: a write-ahead log of changes in a data
// directory, and snapshots of the whole store that let it drop what they
// cover. Each Append writes its batch and fsyncs it before it returns, so
// the changes of one commit share one write and one fsync (group commit).
//
// The directory holds segment files of records, each named by the revision
// of its first change (00000000000000000001.wal), snapshots named by their
// revision (00000000000000000042.snap), and a LOCK file. When the current
// segment passes FileOptions.SnapshotBytes, Append starts a new one and a
// background goroutine writes a snapshot of the Store: to a temporary file,
// fsynced, renamed into place, and the directory fsynced; then the segments
// and snapshots it covers are deleted.
//
// If a write or fsync fails, the log fails for good (after a failed fsync
// the state of the written data is unknown): that Append and every later
// one return an error, and Err says why, until the directory is opened
// again. A FileLog serves one Store, which calls Append and Close.
type FileLog struct {
	dir       string
	noSync    bool
	snapBytes int64
	log       *slog.Logger
	lock      *os.File
	// syncFile is datasync; tests replace it.
	syncFile func(*os.File) error

	rec       Recovery // what Open found, until Recover hands it over
	recovered bool

	// Owned by the Store's committer, which calls Append and Close.
	f       *os.File // the current segment
	size    int64    // the end of its records, where the next one goes
	alloc   int64    // its size on disk: records, then reserved space
	noAlloc bool     // space cannot be reserved here
	last    int64    // the revision of the last change appended, or of the snapshot
	buf     []byte
	err     atomic.Pointer[error] // why the log failed; nil while it works
	stats   logStats              // written by the committer, read by Stats

	// state is the STATE file; seg and acked are what it should say: the
	// first revision of the current segment, and the last revision
	// appended (durable unless noSync). The committer sets them.
	state *stateFile
	seg   atomic.Int64
	acked atomic.Int64

	snapc   chan struct{} // asks the snapshot goroutine for a snapshot
	stop    chan struct{} // closed by Close
	wg      sync.WaitGroup
	closing sync.Once
	cerr    error

	// mu guards segs and snapRev, shared by the committer and the
	// snapshot goroutine.
	mu      sync.Mutex
	segs    []segment // the live segments, by first revision; the last is f
	snapRev int64     // the revision of the newest snapshot
}

var _ Recoverer = (*FileLog)(nil)

// segment is a log file.
type segment struct {
	first int64 // the revision of its first change
	name  string
}

const (
	segExt  = ".wal"
	snapExt = ".snap"
	tmpExt  = ".tmp"
)

func fileName(rev int64, ext string) string { return fmt.Sprintf("%020d%s", rev, ext) }

// parseName returns the revision in a file name made by fileName with ext.
func parseName(name, ext string) (int64, bool) {
	base, ok := strings.CutSuffix(name, ext)
	if !ok || len(base) != 20 {
		return 0, false
	}
	rev, err := strconv.ParseInt(base, 10, 64)
	return rev, err == nil
}

// dirFiles are the files of a data directory that the log knows.
type dirFiles struct {
	segs  []segment // by first revision
	snaps []int64   // snapshot revisions, ascending
	temps []string  // snapshots never finished
}

func listDir(dir string) (dirFiles, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return dirFiles{}, err
	}
	var df dirFiles
	for _, de := range des {
		name := de.Name()
		if rev, ok := parseName(name, segExt); ok {
			df.segs = append(df.segs, segment{rev, name})
		} else if rev, ok := parseName(name, snapExt); ok {
			df.snaps = append(df.snaps, rev)
		} else if _, ok := parseName(name, snapExt+tmpExt); ok {
			df.temps = append(df.temps, name)
		}
	}
	// ReadDir sorts by name, and names are zero-padded revisions.
	return df, nil
}

// Open opens the file log in dir, creating dir if it does not exist, and
// recovers what it holds: it loads the newest snapshot and reads the log
// after it, for the Store to start from (see Recoverer).
//
// A record cut short at the end of the log, by a crash in the middle of a
// write, is truncated, with a warning: it was never acknowledged. Any other
// damage makes Open fail with a *CorruptError naming the file and offset,
// having changed nothing. Open fails with ErrLocked (wrapped) while another
// process has the directory open. Call Close to release it.
func Open(dir string, opts FileOptions) (*FileLog, error) {
	l, err := open(dir, opts)
	if err != nil {
		if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrLocked) { // they name their file
			err = fmt.Errorf("kv: open data directory %s: %w", dir, err)
		}
		return nil, err
	}
	return l, nil
}

func open(dir string, opts FileOptions) (_ *FileLog, err error) {
	l := newFileLog(dir, opts)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if l.lock, err = lockDir(dir); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			l.lock.Close()
		}
	}()
	df, err := listDir(dir)
	if err != nil {
		return nil, err
	}
	st, seq, err := readState(dir)
	var state *logState
	switch {
	case err == nil:
		state = &st
	case !errors.Is(err, errNoState):
		return nil, err
	case len(df.segs) > 0 || len(df.snaps) > 0:
		l.log.Warn("no STATE file (a data directory of an older kvsd, or it was deleted): cannot check that the log still holds every acknowledged revision; it is written from now on",
			"dir", dir)
	}
	live, end, err := l.recoverFiles(df, state)
	if err != nil {
		return nil, err
	}
	if err := l.startAppending(live, end, seq); err != nil {
		return nil, err
	}

	// Only now that recovery has succeeded: remove what it did not need.
	var dead []string
	dead = append(dead, df.temps...)
	for _, rev := range df.snaps[:max(0, len(df.snaps)-1)] {
		dead = append(dead, fileName(rev, snapExt))
	}
	for _, seg := range df.segs[:len(df.segs)-len(live)] {
		dead = append(dead, seg.name)
	}
	l.remove(dead)
	return l, nil
}

// newFileLog returns the FileLog of dir with opts and their defaults, not
// yet opened.
func newFileLog(dir string, opts FileOptions) *FileLog {
	l := &FileLog{
		dir:       dir,
		noSync:    opts.NoSync,
		snapBytes: opts.SnapshotBytes,
		log:       opts.Logger,
		syncFile:  datasync,
		snapc:     make(chan struct{}, 1),
		stop:      make(chan struct{}),
		stats:     newLogStats(),
	}
	if l.snapBytes <= 0 {
		l.snapBytes = 64 << 20
	}
	if l.log == nil {
		l.log = slog.New(slog.DiscardHandler)
	}
	return l
}

// recoverFiles reads the files of df into l.rec: the newest snapshot, if
// any, and the segments that are not wholly older than it (a segment is
// covered when the next one starts at or before the revision after the
// snapshot), which it returns, with how the last one ends. It checks the
// log against state, STATE's content, unless that is nil, and truncates a
// torn record at the end of the log.
func (l *FileLog) recoverFiles(df dirFiles, state *logState) ([]segment, segEnd, error) {
	if len(df.snaps) > 0 {
		if err := l.loadSnapshot(df.snaps[len(df.snaps)-1]); err != nil {
			return nil, segEnd{}, err
		}
	}
	live := df.segs
	for len(live) > 1 && live[1].first <= l.rec.Rev+1 {
		live = live[1:]
	}
	if len(live) > 0 && live[0].first > l.rec.Rev+1 {
		return nil, segEnd{}, &CorruptError{File: filepath.Join(l.dir, live[0].name), Reason: fmt.Sprintf(
			"the log starts at revision %d, but the snapshot ends at %d: revisions %d to %d are missing",
			live[0].first, l.rec.Rev, l.rec.Rev+1, live[0].first-1)}
	}

	var (
		lastRead int64 // the last revision read from the log
		end      segEnd
		err      error
	)
	for i, seg := range live {
		if end, err = l.readSegment(seg, i == len(live)-1, &lastRead); err != nil {
			return nil, segEnd{}, err
		}
	}
	l.last = max(lastRead, l.rec.Rev)
	if state != nil {
		if err := l.checkState(*state, df.segs, l.last); err != nil {
			return nil, segEnd{}, err
		}
	}
	if end.torn > 0 {
		path := filepath.Join(l.dir, live[len(live)-1].name)
		if err := truncateFile(path, end.end); err != nil {
			return nil, segEnd{}, err
		}
		l.log.Warn("truncated a torn record at the end of the log: it was never acknowledged",
			"file", path, "offset", end.end, "bytes", end.torn)
	}
	return live, end, nil
}

// startAppending opens the segment to append to, after recoverFiles found
// the live segments and how the last ends, and writes STATE (seq is the
// sequence number STATE was read at). It appends to the last segment if it
// continues at the next revision, else to a new one. (The snapshot can be
// ahead of the log only if a machine crash lost writes that were not
// fsynced.)
func (l *FileLog) startAppending(live []segment, end segEnd, seq uint64) (err error) {
	l.segs = slices.Clone(live)
	if len(live) > 0 && end.tail == l.last+1 {
		path := filepath.Join(l.dir, live[len(live)-1].name)
		if l.f, err = os.OpenFile(path, os.O_WRONLY, 0); err != nil {
			return err
		}
		fi, err := l.f.Stat()
		if err != nil {
			l.f.Close()
			return err
		}
		l.size, l.alloc = end.end, fi.Size()
	} else if err := l.newSegment(l.last + 1); err != nil {
		return err
	}
	l.snapRev = l.rec.Rev
	l.seg.Store(l.segs[len(l.segs)-1].first)
	l.acked.Store(l.last)
	if l.state, err = createState(l.dir, logState{seg: l.seg.Load(), acked: l.last}, seq, l.noSync, datasync); err != nil {
		l.f.Close()
		return err
	}
	return nil
}

// checkState refuses a log that the STATE file st shows damaged: its newest
// segment gone (segs has none as new), or the log ending at last, before
// the revision acknowledged.
func (l *FileLog) checkState(st logState, segs []segment, last int64) error {
	var newest int64
	for _, s := range segs {
		newest = max(newest, s.first)
	}
	path := filepath.Join(l.dir, fileName(st.seg, segExt))
	switch {
	case newest < st.seg:
		return &CorruptError{File: path, Offset: -1, Reason: fmt.Sprintf(
			"the newest segment is missing: it held the revisions from %d on, and those up to %d were acknowledged, but the log ends at revision %d",
			st.seg, st.acked, last)}
	case last < st.acked:
		for _, s := range segs {
			if s.first <= last+1 {
				path = filepath.Join(l.dir, s.name)
			}
		}
		return &CorruptError{File: path, Offset: -1, Reason: fmt.Sprintf(
			"the log ends at revision %d, but the revisions up to %d were acknowledged: %d to %d are missing (a segment emptied or cut short?)",
			last, st.acked, last+1, st.acked)}
	}
	return nil
}

// lockDir opens and locks dir's LOCK file, and writes the process id in it.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockFile(f); err != nil {
		pid, _ := io.ReadAll(io.LimitReader(f, 32))
		f.Close()
		if errors.Is(err, ErrLocked) {
			return nil, fmt.Errorf("%w: %s is held by process %s", ErrLocked, path, bytes.TrimSpace(pid))
		}
		return nil, err
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, err
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// loadSnapshot reads the snapshot of revision rev into l.rec.
func (l *FileLog) loadSnapshot(rev int64) error {
	path := filepath.Join(l.dir, fileName(rev, snapExt))
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	snap, leases, got, err := readSnapshot(f)
	var se *snapshotError
	switch {
	case errors.As(err, &se):
		return &CorruptError{File: path, Offset: se.off, Reason: se.err.Error()}
	case err != nil:
		return fmt.Errorf("read %s: %w", path, err)
	case got != rev:
		return &CorruptError{File: path, Reason: fmt.Sprintf("it holds revision %d, but its name says %d", got, rev)}
	}
	l.rec.Entries, l.rec.Len, l.rec.Leases, l.rec.Rev = snap.all(), snap.n, leases, rev
	return nil
}

// segEnd describes how a segment ends.
type segEnd struct {
	tail int64 // the revision a record appended to it would start with
	end  int64 // the offset after its last valid record
	torn int64 // the bytes of a torn record after end, 0 if none
}

// readSegment reads seg's records into l.rec.Changes, those after the
// snapshot. *lastRead is the last revision read from the segments before;
// it is updated. Only the last segment may end in a torn record.
func (l *FileLog) readSegment(seg segment, isLast bool, lastRead *int64) (segEnd, error) {
	path := filepath.Join(l.dir, seg.name)
	f, err := os.Open(path)
	if err != nil {
		return segEnd{}, err
	}
	defer f.Close()
	fr := newFrameReader(f)
	se := segEnd{tail: seg.first}
	for {
		p, off, err := fr.next()
		se.end = off
		if err == io.EOF {
			return se, nil
		}
		if errors.Is(err, errFrame) {
			fi, err2 := f.Stat()
			if err2 != nil {
				return segEnd{}, err2
			}
			rest := make([]byte, fi.Size()-off)
			if _, err2 := f.ReadAt(rest, off); err2 != nil {
				return segEnd{}, err2
			}
			reason := strings.TrimPrefix(err.Error(), "kv: ")
			switch logEnd(rest) {
			case endClean:
				return se, nil
			case endTorn:
				if isLast {
					se.torn = int64(len(rest))
					return se, nil
				}
				reason += " in a segment that is not the last"
			case endDamaged:
				reason += ", and valid records follow it"
			}
			return segEnd{}, &CorruptError{File: path, Offset: off, Reason: reason}
		}
		if err != nil {
			return segEnd{}, fmt.Errorf("read %s: %w", path, err)
		}
		bad := func(format string, args ...any) error {
			return &CorruptError{File: path, Offset: off, Reason: fmt.Sprintf(format, args...)}
		}
		changes, first, end, err := decodeFrame(p)
		if err != nil {
			return segEnd{}, bad("record does not decode: %v", err)
		}
		switch {
		case off == 0 && first != seg.first:
			return segEnd{}, bad("the first record has revision %d, but the file name says %d", first, seg.first)
		case off > 0 && first != se.tail:
			return segEnd{}, bad("revision %d does not follow revision %d", first, se.tail-1)
		case first <= *lastRead && end >= first:
			return segEnd{}, bad("revision %d comes again after revision %d", first, *lastRead)
		case first <= *lastRead && first != *lastRead+1:
			return segEnd{}, bad("a change of a lease after revision %d, which comes after %d", first-1, *lastRead)
		case first > max(*lastRead, l.rec.Rev)+1:
			return segEnd{}, bad("revisions %d to %d are missing before this record", max(*lastRead, l.rec.Rev)+1, first-1)
		}
		for _, c := range changes {
			// A change of a lease that follows the snapshot's revision
			// may be in the snapshot or not: it is applied again, which
			// changes nothing when it is.
			if c.Revision > l.rec.Rev || c.Revision == l.rec.Rev && isLeaseOp(&c) {
				l.rec.Changes = append(l.rec.Changes, c)
			}
		}
		*lastRead = max(*lastRead, end)
		se.tail = end + 1
	}
}

// truncateFile cuts the file at path to size bytes, durably.
func truncateFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	return err
}

// newSegment creates the segment whose first revision is first and makes it
// the one appended to.
func (l *FileLog) newSegment(first int64) error {
	seg := segment{first, fileName(first, segExt)}
	path := filepath.Join(l.dir, seg.name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if !l.noSync {
		if err := syncDir(l.dir); err != nil {
			f.Close()
			os.Remove(path)
			return err
		}
	}
	if l.f != nil {
		// Give back the reserved space; the records are written and,
		// unless NoSync, synced already.
		l.f.Truncate(l.size)
		l.f.Close()
	}
	l.f, l.size, l.alloc = f, 0, 0
	l.mu.Lock()
	l.segs = append(l.segs, seg)
	l.mu.Unlock()
	return nil
}

// remove removes the named files of the directory, logging failures: what
// it removes is not needed any more, and what stays is removed later.
func (l *FileLog) remove(names []string) {
	for _, name := range names {
		if err := os.Remove(filepath.Join(l.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			l.log.Warn("cannot remove a file the log no longer needs", "err", err)
		}
	}
}

// Recover hands over the state Open found, once, and starts the snapshot
// goroutine, which calls snapshot whenever the log has grown by
// FileOptions.SnapshotBytes. New calls it.
func (l *FileLog) Recover(snapshot func() *View) Recovery {
	if l.recovered {
		panic("kv: FileLog.Recover called twice: a log serves one Store")
	}
	l.recovered = true
	rec := l.rec
	l.rec = Recovery{}
	l.wg.Add(2)
	go l.snapshotLoop(snapshot)
	go l.stateLoop()
	return rec
}

// SnapshotRev returns the revision of the newest snapshot, 0 if there is
// none. Before the Store takes any change, it is the revision of the
// snapshot that recovery started from: every later change is in the log,
// every earlier one only in the snapshot.
func (l *FileLog) SnapshotRev() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapRev
}

// Err returns nil while the log takes writes, and once a write or fsync
// failed, why: every Append fails from then on, until the directory is
// opened again.
func (l *FileLog) Err() error {
	if p := l.err.Load(); p != nil {
		return *p
	}
	return nil
}

// Append writes changes, which must continue the revisions appended before,
// to the log, fsyncs it, and returns once they are durable. It starts a new
// segment, and asks for a snapshot, when the current one has passed
// FileOptions.SnapshotBytes.
func (l *FileLog) Append(changes []Change) error {
	if err := l.Err(); err != nil {
		return fmt.Errorf("kv: the log failed earlier and takes no writes until it is opened again: %w", err)
	}
	if len(changes) == 0 {
		return nil
	}
	if want := l.last + 1; changes[0].Revision != want && !(isLeaseOp(&changes[0]) && changes[0].Revision == l.last) {
		panic(fmt.Sprintf("kv: append of revision %d after %d", changes[0].Revision, l.last))
	}
	first := l.last + 1 // the revision the batch starts at
	rolled := l.size >= l.snapBytes
	if rolled {
		if err := l.newSegment(first); err != nil {
			return fmt.Errorf("kv: start a log segment: %w", err)
		}
		select {
		case l.snapc <- struct{}{}:
		default: // one is already asked for
		}
	}
	b, err := appendBatch(l.buf[:0], changes)
	if err != nil {
		return err
	}
	if cap(b) <= 4<<20 {
		l.buf = b[:0]
	}
	if l.size+int64(len(b)) > l.alloc && !l.noAlloc {
		// Reserve the room for this batch and more, written with zeros:
		// an fsync of data written over them need record no new size and
		// no new extent (fallocate's unwritten extents must be converted,
		// a journal commit per fsync), so each costs about half the CPU.
		n := max(int64(len(b)), min(max(l.snapBytes, 64<<10), 1<<20))
		if err := zeroFill(l.f, l.alloc, l.size+n-l.alloc); err == nil {
			l.alloc = l.size + n
		} else {
			l.noAlloc = true // the file grows as written
		}
	}
	// A batch is one frame unless it holds more than frameSplit bytes.
	// Frames are written one at a time, each durable before the next is
	// written, so that a crash tears only the last one written: recovery
	// truncates that as a torn write. (Pages of one write may reach the
	// disk in any order; a bad frame followed by good ones is damage.)
	for off := 0; off < len(b); {
		end := off + frameHeader + int(binary.LittleEndian.Uint32(b[off:]))
		if _, err := l.f.WriteAt(b[off:end], l.size+int64(off)); err != nil {
			return l.fail(fmt.Errorf("kv: write %s: %w", l.f.Name(), err))
		}
		if !l.noSync {
			took, err := timed(func() error { return l.syncFile(l.f) })
			if err != nil {
				return l.fail(fmt.Errorf("kv: fsync %s: %w", l.f.Name(), err))
			}
			l.stats.sync.observe(took.Seconds())
		}
		off = end
	}
	l.stats.batch.observe(float64(len(changes)))
	l.size += int64(len(b))
	l.alloc = max(l.alloc, l.size)
	l.last = max(l.last, changes[len(changes)-1].Revision)
	if rolled {
		// STATE names the new segment, holding at least this batch,
		// before the batch is acknowledged: a segment begins once per
		// FileOptions.SnapshotBytes, so this fsync is rare.
		l.seg.Store(first)
		if err := l.state.write(logState{seg: first, acked: l.last}); err != nil {
			return l.fail(fmt.Errorf("kv: %w", err))
		}
	}
	l.acked.Store(l.last)
	return nil
}

// fail marks the log failed with err and returns err. It cuts the segment
// back to its last acknowledged record, so that a restart does not find the
// failed batch unless the machine crashed first.
func (l *FileLog) fail(err error) error {
	l.f.Truncate(l.size)
	l.err.Store(&err)
	return err
}

func (l *FileLog) snapshotLoop(snapshot func() *View) {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.snapc:
		}
		if err := l.snapshot(snapshot); err != nil && !errors.Is(err, errStopped) {
			l.log.Warn("snapshot failed: the log grows until one succeeds", "err", err)
		}
	}
}

// stateInterval is how often STATE is brought up to date while writes come
// in.
const stateInterval = time.Second

// stateLoop records in STATE, once a stateInterval, how far the log got.
func (l *FileLog) stateLoop() {
	defer l.wg.Done()
	t := time.NewTicker(stateInterval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		if l.Err() != nil {
			continue
		}
		if err := l.state.write(logState{seg: l.seg.Load(), acked: l.acked.Load()}); err != nil {
			l.log.Warn("cannot record how far the log got", "err", err)
		}
	}
}

// snapshot writes a snapshot of the store, then removes the segments and
// snapshots it covers.
func (l *FileLog) snapshot(snapshot func() *View) error {
	began := time.Now()
	v := snapshot()
	rev := v.Rev()
	l.mu.Lock()
	have := l.snapRev
	l.mu.Unlock()
	if rev <= have {
		return nil
	}
	name := fileName(rev, snapExt)
	path := filepath.Join(l.dir, name)
	tmp := path + tmpExt
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	err = writeSnapshotSeq(f, v.Len(), v.All(), v.Leases(), rev, l.stop)
	if err == nil {
		err = l.syncFile(f)
	}
	var size int64
	if fi, e := f.Stat(); e == nil {
		size = fi.Size()
	}
	if e := f.Close(); err == nil {
		err = e
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	if err := syncDir(l.dir); err != nil {
		return err
	}

	l.mu.Lock()
	l.snapRev = rev
	n := 0
	for n+1 < len(l.segs) && l.segs[n+1].first <= rev+1 {
		n++
	}
	var dead []string
	for _, seg := range l.segs[:n] {
		dead = append(dead, seg.name)
	}
	l.segs = slices.Delete(l.segs, 0, n)
	l.mu.Unlock()
	if df, err := listDir(l.dir); err == nil {
		for _, r := range df.snaps {
			if r < rev {
				dead = append(dead, fileName(r, snapExt))
			}
		}
	}
	l.remove(dead)
	l.log.Info("snapshot written", "rev", rev, "keys", v.Len(), "leases", len(v.Leases()), "bytes", size,
		"took", time.Since(began).Round(time.Millisecond), "removed", len(dead))
	return nil
}

// Close stops the snapshot goroutine (abandoning a snapshot being written),
// fsyncs and closes the current segment, and releases the directory. It
// returns the log's failure, if it failed. Close is safe to call more than
// once.
func (l *FileLog) Close() error {
	l.closing.Do(func() {
		close(l.stop)
		l.wg.Wait()
		err := l.Err()
		if err == nil {
			err = l.f.Truncate(l.size) // give back the reserved space
		}
		if err == nil {
			err = l.syncFile(l.f)
		}
		if err == nil {
			err = l.state.write(logState{seg: l.seg.Load(), acked: l.last})
		}
		l.cerr = errors.Join(err, l.f.Close(), l.state.close(), l.lock.Close())
	})
	return l.cerr
}

// zeros is what zeroFill writes.
var zeros [64 << 10]byte

// zeroFill writes n zero bytes to f at off.
func zeroFill(f *os.File, off, n int64) error {
	for n > 0 {
		w := min(n, int64(len(zeros)))
		if _, err := f.WriteAt(zeros[:w], off); err != nil {
			return err
		}
		off, n = off+w, n-w
	}
	return nil
}
