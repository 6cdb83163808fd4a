//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// raiseFileLimit makes sure the process may open n files: it raises the
// soft limit on open files up to the hard limit if needed (Go already does
// at start on Linux), and fails when even the hard limit is too low.
func raiseFileLimit(n int) error {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return nil // cannot tell: let the run say what fails
	}
	if rl.Cur >= uint64(n) {
		return nil
	}
	if rl.Max < uint64(n) {
		return fmt.Errorf("this run needs about %d open files, but the hard limit is %d: raise it (ulimit -Hn, or LimitNOFILE for a service), for kvsd too", n, rl.Max)
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("raising the open files limit to %d: %v", rl.Max, err)
	}
	return nil
}
