package main_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// interruptBound is how soon kvscli watch must exit after Ctrl-C.
const interruptBound = time.Second

// interruptWithin sends SIGINT to p and checks that it exits with code 0
// within interruptBound.
func interruptWithin(t *testing.T, p *proc) {
	t.Helper()
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGINT)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("kvscli did not exit within 30s of SIGINT; stderr:\n%s", p.Stderr())
	}
	took := time.Since(start)
	code := 0
	if ee, ok := p.err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if p.err != nil {
		t.Fatalf("kvscli: %v", p.err)
	}
	if code != 0 {
		t.Errorf("exit code after SIGINT: got %d, want 0; stderr:\n%s", code, p.Stderr())
	}
	if took > interruptBound {
		t.Errorf("kvscli took %v to exit after SIGINT, want at most %v; stderr:\n%s", took.Round(time.Millisecond), interruptBound, p.Stderr())
	}
}

// blackhole returns a 127.0.0.1 address whose TCP handshake never
// completes: a listener with a backlog of 0 that never accepts, its queue
// filled by the test, so that the kernel drops further SYNs.
func blackhole(t *testing.T) string {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(sa.(*syscall.SockaddrInet4).Port))
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return addr
			}
			t.Fatalf("filling the backlog of %s: %v", addr, err)
		}
		t.Cleanup(func() { c.Close() })
		if i > 64 {
			t.Skip("cannot make a blackholed address here: the listen backlog does not fill")
		}
	}
}

// dialing reports whether a connection to the port of addr is in SYN_SENT
// (/proc/net/tcp, state 02).
func dialing(t *testing.T, addr string) bool {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	p, _ := strconv.Atoi(port)
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Skipf("cannot see the connection attempts: %v", err)
	}
	want := fmt.Sprintf(":%04X", p)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && strings.HasSuffix(f[2], want) && f[3] == "02" {
			return true
		}
	}
	return false
}

// TestWatchInterrupt checks that Ctrl-C (SIGINT) ends kvscli watch with
// exit code 0 within a second, whatever it is doing: waiting to reconnect,
// dialing an address that never answers the TCP handshake, waiting for a
// WebSocket or TLS handshake that never completes, reading the feed, or
// writing to a stdout that nobody reads.
func TestWatchInterrupt(t *testing.T) {
	t.Parallel()

	t.Run("backoff", func(t *testing.T) {
		t.Parallel()
		srv := kvstest.Start(t, "-backend", "memory")
		w := startCLI(t, nil, "-server-address", srv.Addr, "watch")
		w.waitStderr("(Ctrl-C to stop)", 1)
		srv.Kill()
		// Wait for a backoff of over a second, so that the signal comes
		// in the middle of it.
		w.waitFor("a reconnection delay of a second or more", time.Minute, func() bool {
			for _, l := range strings.Split(w.Stderr(), "\n") {
				if i := strings.LastIndex(l, "retrying in "); i >= 0 {
					d, err := time.ParseDuration(strings.Fields(l[i+len("retrying in "):])[0])
					if err == nil && d >= time.Second {
						return true
					}
				}
			}
			return false
		})
		interruptWithin(t, w)
	})

	for _, timeout := range []string{"0", "30s"} {
		t.Run("dial_blackholed_timeout_"+timeout, func(t *testing.T) {
			t.Parallel()
			addr := blackhole(t)
			w := startCLI(t, nil, "-server-address", addr, "-timeout", timeout, "watch", "-from", "1")
			poll(t, w, "a connection attempt", func() bool { return dialing(t, addr) })
			interruptWithin(t, w)
		})
	}

	// A server that accepts connections and reads, but never answers:
	// the WebSocket handshake (or with tls the TLS handshake) hangs.
	for _, mode := range []string{"http", "tls"} {
		t.Run("handshake_"+mode, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			var mu sync.Mutex
			got := 0 // bytes read from kvscli
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					t.Cleanup(func() { c.Close() })
					go func() {
						buf := make([]byte, 4096)
						for {
							n, err := c.Read(buf)
							mu.Lock()
							got += n
							mu.Unlock()
							if err != nil {
								return
							}
						}
					}()
				}
			}()
			addr := ln.Addr().String()
			if mode == "tls" {
				addr = "https://" + addr
			}
			w := startCLI(t, nil, "-server-address", addr, "-timeout", "0", "watch", "-from", "1")
			poll(t, w, "the handshake to start", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return got > 0
			})
			interruptWithin(t, w)
		})
	}

	t.Run("mid_stream", func(t *testing.T) {
		t.Parallel()
		srv := kvstest.Start(t, "-backend", "memory")
		w := startCLI(t, nil, "-server-address", srv.Addr, "watch", "-from", "1")
		w.waitStderr("(Ctrl-C to stop)", 1)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				kvstest.Run(t, "kvscli", cliEnv(), "-server-address", srv.Addr, "set", "-key", "k", "-value", strconv.Itoa(i))
			}
		}()
		w.waitLines(3)
		interruptWithin(t, w)
		close(stop)
		<-done
	})

	t.Run("stdout_blocked", func(t *testing.T) {
		t.Parallel()
		srv := kvstest.Start(t, "-backend", "memory")
		big := strings.Repeat("x", 100<<10)
		for i := range 4 { // more than a pipe holds
			if r := kvscli(t, nil, "-server-address", srv.Addr, "set", "-key", "big"+strconv.Itoa(i), "-value", big); r.code != 0 {
				t.Fatalf("set: exit %d: %.200s", r.code, r.stderr)
			}
		}
		p, out := startBlocked(t, "-server-address", srv.Addr, "watch", "-from", "1")
		// Wait until the pipe is full: kvscli is blocked writing.
		poll(t, p, "a full stdout pipe", func() bool { return queued(t, out) >= 60<<10 })
		interruptWithin(t, p)
	})

	t.Run("tls_mid_stream", func(t *testing.T) {
		t.Parallel()
		certs := kvstest.WriteCerts(t)
		srv := kvstest.Start(t, "-backend", "memory", "-tls-cert", certs.Cert, "-tls-key", certs.Key)
		w := startCLI(t, cliEnv("KVS_CACERT="+certs.CA), "-server-address", srv.URL, "watch")
		w.waitStderr("(Ctrl-C to stop)", 1)
		interruptWithin(t, w)
	})
}

// poll waits until cond holds, checking it every 10ms, and fails the test
// if p exits first or after a minute.
func poll(t *testing.T, p *proc, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		select {
		case <-p.done:
			t.Fatalf("kvscli exited (%v) before %s; stderr:\n%s", p.err, what, p.Stderr())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within a minute; stderr:\n%s", what, p.Stderr())
		}
	}
}

// queued returns the number of bytes waiting in the pipe r.
func queued(t *testing.T, r *os.File) int {
	var n int32
	if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, r.Fd(), syscall.TIOCINQ, uintptr(unsafe.Pointer(&n))); errno != 0 {
		t.Skipf("cannot see how full the pipe is: %v", errno)
	}
	return int(n)
}

// startBlocked starts kvscli with a stdout pipe that nobody reads, and
// returns the pipe's read end.
func startBlocked(t *testing.T, args ...string) (*proc, *os.File) {
	t.Helper()
	p := &proc{t: t, change: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command(kvstest.Binary(t, "kvscli"), args...)
	p.cmd.Env = cliEnv()
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	p.cmd.Stdout = wr
	p.cmd.Stderr = p.stderrWriter()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
		p.signal()
	}()
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		<-p.done
	})
	return p, r
}
