// Package mqtttest is a raw MQTT client for tests, which sends and reads
// packets one by one so that a test sees what a server sends byte for byte,
// and the conformance suite every MQTT server of thingid must pass. It is
// for tests only.
package mqtttest

import (
	"bufio"
	"errors"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
)

// Conn is one client connection speaking version V.
type Conn struct {
	T  testing.TB
	NC net.Conn
	V  packet.Version
	r  *bufio.Reader
}

// Dial connects to addr over TCP; the connection closes with the test.
func Dial(t testing.TB, addr string, v packet.Version) *Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return New(t, nc, v)
}

// New speaks version v over nc, which closes with the test.
func New(t testing.TB, nc net.Conn, v packet.Version) *Conn {
	t.Cleanup(func() { nc.Close() })
	return &Conn{T: t, NC: nc, V: v, r: bufio.NewReader(nc)}
}

// Connect sends pk and expects a CONNACK accepting it.
func (c *Conn) Connect(pk *packet.Connect) *packet.Connack {
	c.T.Helper()
	pk.Version = c.V
	c.Send(pk)
	ack, ok := c.Read().(*packet.Connack)
	if !ok || ack.Code != packet.Success {
		c.T.Fatalf("CONNACK %+v", ack)
	}
	return ack
}

// Send encodes and writes p.
func (c *Conn) Send(p packet.Packet) {
	c.T.Helper()
	b, err := packet.Append(nil, c.V, p)
	if err != nil {
		c.T.Fatal(err)
	}
	c.Write(b)
}

// Write writes raw bytes.
func (c *Conn) Write(b []byte) {
	c.T.Helper()
	if _, err := c.NC.Write(b); err != nil {
		c.T.Fatal(err)
	}
}

// ReadRaw reads one packet's bytes, waiting 5 s at most.
func (c *Conn) ReadRaw() ([]byte, error) {
	c.NC.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := packet.ReadHeader(c.r)
	if err != nil {
		return nil, err
	}
	out := []byte{byte(h.Type)<<4 | h.Flags}
	for n := h.Remaining; ; n >>= 7 {
		if n < 0x80 {
			out = append(out, byte(n))
			break
		}
		out = append(out, byte(n&0x7F)|0x80)
	}
	body := make([]byte, h.Remaining)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, err
	}
	return append(out, body...), nil
}

// Read reads and decodes one packet.
func (c *Conn) Read() packet.Packet {
	c.T.Helper()
	b, err := c.ReadRaw()
	if err != nil {
		c.T.Fatalf("reading a packet: %v", err)
	}
	h, n, _ := packet.ParseHeader(b)
	p, err := packet.Decode(c.V, h, b[n:], 0)
	if err != nil {
		c.T.Fatalf("decoding % x: %v", b, err)
	}
	return p
}

// Closed expects the connection closed with nothing more sent, as an
// MQTT 3.1.1 server must end one.
func (c *Conn) Closed() {
	c.T.Helper()
	b, err := c.ReadRaw()
	if !errors.Is(err, io.EOF) && !(err != nil && strings.Contains(err.Error(), "connection reset")) {
		c.T.Fatalf("got % x, %v; want the connection closed", b, err)
	}
}

// Disconnected expects DISCONNECT with code, then the connection closed.
func (c *Conn) Disconnected(code packet.ReasonCode) *packet.Disconnect {
	c.T.Helper()
	got := c.Read()
	d, ok := got.(*packet.Disconnect)
	if !ok || d.Code != code {
		c.T.Fatalf("got %T %+v, want DISCONNECT %#x", got, got, code)
	}
	c.Closed()
	return d
}

// Subscribe subscribes and checks the SUBACK's codes.
func (c *Conn) Subscribe(id uint16, want []packet.ReasonCode, fs ...packet.Subscription) {
	c.T.Helper()
	c.Send(&packet.Subscribe{PacketID: id, Filters: fs})
	got := c.Read()
	a, ok := got.(*packet.SubAck)
	if !ok || a.PacketID != id || !reflect.DeepEqual(a.Codes, want) {
		c.T.Fatalf("got %T %+v, want SUBACK codes %v", got, got, want)
	}
}

// Publication reads a PUBLISH.
func (c *Conn) Publication() *packet.Publish {
	c.T.Helper()
	got := c.Read()
	p, ok := got.(*packet.Publish)
	if !ok {
		c.T.Fatalf("got %T %+v, want PUBLISH", got, got)
	}
	return p
}

// Sub is a subscription to f at qos.
func Sub(f string, qos byte) packet.Subscription { return packet.Subscription{Filter: f, QoS: qos} }
