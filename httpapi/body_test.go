package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/kv"
)

// TestBodyOverLimitAnswered: a client that sends a whole body over the
// limit reads the 413, and may go on using the connection. The server
// reads and drops what follows the limit (Go's server does, up to 256
// KiB); closing the connection instead, with the rest of the body unread,
// resets it, and a client still sending got "connection reset by peer"
// rather than the answer (cmd/kvsd TestBadInputBattery saw it on a busy
// machine).
func TestBodyOverLimitAnswered(t *testing.T) {
	srv, _ := newAPI(t, httpapi.Options{MaxValueBytes: 100, MaxBodyBytes: 2000})
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
	br := bufio.NewReader(conn)
	for _, path := range []string{"/set", "/get", "/delete", "/list", "/txn"} {
		body := `{"Key":"` + strings.Repeat("k", 200<<10) + `"}`
		if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body); err != nil {
			t.Fatalf("POST %s: sending the body: %v", path, err)
		}
		resp := read413(t, br, path)
		if resp.Close {
			t.Fatalf("POST %s: the 413 closes the connection", path)
		}
	}
	if _, err := io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /healthz after the 413s: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestBodyOverLimitConnectionClose: a client that sends a body over the
// limit with "Connection: close" (as cmd/kvsd TestBadInputBattery's client
// does) reads the 413 too. net/http reads nothing of the rest after the
// handler for such a request: it answers, and closes the connection a
// moment later, which resets it while the client is still sending. Small
// socket buffers on both sides hold the rest of the body back until the
// server reads it.
func TestBodyOverLimitConnectionClose(t *testing.T) {
	store := kv.New(kv.Options{})
	t.Cleanup(func() { store.Close() })
	srv := httptest.NewUnstartedServer(httpapi.New(httpapi.Options{Store: store, MaxValueBytes: 100, MaxBodyBytes: 2000}))
	srv.Listener = bufferListener{Listener: srv.Listener, read: 4 << 10}
	srv.Start()
	t.Cleanup(srv.Close)
	for _, path := range []string{"/set", "/get", "/delete", "/list", "/txn"} {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.(*net.TCPConn).SetWriteBuffer(4 << 10); err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(30 * time.Second)) // a hang guard
		body := `{"Key":"` + strings.Repeat("k", 200<<10) + `"}`
		sent := make(chan error, 1)
		go func() {
			_, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
			sent <- err
		}()
		read413(t, bufio.NewReader(conn), path)
		if err := <-sent; err != nil {
			t.Errorf("POST %s: sending the body: %v", path, err)
		}
		conn.Close()
	}
}

// read413 reads an answer from br and checks that it is the 413 for a body
// over the limit.
func read413(t *testing.T, br *bufio.Reader, path string) *http.Response {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("POST %s: reading the answer: %v", path, err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "over the limit") {
		t.Fatalf("POST %s: got %d %s (%v), want 413", path, resp.StatusCode, b, err)
	}
	return resp
}
