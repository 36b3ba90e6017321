package directory

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

// DN is a distinguished name (RFC 4514), its most specific RDN first.
type DN []RDN

// RDN is a relative distinguished name: one or more attribute values.
type RDN []AVA

// AVA is one attribute type and value of an RDN. Type is lower-case.
type AVA struct {
	Type  string
	Value string
}

// maxDNLength bounds the string form of a DN a client may send.
const maxDNLength = 4096

// ParseDN parses the string form of a DN (RFC 4514 §3). Spaces around the
// separators are allowed, as most servers do; a value in hex (#04…) is kept
// as its bytes when they are UTF-8 and refused otherwise.
func ParseDN(s string) (DN, error) {
	if len(s) > maxDNLength {
		return nil, fmt.Errorf("DN longer than %d bytes", maxDNLength)
	}
	if strings.TrimSpace(s) == "" {
		return DN{}, nil
	}
	p := dnParser{s: s}
	var dn DN
	for {
		rdn, err := p.rdn()
		if err != nil {
			return nil, fmt.Errorf("DN %q: %w", s, err)
		}
		dn = append(dn, rdn)
		if p.done() {
			return dn, nil
		}
		if c := p.s[p.i]; c != ',' && c != ';' {
			return nil, fmt.Errorf("DN %q: expected ',' at offset %d", s, p.i)
		}
		p.i++
	}
}

type dnParser struct {
	s string
	i int
}

func (p *dnParser) done() bool { p.space(); return p.i == len(p.s) }

func (p *dnParser) space() {
	for p.i < len(p.s) && p.s[p.i] == ' ' {
		p.i++
	}
}

func (p *dnParser) rdn() (RDN, error) {
	var rdn RDN
	for {
		ava, err := p.ava()
		if err != nil {
			return nil, err
		}
		rdn = append(rdn, ava)
		if p.done() || p.s[p.i] != '+' {
			return rdn, nil
		}
		p.i++
	}
}

func (p *dnParser) ava() (AVA, error) {
	p.space()
	start := p.i
	for p.i < len(p.s) && (isAlnum(p.s[p.i]) || p.s[p.i] == '-' || p.s[p.i] == '.') {
		p.i++
	}
	typ := p.s[start:p.i]
	if err := checkAttributeType(typ); err != nil {
		return AVA{}, err
	}
	p.space()
	if p.i == len(p.s) || p.s[p.i] != '=' {
		return AVA{}, fmt.Errorf("expected '=' after %q", typ)
	}
	p.i++
	p.space()
	v, err := p.value()
	if err != nil {
		return AVA{}, fmt.Errorf("value of %s: %w", typ, err)
	}
	return AVA{Type: strings.ToLower(typ), Value: v}, nil
}

// checkAttributeType accepts a descriptor (a letter, then letters, digits
// and hyphens) or a numeric OID (RFC 4512 §1.4).
func checkAttributeType(t string) error {
	switch {
	case t == "":
		return errors.New("empty attribute type")
	case isAlpha(t[0]):
		for i := 1; i < len(t); i++ {
			if !isAlnum(t[i]) && t[i] != '-' {
				return fmt.Errorf("attribute type %q: not a descriptor", t)
			}
		}
		return nil
	}
	if !isOID(t) {
		return fmt.Errorf("attribute type %q: neither a descriptor nor an OID", t)
	}
	return nil
}

// isOID reports whether s is a numeric OID: numbers without leading zeros
// joined by dots.
func isOID(s string) bool {
	for part := range strings.SplitSeq(s, ".") {
		if part == "" || (len(part) > 1 && part[0] == '0') {
			return false
		}
		for i := 0; i < len(part); i++ {
			if part[i] < '0' || part[i] > '9' {
				return false
			}
		}
	}
	return true
}

func (p *dnParser) value() (string, error) {
	if p.i < len(p.s) && p.s[p.i] == '#' {
		start := p.i + 1
		p.i = start
		for p.i < len(p.s) && isHex(p.s[p.i]) {
			p.i++
		}
		b, err := hex.DecodeString(p.s[start:p.i])
		if err != nil || len(b) == 0 {
			return "", errors.New("bad hex string")
		}
		// The BER encoding of a string: its content is what we keep.
		if len(b) < 2 || b[1]&0x80 != 0 || int(b[1]) != len(b)-2 || !utf8.Valid(b[2:]) {
			return "", errors.New("hex value is not a short BER string")
		}
		return string(b[2:]), nil
	}
	var out []byte
	trailing := 0 // unescaped spaces at the end of out, dropped at the end
	for p.i < len(p.s) {
		c := p.s[p.i]
		switch c {
		case ',', ';', '+':
			return string(out[:len(out)-trailing]), nil
		case '"', '<', '>', '=', 0:
			return "", fmt.Errorf("character %q must be escaped", c)
		case '\\':
			p.i++
			if p.i == len(p.s) {
				return "", errors.New("escape at the end")
			}
			e := p.s[p.i]
			if isHex(e) {
				if p.i+1 == len(p.s) || !isHex(p.s[p.i+1]) {
					return "", errors.New("escape of one hex digit")
				}
				b, _ := hex.DecodeString(p.s[p.i : p.i+2])
				out = append(out, b[0])
				p.i += 2
			} else if strings.IndexByte(` "#+,;<=>\`, e) >= 0 {
				out = append(out, e)
				p.i++
			} else {
				return "", fmt.Errorf("%q cannot be escaped", e)
			}
			trailing = 0
			continue
		case ' ':
			trailing++
		default:
			trailing = 0
		}
		out = append(out, c)
		p.i++
	}
	if !utf8.Valid(out) {
		return "", errors.New("not UTF-8")
	}
	return string(out[:len(out)-trailing]), nil
}

// String is dn in RFC 4514 form, values escaped.
func (dn DN) String() string {
	var b strings.Builder
	for i, rdn := range dn {
		if i > 0 {
			b.WriteByte(',')
		}
		for j, a := range rdn {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(a.Type)
			b.WriteByte('=')
			b.WriteString(escapeDNValue(a.Value))
		}
	}
	return b.String()
}

// escapeDNValue escapes a value as RFC 4514 §2.4 requires.
func escapeDNValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case c == 0:
			b.WriteString(`\00`)
		case strings.IndexByte(`"+,;<>\=`, c) >= 0,
			(c == ' ' || c == '#') && i == 0,
			c == ' ' && i == len(v)-1:
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// Equal compares two DNs as the directory does: types exactly (they are
// lower-cased), values ignoring case (every naming attribute of the tree is
// caseIgnoreMatch).
func (dn DN) Equal(o DN) bool {
	if len(dn) != len(o) {
		return false
	}
	for i := range dn {
		if len(dn[i]) != len(o[i]) {
			return false
		}
		for j := range dn[i] {
			if dn[i][j].Type != o[i][j].Type || !strings.EqualFold(dn[i][j].Value, o[i][j].Value) {
				return false
			}
		}
	}
	return true
}

// Under reports whether dn is base or below it, and the RDNs above base.
func (dn DN) Under(base DN) (DN, bool) {
	if len(dn) < len(base) || !dn[len(dn)-len(base):].Equal(base) {
		return nil, false
	}
	return dn[:len(dn)-len(base)], true
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isAlnum(c byte) bool { return isAlpha(c) || c >= '0' && c <= '9' }
func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}
