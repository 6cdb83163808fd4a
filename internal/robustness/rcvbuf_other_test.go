//go:build !unix

package robustness

import "syscall"

// setRcvbuf leaves the receive buffer as it is.
func setRcvbuf(int) func(network, address string, c syscall.RawConn) error { return nil }
