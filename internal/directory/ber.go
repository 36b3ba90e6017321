package directory

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// The framing and decoding of LDAP messages are thingid's own: one
// LDAPMessage is read whole, within Limits.MaxMessageBytes, its shape
// (definite lengths only, nesting depth, number of elements) is checked
// by walkBER, and decodeBER builds asn1-ber packets from it, which the
// decoders of the operations read. asn1-ber only encodes responses: its
// decoder re-encodes every element into its parent's Data (a sixth of an
// equality search's CPU went there), and its bounds are process-wide
// variables shared with every other user of the module.

// errFraming: the byte stream is not a sequence of LDAP messages; the
// session cannot go on (RFC 4511 §4.1.1: Notice of Disconnection, protocolError).
var errFraming = errors.New("malformed LDAP message")

// tagSequence is the universal, constructed SEQUENCE tag of an LDAPMessage.
const tagSequence = 0x30

// maxDepth bounds the nesting of one message: an LDAPMessage nests its
// search filter five levels deep, and a filter nests at most maxFilterDepth
// levels (two BER levels per level at worst, a substring filter).
const maxDepth = 8 + 2*maxFilterDepth

// maxElements bounds the BER elements of one message: a message of small
// elements would otherwise cost asn1-ber a packet (about 200 bytes) per two
// bytes read.
const maxElements = 4096

// readMessage reads one LDAPMessage (its tag, length and content) from r.
// A message longer than max, an indefinite length (RFC 4511 §5.1 forbids it)
// or a tag other than SEQUENCE is errFraming; a clean end of stream before
// the first byte is io.EOF.
func readMessage(r *bufio.Reader, max int) ([]byte, error) {
	tag, err := r.ReadByte()
	if err != nil {
		return nil, err
	}
	if tag != tagSequence {
		return nil, fmt.Errorf("%w: tag 0x%02x is not a SEQUENCE", errFraming, tag)
	}
	first, err := r.ReadByte()
	if err != nil {
		return nil, unexpected(err)
	}
	head := []byte{tag, first}
	length := int(first)
	if first&0x80 != 0 {
		n := int(first & 0x7f)
		if n == 0 {
			return nil, fmt.Errorf("%w: indefinite length", errFraming)
		}
		if n > 4 {
			return nil, fmt.Errorf("%w: length of %d bytes", errFraming, n)
		}
		length = 0
		for range n {
			b, err := r.ReadByte()
			if err != nil {
				return nil, unexpected(err)
			}
			head = append(head, b)
			length = length<<8 | int(b)
		}
	}
	if length > max-len(head) {
		return nil, fmt.Errorf("%w: %d bytes, more than the %d a message may have", errFraming, length+len(head), max)
	}
	// The buffer grows with the bytes received, to twice what came, not to
	// the length announced: a few bytes would otherwise hold max for the
	// read timeout.
	total := len(head) + length
	msg := append(make([]byte, 0, min(total, 4<<10)), head...)
	for len(msg) < total {
		if len(msg) == cap(msg) {
			msg = slices.Grow(msg, min(total, 2*len(msg))-len(msg))
		}
		n, err := r.Read(msg[len(msg):min(cap(msg), total)])
		msg = msg[:len(msg)+n]
		if err != nil && len(msg) < total {
			return nil, unexpected(err)
		}
	}
	return msg, nil
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// walkBER checks that b is exactly one BER element whose every length is
// definite and fits its parent, nested at most maxDepth deep, with at most
// maxElements elements in all. It never recurses: the depth is counted on
// an explicit stack of the ends of open constructed elements.
func walkBER(b []byte) error {
	_, err := countBER(b)
	return err
}

// countBER is walkBER that also says how many elements b has.
func countBER(b []byte) (int, error) {
	var ends [maxDepth + 1]int
	depth, elements, pos := 0, 0, 0
	ends[0] = len(b)
	for {
		for depth > 0 && pos == ends[depth] {
			depth--
		}
		if pos == ends[depth] && depth == 0 {
			if elements == 0 {
				return 0, fmt.Errorf("%w: empty", errFraming)
			}
			return elements, nil
		}
		if depth == 0 && elements > 0 {
			return 0, fmt.Errorf("%w: bytes after the message", errFraming)
		}
		elements++
		if elements > maxElements {
			return 0, fmt.Errorf("%w: more than %d elements", errFraming, maxElements)
		}
		tag, hdr, length, err := header(b[pos:ends[depth]])
		if err != nil {
			return 0, err
		}
		pos += hdr
		if length > ends[depth]-pos {
			return 0, fmt.Errorf("%w: an element longer than what contains it", errFraming)
		}
		if tag&0x20 == 0 { // primitive
			pos += length
			continue
		}
		if depth == maxDepth {
			return 0, fmt.Errorf("%w: nested more than %d deep", errFraming, maxDepth)
		}
		depth++
		ends[depth] = pos + length
	}
}

// decodeBER decodes b, one BER element, into the packet tree the
// decoders read: each element's class, type and tag, its children when it
// is constructed, and its content octets as Data (sharing b's memory).
// Universal types are not interpreted: the decoders check the tags they
// expect and read the content themselves.
func decodeBER(b []byte) (*ber.Packet, error) {
	n, err := countBER(b)
	if err != nil {
		return nil, err
	}
	// The packets and their buffers in two allocations, not two each.
	a := &packets{ps: make([]ber.Packet, n), bufs: make([]bytes.Buffer, n)}
	p, _ := a.element(b)
	return p, nil
}

// packets holds the packets of one message, taken in order.
type packets struct {
	ps   []ber.Packet
	bufs []bytes.Buffer
	used int
}

// element decodes the element at the start of b, which countBER accepted
// (so its lengths fit and it nests at most maxDepth deep), and returns
// the bytes after it.
func (a *packets) element(b []byte) (*ber.Packet, []byte) {
	tag, n, length, _ := header(b)
	content := b[n : n+length]
	p, buf := &a.ps[a.used], &a.bufs[a.used]
	a.used++
	*buf = *bytes.NewBuffer(content)
	p.Identifier = ber.Identifier{ClassType: ber.Class(tag & 0xc0), TagType: ber.Type(tag & 0x20), Tag: ber.Tag(tag & 0x1f)}
	p.Data = buf
	if p.TagType == ber.TypeConstructed {
		for rest := content; len(rest) > 0; {
			var child *ber.Packet
			child, rest = a.element(rest)
			p.Children = append(p.Children, child)
		}
	}
	return p, b[n+length:]
}

// header decodes the identifier and length octets at the start of b.
// Multi-byte tags (tag number 31) do not occur in LDAP and are refused.
func header(b []byte) (tag byte, n, length int, err error) {
	if len(b) < 2 {
		return 0, 0, 0, fmt.Errorf("%w: truncated element", errFraming)
	}
	tag = b[0]
	if tag&0x1f == 0x1f {
		return 0, 0, 0, fmt.Errorf("%w: multi-byte tag", errFraming)
	}
	first := b[1]
	if first&0x80 == 0 {
		return tag, 2, int(first), nil
	}
	k := int(first & 0x7f)
	switch {
	case k == 0:
		return 0, 0, 0, fmt.Errorf("%w: indefinite length", errFraming)
	case k > 4:
		return 0, 0, 0, fmt.Errorf("%w: length of %d bytes", errFraming, k)
	case len(b) < 2+k:
		return 0, 0, 0, fmt.Errorf("%w: truncated length", errFraming)
	}
	for _, c := range b[2 : 2+k] {
		length = length<<8 | int(c)
	}
	return tag, 2 + k, length, nil
}
