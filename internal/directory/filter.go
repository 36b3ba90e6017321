package directory

import (
	"fmt"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// maxFilterDepth bounds how deep and/or/not nest in a search filter: no
// directory client needs more, and every level costs the SQL it compiles to.
const maxFilterDepth = 32

// filterKind is the CHOICE of a Filter (RFC 4511 §4.5.1.7), by context tag.
type filterKind int

const (
	filterAnd        filterKind = 0
	filterOr         filterKind = 1
	filterNot        filterKind = 2
	filterEqual      filterKind = 3
	filterSubstrings filterKind = 4
	filterGreater    filterKind = 5 // greaterOrEqual
	filterLess       filterKind = 6 // lessOrEqual
	filterPresent    filterKind = 7
	filterApprox     filterKind = 8
	filterExtensible filterKind = 9
)

// filter is a decoded search filter. Which fields are set depends on kind:
// children for and, or and not; attr for the rest (empty in an extensible
// match without a type); value for the comparisons and extensible match;
// the substrings for substrings; rule and dnAttrs for extensible match.
type filter struct {
	kind     filterKind
	children []*filter
	attr     string
	value    string
	initial  string
	any      []string
	final    string
	rule     string
	dnAttrs  bool
}

// decodeFilter decodes p at nesting level depth.
func decodeFilter(p *ber.Packet, depth int) (*filter, error) {
	if depth > maxFilterDepth {
		return nil, fmt.Errorf("%w: filter nested more than %d deep", errFraming, maxFilterDepth)
	}
	if p.ClassType != ber.ClassContext || p.Tag > 9 {
		return nil, fmt.Errorf("%w: filter choice %d of class %d", errFraming, p.Tag, p.ClassType)
	}
	f := &filter{kind: filterKind(p.Tag)}
	constructed := p.TagType == ber.TypeConstructed
	switch f.kind {
	case filterAnd, filterOr:
		if !constructed {
			return nil, fmt.Errorf("%w: and/or is a SET", errFraming)
		}
		for _, c := range p.Children {
			g, err := decodeFilter(c, depth+1)
			if err != nil {
				return nil, err
			}
			f.children = append(f.children, g)
		}
	case filterNot:
		if !constructed || len(p.Children) != 1 {
			return nil, fmt.Errorf("%w: not has one filter", errFraming)
		}
		g, err := decodeFilter(p.Children[0], depth+1)
		if err != nil {
			return nil, err
		}
		f.children = []*filter{g}
	case filterEqual, filterGreater, filterLess, filterApprox:
		if !constructed || len(p.Children) != 2 {
			return nil, fmt.Errorf("%w: an attribute value assertion has a type and a value", errFraming)
		}
		var err error
		if f.attr, err = attributeDescription(p.Children[0]); err != nil {
			return nil, err
		}
		if f.value, err = text(p.Children[1], ber.ClassUniversal, ber.TagOctetString); err != nil {
			return nil, fmt.Errorf("assertionValue: %w", err)
		}
	case filterSubstrings:
		if err := f.decodeSubstrings(p); err != nil {
			return nil, err
		}
	case filterPresent:
		if constructed {
			return nil, fmt.Errorf("%w: present is an attribute description", errFraming)
		}
		var err error
		if f.attr, err = attributeDescription(p); err != nil {
			return nil, err
		}
	case filterExtensible:
		if err := f.decodeExtensible(p); err != nil {
			return nil, err
		}
	}
	return f, nil
}

func (f *filter) decodeSubstrings(p *ber.Packet) error {
	if p.TagType != ber.TypeConstructed || len(p.Children) != 2 {
		return fmt.Errorf("%w: substrings has a type and substrings", errFraming)
	}
	var err error
	if f.attr, err = attributeDescription(p.Children[0]); err != nil {
		return err
	}
	subs := p.Children[1]
	if subs.ClassType != ber.ClassUniversal || subs.Tag != ber.TagSequence || subs.TagType != ber.TypeConstructed || len(subs.Children) == 0 {
		return fmt.Errorf("%w: substrings is a non-empty SEQUENCE", errFraming)
	}
	// RFC 4511 §4.5.1.7.2: initial at most once and first, final at most
	// once and last, any in between.
	for i, s := range subs.Children {
		if s.ClassType != ber.ClassContext || s.TagType != ber.TypePrimitive || s.Tag > 2 {
			return fmt.Errorf("%w: a substring is initial, any or final", errFraming)
		}
		v, err := text(s, ber.ClassContext, s.Tag)
		if err != nil {
			return err
		}
		switch s.Tag {
		case 0:
			if i != 0 {
				return fmt.Errorf("%w: initial substring not first", errFraming)
			}
			f.initial = v
		case 1:
			f.any = append(f.any, v)
		case 2:
			if i != len(subs.Children)-1 {
				return fmt.Errorf("%w: final substring not last", errFraming)
			}
			f.final = v
		}
	}
	return nil
}

func (f *filter) decodeExtensible(p *ber.Packet) error {
	if p.TagType != ber.TypeConstructed || len(p.Children) < 1 || len(p.Children) > 4 {
		return fmt.Errorf("%w: extensible match", errFraming)
	}
	seen := -1
	hasValue := false
	for _, c := range p.Children {
		if c.ClassType != ber.ClassContext || c.Tag < 1 || c.Tag > 4 || int(c.Tag) <= seen {
			return fmt.Errorf("%w: extensible match fields out of order", errFraming)
		}
		seen = int(c.Tag)
		var err error
		switch c.Tag {
		case 1:
			f.rule, err = text(c, ber.ClassContext, 1)
		case 2:
			f.attr, err = text(c, ber.ClassContext, 2)
		case 3:
			f.value, err = text(c, ber.ClassContext, 3)
			hasValue = true
		case 4:
			if c.TagType != ber.TypePrimitive || c.Data.Len() != 1 {
				return fmt.Errorf("%w: dnAttributes is not a BOOLEAN", errFraming)
			}
			f.dnAttrs = c.Data.Bytes()[0] != 0
		}
		if err != nil {
			return err
		}
	}
	// RFC 4511 §4.5.1.7.7: a matching rule or a type, and the value.
	if !hasValue || (f.rule == "" && f.attr == "") {
		return fmt.Errorf("%w: extensible match needs a value and a rule or a type", errFraming)
	}
	return nil
}

// attributeDescription decodes an AttributeDescription: the type is lower-cased
// (descriptors are case-insensitive, RFC 4512 §2.5), options are kept.
func attributeDescription(p *ber.Packet) (string, error) {
	s, err := text(p, p.ClassType, p.Tag)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fmt.Errorf("%w: empty attribute description", errFraming)
	}
	return strings.ToLower(s), nil
}

