package kvstest

import (
	"net"
	"testing"
)

// FreeAddr returns a 127.0.0.1 address that nothing listens on (one that
// was free a moment ago), for a kvsd that must come back on the same
// address, or for a client that must find nobody there.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
