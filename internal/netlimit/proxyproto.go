package netlimit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"strconv"
	"strings"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): a
// header a load balancer in TCP mode puts before the client's bytes, naming
// the client's address. Only a peer in Options.Proxies may send one, and
// such a peer must (§2: the receiver must not guess whether it is there).

// proxySig is the v2 signature (§2.2); v1 headers start with "PROXY " (§2.1).
var proxySig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	// maxV1 is the longest v1 line with its CRLF (§2.1: 107 bytes).
	maxV1 = 107
	// maxV2 bounds a v2 header: 16 bytes, the addresses (216 at most, for
	// Unix sockets) and TLVs. The format allows 64 KiB; a load balancer's
	// TLVs (ALPN, authority, unique id, TLS details) take a few hundred.
	maxV2 = 16 + 1024
)

// ErrProxyHeader is wrapped by every refusal of a PROXY protocol header.
var ErrProxyHeader = errors.New("PROXY protocol header")

// proxyHeader is what a header says.
type proxyHeader struct {
	// local: the proxy's own connection (v2 LOCAL, a health check; v1
	// UNKNOWN; a family thingid does not use), whose real endpoints count.
	local bool
	src   netip.AddrPort
}

func headerError(format string, a ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrProxyHeader}, a...)...)
}

// readProxyHeader reads one header from r and nothing after it that r has
// not buffered.
func readProxyHeader(r *bufio.Reader) (proxyHeader, error) {
	// The first byte tells the version (§2.2), so a connection that starts
	// otherwise is refused at once, not when more bytes came.
	first, err := r.Peek(1)
	if err != nil {
		return proxyHeader{}, headerError("connection ended before a header: %w", err)
	}
	switch first[0] {
	case proxySig[0]:
		start, err := r.Peek(len(proxySig))
		if bytes.Equal(start, proxySig) {
			return readV2(r)
		}
		if err != nil {
			return proxyHeader{}, headerError("connection ended before a header was complete: %w", err)
		}
	case 'P':
		return readV1(r)
	}
	start, _ := r.Peek(r.Buffered())
	return proxyHeader{}, headerError("missing (the connection starts with %q)", start[:min(len(start), 8)])
}

// readV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or "PROXY UNKNOWN…\r\n".
func readV1(r *bufio.Reader) (proxyHeader, error) {
	var line []byte
	for len(line) < maxV1 {
		b, err := r.ReadByte()
		if err != nil {
			return proxyHeader{}, headerError("v1: connection ended before CRLF: %w", err)
		}
		line = append(line, b)
		if b == '\n' {
			break
		}
	}
	if !bytes.HasPrefix(line, []byte("PROXY ")) {
		return proxyHeader{}, headerError("missing (the connection starts with %q)", line[:min(len(line), 8)])
	}
	if !bytes.HasSuffix(line, []byte("\r\n")) {
		return proxyHeader{}, headerError("v1: no CRLF within %d bytes", maxV1)
	}
	return parseV1(string(line[:len(line)-2]))
}

func parseV1(line string) (proxyHeader, error) {
	f := strings.Split(line, " ")
	if len(f) >= 2 && f[0] == "PROXY" && f[1] == "UNKNOWN" {
		// §2.1: the rest of the line is ignored; the real endpoints count.
		return proxyHeader{local: true}, nil
	}
	if len(f) != 6 || f[0] != "PROXY" {
		return proxyHeader{}, headerError("v1: want PROXY TCP4|TCP6 <src> <dst> <sport> <dport>, got %q", line)
	}
	src, err := v1Addr(f[1], f[2])
	if err != nil {
		return proxyHeader{}, err
	}
	if _, err := v1Addr(f[1], f[3]); err != nil {
		return proxyHeader{}, err
	}
	sport, err := v1Port(f[4])
	if err != nil {
		return proxyHeader{}, err
	}
	if _, err := v1Port(f[5]); err != nil {
		return proxyHeader{}, err
	}
	return proxyHeader{src: netip.AddrPortFrom(src, sport)}, nil
}

func v1Addr(family, s string) (netip.Addr, error) {
	if family != "TCP4" && family != "TCP6" {
		return netip.Addr{}, headerError("v1: protocol %q is not TCP4, TCP6 or UNKNOWN", family)
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" || a.Is4() != (family == "TCP4") {
		return netip.Addr{}, headerError("v1: %q is not a %s address", s, family)
	}
	return a, nil
}

