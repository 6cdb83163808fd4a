// Package kvstest runs the real kvs binaries for end-to-end tests: it
// builds them once per test process and starts kvsd on a free 127.0.0.1
// port, as a user would.
package kvstest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildErr  error
)

// Binary returns the path of the named command of this module ("kvsd",
// "kvscli", "kvsbench"), built once per test process. With -race, the
// binaries are built with -race too.
func Binary(t testing.TB, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "kvs-e2e-bin-")
		if buildErr != nil {
			return
		}
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		args := []string{"build", "-o", buildDir + string(os.PathSeparator)}
		if raceEnabled {
			args = append(args, "-race")
		}
		for _, pkg := range []string{"./cmd/kvsd", "./kvscli", "./cmd/kvsbench"} {
			if m, _ := filepath.Glob(filepath.Join(root, pkg, "*.go")); len(m) > 0 {
				args = append(args, pkg)
			}
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %v: %v\n%s", args, err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building binaries: %v", buildErr)
	}
	p := filepath.Join(buildDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("binary %s: %v", name, err)
	}
	return p
}

func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", errors.New("kvstest: cannot find the module root")
	}
	return filepath.Join(filepath.Dir(file), "..", ".."), nil
}

// Server is a running kvsd process.
type Server struct {
	// Addr is the host:port it listens on; URL is "http://" + Addr, or
	// "https://" + Addr when it was started with -tls-cert.
	Addr string
	URL  string
	Args []string

	t    testing.TB
	cmd  *exec.Cmd
	logs *LockedBuffer
	done chan struct{} // closed when the process has exited
	err  error         // its exit error, set before done is closed
}

// Start starts kvsd with args (the listen address defaults to a free port
// on 127.0.0.1, the data directory to a new temporary one; pass -addr or
// -data to choose) and waits until it listens. The process is killed at the
// end of the test if it still runs.
func Start(t testing.TB, args ...string) *Server {
	t.Helper()
	full := append([]string{"-log-format", "json"}, args...)
	if !hasFlag(args, "addr") {
		full = append(full, "-addr", "127.0.0.1:0")
	}
	if !hasFlag(args, "data") {
		full = append(full, "-data", t.TempDir())
	}
	s := &Server{Args: args, t: t, logs: &LockedBuffer{}, done: make(chan struct{})}
	s.cmd = exec.Command(Binary(t, "kvsd"), full...)
	s.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1 atexit_sleep_ms=0")
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stdout = s.logs
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addrc := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			s.logs.Write(line)
			s.logs.Write([]byte("\n"))
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "listening" {
				select {
				case addrc <- rec.Addr:
				default:
				}
			}
		}
		io.Copy(io.Discard, stderr)
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	t.Cleanup(func() {
		s.Kill()
		if t.Failed() {
			t.Logf("kvsd %v logs:\n%s", args, s.Logs())
		}
	})
	select {
	case s.Addr = <-addrc:
	case <-s.done:
		t.Fatalf("kvsd %v exited before listening: %v\n%s", args, s.err, s.Logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("kvsd %v did not listen within 30s\n%s", args, s.Logs())
	}
	s.URL = "http://" + s.Addr
	if hasFlag(args, "tls-cert") {
		s.URL = "https://" + s.Addr
	}
	return s
}

// hasFlag reports whether args set the flag name, in any of the forms the
// flag package takes.
func hasFlag(args []string, name string) bool {
	for _, a := range args {
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name || strings.HasPrefix(a, name+"=") {
			return true
		}
	}
	return false
}

// PID returns the process id.
func (s *Server) PID() int { return s.cmd.Process.Pid }

// Logs returns what the process logged so far.
func (s *Server) Logs() string { return s.logs.String() }

// Signal sends sig to the process.
func (s *Server) Signal(sig os.Signal) {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Signal(sig)
	}
}

// Wait waits up to d for the process to exit and returns its exit code,
// or fails the test.
func (s *Server) Wait(d time.Duration) int {
	s.t.Helper()
	select {
	case <-s.done:
	case <-time.After(d):
		s.t.Fatalf("kvsd did not exit within %v", d)
	}
	var ee *exec.ExitError
	if errors.As(s.err, &ee) {
		return ee.ExitCode()
	}
	if s.err != nil {
		s.t.Fatalf("kvsd: %v", s.err)
	}
	return 0
}

// Stop sends SIGTERM and returns the exit code, failing the test if the
// process does not exit within 30s.
func (s *Server) Stop() int {
	s.t.Helper()
	s.Signal(syscall.SIGTERM)
	return s.Wait(30 * time.Second)
}

// Kill kills the process with SIGKILL and waits for it.
func (s *Server) Kill() {
	s.Signal(syscall.SIGKILL)
	<-s.done
}

// Exited reports whether the process has exited.
func (s *Server) Exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// Result is what a finished command printed and its exit code.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the named binary of this module (see Binary) with env and args
// and waits for it, up to a one-minute hang guard. It fails the test if
// the command cannot run or does not exit by itself.
func Run(t testing.TB, name string, env []string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, Binary(t, name), args...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &ee) && ee.Exited():
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("%s %q: %v (stderr: %s)", name, args, err, stderr.String())
	}
	return Result{stdout.String(), stderr.String(), code}
}
