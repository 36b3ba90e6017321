package scim

import "strings"

// patchPath is the "path" of a PATCH operation, RFC 7644 §3.5.2:
// PATH = attrPath / valuePath [subAttr], e.g. name.familyName,
// members[value eq "2819c223"], emails[type eq "work"].value.
type patchPath struct {
	Attr attrPath
	// Filter selects elements of a multi-valued attribute (nil: no value path).
	Filter filter
	// ValueSub is the sub-attribute after the value path's closing bracket.
	ValueSub string
}

func (p patchPath) String() string {
	s := p.Attr.String()
	if p.Filter != nil {
		s += "[" + p.Filter.String() + "]"
		if p.ValueSub != "" {
			s += "." + p.ValueSub
		}
	}
	return s
}

// parsePath parses a PATCH path; errors are invalidPath.
func parsePath(s string) (patchPath, error) {
	var pp patchPath
	p, err := newParser(s)
	if err != nil {
		return pp, badPath("%v", detail(err))
	}
	t := p.next()
	if t.kind != tokWord {
		return pp, badPath("path %q must start with an attribute name", s)
	}
	if pp.Attr, err = parseAttrPath(t.text); err != nil {
		return pp, badPath("path: %v", err)
	}
	if p.peek().kind == tokLBrack {
		if pp.Attr.Sub != "" {
			return pp, badPath("path %q: a value filter applies to an attribute, not to sub-attribute %q", s, pp.Attr.Sub)
		}
		p.next()
		if pp.Filter, err = p.or(true); err != nil {
			return pp, badPath("path %q: %v", s, detail(err))
		}
		if err := p.expect(tokRBrack, `"]"`); err != nil {
			return pp, badPath("path %q: %v", s, detail(err))
		}
		if t := p.peek(); t.kind == tokWord && strings.HasPrefix(t.text, ".") {
			p.next()
			if pp.ValueSub = t.text[1:]; !validName(pp.ValueSub, true) {
				return pp, badPath("path %q: %q is not a sub-attribute name", s, pp.ValueSub)
			}
		}
	}
	if t := p.peek(); t.kind != tokEOF {
		return pp, badPath("path %q: unexpected %q at offset %d", s, t.text, t.pos)
	}
	return pp, nil
}

// detail strips the SCIM wrapper of a parser error for use in another message.
func detail(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Detail
	}
	return err.Error()
}
