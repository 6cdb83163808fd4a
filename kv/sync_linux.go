package kv

import (
	"os"
	"syscall"
)

// datasync makes f's data durable, with the metadata needed to read it back
// (fdatasync: not the modification time).
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// preallocate reserves the n bytes of f from off, which read as zeros until
// written. Writing into reserved space makes each fdatasync cheaper than
// growing the file would.
func preallocate(f *os.File, off, n int64) error {
	for {
		err := syscall.Fallocate(int(f.Fd()), 0, off, n)
		if err != syscall.EINTR {
			return err
		}
	}
}
