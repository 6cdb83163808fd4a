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
