package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"github.com/kvsdb/kvs/internal/codec"
)

// The STATE file of a data directory says where the log must reach: the
// first revision of the newest segment, and a revision that was
// acknowledged (durable in the log). Recovery refuses a log that ends
// before that revision, or whose newest segment is gone: the newest
// segment deleted, emptied or cut short would otherwise go unnoticed, and
// its revisions be given again to new changes.
//
// It is written when a segment starts (once its first batch is durable),
// once a second in the background while writes come in, and on Close, so
// it costs no fsync per commit; after a crash it may lag the log by up to
// a second, and changes of that last second are not covered.
//
// It holds two slots of stateSlot bytes, written in turn, each with a
// sequence number and a CRC-32C: a write torn by a crash leaves the other
// slot. A slot is one write inside a sector.
const (
	stateName = "STATE"
	stateSlot = 32
)

// logState is what STATE records.
type logState struct {
	seg   int64 // the first revision of the newest segment
	acked int64 // a revision known acknowledged
}

// stateFile writes STATE.
type stateFile struct {
	path   string
	noSync bool
	sync   func(*os.File) error

	// mu guards the fields below, and orders writes.
	mu   sync.Mutex
	f    *os.File
	seq  uint64
	last logState
}

var errNoState = errors.New("kv: no STATE file")

// readState reads dir's STATE. It returns errNoState when there is none,
// and a *CorruptError when neither slot holds a valid state.
func readState(dir string) (logState, uint64, error) {
	path := filepath.Join(dir, stateName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return logState{}, 0, errNoState
	}
	if err != nil {
		return logState{}, 0, err
	}
	var (
		best logState
		seq  uint64
	)
	for off := 0; off+stateSlot <= len(b); off += stateSlot {
		if st, n, ok := decodeState(b[off : off+stateSlot]); ok && n > seq {
			best, seq = st, n
		}
	}
	if seq == 0 {
		return logState{}, 0, &CorruptError{File: path, Reason: "no valid state in it: delete it to start without the check that the log reaches the revisions acknowledged before"}
	}
	return best, seq, nil
}

// Slot layout: sequence number (8 bytes), newest segment (8), acknowledged
// revision (8), CRC-32C of the 24 bytes before (4), zeros (4); little-endian.
func encodeState(st logState, seq uint64) []byte {
	b := make([]byte, stateSlot)
	binary.LittleEndian.PutUint64(b, seq)
	binary.LittleEndian.PutUint64(b[8:], uint64(st.seg))
	binary.LittleEndian.PutUint64(b[16:], uint64(st.acked))
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], codec.Castagnoli))
	return b
}

func decodeState(b []byte) (logState, uint64, bool) {
	if crc32.Checksum(b[:24], codec.Castagnoli) != binary.LittleEndian.Uint32(b[24:]) {
		return logState{}, 0, false
	}
	seq := binary.LittleEndian.Uint64(b)
	st := logState{seg: int64(binary.LittleEndian.Uint64(b[8:])), acked: int64(binary.LittleEndian.Uint64(b[16:]))}
	return st, seq, seq > 0 && st.seg > 0 && st.acked >= st.seg-1
}

// createState writes st as dir's STATE, replacing whatever is there
// (atomically: a temporary file, renamed), and returns the file to update
// it with. seq is the sequence number of the state replaced.
func createState(dir string, st logState, seq uint64, noSync bool, sync func(*os.File) error) (*stateFile, error) {
	path := filepath.Join(dir, stateName)
	tmp := path + tmpExt
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	seq++
	slot := make([]byte, 2*stateSlot)
	copy(slot[int(seq%2)*stateSlot:], encodeState(st, seq))
	_, err = f.Write(slot)
	if err == nil && !noSync {
		err = sync(f)
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err == nil && !noSync {
		err = syncDir(dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return &stateFile{path: path, noSync: noSync, sync: sync, f: f, seq: seq, last: st}, nil
}

// write records st, unless STATE holds it, or a later state, already.
func (s *stateFile) write(st logState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st.seg < s.last.seg || st.seg == s.last.seg && st.acked <= s.last.acked {
		return nil
	}
	s.seq++
	if _, err := s.f.WriteAt(encodeState(st, s.seq), int64(s.seq%2)*stateSlot); err != nil {
		return fmt.Errorf("write %s: %w", s.path, err)
	}
	if !s.noSync {
		if err := s.sync(s.f); err != nil {
			return fmt.Errorf("fsync %s: %w", s.path, err)
		}
	}
	s.last = st
	return nil
}

func (s *stateFile) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.f.Close()
}
