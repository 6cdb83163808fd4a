//go:build !linux

package kv

import (
	"errors"
	"os"
)

// datasync makes f's data durable.
func datasync(f *os.File) error { return f.Sync() }

// preallocate is not supported on this platform: the log grows as it is
// written.
func preallocate(*os.File, int64, int64) error { return errors.ErrUnsupported }
