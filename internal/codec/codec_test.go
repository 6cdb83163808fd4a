package codec

import (
	"bytes"
	"encoding/binary"
	"io"
	"strings"
	"testing"
)

// TestPutCount checks that a count written into its reserved room ends up
// right before what followed the room, however long its uvarint is.
func TestPutCount(t *testing.T) {
	tests := []struct {
		name string
		n    uint64
	}{
		{"one byte", 5},
		{"two bytes", 300},
		{"longest", 1<<64 - 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, at := ReserveCount([]byte("head"))
			b = append(b, "tail"...)
			b = PutCount(b, at, tt.n)
			want := append(binary.AppendUvarint([]byte("head"), tt.n), "tail"...)
			if !bytes.Equal(b, want) {
				t.Errorf("got %x, want %x", b, want)
			}
		})
	}
}

// TestDecoder checks each read, and that the first failure sticks.
func TestDecoder(t *testing.T) {
	p := append([]byte{7}, binary.AppendUvarint(nil, 300)...)
	p = append(binary.AppendUvarint(p, 3), "abc"...)
	d := Decoder{P: p}
	if b, v, s := d.Byte(), d.Uvarint(), d.Bytes(); d.Err != nil || b != 7 || v != 300 || string(s) != "abc" || len(d.P) != 0 {
		t.Fatalf("got %d, %d, %q, err %v, %d left; want 7, 300, \"abc\", nil, 0", b, v, s, d.Err, len(d.P))
	}
	if d.Byte(); d.Err == nil {
		t.Fatal("a byte past the end: no error")
	}
	d = Decoder{P: []byte{5, 'a', 1}} // says 5 bytes, holds 2
	if s := d.Bytes(); s != nil || d.Err == nil {
		t.Fatalf("bytes cut short: got %q, err %v", s, d.Err)
	}
	if v := d.Uvarint(); v != 0 {
		t.Errorf("a read after a failure: got %d, want 0", v)
	}
}

// TestReadPayload checks a whole payload and one cut short.
func TestReadPayload(t *testing.T) {
	p, err := ReadPayload(strings.NewReader("payload!"), nil, 7)
	if err != nil || string(p) != "payload" {
		t.Errorf("got %q, %v; want \"payload\", nil", p, err)
	}
	p, err = ReadPayload(strings.NewReader("pay"), make([]byte, 0, 16), 7)
	if err != io.ErrUnexpectedEOF || string(p) != "pay" {
		t.Errorf("cut short: got %q, %v; want \"pay\", %v", p, err, io.ErrUnexpectedEOF)
	}
}
