package mqtt

import (
	"crypto/tls"
	"net"
	"syscall"

	"github.com/thingid/thingid/internal/mqtt/packet"
)

// TLSConn is a TLS server connection whose idle reader waits with a
// shallow stack (issue 16). A reader blocked in crypto/tls's Conn.Read
// waits under about 4 KiB of frames (record layer, buffer, poller), so an
// idle connection's goroutine keeps a 4 KiB stack; a goroutine waiting for
// a plain TCP connection fits in the 2 KiB a goroutine starts with.
//
// Read therefore waits for the socket to be readable itself, through
// syscall.RawConn, before it calls crypto/tls, when it knows that
// crypto/tls has nothing to return without reading the socket: its last
// Read returned fewer bytes than asked (crypto/tls's plaintext is then
// empty), and every byte read from the socket so far made whole records
// that crypto/tls has taken (records, under it, never hands it a byte past
// the end of the record that byte begins). Otherwise, or when the raw
// connection cannot be waited on (it has bytes buffered above the socket,
// as a PROXY protocol reader may), Read is crypto/tls's. A read deadline
// ends the wait as it ends a read.
type TLSConn struct {
	*tls.Conn
	rec records
	// drained: crypto/tls's last Read returned fewer bytes than asked, so it
	// holds no plaintext.
	drained bool
}

// TLSServer returns a TLS server connection over raw with cfg, as
// tls.Server does.
func TLSServer(raw net.Conn, cfg *tls.Config) *TLSConn {
	// Before the first record nothing is held: even the handshake's first
	// read may wait outside crypto/tls.
	c := &TLSConn{rec: records{Conn: raw}, drained: true}
	c.Conn = tls.Server(&c.rec, cfg)
	return c
}

// Read reads application data, after waiting for the socket to be
// readable when crypto/tls holds nothing to read (see TLSConn).
func (c *TLSConn) Read(p []byte) (int, error) {
	if c.drained {
		if err := c.rec.wait(); err != nil {
			return 0, err
		}
	}
	n, err := c.Conn.Read(p)
	c.drained = n < len(p)
	return n, err
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
	raw   syscall.RawConn
}

func (r *records) Read(p []byte) (int, error) {
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
// inside a record or holds bytes read ahead (crypto/tls will read those
// first), or when the raw connection offers no socket to wait on.
func (r *records) wait() error {
	if !r.between() {
		return nil
	}
	if r.raw == nil {
		sc, ok := r.Conn.(syscall.Conn)
		if !ok {
			return nil
		}
		raw, err := sc.SyscallConn()
		if err != nil {
			return nil // bytes buffered above the socket: crypto/tls reads them
		}
		r.raw = raw
	}
	return r.raw.Read(readable)
}
