//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package kv

import "os"

// lockFile does nothing on this platform: two processes can open the same
// data directory, and must not.
func lockFile(*os.File) error { return nil }

// syncDir does nothing on this platform, where a directory cannot be synced.
func syncDir(string) error { return nil }
