package httpapi

import (
	"bufio"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"
)

// corkWriter hands coder/websocket a corkable connection when it hijacks
// the request's connection.
type corkWriter struct {
	http.ResponseWriter
	timeout time.Duration // bounds each write to the connection
	conn    *corkConn
}

func (w *corkWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("httpapi: the response writer cannot hijack its connection")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	w.conn = &corkConn{Conn: c, timeout: w.timeout}
	return w.conn, bufio.NewReadWriter(brw.Reader, bufio.NewWriter(w.conn)), nil
}

// corkConn lets a subscriber's events go out in one system call: between
// cork and flush, writes collect in a buffer. Writes from other goroutines
// (pongs, close frames) join the buffer while corked and go straight out
// otherwise, in order. Every write to the connection is bounded by timeout.
type corkConn struct {
	net.Conn
	timeout time.Duration

	// mu guards the fields below, and orders writes to Conn.
	mu       sync.Mutex
	corked   bool
	buf      []byte
	deadline time.Time // the write deadline set on Conn
	// err is the first write to Conn that failed: a write that timed out
	// may have left a frame half written, after which nothing can be
	// (a close frame would be read as the rest of that frame).
	err error
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.corked {
		c.buf = append(c.buf, p...)
		return len(p), nil
	}
	return c.writeLocked(p)
}

// writeLocked writes p to Conn, bounded by between half the timeout and
// the timeout: the deadline is moved only when less than half of it is
// left, not at each write (each move is a timer update).
func (c *corkConn) writeLocked(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if now := time.Now(); c.deadline.Sub(now) < c.timeout/2 {
		c.deadline = now.Add(c.timeout)
		c.Conn.SetWriteDeadline(c.deadline)
	}
	n, err := c.Conn.Write(p)
	c.err = err
	return n, err
}

// writeText adds a WebSocket text frame holding p (FIN set, unmasked, as
// from a server: RFC 6455, section 5.2) to the corked buffer.
func (c *corkConn) writeText(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		panic("httpapi: writeText on an uncorked connection")
	}
	c.buf = appendTextFrame(c.buf, p)
}

// moreMember is what an event's frame holds in place of the event's
// closing brace when the event has More (see kv.Event.More): the shared
// encoding of an event, marked for one subscriber.
const moreMember = `,"More":true}`

// writeTextMore adds a text frame holding p, a JSON object, with the
// member "More":true added at its end, to the corked buffer.
func (c *corkConn) writeTextMore(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		panic("httpapi: writeTextMore on an uncorked connection")
	}
	c.buf = appendTextHeader(c.buf, len(p)-1+len(moreMember))
	c.buf = append(c.buf, p[:len(p)-1]...)
	c.buf = append(c.buf, moreMember...)
}

// writeTextDirect writes what the corked buffer holds, then a WebSocket
// text frame holding p, without copying p; the connection stays corked.
// With more, p is a JSON object and the frame holds it with the member
// "More":true added at its end, as writeTextMore does: p is written but
// for its closing brace, and moreMember starts the corked buffer again,
// to go out with the next write.
func (c *corkConn) writeTextDirect(p []byte, more bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		panic("httpapi: writeTextDirect on an uncorked connection")
	}
	n := len(p)
	if more {
		p = p[:len(p)-1]
		n += len(moreMember) - 1
	}
	c.buf = appendTextHeader(c.buf, n)
	_, err := c.writeLocked(c.buf)
	c.buf = c.buf[:0]
	if err == nil {
		_, err = c.writeLocked(p)
	}
	if err == nil && more {
		c.buf = append(c.buf, moreMember...)
	}
	return err
}

// appendTextFrame appends a final, unmasked text frame holding p to b.
func appendTextFrame(b, p []byte) []byte {
	return append(appendTextHeader(b, len(p)), p...)
}

// appendTextHeader appends the header of a final, unmasked text frame of n
// bytes to b.
func appendTextHeader(b []byte, n int) []byte {
	const finText = 0x80 | 0x1
	switch {
	case n < 126:
		b = append(b, finText, byte(n))
	case n < 1<<16:
		b = append(b, finText, 126, byte(n>>8), byte(n))
	default:
		b = append(b, finText, 127)
		b = binary.BigEndian.AppendUint64(b, uint64(n))
	}
	return b
}

func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// flush uncorks c and writes what collected. It fails when any write to
// the connection failed before.
func (c *corkConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.corked = false
	if len(c.buf) == 0 {
		return c.err
	}
	_, err := c.writeLocked(c.buf)
	if cap(c.buf) > 2*burstBytes {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
	return err
}
