package kvstest

import (
	"context"
	"net"
	"net/http"
)

// SmallReceiveBuffer returns an HTTP client (for websocket.Dial's
// HTTPClient) whose connections have a receive buffer of size bytes, so
// that a server's writes to a subscriber that stops reading stall soon:
// Linux would otherwise grow the buffer to many MiB.
func SmallReceiveBuffer(size int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if err == nil {
				if err = c.(*net.TCPConn).SetReadBuffer(size); err != nil {
					c.Close()
				}
			}
			return c, err
		},
	}}
}
