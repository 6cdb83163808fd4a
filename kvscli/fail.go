package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/kvsdb/kvs/client"
)

// fail turns an error of the client into an *exitError with a message that
// names the server and says what to do. what names the operation ("set",
// "watch") and change is whether it may have changed data (its outcome is
// unknown when the answer is lost).
func (c *cli) fail(err error, what string, change bool) error {
	var (
		ee *exitError
		ae *client.Error
		ue *client.UnreachableError
		pe *client.ProtocolError
	)
	unknown := ""
	if change {
		unknown = "; the change may or may not have been made"
	}
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return err
	case errors.Is(err, context.Canceled):
		return &exitError{exitServer, fmt.Sprintf("%s: interrupted%s", what, unknown)}
	case errors.As(err, &ue) && ue.Timeout:
		return &exitError{exitServer, fmt.Sprintf("%s: kvsd at %s did not answer within %v%s; is it overloaded? raise -timeout",
			what, c.addr, c.timeout, unknown)}
	case errors.As(err, &ue):
		return &exitError{exitServer, fmt.Sprintf("%s: cannot reach kvsd at %s: %s%s", what, c.addr, cause(ue.Err), unknown)}
	case errors.As(err, &pe) && pe.Status == http.StatusBadRequest && strings.Contains(pe.Body, "HTTPS server"):
		return &exitError{exitUsage, fmt.Sprintf("%s: kvsd at %s serves HTTPS: use an https:// address (and -cacert if its certificate is not from a CA this machine trusts)", what, c.addr)}
	case errors.As(err, &pe) && pe.Status/100 == 2:
		return &exitError{exitServer, fmt.Sprintf("%s: the server at %s answered %q, not as kvsd does; check -server-address", what, c.addr, pe.Body)}
	case errors.As(err, &pe):
		body := pe.Body
		if body == "" {
			body = strings.ToLower(http.StatusText(pe.Status))
		}
		return &exitError{exitServer, fmt.Sprintf("%s: the server at %s answered %d %q, not as kvsd does; check -server-address (http:// or https://?)",
			what, c.addr, pe.Status, body)}
	case errors.As(err, &ae):
		switch {
		case ae.Status == http.StatusBadRequest || ae.Status == http.StatusRequestEntityTooLarge:
			return &exitError{exitUsage, fmt.Sprintf("%s: kvsd at %s rejected the request: %s", what, c.addr, ae.Message)}
		case ae.Status == http.StatusUnauthorized || ae.Status == http.StatusForbidden:
			return &exitError{exitServer, fmt.Sprintf("%s: kvsd at %s refused the request (%d): %s; set -token or KVS_TOKEN",
				what, c.addr, ae.Status, ae.Message)}
		case ae.Status >= 500:
			return &exitError{exitServer, fmt.Sprintf("%s: kvsd at %s failed (%d): %s%s; try again, or see its logs",
				what, c.addr, ae.Status, ae.Message, unknown)}
		default:
			return &exitError{exitServer, fmt.Sprintf("%s: kvsd at %s answered %d: %s", what, c.addr, ae.Status, ae.Message)}
		}
	case errors.Is(err, client.ErrInvalid):
		return &exitError{exitUsage, fmt.Sprintf("%s: %s", what, strings.TrimPrefix(err.Error(), "client: "))}
	default:
		return &exitError{exitServer, fmt.Sprintf("%s: %v", what, err)}
	}
}

// cause explains why a request got no answer, and what to do.
func cause(err error) string {
	var (
		se  *os.SyscallError
		dns *net.DNSError
		rhe tls.RecordHeaderError
		uae x509.UnknownAuthorityError
		che x509.HostnameError
	)
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused; is it running? set -server-address or KVS_ADDRESS"
	case errors.As(err, &dns):
		return dns.Err + " " + strconv.Quote(dns.Name) + "; set -server-address or KVS_ADDRESS"
	case errors.As(err, &rhe):
		return "it does not speak TLS; use http:// or host:port"
	case errors.As(err, &uae):
		return "its TLS certificate is not signed by a CA this machine trusts; pass the CA's certificate with -cacert or KVS_CACERT"
	case errors.As(err, &che):
		return "its TLS certificate is for another name (" + che.Error() + "); connect by a name the certificate holds"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		return "the connection closed before an answer; is it a kvsd? (http:// or https://?)"
	case errors.As(err, &se):
		return se.Err.Error()
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		err = oe.Err
	}
	return err.Error()
}
