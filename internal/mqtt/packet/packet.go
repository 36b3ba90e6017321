// Package packet is the MQTT 3.1.1 and 5.0 codec: control packets decoded
// from and encoded to the wire, with every rule the specifications give a
// receiver for a packet on its own; it knows nothing of sessions.
package packet

import (
	"fmt"
	"io"
)

// Version is the protocol level a connection speaks (CONNECT's Protocol
// Level byte).
type Version byte

const (
	V311 Version = 4 // MQTT 3.1.1
	V5   Version = 5 // MQTT 5.0
)

// Type is a control packet type (the fixed header's high nibble).
type Type byte

// MQTT 5 §2.1.2, Table 2-1 (3.1.1 §2.2.1 lacks AUTH).
const (
	CONNECT     Type = 1
	CONNACK     Type = 2
	PUBLISH     Type = 3
	PUBACK      Type = 4
	PUBREC      Type = 5
	PUBREL      Type = 6
	PUBCOMP     Type = 7
	SUBSCRIBE   Type = 8
	SUBACK      Type = 9
	UNSUBSCRIBE Type = 10
	UNSUBACK    Type = 11
	PINGREQ     Type = 12
	PINGRESP    Type = 13
	DISCONNECT  Type = 14
	AUTH        Type = 15
)

var typeNames = [16]string{"RESERVED", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL",
	"PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "AUTH"}

func (t Type) String() string { return typeNames[t&0x0F] }

// MaxRemaining is the largest Remaining Length a Variable Byte Integer can
// carry (MQTT 5 §1.5.5: 268,435,455, 256 MB).
const MaxRemaining = 268_435_455

// Packet is one decoded control packet.
type Packet interface {
	Type() Type
	// size is the body's length (variable header and payload) for v.
	size(v Version) int
	// appendBody appends the body for v; its length is size(v).
	appendBody(v Version, b []byte) []byte
	// flags is the fixed header's low nibble.
	flags() byte
}

// Header is a fixed header (MQTT 5 §2.1.1).
type Header struct {
	Type      Type
	Flags     byte
	Remaining int // the body's length
}

// Size is the whole packet's length: fixed header and body, the figure
// Maximum Packet Size limits (MQTT 5 §3.1.2.11.4).
func (h Header) Size() int { return 1 + varintLen(h.Remaining) + h.Remaining }

// ReadHeader reads a fixed header. It reads byte by byte, so a connection
// can read headers straight from a small buffer and get a body buffer of
// the right size only once it knows the length. io.EOF before the first
// byte is returned as is (the peer closed between packets); anything short
// after it is io.ErrUnexpectedEOF.
func ReadHeader(r io.ByteReader) (Header, error) {
	first, err := r.ReadByte()
	if err != nil {
		return Header{}, err
	}
	h := Header{Type: Type(first >> 4), Flags: first & 0x0F}
	n, err := readVarint(r)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	h.Remaining = n
	return h, err
}

// ParseHeader parses a fixed header at the start of b and returns its
// length; io.ErrUnexpectedEOF when b holds only part of one. It is
// ReadHeader for a connection that reads into its own buffer.
func ParseHeader(b []byte) (Header, int, error) {
	if len(b) == 0 {
		return Header{}, 0, io.ErrUnexpectedEOF
	}
	h := Header{Type: Type(b[0] >> 4), Flags: b[0] & 0x0F}
	for i := 0; ; i++ {
		if 1+i >= len(b) {
			return Header{}, 0, io.ErrUnexpectedEOF
		}
		done, err := varintByte(&h.Remaining, i, b[1+i])
		if err != nil {
			return Header{}, 0, err
		}
		if done {
			return h, 2 + i, nil
		}
	}
}

// Check applies the fixed-header rules that do not need the body: the
// reserved type, AUTH in 3.1.1, the flags (MQTT 5 §2.1.3: any other value
// is malformed), and maxSize (0 for none), the Maximum Packet Size the
// server announced (§3.2.2.3.6: a larger packet is a protocol error the
// server answers with 0x95). A connection calls it before reading the
// body, so an oversized packet costs no buffer; Decode calls it again.
func (h Header) Check(v Version, maxSize int) error {
	switch {
	case h.Type == 0:
		return malformed("packet type 0 is reserved")
	case h.Type == AUTH && v != V5:
		return malformed("AUTH does not exist in MQTT 3.1.1")
	case maxSize > 0 && h.Size() > maxSize:
		return &Error{Code: PacketTooLarge, Reason: fmt.Sprintf("%s of %d bytes exceeds the maximum packet size %d", h.Type, h.Size(), maxSize)}
	}
	want := byte(0)
	switch h.Type {
	case PUBLISH:
		if h.Flags&0x06 == 0x06 {
			return malformed("PUBLISH with QoS 3")
		}
		return nil
	case PUBREL, SUBSCRIBE, UNSUBSCRIBE:
		want = 0x02
	}
	if h.Flags != want {
		return malformed("%s with fixed header flags %04b, must be %04b", h.Type, h.Flags, want)
	}
	return nil
}

// Decode decodes the body of the packet h heads, for a connection speaking
// v that announced maxSize as its Maximum Packet Size (0 for none). The
// CONNECT packet is decoded with the version it names (DecodeConnect).
// Decode keeps nothing of body: the caller may reuse it.
func Decode(v Version, h Header, body []byte, maxSize int) (Packet, error) {
	if err := h.Check(v, maxSize); err != nil {
		return nil, err
	}
	if len(body) != h.Remaining {
		return nil, malformed("%s body of %d bytes, remaining length says %d", h.Type, len(body), h.Remaining)
	}
	d := &decoder{b: body, v: v, t: h.Type}
	var p Packet
	var err error
	switch h.Type {
	case CONNECT:
		return nil, protocolErr("a second CONNECT") // MQTT 5 §3.1.0
	case CONNACK:
		p, err = d.connack()
	case PUBLISH:
		p, err = d.publish(h.Flags)
	case PUBACK, PUBREC, PUBREL, PUBCOMP:
		p, err = d.ack()
	case SUBSCRIBE:
		p, err = d.subscribe()
	case SUBACK, UNSUBACK:
		p, err = d.subAck()
	case UNSUBSCRIBE:
		p, err = d.unsubscribe()
	case PINGREQ, PINGRESP:
		p = &Ping{Response: h.Type == PINGRESP}
	case DISCONNECT:
		p, err = d.disconnect()
	case AUTH:
		p, err = d.auth()
	}
	if err != nil {
		return nil, err
	}
	if !d.done() {
		return nil, malformed("%d bytes after the end of %s", len(d.b)-d.off, h.Type)
	}
	return p, nil
}

// DecodeConnect decodes a CONNECT body: the first packet of a connection,
// which names the version the rest of it speaks. With an error, the Connect
// returned is nil or carries the Version alone: a server answers a refused
// CONNECT in the CONNACK form that version reads.
func DecodeConnect(h Header, body []byte, maxSize int) (*Connect, error) {
	if h.Type != CONNECT {
		return nil, protocolErr("the first packet is %s, not CONNECT", h.Type) // MQTT 5 §3.1
	}
	if err := h.Check(V5, maxSize); err != nil {
		return nil, err
	}
	if len(body) != h.Remaining {
		return nil, malformed("CONNECT body of %d bytes, remaining length says %d", len(body), h.Remaining)
	}
	d := &decoder{b: body, t: CONNECT}
	c, err := d.connect()
	if err != nil {
		return c, err
	}
	if !d.done() {
		return nil, malformed("%d bytes after the end of CONNECT", len(d.b)-d.off)
	}
	return c, nil
}

// Size is the length of p encoded for v, fixed header included.
func Size(v Version, p Packet) int {
	n := p.size(v)
	return 1 + varintLen(n) + n
}

// Append appends p encoded for v to b. It fails only for a packet too large
// for any MQTT connection or with a field too long for its length prefix.
func Append(b []byte, v Version, p Packet) ([]byte, error) {
	n := p.size(v)
	if n > MaxRemaining {
		return b, &Error{Code: PacketTooLarge, Reason: fmt.Sprintf("%s of %d bytes", p.Type(), n)}
	}
	b = append(b, byte(p.Type())<<4|p.flags())
	b = appendVarint(b, n)
	start := len(b)
	b = p.appendBody(v, b)
	if len(b)-start != n {
		// appendString and appendBinary leave out a field over 65,535
		// bytes, which no length prefix can carry.
		return b[:start-1-varintLen(n)], &Error{Code: PacketTooLarge, Reason: fmt.Sprintf("%s has a field over 65535 bytes", p.Type())}
	}
	return b, nil
}
