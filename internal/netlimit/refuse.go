package netlimit

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"time"
)

// HTTPRefusal answers a refused HTTP connection with a minimal HTTP/1.1 429
// (the address's cap) or 503 (the process's cap) that says so, after a TLS
// handshake when cfg is not nil. HTTP/2 is not offered to a refused client:
// ALPN settles on http/1.1, which every HTTP/2 client also speaks.
func HTTPRefusal(cfg *tls.Config) func(net.Conn, Reason) {
	if cfg != nil {
		cfg = cfg.Clone()
		cfg.NextProtos = []string{"http/1.1"}
		cfg.ClientAuth = tls.NoClientCert
	}
	return func(c net.Conn, why Reason) {
		defer c.Close()
		if cfg != nil {
			tc := tls.Server(c, cfg)
			if err := tc.Handshake(); err != nil {
				return
			}
			c = tc
		}
		if _, err := io.WriteString(c, RefusalResponse(why)); err != nil {
			return
		}
		// Half-close and wait (within the deadline) for the client to read
		// the answer and close: closing with its request unread would send
		// a TCP reset that can destroy the answer before it is read.
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			cw.CloseWrite()
		}
		c.SetReadDeadline(time.Now().Add(lingerTimeout))
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn() // after close_notify, read the rest unencrypted
		}
		io.Copy(io.Discard, io.LimitReader(c, 64<<10))
	}
}

// RefusalResponse is the whole HTTP/1.1 answer to a connection refused for why.
func RefusalResponse(why Reason) string {
	status, msg := "503 Service Unavailable", "The server holds as many connections as it can; retry later.\n"
	if why == ReasonAddress {
		status, msg = "429 Too Many Requests", "Too many connections from your address; close some and retry.\n"
	}
	return fmt.Sprintf("HTTP/1.1 %s\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: %d\r\nRetry-After: %d\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n%s",
		status, len(msg), int(retryAfter/time.Second), msg)
}

// lingerTimeout bounds the wait for a refused client to close (as net/http's
// wait before closing a connection whose request was not read).
const lingerTimeout = 500 * time.Millisecond

// retryAfter is the wait a refusal suggests.
const retryAfter = 5 * time.Second
