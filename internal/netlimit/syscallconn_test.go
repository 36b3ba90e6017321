package netlimit

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
)

// A reader that waits on the socket (mqtt.TLSConn) gets it only while no
// byte read from it is buffered above it: a trusted proxy's connection
// whose first bytes came with the PROXY header gets it once they are read.
func TestSyscallConnOnlyWithNothingBuffered(t *testing.T) {
	_, server := tcpPair(t)
	// As admitProxied reads the header: here the client's first bytes
	// came with it.
	br := bufio.NewReader(strings.NewReader("PROXY UNKNOWN\r\nhello"))
	if _, err := readProxyHeader(br); err != nil {
		t.Fatal(err)
	}
	c := &conn{Conn: &proxiedConn{Conn: server, buffered: br, remote: server.RemoteAddr()}}
	if _, err := c.SyscallConn(); err == nil {
		t.Fatal("the socket offered while bytes are buffered above it")
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := c.SyscallConn(); err != nil {
		t.Fatalf("nothing buffered any more: %v", err)
	}

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if _, err := (&conn{Conn: p1}).SyscallConn(); err == nil {
		t.Fatal("a pipe has no socket")
	}
}

// A connection whose first bytes the PROXY header check has not read yet
// offers no socket: a reader of the socket itself (mqtt.Plain) would read
// them past the check.
func TestSyscallConnOnlyAfterTheHeaderCheck(t *testing.T) {
	client, server := tcpPair(t)
	c := &conn{Conn: server, checkHeader: true}
	if _, err := c.SyscallConn(); err == nil {
		t.Fatal("the socket offered before the first bytes were checked")
	}
	client.Write([]byte("MQTT"))
	got := make([]byte, 4)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "MQTT" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := c.SyscallConn(); err != nil {
		t.Fatalf("the first bytes checked: %v", err)
	}
}

// tcpPair is both ends of a TCP connection on 127.0.0.1, closed when the
// test ends.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}
