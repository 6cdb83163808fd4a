package wire_test

import (
	"testing"

	"github.com/kvsdb/kvs/wire"
)

func TestParseResume(t *testing.T) {
	t.Parallel()
	tests := []struct {
		reason string
		want   int64
		ok     bool
	}{
		{wire.ResumeReason("slow consumer", 17), 17, true},
		{"server shutting down, resume from 1", 1, true},
		{wire.CompactedReason(4), 0, false},
		{"x, resume from x", 0, false},
		{"x, resume from 0", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		got, ok := wire.ParseResume(tt.reason)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseResume(%q): got %d, %v, want %d, %v", tt.reason, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseOldest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		msg  string
		want int64
		ok   bool
	}{
		{wire.CompactedReason(40), 40, true},
		{"history compacted: revision 1 is no longer retained, the oldest is 15: list with /getall", 15, true},
		{"history compacted", 0, false},
		{"oldest", 0, false},
	}
	for _, tt := range tests {
		got, ok := wire.ParseOldest(tt.msg)
		if got != tt.want || ok != tt.ok {
			t.Errorf("ParseOldest(%q): got %d, %v, want %d, %v", tt.msg, got, ok, tt.want, tt.ok)
		}
	}
}

func TestAppendString(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{"a<b>&c", `"a<b>&c"`},
		{"q\"b\\\n\t\x01", `"q\"b\\\n\t\u0001"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"bad \xff", `"bad \ufffd"`},
		{"日本", `"日本"`},
	}
	for _, tt := range tests {
		if got := string(wire.AppendString(nil, tt.in)); got != tt.want {
			t.Errorf("AppendString(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
}
