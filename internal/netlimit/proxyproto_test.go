package netlimit

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// v2Header builds a binary header: cmd, family byte, the address block and TLVs.
func v2Header(cmd, fam byte, addrs []byte, tlvs ...[]byte) []byte {
	h := append([]byte{}, proxySig...)
	h = append(h, cmd, fam, 0, 0)
	h = append(h, addrs...)
	for _, t := range tlvs {
		h = append(h, t...)
	}
	binary.BigEndian.PutUint16(h[14:], uint16(len(h)-16))
	return h
}

func tlv(typ byte, val []byte) []byte {
	return append([]byte{typ, byte(len(val) >> 8), byte(len(val))}, val...)
}

// tcp4 is the address block of src → dst over TCP/IPv4.
func tcp4(src, dst string) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	b := append(s.Addr().AsSlice(), d.Addr().AsSlice()...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, s.Port()), d.Port())
}

func tcp6(src, dst string) []byte {
	s, d := netip.MustParseAddrPort(src), netip.MustParseAddrPort(dst)
	b := append(s.Addr().AsSlice(), d.Addr().AsSlice()...)
	return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(b, s.Port()), d.Port())
}

// withCRC sets the CRC32c TLV, which must be h's last, as a sender does.
func withCRC(h []byte) []byte {
	binary.BigEndian.PutUint32(h[len(h)-4:], crc32.Checksum(h, crc32.MakeTable(crc32.Castagnoli)))
	return h
}

