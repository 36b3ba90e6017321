//go:build linux

package mqtt

import (
	"io"
	"net"
	"os"
	"syscall"
)

// Plain returns nc, a plain TCP connection (or a wrapper of one that
// offers its socket through syscall.Conn), as a connection whose idle
// reader parks (Server.ServeConn): ReadNow reads the socket without
// waiting, through syscall.RawConn, and says ErrWouldWait when it is empty.
// A wrapper that holds bytes above the socket, or still has to look at the
// first ones (netlimit's PROXY header checks), offers no socket until they
// are read, and ReadNow reads through it meanwhile.
func Plain(nc net.Conn) net.Conn { return &plainConn{Conn: nc} }

type plainConn struct {
	net.Conn
	raw syscall.RawConn // once offered
}

// ReadNow reads what the socket holds now, or says ErrWouldWait.
func (c *plainConn) ReadNow(p []byte) (int, error) {
	if c.socket() == nil {
		return c.Conn.Read(p)
	}
	var n int
	var rerr error
	// The function returns true, so Read never waits; it checks the read
	// deadline and whether the connection is closed first.
	err := c.raw.Read(func(fd uintptr) bool {
		for {
			n, rerr = syscall.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true
			}
		}
	})
	switch {
	case err != nil: // closed, or past the read deadline
		return 0, err
	case rerr == syscall.EAGAIN:
		return 0, ErrWouldWait
	case rerr != nil:
		return 0, os.NewSyscallError("read", rerr)
	case n == 0 && len(p) > 0:
		return 0, io.EOF
	}
	return n, nil
}

// Socket is the socket ReadNow read, nil until it has one.
func (c *plainConn) Socket() syscall.RawConn { return c.raw }

func (c *plainConn) socket() syscall.RawConn {
	if c.raw == nil {
		if sc, ok := c.Conn.(syscall.Conn); ok {
			c.raw, _ = sc.SyscallConn() // an error: bytes above the socket, read first
		}
	}
	return c.raw
}
