package packet

import (
	"encoding/binary"
	"io"
	"strings"
	"unicode/utf8"
)

// decoder reads one packet body. Every read checks the bounds and returns
// a malformed-packet error naming the field when the body ends early.
type decoder struct {
	b   []byte
	off int
	v   Version
	t   Type
}

func (d *decoder) done() bool { return d.off == len(d.b) }

func (d *decoder) left() int { return len(d.b) - d.off }

func (d *decoder) short(field string) error {
	return malformed("%s ends before its %s", d.t, field)
}

func (d *decoder) byte(field string) (byte, error) {
	if d.left() < 1 {
		return 0, d.short(field)
	}
	d.off++
	return d.b[d.off-1], nil
}

func (d *decoder) uint16(field string) (uint16, error) {
	if d.left() < 2 {
		return 0, d.short(field)
	}
	d.off += 2
	return binary.BigEndian.Uint16(d.b[d.off-2:]), nil
}

// length reads the length before a string or binary field, naming the
// field only when it fails (not on every field of every packet).
func (d *decoder) length(field string) (int, error) {
	if d.left() < 2 {
		return 0, d.short(field + " length")
	}
	d.off += 2
	return int(binary.BigEndian.Uint16(d.b[d.off-2:])), nil
}

func (d *decoder) uint32(field string) (uint32, error) {
	if d.left() < 4 {
		return 0, d.short(field)
	}
	d.off += 4
	return binary.BigEndian.Uint32(d.b[d.off-4:]), nil
}

func (d *decoder) varint(field string) (int, error) {
	n := 0
	for i := 0; ; i++ {
		if d.left() < 1 {
			return 0, d.short(field)
		}
		d.off++
		done, err := varintByte(&n, i, d.b[d.off-1])
		if err != nil {
			return 0, malformed("%s: %s %v", d.t, field, err.Reason)
		}
		if done {
			return n, nil
		}
	}
}

// binary is Binary Data (MQTT 5 §1.5.6), copied out of the body.
func (d *decoder) binary(field string) ([]byte, error) {
	n, err := d.length(field)
	if err != nil {
		return nil, err
	}
	if d.left() < n {
		return nil, d.short(field)
	}
	d.off += n
	return append([]byte{}, d.b[d.off-n:d.off]...), nil
}

// string is a UTF-8 Encoded String (MQTT 5 §1.5.4, 3.1.1 §1.5.3): ill-formed
// UTF-8, the encoding of a surrogate and U+0000 make the packet malformed.
func (d *decoder) string(field string) (string, error) {
	n, err := d.length(field)
	if err != nil {
		return "", err
	}
	if d.left() < n {
		return "", d.short(field)
	}
	raw := d.b[d.off : d.off+n]
	d.off += n
	if err := checkUTF8(raw); err != nil {
		return "", malformed("%s: %s %s", d.t, field, err.Reason)
	}
	return string(raw), nil
}

func checkUTF8(b []byte) *Error {
	if !utf8.Valid(b) { // Go's decoder refuses surrogates too
		return malformed("is not valid UTF-8")
	}
	for _, c := range b {
		if c == 0 {
			return malformed("contains U+0000")
		}
	}
	return nil
}

// readVarint reads a Variable Byte Integer (MQTT 5 §1.5.5).
func readVarint(r io.ByteReader) (int, error) {
	n := 0
	for i := 0; ; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		done, verr := varintByte(&n, i, c)
		if verr != nil {
			return 0, verr
		}
		if done {
			return n, nil
		}
	}
}

// varintByte adds the i-th byte c of a Variable Byte Integer to n and says
// whether it was the last: at most four bytes, in the fewest bytes that
// carry the value (MQTT 5 §1.5.5).
func varintByte(n *int, i int, c byte) (done bool, err *Error) {
	if i == 3 && c&0x80 != 0 {
		return false, malformed("variable byte integer longer than four bytes")
	}
	*n |= int(c&0x7F) << (7 * i)
	if c&0x80 != 0 {
		return false, nil
	}
	if i > 0 && c == 0 {
		return false, malformed("variable byte integer not in its shortest form")
	}
	return true, nil
}

func varintLen(n int) int {
	switch {
	case n < 128:
		return 1
	case n < 16_384:
		return 2
	case n < 2_097_152:
		return 3
	default:
		return 4
	}
}

func appendVarint(b []byte, n int) []byte {
	for {
		c := byte(n & 0x7F)
		n >>= 7
		if n == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendUint16(b []byte, n uint16) []byte { return binary.BigEndian.AppendUint16(b, n) }

func appendUint32(b []byte, n uint32) []byte { return binary.BigEndian.AppendUint32(b, n) }

// appendString leaves out a string too long for its prefix; Append notices
// the body's length differs from its size and refuses the packet.
func appendString(b []byte, s string) []byte {
	if len(s) > 0xFFFF {
		return b
	}
	return append(appendUint16(b, uint16(len(s))), s...)
}

func appendBinary(b []byte, p []byte) []byte {
	if len(p) > 0xFFFF {
		return b
	}
	return append(appendUint16(b, uint16(len(p))), p...)
}

// validTopicName is the codec's part of MQTT 5 §4.7.3 for a PUBLISH topic
// (the UTF-8 rules are checked as for any string): no wildcard.
func validTopicName(s string) bool { return !strings.ContainsAny(s, "+#") }
