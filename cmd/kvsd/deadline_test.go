package main

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// sweepPair returns the server side of a connection accepted by a
// sweepListener with the given tick, and the client side.
func sweepPair(t *testing.T, tick time.Duration) (*sweepListener, net.Conn, net.Conn) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := newSweepListener(inner, tick)
	t.Cleanup(func() { l.Close() })
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	if _, ok := server.(*sweepConn); !ok {
		t.Fatalf("Accept gave a %T, want a *sweepConn", server)
	}
	return l, server, client
}

// readResult reads one byte from c in a goroutine.
func readResult(c net.Conn) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 1))
		done <- err
	}()
	return done
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(10 * time.Second): // a hang guard
		t.Fatal("read still blocked after 10 s")
		return nil
	}
}

// TestSweepReadDeadline: a deadline in the future fails a pending read
// once it passes, never before; moving it later or clearing it keeps the
// read waiting for data.
func TestSweepReadDeadline(t *testing.T) {
	_, server, client := sweepPair(t, 10*time.Millisecond)

	began := time.Now()
	server.SetReadDeadline(began.Add(50 * time.Millisecond))
	err := wait(t, readResult(server))
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: got %v, want os.ErrDeadlineExceeded", err)
	}
	if took := time.Since(began); took < 50*time.Millisecond {
		t.Fatalf("deadline of 50 ms fired after %v", took)
	}

	// After it fired: a later deadline, then none, and the read waits.
	server.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	server.SetReadDeadline(time.Now().Add(time.Hour))
	server.SetReadDeadline(time.Time{})
	done := readResult(server)
	time.Sleep(100 * time.Millisecond) // ten ticks: the 30 ms deadline would have fired
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, done); err != nil {
		t.Fatalf("read with its deadline cleared: %v", err)
	}
}

// TestSweepPastDeadline: a deadline already past (net/http's way to
// interrupt its background read) fails a pending read at once, not at the
// next tick (an hour away here), and clearing it makes the connection
// readable again.
func TestSweepPastDeadline(t *testing.T) {
	_, server, client := sweepPair(t, time.Hour)
	server.SetReadDeadline(time.Now().Add(time.Hour))
	done := readResult(server)
	time.Sleep(20 * time.Millisecond)
	server.SetReadDeadline(time.Unix(1, 0))
	if err := wait(t, done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read interrupted by a past deadline: got %v, want os.ErrDeadlineExceeded", err)
	}
	server.SetReadDeadline(time.Time{})
	if _, err := client.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := wait(t, readResult(server)); err != nil {
		t.Fatalf("read after the deadline was cleared: %v", err)
	}
}

// TestSweepWriteDeadline: a write blocked by a peer that does not read
// fails once its deadline passes.
func TestSweepWriteDeadline(t *testing.T) {
	_, server, _ := sweepPair(t, 10*time.Millisecond)
	server.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for {
			if _, err := server.Write(buf); err != nil {
				done <- err
				return
			}
		}
	}()
	if err := wait(t, done); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("write to a peer that does not read: got %v, want os.ErrDeadlineExceeded", err)
	}
}

// TestSweepForgetsClosed: a closed connection leaves the sweeper's set,
// closing the listener leaves open connections their deadlines, and a
// connection accepted after Close is refused.
func TestSweepForgetsClosed(t *testing.T) {
	l, server, client := sweepPair(t, 10*time.Millisecond)
	l.Close()
	server.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if err := wait(t, readResult(server)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline after the listener closed: got %v", err)
	}
	server.Close()
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read after the server closed: got %v, want EOF", err)
	}
	l.mu.Lock()
	n := len(l.conns)
	l.mu.Unlock()
	if n != 0 {
		t.Fatalf("%d connections left in the sweeper after their Close", n)
	}
}

// TestSweepAcceptAfterClose: a connection the inner listener hands over
// after Close (accepted just before it) is closed rather than served
// without deadlines.
func TestSweepAcceptAfterClose(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inner.Close()
	client, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	accepted, err := inner.Accept()
	if err != nil {
		t.Fatal(err)
	}
	l := newSweepListener(&heldListener{Listener: inner, c: accepted}, 10*time.Millisecond)
	l.Close()
	if c, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: got %v, %v; want net.ErrClosed", c, err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second)) // a hang guard
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client of the refused connection: got %v, want EOF", err)
	}
}

// heldListener hands out c, a connection it accepted earlier.
type heldListener struct {
	net.Listener
	c net.Conn
}

func (l *heldListener) Accept() (net.Conn, error) { return l.c, nil }
func (l *heldListener) Close() error              { return nil }