func TestProxyHeaders(t *testing.T) {
	good := []struct {
		name   string
		header []byte
		src    string // "" : a local connection
	}{
		{"v1 TCP4", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n"), "192.0.2.7:56324"},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 1 65535\r\n"), "[2001:db8::7]:1"},
		{"v1 UNKNOWN short", []byte("PROXY UNKNOWN\r\n"), ""},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff::1 ffff::2 65535 65535\r\n"), ""},
		{"v2 TCP4", v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:56324", "198.51.100.1:443")), "192.0.2.7:56324"},
		{"v2 TCP6", v2Header(v2Proxy, v2TCP6, tcp6("[2001:db8::7]:4000", "[2001:db8::1]:8883")), "[2001:db8::7]:4000"},
		{"v2 LOCAL (health check)", v2Header(v2Local, 0x00, nil), ""},
		{"v2 LOCAL with addresses to skip", v2Header(v2Local, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2")), ""},
		{"v2 TLVs skipped", v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"),
			tlv(0x01, []byte("h2")), tlv(0x05, bytes.Repeat([]byte{7}, 128)), tlv(0x04, nil)), "192.0.2.7:1"},
		{"v2 CRC32c matches", withCRC(v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"), tlv(tlvCRC32C, make([]byte, 4)))), "192.0.2.7:1"},
		{"v2 UNSPEC under PROXY: the real endpoints", v2Header(v2Proxy, 0x00, nil), ""},
		{"v2 UDP: the real endpoints", v2Header(v2Proxy, 0x12, tcp4("192.0.2.7:1", "198.51.100.1:2")), ""},
		{"v2 Unix stream: the real endpoints", v2Header(v2Proxy, 0x31, make([]byte, 216)), ""},
	}
	for _, tc := range good {
		t.Run(tc.name, func(t *testing.T) {
			rest := "\x16\x03\x01 the TLS client hello"
			br := bufio.NewReader(io.MultiReader(bytes.NewReader(tc.header), strings.NewReader(rest)))
			h, err := readProxyHeader(br)
			if err != nil {
				t.Fatal(err)
			}
			if tc.src == "" != h.local || (tc.src != "" && h.src != netip.MustParseAddrPort(tc.src)) {
				t.Errorf("got %+v, want source %q", h, tc.src)
			}
			if after, _ := io.ReadAll(br); string(after) != rest {
				t.Errorf("the bytes after the header are %q, want %q", after, rest)
			}
		})
	}
	badCRC := withCRC(v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"), tlv(tlvCRC32C, make([]byte, 4))))
	badCRC[16] ^= 1 // the source address changed after the checksum
	long := v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"), tlv(0xE0, make([]byte, maxV2)))
	bad := []struct {
		name, header, want string
	}{
		{"no header", "GET / HTTP/1.1\r\n\r\n", "missing"},
		{"a P but no header", "POST / HTTP/1.1\r\n\r\n", "missing"},
		{"a CR but no header", "\r\nGET / HTTP/1.1\r\n\r\n", "missing"},
		{"TLS at once", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00\x00", "missing"},
		{"empty connection", "", "ended before a header"},
		{"v1 without CRLF", "PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n", "no CRLF"},
		{"v1 too long", "PROXY TCP4 " + strings.Repeat("1", 120) + "\r\n", "no CRLF within 107"},
		{"v1 cut", "PROXY TCP4 192.0.2.7 198.51.100.1 1", "ended before CRLF"},
		{"v1 leading zero in the address", "PROXY TCP4 192.0.2.07 198.51.100.1 1 2\r\n", "is not a TCP4 address"},
		{"v1 leading zero in the port", "PROXY TCP4 192.0.2.7 198.51.100.1 01 2\r\n", "is not a port"},
		{"v1 port out of range", "PROXY TCP4 192.0.2.7 198.51.100.1 1 65536\r\n", "is not a port"},
		{"v1 IPv6 as TCP4", "PROXY TCP4 2001:db8::7 198.51.100.1 1 2\r\n", "is not a TCP4 address"},
		{"v1 IPv4 as TCP6", "PROXY TCP6 192.0.2.7 2001:db8::1 1 2\r\n", "is not a TCP6 address"},
		{"v1 zone", "PROXY TCP6 fe80::1%eth0 2001:db8::1 1 2\r\n", "is not a TCP6 address"},
		{"v1 UDP", "PROXY UDP4 192.0.2.7 198.51.100.1 1 2\r\n", "not TCP4, TCP6 or UNKNOWN"},
		{"v1 two spaces", "PROXY TCP4  192.0.2.7 198.51.100.1 1 2\r\n", "want PROXY"},
		{"v1 lower case", "PROXY tcp4 192.0.2.7 198.51.100.1 1 2\r\n", "not TCP4"},
		{"v2 version 1", string(v2Header(0x11, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"))), "not v2 LOCAL or PROXY"},
		{"v2 command 2", string(v2Header(0x22, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"))), "not v2 LOCAL or PROXY"},
		{"v2 family 4", string(v2Header(v2Proxy, 0x41, tcp4("192.0.2.7:1", "198.51.100.1:2"))), "not defined"},
		{"v2 short addresses", string(v2Header(v2Proxy, v2TCP6, tcp4("192.0.2.7:1", "198.51.100.1:2"))), "address bytes"},
		{"v2 TLV overrun", string(v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"), []byte{0x01, 0, 9, 'h'})), "overruns"},
		{"v2 TLV cut", string(v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"), []byte{0x01, 0})), "too few"},
		{"v2 CRC32c wrong", string(badCRC), "does not match"},
		{"v2 CRC32c of 2 bytes", string(v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"), tlv(tlvCRC32C, []byte{1, 2}))), "want 4"},
		{"v2 longer than accepted", string(long), "longer than"},
		{"v2 cut", string(v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2")))[:20], "ended within"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readProxyHeader(bufio.NewReader(strings.NewReader(tc.header)))
			if !errors.Is(err, ErrProxyHeader) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one that says %q", err, tc.want)
			}
		})
	}
}

// FuzzProxyHeader: no input crashes the parser, a header it accepts names
// a valid client, and it never reads past the header.
func FuzzProxyHeader(f *testing.F) {
	f.Add([]byte("PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\nGET"))
	f.Add([]byte("PROXY UNKNOWN\r\n"))
	f.Add(v2Header(v2Proxy, v2TCP6, tcp6("[2001:db8::7]:4000", "[2001:db8::1]:8883"), tlv(0x02, []byte("example.com"))))
	f.Add(withCRC(v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2"), tlv(tlvCRC32C, make([]byte, 4)))))
	f.Add(v2Header(v2Local, 0x00, nil))
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReaderSize(bytes.NewReader(in), 512)
		h, err := readProxyHeader(br)
		if err != nil {
			if !errors.Is(err, ErrProxyHeader) {
				t.Fatalf("an error that is not ErrProxyHeader: %v", err)
			}
			return
		}
		if !h.local && !h.src.Addr().IsValid() {
			t.Fatalf("accepted with no client address: %+v", h)
		}
		var size int
		if bytes.HasPrefix(in, proxySig) {
			size = 16 + int(binary.BigEndian.Uint16(in[14:]))
		} else {
			size = bytes.IndexByte(in, '\n') + 1
		}
		if rest, _ := io.ReadAll(br); !bytes.Equal(rest, in[size:]) {
			t.Fatalf("read %d bytes for a header of %d", len(in)-len(rest), size)
		}
	})
}

// proxyListener listens on 127.0.0.1 behind a limiter that trusts
// 127.0.0.1 as a proxy; connections from 127.0.0.2 are from elsewhere.
func proxyListener(t *testing.T, perAddress int) (*Limiter, net.Listener, chan net.Conn) {
	t.Helper()
	l, err := New(Options{Max: 100, Log: slog.New(slog.DiscardHandler), Registerer: prometheus.NewRegistry(),
		Proxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := l.Listen(raw, Policy{Name: "test", PerAddress: perAddress})
	t.Cleanup(func() { ln.Close() })
	got := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(got)
				return
			}
			got <- c
		}
	}()
	return l, ln, got
}

// dialFrom connects to ln from the local address ip and sends b.
func dialFrom(t *testing.T, ln net.Listener, ip string, b []byte) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Write(b); err != nil {
		t.Fatal(err)
	}
	return c
}

func accepted1(t *testing.T, got chan net.Conn) net.Conn {
	t.Helper()
	select {
	case c := <-got:
		t.Cleanup(func() { c.Close() })
		return c
	case <-time.After(10 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// refused waits until the server closes c (or resets it).
func refused(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the connection was not closed")
	}
}

// A trusted proxy's connection is the client's it names: its address, its
// per-address cap, its bytes after the header.
func TestProxiedConnectionIsTheClients(t *testing.T) {
	l, ln, got := proxyListener(t, 1)
	header := v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:56324", "198.51.100.1:443"))
	dialFrom(t, ln, "127.0.0.1", append(header, "hello"...))
	c := accepted1(t, got)
	if c.RemoteAddr().String() != "192.0.2.7:56324" {
		t.Errorf("RemoteAddr = %s, want the client's 192.0.2.7:56324", c.RemoteAddr())
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Errorf("read %q, %v after the header", buf, err)
	}
	// The client holds its cap of 1; another client behind the same proxy
	// does not share it.
	second := dialFrom(t, ln, "127.0.0.1", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 2 443\r\n"))
	refused(t, second)
	dialFrom(t, ln, "127.0.0.1", []byte("PROXY TCP4 192.0.2.8 198.51.100.1 2 443\r\n"))
	if c := accepted1(t, got); c.RemoteAddr().String() != "192.0.2.8:2" {
		t.Errorf("RemoteAddr = %s", c.RemoteAddr())
	}
	if n := counterValue(t, l.refused.WithLabelValues("test", string(ReasonAddress))); n != 1 {
		t.Errorf("refusals by address = %v, want 1", n)
	}
}

// A health check (v2 LOCAL) is the proxy's own connection, without the
// per-address cap.
func TestProxyHealthCheck(t *testing.T) {
	_, ln, got := proxyListener(t, 1)
	for range 3 {
		dialFrom(t, ln, "127.0.0.1", v2Header(v2Local, 0x00, nil))
		if c := accepted1(t, got); !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.1:") {
			t.Errorf("RemoteAddr = %s, want the proxy's", c.RemoteAddr())
		}
	}
}

// A trusted proxy's connection without a valid header is refused; one whose
// header does not come does not hold up the others.
func TestProxyWithoutHeaderIsRefused(t *testing.T) {
	l, ln, got := proxyListener(t, 10)
	dialFrom(t, ln, "127.0.0.1", nil) // silent
	plain := dialFrom(t, ln, "127.0.0.1", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"))
	refused(t, plain)
	spoof := dialFrom(t, ln, "127.0.0.1", []byte("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\n"))
	refused(t, spoof)
	dialFrom(t, ln, "127.0.0.1", []byte("PROXY TCP4 192.0.2.9 198.51.100.1 1 2\r\n"))
	if c := accepted1(t, got); c.RemoteAddr().String() != "192.0.2.9:1" {
		t.Errorf("RemoteAddr = %s", c.RemoteAddr())
	}
	if n := counterValue(t, l.refused.WithLabelValues("test", string(ReasonProxyHeader))); n < 2 {
		t.Errorf("refusals for the header = %v, want 2 (3 once the silent one is out of time)", n)
	}
}

// A peer that is not a trusted proxy and sends a header is refused at its
// first read, and keeps its own address: the header is never believed.
func TestHeaderFromUntrustedPeerIsRefused(t *testing.T) {
	l, ln, got := proxyListener(t, 10)
	for _, header := range [][]byte{
		[]byte("PROXY TCP4 192.0.2.7 198.51.100.1 1 2\r\n"),
		v2Header(v2Proxy, v2TCP4, tcp4("192.0.2.7:1", "198.51.100.1:2")),
	} {
		client := dialFrom(t, ln, "127.0.0.2", header)
		c := accepted1(t, got)
		if !strings.HasPrefix(c.RemoteAddr().String(), "127.0.0.2:") {
			t.Errorf("RemoteAddr = %s, want the peer's own", c.RemoteAddr())
		}
		if _, err := c.Read(make([]byte, 64)); !errors.Is(err, ErrProxyHeader) {
			t.Errorf("first read: %v, want a refusal", err)
		}
		refused(t, client)
	}
	if n := counterValue(t, l.refused.WithLabelValues("test", string(ReasonProxyHeader))); n != 2 {
		t.Errorf("refusals for the header = %v, want 2", n)
	}
	// Its other bytes are its own.
	dialFrom(t, ln, "127.0.0.2", []byte("hello"))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(accepted1(t, got), buf); err != nil || string(buf) != "hello" {
		t.Errorf("read %q, %v", buf, err)
	}
}

// Closing the listener ends Accept and the header reads pending.
func TestProxyListenerClose(t *testing.T) {
	_, ln, got := proxyListener(t, 10)
	silent := dialFrom(t, ln, "127.0.0.1", []byte("PROX"))
	ln.Close()
	if _, ok := <-got; ok {
		t.Error("a connection accepted after Close")
	}
	refused(t, silent)
}
