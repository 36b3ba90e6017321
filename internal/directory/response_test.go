package directory

import (
	"bytes"
	"strings"
	"testing"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// treeEntry encodes a SearchResultEntry the slow way, as a tree of
// asn1-ber packets: what entryMessage must write byte for byte.
func treeEntry(id int64, e entry, typesOnly bool) []byte {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, opSearchEntry, nil, "SearchResultEntry")
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, e.dn, "objectName"))
	list := ber.NewSequence("attributes")
	for _, a := range e.attrs {
		pa := ber.NewSequence("PartialAttribute")
		pa.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, a.name, "type"))
		vals := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "vals")
		if !typesOnly {
			for _, v := range a.values {
				vals.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, v, "value"))
			}
		}
		pa.AppendChild(vals)
		list.AppendChild(pa)
	}
	p.AppendChild(list)
	return envelope(id, p)
}

// entryMessage writes what asn1-ber's packets would, for every length form
// (short, one to three length bytes) and message ids around each byte.
func TestEntryMessageIsBER(t *testing.T) {
	all := newSelection(nil)
	for _, id := range []int64{0, 1, 127, 128, 255, 256, 32767, 32768, 1<<23 - 1, 1 << 23, maxMessageID} {
		for _, size := range []int{0, 1, 100, 127, 128, 255, 256, 65535, 65536, 70000} {
			e := entry{dn: "cn=" + strings.Repeat("d", size) + ",dc=x", attrs: []attribute{
				{"objectClass", []string{"top", "device"}},
				{"description", []string{strings.Repeat("v", size)}},
				{"owner", []string{"uid=a,dc=x", strings.Repeat("o", size/2)}},
			}}
			for _, typesOnly := range []bool{false, true} {
				if got, want := entryMessage(id, e, all, typesOnly), treeEntry(id, e, typesOnly); !bytes.Equal(got, want) {
					t.Fatalf("id %d, values of %d bytes, typesOnly %v: %d bytes differ from asn1-ber's %d", id, size, typesOnly, len(got), len(want))
				}
			}
		}
	}
}

// FuzzEntryMessage: whatever the DN and values, entryMessage writes the
// bytes asn1-ber's packets would, which decode to the same entry.
func FuzzEntryMessage(f *testing.F) {
	f.Add(int64(1), "cn=x,dc=y", "description", "a value", false)
	f.Add(int64(maxMessageID), "", "objectClass", strings.Repeat("x", 300), true)
	f.Fuzz(func(t *testing.T, id int64, dn, name, value string, typesOnly bool) {
		if id < 0 || id > maxMessageID {
			return
		}
		e := entry{dn: dn, attrs: []attribute{{name, []string{value, value + "2"}}, {"cn", []string{value}}}}
		got := entryMessage(id, e, &selection{all: true, names: map[string]bool{strings.ToLower(name): true}}, typesOnly)
		if want := treeEntry(id, e, typesOnly); !bytes.Equal(got, want) {
			t.Fatalf("%x\nwant %x", got, want)
		}
		if err := walkBER(got); err != nil {
			t.Fatal(err)
		}
	})
}

// FuzzResultMessage: a result written straight as BER is the message
// asn1-ber encodes from the same fields.
func FuzzResultMessage(f *testing.F) {
	f.Add(int64(1), int64(0), "", "")
	f.Add(int64(maxMessageID), int64(resultOther), "dc=x", strings.Repeat("why ", 100))
	f.Fuzz(func(t *testing.T, id, code int64, matched, why string) {
		if id < 0 || id > maxMessageID || code < 0 || code > maxMessageID {
			return
		}
		r := result{code: resultCode(code), matchedDN: matched, diagnostic: why}
		got := resultMessage(id, opSearchDone, r)
		if want := envelope(id, resultOp(opSearchDone, r)); !bytes.Equal(got, want) {
			t.Fatalf("%x\nwant %x", got, want)
		}
	})
}
