package main_test

import (
	"bytes"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/kvsdb/kvs/internal/kvstest"
)

// TestOriginalCurlCommands runs the original project's three curl commands,
// verbatim but for the address, against the real kvsd, then stops it with
// SIGTERM and expects a clean exit.
func TestOriginalCurlCommands(t *testing.T) {
	srv := kvstest.Start(t, "-backend", "memory")
	tests := []struct {
		name string
		args []string // curl arguments after the URL
		path string
		body string
		want string
	}{
		{"set", []string{"-d", `{"Key": "City", "Value": "Ahmedabad"}`}, "/set", `{"Key": "City", "Value": "Ahmedabad"}`,
			`{"Key":"City","Revision":1}` + "\n"},
		{"get", []string{"-d", `{"Key": "City"}`}, "/get", `{"Key": "City"}`,
			`{"Key":"City","Value":"Ahmedabad","Revision":1,"CreateRevision":1,"Version":1}` + "\n"},
		{"getall", nil, "/getall", "",
			`{"City":"Ahmedabad"}` + "\n"},
	}
	curl, _ := exec.LookPath("curl")
	for _, tt := range tests {
		var got string
		if curl != "" {
			out, err := exec.Command(curl, append([]string{"-sS", srv.Addr + tt.path}, tt.args...)...).Output()
			if err != nil {
				t.Fatalf("%s: curl: %v", tt.name, err)
			}
			got = string(out)
		} else {
			// What curl sends: POST with a form content type for -d, GET otherwise.
			var resp *http.Response
			var err error
			if tt.body != "" {
				resp, err = http.Post(srv.URL+tt.path, "application/x-www-form-urlencoded", strings.NewReader(tt.body))
			} else {
				resp, err = http.Get(srv.URL + tt.path)
			}
			if err != nil {
				t.Fatalf("%s: %v", tt.name, err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = string(b)
		}
		if got != tt.want {
			t.Errorf("%s: got %q, want %q", tt.name, got, tt.want)
		}
	}
	if code := srv.Stop(); code != 0 {
		t.Fatalf("kvsd exit code after SIGTERM: got %d, want 0", code)
	}
	if !bytes.Contains([]byte(srv.Logs()), []byte(`"msg":"stopped"`)) {
		t.Errorf("kvsd did not log a clean stop:\n%s", srv.Logs())
	}
}
