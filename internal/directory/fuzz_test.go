package directory

import (
	"bufio"
	"bytes"
	"testing"
)

// FuzzDecodeMessage feeds the framing and the message decoder arbitrary
// bytes: they must never panic, never accept a message over the size
// limit, and a filter they accept must stay within the depth limit.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(searchMessage(present("objectClass")))
	f.Add(searchMessage(nested(present("cn"), 5)))
	f.Add(envelope(7, startTLSRequest()))
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 8 << 10
		msg, err := readMessage(bufio.NewReader(bytes.NewReader(b)), max)
		if err != nil {
			return
		}
		if len(msg) > max {
			t.Fatalf("read %d bytes, over the limit", len(msg))
		}
		m, err := decodeMessage(msg)
		if err != nil {
			return
		}
		if s, ok := m.op.(*searchRequest); ok && depth(s.filter) > maxFilterDepth+1 {
			t.Fatalf("filter %s deeper than the limit", s.filter)
		}
	})
}

func depth(f *filter) int {
	d := 0
	for _, c := range f.children {
		d = max(d, depth(c))
	}
	return d + 1
}

// FuzzParseDN: a DN that parses prints to a string that parses to the same DN.
func FuzzParseDN(f *testing.F) {
	for _, s := range []string{"uid=alice,ou=people,dc=thingid,dc=test", `cn=a\,b+sn=c\20,dc=x`, `cn=#0403616263`, "1.2.3=x", ` cn = x , dc = y `, `cn=\e2\82\ac`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dn, err := ParseDN(s)
		if err != nil {
			return
		}
		again, err := ParseDN(dn.String())
		if err != nil {
			t.Fatalf("%q parsed, its string %q does not: %v", s, dn.String(), err)
		}
		if !again.Equal(dn) || again.String() != dn.String() {
			t.Fatalf("%q → %q → %q", s, dn.String(), again.String())
		}
	})
}
