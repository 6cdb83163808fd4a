//go:build unix

package main

import (
	"strings"
	"syscall"
	"testing"
)

func TestRaiseFileLimit(t *testing.T) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Skip(err)
	}
	if err := raiseFileLimit(int(min(rl.Cur, 1<<20))); err != nil {
		t.Errorf("within the current limit: got %v, want nil", err)
	}
	if rl.Max < 1<<40 {
		err := raiseFileLimit(1 << 40)
		if err == nil || !strings.Contains(err.Error(), "hard limit") {
			t.Errorf("beyond the hard limit: got %v, want an error naming the hard limit", err)
		}
	}
}
