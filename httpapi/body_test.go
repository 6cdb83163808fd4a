package httpapi_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/httpapi"
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
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("POST %s: reading the answer: %v", path, err)
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "over the limit") {
			t.Fatalf("POST %s: got %d %s (%v), want 413", path, resp.StatusCode, b, err)
		}
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
