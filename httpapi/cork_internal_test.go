package httpapi

import (
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

// TestCorkConnFailedWrite: once a write to the connection fails (here its
// timeout, the peer reading nothing), which may have left a frame half
// written, nothing more is written, and flush fails even with nothing to
// write: the feed then ends without writing a close frame into the middle
// of that frame.
func TestCorkConnFailedWrite(t *testing.T) {
	server, client := net.Pipe()
	defer client.Close()
	defer server.Close()
	c := &corkConn{Conn: server, timeout: 20 * time.Millisecond}
	c.cork()
	if err := c.writeTextDirect(make([]byte, 1<<10), false); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write nobody reads: got %v, want a timeout", err)
	}
	read := make(chan int)
	go func() {
		n := 0
		buf := make([]byte, 4<<10)
		for {
			m, err := client.Read(buf)
			n += m
			if err != nil {
				read <- n
				return
			}
		}
	}()
	if err := c.flush(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("flush with nothing corked after a failed write: got %v, want the write's error", err)
	}
	if _, err := c.Write([]byte("a close frame")); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("a write after a failed write: got %v, want the failed write's error", err)
	}
	server.Close()
	if n := <-read; n != 0 {
		t.Fatalf("%d bytes written after the write that failed, want none", n)
	}
}
