//go:build unix

package robustness

import "syscall"

// setRcvbuf returns a net.Dialer Control function that sets the socket's
// receive buffer to n bytes.
func setRcvbuf(n int) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, n)
		}); err != nil {
			return err
		}
		return serr
	}
}