// String is the filter in RFC 4515 form, for logs.
func (f *filter) String() string {
	var b strings.Builder
	f.write(&b)
	return b.String()
}

func (f *filter) write(b *strings.Builder) {
	b.WriteByte('(')
	switch f.kind {
	case filterAnd, filterOr, filterNot:
		b.WriteByte("&|!"[f.kind])
		for _, c := range f.children {
			c.write(b)
		}
	case filterEqual, filterGreater, filterLess, filterApprox:
		b.WriteString(f.attr)
		b.WriteString(map[filterKind]string{filterEqual: "=", filterGreater: ">=", filterLess: "<=", filterApprox: "~="}[f.kind])
		b.WriteString(escapeFilterValue(f.value))
	case filterPresent:
		b.WriteString(f.attr)
		b.WriteString("=*")
	case filterSubstrings:
		b.WriteString(f.attr)
		b.WriteByte('=')
		b.WriteString(escapeFilterValue(f.initial))
		for _, a := range f.any {
			b.WriteByte('*')
			b.WriteString(escapeFilterValue(a))
		}
		b.WriteByte('*')
		b.WriteString(escapeFilterValue(f.final))
	case filterExtensible:
		b.WriteString(f.attr)
		if f.dnAttrs {
			b.WriteString(":dn")
		}
		if f.rule != "" {
			b.WriteString(":" + f.rule)
		}
		b.WriteString(":=" + escapeFilterValue(f.value))
	}
	b.WriteByte(')')
}

// escapeFilterValue escapes what RFC 4515 §3 requires in a value.
func escapeFilterValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; c {
		case '*', '(', ')', '\\', 0:
			fmt.Fprintf(&b, `\%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