// v1Port: a decimal in 0..65535 without leading zeroes (§2.1).
func v1Port(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || (len(s) > 1 && s[0] == '0') {
		return 0, headerError("v1: %q is not a port", s)
	}
	return uint16(n), nil
}

// v2 commands, families and TLV types (§2.2).
const (
	v2Local     = 0x20
	v2Proxy     = 0x21
	v2TCP4      = 0x11
	v2TCP6      = 0x21
	tlvCRC32C   = 0x03
	v2FixedSize = 16
)

// readV2 parses a binary header; the addresses of a family other than TCP
// over IPv4 or IPv6 are skipped, and the real endpoints count (§2.2: a
// receiver falls back to UNSPEC for what it does not implement).
func readV2(r *bufio.Reader) (proxyHeader, error) {
	var fixed [v2FixedSize]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return proxyHeader{}, headerError("v2: connection ended within the header: %w", err)
	}
	n := int(binary.BigEndian.Uint16(fixed[14:]))
	if v2FixedSize+n > maxV2 {
		return proxyHeader{}, headerError("v2: %d bytes is longer than the %d accepted", v2FixedSize+n, maxV2)
	}
	buf := make([]byte, v2FixedSize+n)
	copy(buf, fixed[:])
	if _, err := io.ReadFull(r, buf[v2FixedSize:]); err != nil {
		return proxyHeader{}, headerError("v2: connection ended within the header: %w", err)
	}
	return parseV2(buf)
}

// addressBytes is the length of the addresses of each family and protocol
// byte (§2.2); only TCP over IPv4 and IPv6 name a client thingid counts.
var addressBytes = map[byte]int{
	0x00:   0,            // UNSPEC
	v2TCP4: 12, 0x12: 12, // TCP, UDP over IPv4
	v2TCP6: 36, 0x22: 36, // TCP, UDP over IPv6
	0x31: 216, 0x32: 216, // Unix stream, datagram
}

// parseV2 parses a whole binary header (signature included).
func parseV2(h []byte) (proxyHeader, error) {
	cmd, fam, body := h[12], h[13], h[v2FixedSize:]
	addrLen, ok := addressBytes[fam]
	switch {
	case cmd != v2Local && cmd != v2Proxy:
		return proxyHeader{}, headerError("v2: version and command byte %#x is not v2 LOCAL or PROXY", cmd)
	case !ok:
		return proxyHeader{}, headerError("v2: family and protocol byte %#x is not defined", fam)
	case cmd == v2Proxy && len(body) < addrLen:
		return proxyHeader{}, headerError("v2: %d address bytes, want %d", len(body), addrLen)
	case cmd == v2Local:
		// §2.2: a connection of the proxy itself (a health check); its
		// addresses, if any, are skipped with the TLVs unread.
		return proxyHeader{local: true}, nil
	}
	if err := checkTLVs(h, v2FixedSize+addrLen); err != nil {
		return proxyHeader{}, err
	}
	switch fam {
	case v2TCP4:
		src := netip.AddrFrom4([4]byte(body[0:4]))
		return proxyHeader{src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[8:]))}, nil
	case v2TCP6:
		src := netip.AddrFrom16([16]byte(body[0:16]))
		return proxyHeader{src: netip.AddrPortFrom(src, binary.BigEndian.Uint16(body[32:]))}, nil
	}
	// Another family: the real endpoints count (§2.2, UNSPEC fallback).
	return proxyHeader{local: true}, nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// checkTLVs walks the TLVs from off to the end of h: each must fit, and a
// CRC32c one must match the header (§2.2.3).
func checkTLVs(h []byte, off int) error {
	for off < len(h) {
		if len(h)-off < 3 {
			return headerError("v2: %d bytes left after the TLVs, too few for one", len(h)-off)
		}
		typ, n := h[off], int(binary.BigEndian.Uint16(h[off+1:]))
		val := off + 3
		if len(h)-val < n {
			return headerError("v2: TLV %#x of %d bytes overruns the header", typ, n)
		}
		if typ == tlvCRC32C {
			if n != 4 {
				return headerError("v2: CRC32c TLV of %d bytes, want 4", n)
			}
			want := binary.BigEndian.Uint32(h[val:])
			zeroed := bytes.Clone(h)
			clear(zeroed[val : val+4])
			if got := crc32.Checksum(zeroed, castagnoli); got != want {
				return headerError("v2: CRC32c %#08x does not match the header's %#08x", want, got)
			}
		}
		off = val + n
	}
	return nil
}
