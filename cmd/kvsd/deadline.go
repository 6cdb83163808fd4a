package main

import (
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// sweepListener hands out connections whose read and write deadlines cost
// no runtime timer: net/http moves them up to seven times per request (the
// header, body, write and idle timeouts, and its background read), and
// each move of a real deadline is a timer to add, move or delete. Here a
// deadline in the future is only noted; one goroutine checks the noted
// deadlines every tick and gives a passed one to the connection, which
// then fails its pending and later reads or writes as before. A deadline
// thus fires up to a tick late, never early. A deadline already in the
// past (net/http's way to interrupt a read at once) goes to the
// connection at once.
type sweepListener struct {
	net.Listener
	tick time.Duration
	now  atomic.Int64 // unix nanoseconds at the last tick

	mu     sync.Mutex
	conns  map[*sweepConn]struct{}
	closed bool
}

func newSweepListener(ln net.Listener, tick time.Duration) *sweepListener {
	l := &sweepListener{Listener: ln, tick: tick, conns: make(map[*sweepConn]struct{})}
	l.now.Store(time.Now().UnixNano())
	go l.sweep()
	return l
}

func (l *sweepListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	sc := &sweepConn{TCPConn: tc, l: l}
	l.mu.Lock()
	l.conns[sc] = struct{}{}
	l.mu.Unlock()
	return sc, nil
}

// Close stops accepting. The sweeper goes on until the last connection
// is closed.
func (l *sweepListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Listener.Close()
}

func (l *sweepListener) sweep() {
	t := time.NewTicker(l.tick)
	defer t.Stop()
	for now := range t.C {
		l.now.Store(now.UnixNano())
		l.mu.Lock()
		for c := range l.conns {
			c.expire(now.UnixNano())
		}
		done := l.closed && len(l.conns) == 0
		l.mu.Unlock()
		if done {
			return
		}
	}
}

// sweepConn is a connection of a sweepListener.
type sweepConn struct {
	*net.TCPConn
	l *sweepListener

	mu          sync.Mutex // guards read and write
	read, write deadline
}

// deadline is one direction's deadline.
type deadline struct {
	at  int64 // unix nanoseconds, 0 for none
	set bool  // the connection has it (a deadline that has passed)
}

func (c *sweepConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *sweepConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.read.move(t, c.l.now.Load(), c.TCPConn.SetReadDeadline)
}

func (c *sweepConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.write.move(t, c.l.now.Load(), c.TCPConn.SetWriteDeadline)
}

// move notes t as the deadline; set gives one to the connection.
func (d *deadline) move(t time.Time, now int64, set func(time.Time) error) error {
	d.at = 0
	if !t.IsZero() {
		d.at = t.UnixNano()
	}
	switch {
	case d.at != 0 && d.at <= now:
		d.set = true
		return set(t)
	case d.set:
		d.set = false
		return set(time.Time{})
	}
	return nil
}

// expire gives the connection the deadlines that passed by now.
func (c *sweepConn) expire(now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read.expire(now, c.TCPConn.SetReadDeadline)
	c.write.expire(now, c.TCPConn.SetWriteDeadline)
}

func (d *deadline) expire(now int64, set func(time.Time) error) {
	if d.at != 0 && d.at <= now && !d.set {
		d.set = true
		set(time.Unix(0, d.at))
	}
}

func (c *sweepConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.TCPConn.Close()
}
