package directory

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
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
	f.Add(envelope(9, compareRequestOp("uid=alice,ou=people,dc=x", "mail", "alice@example.org")))
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	f.Add([]byte{0x30, 0x84, 0xff, 0xff, 0xff, 0xff})
	for _, m := range writeMessages() {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		const max = 8 << 10
		msg, err := readMessage(bufio.NewReader(bytes.NewReader(b)), max)
		if err != nil {
			return
		}
		if len(msg) > max || !bytes.HasPrefix(b, msg) {
			t.Fatalf("read %d bytes, over the limit or not those sent", len(msg))
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

// compareRequestOp is a CompareRequest as a client encodes it.
func compareRequestOp(dn, attr, value string) *ber.Packet {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, opCompareRequest, nil, "CompareRequest")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, "entry"))
	ava := ber.NewSequence("ava")
	ava.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, attr, "attributeDesc"))
	ava.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, value, "assertionValue"))
	p.AppendChild(ava)
	return p
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

// writeMessages are an AddRequest, a ModifyRequest and a ModifyDNRequest
// as OpenLDAP's clients encode them.
func writeMessages() [][]byte {
	str := func(v string) *ber.Packet {
		return ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "")
	}
	attr := func(name string, vals ...string) *ber.Packet {
		a := ber.NewSequence("")
		a.AppendChild(str(name))
		set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
		for _, v := range vals {
			set.AppendChild(str(v))
		}
		a.AppendChild(set)
		return a
	}
	add := ber.Encode(ber.ClassApplication, ber.TypeConstructed, opAddRequest, nil, "")
	add.AppendChild(str("uid=carol,ou=people,dc=x"))
	list := ber.NewSequence("")
	list.AppendChild(attr("objectClass", "inetOrgPerson"))
	list.AppendChild(attr("cn", "Carol"))
	add.AppendChild(list)

	mod := ber.Encode(ber.ClassApplication, ber.TypeConstructed, opModifyRequest, nil, "")
	mod.AppendChild(str("cn=family,ou=groups,dc=x"))
	changes := ber.NewSequence("")
	ch := ber.NewSequence("")
	ch.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, modAdd, ""))
	ch.AppendChild(attr("member", "uid=carol,ou=people,dc=x"))
	changes.AppendChild(ch)
	mod.AppendChild(changes)

	rdn := ber.Encode(ber.ClassApplication, ber.TypeConstructed, opModDNRequest, nil, "")
	rdn.AppendChild(str("uid=carol,ou=people,dc=x"))
	rdn.AppendChild(str("uid=captain"))
	rdn.AppendChild(ber.NewBoolean(ber.ClassUniversal, ber.TypePrimitive, ber.TagBoolean, true, ""))
	rdn.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, "ou=people,dc=x", ""))
	return [][]byte{envelope(9, add), envelope(10, mod), envelope(11, rdn)}
}

// The seeds of FuzzDecodeMessage's writes decode to what they say.
func TestDecodeWrites(t *testing.T) {
	ms := writeMessages()
	var ops []any
	for _, b := range ms {
		m, err := decodeMessage(b)
		if err != nil {
			t.Fatal(err)
		}
		ops = append(ops, m.op)
	}
	if a, ok := ops[0].(*addRequest); !ok || a.dn != "uid=carol,ou=people,dc=x" || len(a.attrs) != 2 || string(a.attrs[1].values[0]) != "Carol" {
		t.Errorf("add: %+v", ops[0])
	}
	if m, ok := ops[1].(*modifyRequest); !ok || len(m.changes) != 1 || m.changes[0].op != modAdd || m.changes[0].attr.name != "member" {
		t.Errorf("modify: %+v", ops[1])
	}
	if r, ok := ops[2].(*modDNRequest); !ok || r.newRDN != "uid=captain" || !r.deleteOldRDN || !r.hasNewSuperior || r.newSuperior != "ou=people,dc=x" {
		t.Errorf("modify DN: %+v", ops[2])
	}
}

// FuzzDecodeBER: the decoder never panics, accepts only what walkBER
// accepts, and builds the tree asn1-ber's decoder builds from the same
// bytes: the same identifiers and children, and for primitive elements the
// same content.
func FuzzDecodeBER(f *testing.F) {
	f.Add(searchMessage(present("objectClass")))
	f.Add(searchMessage(nested(present("cn"), 5)))
	f.Add(envelope(9, compareRequestOp("uid=alice,ou=people,dc=x", "mail", "alice@example.org")))
	f.Add([]byte{0x30, 0x03, 0x02, 0x01, 0x05})
	f.Add([]byte{0x30, 0x80, 0x00, 0x00})
	for _, m := range writeMessages() {
		f.Add(m)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodeBER(b)
		if (err == nil) != (walkBER(b) == nil) {
			t.Fatalf("decodeBER: %v, walkBER disagrees", err)
		}
		if err != nil {
			return
		}
		want, err := ber.DecodePacketErr(b)
		if err != nil {
			return // asn1-ber also checks the content of universal strings and times, which LDAP does not use
		}
		samePacket(t, p, want, "message")
	})
}

func samePacket(t *testing.T, got, want *ber.Packet, at string) {
	t.Helper()
	if got.Identifier != want.Identifier || len(got.Children) != len(want.Children) {
		t.Fatalf("%s: %+v with %d children, asn1-ber %+v with %d", at, got.Identifier, len(got.Children), want.Identifier, len(want.Children))
	}
	if got.TagType == ber.TypePrimitive && !bytes.Equal(got.Data.Bytes(), want.Data.Bytes()) {
		t.Fatalf("%s: content %x, asn1-ber %x", at, got.Data.Bytes(), want.Data.Bytes())
	}
	for i := range got.Children {
		samePacket(t, got.Children[i], want.Children[i], fmt.Sprintf("%s/%d", at, i))
	}
}
