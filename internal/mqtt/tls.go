package mqtt

import (
	"crypto/tls"
	"net"
	"syscall"

	"github.com/thingid/thingid/internal/mqtt/packet"
)

// TLSConn is a TLS server connection whose idle reader can wait with a
// shallow stack (issue 16). A reader blocked in crypto/tls's Conn.Read
// waits under about 4 KiB of frames (record layer, buffer, poller), and Go
// keeps a stack that grew so while its goroutine waits; a goroutine
// waiting for a plain TCP connection fits in the 2 KiB a goroutine starts
// with.
//
// ReadNow reads what crypto/tls can return without waiting for the
// socket, and says ErrWouldWait otherwise; the MQTT core then parks the
// connection (Server.ServeConn: on Linux in its epoll set, without a
// goroutine; elsewhere WaitReadable waits for the socket through
// syscall.RawConn, outside crypto/tls, on a new goroutine). ReadNow knows that crypto/tls would
// wait because crypto/tls asks records, under it, for more bytes at a
// record's boundary with nothing read ahead: records then answers with a
// temporary error, which crypto/tls returns without failing the
// connection. Read is ReadNow and WaitReadable in turn. A read deadline
// ends the wait as it ends a read.
type TLSConn struct {
	*tls.Conn
	rec records
}

// TLSServer returns a TLS server connection over raw with cfg, as
// tls.Server does.
func TLSServer(raw net.Conn, cfg *tls.Config) *TLSConn {
	c := &TLSConn{rec: records{Conn: raw}}
	c.Conn = tls.Server(&c.rec, cfg)
	return c
}

// ErrWouldWait is ReadNow's answer when nothing can be read before the
// socket's next bytes.
var ErrWouldWait error = wouldWait{}

type wouldWait struct{}

func (wouldWait) Error() string { return "mqtt: nothing to read before the socket's next bytes" }

// Temporary tells crypto/tls that the connection is not broken (it keeps
// no error but a temporary one's).
func (wouldWait) Temporary() bool { return true }
func (wouldWait) Timeout() bool   { return false }

// ReadNow reads application data that needs no wait for the socket, or
// returns ErrWouldWait. It completes the handshake first, if needed.
func (c *TLSConn) ReadNow(p []byte) (int, error) {
	if err := c.Conn.Handshake(); err != nil {
		return 0, err
	}
	c.rec.now = true
	n, err := c.Conn.Read(p)
	c.rec.now = false
	return n, err
}

// WaitReadable returns once the socket is readable, or at once when a
// record is partly read or bytes are read ahead, or when the raw
// connection offers no socket to wait on (ReadNow then waits in crypto/tls).
func (c *TLSConn) WaitReadable() error { return c.rec.wait() }

// Socket is the socket under the connection, once ReadNow has used it
// (nil before, or when the raw connection offers none): the one it found
// empty when it said ErrWouldWait.
func (c *TLSConn) Socket() syscall.RawConn { return c.rec.raw }

// Read reads application data, waiting for the socket outside crypto/tls.
func (c *TLSConn) Read(p []byte) (int, error) {
	for {
		n, err := c.ReadNow(p)
		if err != ErrWouldWait {
			return n, err
		}
		if err := c.WaitReadable(); err != nil {
			return 0, err
		}
	}
}

// recordHeaderLen is a TLS record's header: type, version, length (RFC 8446 §5.1).
const recordHeaderLen = 5

// records is the raw connection under crypto/tls. It follows the TLS
// records of the bytes it reads (their 5-byte headers) and hands crypto/tls
// no byte past the end of the record the read began in: bytes read past it
// wait in ahead, a pooled buffer held only while they do. crypto/tls reads
// a record's header and then the rest of it, and handles a record as soon
// as it has it whole, so when records is between two records with nothing
// ahead, crypto/tls holds no raw byte either.
type records struct {
	net.Conn
	hdr   int     // bytes of the current record's header handed on, 0 between records
	left  int     // bytes of the current record after its header not yet handed on
	ahead *[]byte // read past the current record, not handed on yet; nil when none
	aoff  int     // the start of what is not handed on in ahead
	// now: a read at a record's boundary with nothing ahead, and nothing
	// on the socket, returns ErrWouldWait instead of waiting (TLSConn.ReadNow).
	now bool
	// The socket, once asked for (socket): raw, and check, which sets
	// ready to whether it has something to read.
	raw   syscall.RawConn
	check func(fd uintptr)
	ready bool
}

func (r *records) Read(p []byte) (int, error) {
	if r.now && r.between() && !r.readable() {
		return 0, ErrWouldWait
	}
	if r.ahead != nil {
		rest := (*r.ahead)[r.aoff:]
		n := r.take(rest[:min(len(rest), len(p))])
		copy(p, rest[:n])
		if r.aoff += n; r.aoff == len(*r.ahead) {
			packet.PutBuffer(r.ahead)
			r.ahead = nil
		}
		return n, nil
	}
	n, err := r.Conn.Read(p)
	k := r.take(p[:n])
	if k < n {
		r.ahead = packet.GetBuffer(n - k)
		*r.ahead = append(*r.ahead, p[k:n]...)
		r.aoff = 0
	}
	return k, err
}

// take follows the records through b, the next bytes of the stream, and
// returns how many of them belong to the current record: all of b, or up
// to the current record's end.
func (r *records) take(b []byte) int {
	for i := 0; i < len(b); {
		if r.hdr < recordHeaderLen {
			switch r.hdr {
			case 3:
				r.left = int(b[i]) << 8
			case 4:
				r.left |= int(b[i])
			}
			r.hdr++
			i++
			if r.hdr == recordHeaderLen && r.left == 0 {
				r.hdr = 0
				return i
			}
			continue
		}
		m := min(r.left, len(b)-i)
		i += m
		if r.left -= m; r.left == 0 {
			r.hdr = 0
			return i
		}
	}
	return len(b)
}

// between says that every byte read so far was handed on and ends a record.
func (r *records) between() bool { return r.hdr == 0 && r.ahead == nil }

// wait returns once the socket is readable, or at once when records is
// inside a record or holds bytes read ahead (crypto/tls reads those
// first), or when the raw connection offers no socket to wait on: a
// proxied connection whose bytes after the PROXY header are still
// buffered above the socket, or one that is not a socket.
func (r *records) wait() error {
	if !r.between() || !r.socket() {
		return nil
	}
	return r.raw.Read(readable)
}

// readable says whether the socket has something to read now (true when
// it cannot tell: the read that follows then finds out).
func (r *records) readable() bool {
	if !r.socket() {
		return true
	}
	r.ready = true // if Control fails (closed), the read says why
	r.raw.Control(r.check)
	return r.ready
}

// socket says whether the raw connection's socket can be waited on, and
// keeps it.
func (r *records) socket() bool {
	if r.raw != nil {
		return true
	}
	sc, ok := r.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false // bytes buffered above the socket: crypto/tls reads them
	}
	r.raw = raw
	r.check = func(fd uintptr) { r.ready = readable(fd) }
	return true
}
