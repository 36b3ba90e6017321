package directory

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/store"
)

// FuzzDecodeMessage feeds the framing and the message decoder arbitrary
// bytes: they must never panic, never accept a message over the size
// limit, and a filter they accept must stay within the depth limit.
func FuzzDecodeMessage(f *testing.F) {
	f.Add(searchMessage(present("objectClass")))
	f.Add(searchMessage(nested(present("cn"), 5)))
	f.Add(envelope(7, startTLSRequest()))
	f.Add(envelope(8, ber.NewString(ber.ClassApplication, ber.TypePrimitive, opDelRequest, "uid=alice,ou=people,dc=x", "DelRequest")))
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

// FuzzCompileFilter compiles decoded filters for every stored kind and runs
// both conditions on a real store: the compiler must never build an
// expression the store refuses, whatever the filter.
func FuzzCompileFilter(f *testing.F) {
	for _, s := range []string{
		"(uid=alice)", "(&(mail=*@example.org)(!(cn=a*b*c)))", "(|(thingidMACAddress=aa*)(serialNumber>=A))",
		"(createTimestamp>=20200101000000Z)", "(member=uid=alice,ou=people,dc=thingid,dc=test)",
		"(memberOf=cn=family,ou=groups,dc=thingid,dc=test)", "(uid:caseIgnoreMatch:=x)", "(entryUUID<=z)",
		"(objectClass=device)", "(sn~=x)", "(owner=uid=bob,ou=people,dc=thingid,dc=test)", "(telephoneNumber=*4*)",
	} {
		p, err := ldap.CompileFilter(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(p.Bytes())
	}
	e := &testEnv{}
	e.seed(f, openSQLite(f))
	// Only the tree and the store are needed to compile.
	srv := &Server{opts: Options{Store: e.st}, base: mustDN(f, base)}
	people, devices, groups := srv.kinds()
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ber.DecodePacketErr(b)
		if err != nil {
			return
		}
		flt, err := decodeFilter(p, 0)
		if err != nil {
			return
		}
		for _, k := range []*storedKind{people, devices, groups} {
			c, err := compileFilter(ctx, k, flt)
			if err != nil {
				t.Fatalf("%s: %v", flt, err)
			}
			for _, s := range []side{c.tSide(), c.fSide()} {
				if s.is {
					continue
				}
				q := store.Query{Filter: s.e, Limit: 3}
				switch k {
				case people:
					_, _, err = e.ids.ListUsers(ctx, q)
				case devices:
					_, _, err = e.ids.ListThings(ctx, q)
				default:
					_, _, err = e.ids.ListGroups(ctx, q)
				}
				if err != nil {
					t.Fatalf("%s compiled to an expression the store refuses: %v", flt, err)
				}
			}
		}
	})
}

func mustDN(t testing.TB, s string) DN {
	dn, err := ParseDN(s)
	if err != nil {
		t.Fatal(err)
	}
	return dn
}

// FuzzDecodePaged: the paged results control's value never panics the
// decoder, and what it accepts has a size that is not negative.
func FuzzDecodePaged(f *testing.F) {
	f.Add(ldap.NewControlPaging(10).Encode().Children[1].Data.Bytes())
	f.Add([]byte{0x30, 0x05, 0x02, 0x01, 0x05, 0x04, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePaged(control{oid: oidPagedResults, value: b, hasValue: true})
		if err == nil && p.size < 0 {
			t.Fatalf("size %d accepted", p.size)
		}
	})
}

// FuzzDecodeSort: the sort control's value never panics the decoder, and
// what it accepts has keys with an attribute.
func FuzzDecodeSort(f *testing.F) {
	f.Add([]byte{0x30, 0x0a, 0x30, 0x08, 0x04, 0x03, 'u', 'i', 'd', 0x81, 0x01, 0xff})
	f.Add([]byte{0x30, 0x05, 0x30, 0x03, 0x04, 0x01, 'x'})
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := decodeSort(control{oid: oidSortRequest, value: b, hasValue: true})
		if err != nil {
			return
		}
		for _, k := range keys {
			if k.attr == "" {
				t.Fatal("a key without an attribute accepted")
			}
		}
	})
}

// FuzzDecodePasswordModify: any request value decodes or fails with a
// framing error, never a panic; a decoded one names only its own fields.
func FuzzDecodePasswordModify(f *testing.F) {
	for _, r := range []*ldap.PasswordModifyRequest{
		ldap.NewPasswordModifyRequest("uid=a,ou=people,dc=x", "old", "new"),
		ldap.NewPasswordModifyRequest("", "old", "new"),
		ldap.NewPasswordModifyRequest("", "", ""),
	} {
		f.Add(passwordModifyValue(r))
	}
	f.Add([]byte{0x30, 0x03, 0x82, 0x01, 0xff})
	f.Add([]byte{0x30, 0x06, 0x82, 0x01, 'a', 0x80, 0x01, 'b'})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodePasswordModify(b)
		if err != nil {
			if !errors.Is(err, errFraming) {
				t.Fatalf("%x: an error that is not a framing error: %v", b, err)
			}
			return
		}
		if (r.old != "" && !r.hasOld) || (r.new != "" && !r.hasNew) {
			t.Fatalf("%x: decoded %+v", b, r)
		}
	})
}

// passwordModifyValue is the request value go-ldap sends for r.
func passwordModifyValue(r *ldap.PasswordModifyRequest) []byte {
	p := ber.NewSequence("PasswdModifyRequestValue")
	for tag, v := range []string{r.UserIdentity, r.OldPassword, r.NewPassword} {
		if v != "" {
			p.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, ber.Tag(tag), v, ""))
		}
	}
	return p.Bytes()
}
