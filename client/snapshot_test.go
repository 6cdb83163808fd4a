package client_test

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvsdb/kvs/bus"
	"github.com/kvsdb/kvs/client"
	"github.com/kvsdb/kvs/httpapi"
	"github.com/kvsdb/kvs/wire"
)

// TestSnapshot checks that Snapshot copies the server's backup byte for
// byte, and that it holds what a listing at the same revision holds.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	s := newServer(t, bus.Options{}, httpapi.Options{})
	c, err := client.New(s.Addr, client.Options{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := c.Set(t.Context(), fmt.Sprintf("k%03d", i), client.String(strings.Repeat("v", i*10)), nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Delete(t.Context(), "k007", nil); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	info, err := c.Snapshot(t.Context(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != 301 || info.Entries != 299 || info.Size != int64(buf.Len()) {
		t.Fatalf("info %+v for %d bytes, want revision 301 and 299 entries", info, buf.Len())
	}
	l, err := c.List(t.Context(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	br, err := wire.NewBackupReader(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range l.Entries {
		got, err := br.Next()
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("got %+v, %v; want %+v", got, err, want)
		}
	}
	if _, err := br.Next(); err.Error() != "EOF" {
		t.Fatalf("after the last entry: %v", err)
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// TestSnapshotErrors checks the error of each way a backup can fail.
func TestSnapshotErrors(t *testing.T) {
	t.Parallel()
	s := newServer(t, bus.Options{}, httpapi.Options{Token: "0123456789abcdef"})
	for i := range 200 {
		if _, err := s.Store.Set(t.Context(), fmt.Sprintf("k%03d", i), []byte(`"`+strings.Repeat("v", 1000)+`"`)); err != nil {
			t.Fatal(err)
		}
	}
	var backup bytes.Buffer
	good, _ := client.New(s.Addr, client.Options{Token: "0123456789abcdef"})
	if _, err := good.Snapshot(t.Context(), &backup); err != nil {
		t.Fatal(err)
	}
	// A server that sends part of the backup, then drops the connection;
	// one that sends something else; one that stops sending.
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("User-Agent") {
		case "cut":
			w.Write(backup.Bytes()[:backup.Len()/2])
			w.(http.Flusher).Flush()
			conn, _, _ := http.NewResponseController(w).Hijack()
			conn.Close()
		case "html":
			w.Write([]byte("<html>hello</html>"))
		case "stall":
			w.Write(backup.Bytes()[:100])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	t.Cleanup(fake.Close)
	at := func(addr, ua string, timeout time.Duration) *client.Client {
		c, err := client.New(addr, client.Options{UserAgent: ua, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var ue *client.UnreachableError
	var buf bytes.Buffer
	if _, err := at(s.Addr, "", 0).Snapshot(t.Context(), &buf); !errors.Is(err, client.ErrUnauthorized) || buf.Len() != 0 {
		t.Errorf("without the token: got %v and %d bytes, want ErrUnauthorized and none", err, buf.Len())
	}
	if _, err := at(fake.URL, "cut", 0).Snapshot(t.Context(), &buf); !errors.Is(err, client.ErrBadBackup) ||
		!strings.Contains(err.Error(), "cut short") {
		t.Errorf("cut short: got %v, want ErrBadBackup", err)
	}
	if _, err := at(fake.URL, "html", 0).Snapshot(t.Context(), &buf); !errors.Is(err, client.ErrProtocol) {
		t.Errorf("not a backup: got %v, want ErrProtocol", err)
	}
	if _, err := at(fake.URL, "stall", 300*time.Millisecond).Snapshot(t.Context(), &buf); !errors.As(err, &ue) || !ue.Timeout {
		t.Errorf("stalled: got %v, want an *UnreachableError with Timeout", err)
	}
	if _, err := good.Snapshot(t.Context(), failingWriter{}); err == nil || !strings.Contains(err.Error(), "disk full") ||
		errors.Is(err, client.ErrBadBackup) {
		t.Errorf("a failing writer: got %v, want its error", err)
	}
	if _, err := at("127.0.0.1:1", "", 0).Snapshot(t.Context(), &buf); !errors.Is(err, client.ErrUnreachable) {
		t.Errorf("no server: got %v, want ErrUnreachable", err)
	}
}
