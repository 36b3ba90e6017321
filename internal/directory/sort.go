package directory

import (
	"errors"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// Server-side sorting (RFC 2891), where the store can sort: one key, on an
// attribute held by one store field that is not multi-valued, in a search
// of one kind of entry (one-level under a container, or one entry). Other
// requests are answered unsorted with a SortResult that says why, or, when
// the control is critical, refused (unavailableCriticalExtension).

const (
	oidSortRequest  = "1.2.840.113556.1.4.473"
	oidSortResponse = "1.2.840.113556.1.4.474"
)

// sortKey is one key of the request (RFC 2891 §1.1).
type sortKey struct {
	attr    string
	rule    string
	reverse bool
}

// decodeSort decodes SortKeyList ::= SEQUENCE OF SEQUENCE { attributeType,
// orderingRule [0] OPTIONAL, reverseOrder [1] BOOLEAN DEFAULT FALSE }.
func decodeSort(c control) ([]sortKey, error) {
	bad := errors.New("the sort control's value is not a list of sort keys")
	if !c.hasValue {
		return nil, bad
	}
	p, err := decodeBER(c.value)
	if err != nil || p.Tag != ber.TagSequence || p.TagType != ber.TypeConstructed || len(p.Children) == 0 {
		return nil, bad
	}
	keys := make([]sortKey, 0, len(p.Children))
	for _, k := range p.Children {
		if k.Tag != ber.TagSequence || k.TagType != ber.TypeConstructed || len(k.Children) < 1 || len(k.Children) > 3 {
			return nil, bad
		}
		attr, err := text(k.Children[0], ber.ClassUniversal, ber.TagOctetString)
		if err != nil || attr == "" {
			return nil, bad
		}
		key := sortKey{attr: strings.ToLower(attr)}
		seen := -1
		for _, o := range k.Children[1:] {
			if o.ClassType != ber.ClassContext || int(o.Tag) <= seen || o.Tag > 1 || o.TagType != ber.TypePrimitive {
				return nil, bad
			}
			seen = int(o.Tag)
			if o.Tag == 0 {
				if key.rule, err = text(o, ber.ClassContext, 0); err != nil {
					return nil, bad
				}
			} else {
				if o.Data.Len() != 1 {
					return nil, bad
				}
				key.reverse = o.Data.Bytes()[0] != 0
			}
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// sortResponse is the SortResult control (RFC 2891 §1.2).
func sortResponse(code resultCode, attr string) *ber.Packet {
	v := ber.NewSequence("SortResult")
	v.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), "sortResult"))
	if attr != "" {
		v.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 0, attr, "attributeType"))
	}
	c := ber.NewSequence("Control")
	c.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, oidSortResponse, "controlType"))
	c.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, string(v.Bytes()), "controlValue"))
	return c
}

// order is how a stored step's entries come: by a store field, from an offset.
type order struct {
	by     string
	desc   bool
	offset int
}

// sortOrder is the store's order for keys in plan, or the result code
// that says why the store cannot sort so.
func sortOrder(plan []planStep, keys []sortKey) (order, resultCode) {
	if len(keys) != 1 || len(plan) != 1 || plan[0].query == nil {
		return order{}, resultUnwillingToPerform
	}
	k, ok := plan[0].schema.(*storedKind)
	if !ok {
		return order{}, resultUnwillingToPerform
	}
	key := keys[0]
	attr := key.attr
	t := attributes[attr]
	if t != nil {
		attr = strings.ToLower(t.names[0])
	}
	fd, ok := k.fields[attr]
	if !ok {
		return order{}, resultNoSuchAttribute
	}
	if key.rule != "" && (t == nil || (!strings.EqualFold(key.rule, t.ordering) && !strings.EqualFold(key.rule, t.equality))) {
		return order{}, resultInappropriateMatching
	}
	if len(fd.names) != 1 || fd.kind == dnValue || k.catalog[fd.names[0]].Multi {
		return order{}, resultUnwillingToPerform
	}
	return order{by: fd.names[0], desc: key.reverse}, resultSuccess
}
