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
//
// Times are kept as durations since the listener started, on the
// monotonic clock, so that a change of the wall clock moves no deadline.
type sweepListener struct {
	net.Listener
	tick  time.Duration
	start time.Time
	now   atomic.Int64 // time.Duration since start, at the last tick

	// mu guards conns and closed. Lock order: mu, then a sweepConn's mu.
	mu     sync.Mutex
	conns  map[*sweepConn]struct{}
	closed bool
}

func newSweepListener(ln net.Listener, tick time.Duration) *sweepListener {
	l := &sweepListener{Listener: ln, tick: tick, start: time.Now(), conns: make(map[*sweepConn]struct{})}
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
	defer l.mu.Unlock()
	if l.closed {
		// The sweeper may be gone: the connection would have no deadlines.
		c.Close()
		return nil, net.ErrClosed
	}
	l.conns[sc] = struct{}{}
	return sc, nil
}

// Close stops accepting. The sweeper goes on until the last connection
// is closed, so that a graceful shutdown keeps its deadlines.
func (l *sweepListener) Close() error {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	return l.Listener.Close()
}

func (l *sweepListener) sweep() {
	t := time.NewTicker(l.tick)
	defer t.Stop()
	for range t.C {
		now := time.Since(l.start)
		l.now.Store(int64(now))
		l.mu.Lock()
		for c := range l.conns {
			c.expire(now)
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
	on  bool          // there is one
	at  time.Duration // since the listener started
	set bool          // the connection has it (a deadline that has passed)
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
	return c.read.move(t, c.l, c.TCPConn.SetReadDeadline)
}

func (c *sweepConn) SetWriteDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.write.move(t, c.l, c.TCPConn.SetWriteDeadline)
}

// move notes t as the deadline; set gives one to the connection.
func (d *deadline) move(t time.Time, l *sweepListener, set func(time.Time) error) error {
	d.on = !t.IsZero()
	if d.on {
		d.at = t.Sub(l.start)
	}
	switch {
	case d.on && d.at <= time.Duration(l.now.Load()):
		d.set = true
		return set(t)
	case d.set:
		d.set = false
		return set(time.Time{})
	}
	return nil
}

// expire gives the connection the deadlines that passed by now.
func (c *sweepConn) expire(now time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.read.expire(now, c.TCPConn.SetReadDeadline)
	c.write.expire(now, c.TCPConn.SetWriteDeadline)
}

func (d *deadline) expire(now time.Duration, set func(time.Time) error) {
	if d.on && d.at <= now && !d.set {
		d.set = true
		set(aLongTimeAgo)
	}
}

// aLongTimeAgo is a deadline that has passed, whatever the clocks say.
var aLongTimeAgo = time.Unix(1, 0)

func (c *sweepConn) Close() error {
	c.l.mu.Lock()
	delete(c.l.conns, c)
	c.l.mu.Unlock()
	return c.TCPConn.Close()
}
