package directory

import (
	"context"
	"errors"
	"fmt"
	"strings"

	ber "github.com/go-asn1-ber/asn1-ber"

	"github.com/thingid/thingid/internal/store"
)

// compareRequest is a CompareRequest (RFC 4511 §4.10): does the entry
// hold the value for the attribute?
type compareRequest struct {
	dn, attr, value string
}

// Compare's own result codes (RFC 4511 §4.1.9).
const (
	resultCompareFalse resultCode = 5
	resultCompareTrue  resultCode = 6
)

func decodeCompare(p *ber.Packet) (*compareRequest, error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) != 2 {
		return nil, fmt.Errorf("%w: CompareRequest has an entry and an assertion", errFraming)
	}
	r := &compareRequest{}
	var err error
	if r.dn, err = text(p.Children[0], ber.ClassUniversal, ber.TagOctetString); err != nil {
		return nil, fmt.Errorf("CompareRequest entry: %w", err)
	}
	ava := p.Children[1]
	if ava.ClassType != ber.ClassUniversal || ava.Tag != ber.TagSequence || ava.TagType != ber.TypeConstructed || len(ava.Children) != 2 {
		return nil, fmt.Errorf("%w: CompareRequest ava is a SEQUENCE of a type and a value", errFraming)
	}
	if r.attr, err = text(ava.Children[0], ber.ClassUniversal, ber.TagOctetString); err != nil {
		return nil, fmt.Errorf("CompareRequest attributeDesc: %w", err)
	}
	if r.attr == "" {
		return nil, fmt.Errorf("%w: empty attribute description", errFraming)
	}
	r.attr = strings.ToLower(r.attr)
	if r.value, err = text(ava.Children[1], ber.ClassUniversal, ber.TagOctetString); err != nil {
		return nil, fmt.Errorf("CompareRequest assertionValue: %w", err)
	}
	return r, nil
}

// compare serves a CompareRequest under the read rules of Search: the
// entry is found as a base search would find it (what the principal may
// not read does not exist for it), and the assertion is an equality
// filter the store decides, as a search's would be.
func (ss *session) compare(ctx context.Context, r *compareRequest) *ber.Packet {
	answer := func(code resultCode, why string) *ber.Packet {
		return resultOp(opCompareResponse, result{code: code, diagnostic: why})
	}
	dn, err := ParseDN(r.dn)
	if err != nil {
		return answer(resultInvalidDNSyntax, "entry: "+err.Error())
	}
	t := attributes[r.attr]
	switch {
	case t == nil:
		return answer(resultUndefinedAttributeType, r.attr+": not an attribute type of this directory's schema")
	case t.names[0] == "userPassword":
		// A password is tried by a bind, under its throttling and back-off.
		return answer(resultInsufficientAccessRights, "userPassword: a password is not compared; bind with it")
	case equalityOf(t) == "":
		return answer(resultInappropriateMatching, r.attr+": has no equality matching rule")
	}
	var step planStep
	switch {
	case len(dn) == 0:
		step = constantStep(ss.rootDSE())
	case ss.who == nil:
		return answer(resultInsufficientAccessRights, "bind first: anonymous sessions read only the root DSE")
	case dn.Equal(DN{{{Type: "cn", Value: "subschema"}}}):
		step = constantStep(subschema())
	default:
		// The assertion is decided by the store: no attribute is read
		// ("1.1", RFC 4511 §4.5.1.8).
		plan, err := ss.plan(ctx, dn, scopeBase, newSelection([]string{"1.1"}))
		switch {
		case errors.Is(err, errNoSuchObject), errors.Is(err, store.ErrNotFound):
			return answer(resultNoSuchObject, "")
		case err != nil:
			ss.log.Error("ldap: compare", "dn", r.dn, "err", err)
			return answer(resultOther, "the directory could not compare; try again later")
		}
		step = plan[0]
	}
	// The entry must have the attribute; then the assertion is TRUE or
	// FALSE, or neither when the value cannot be one of the attribute's
	// (a time that is not a GeneralizedTime).
	present, err := step.holds(ctx, &filter{kind: filterPresent, attr: r.attr}, cond.tSide)
	if err != nil {
		ss.log.Error("ldap: compare", "dn", r.dn, "err", err)
		return answer(resultOther, "the directory could not compare; try again later")
	}
	if !present {
		return answer(resultNoSuchAttribute, r.attr+": the entry has no such attribute")
	}
	eq := &filter{kind: filterEqual, attr: r.attr, value: r.value}
	for _, o := range []struct {
		side func(cond) side
		code resultCode
	}{{cond.tSide, resultCompareTrue}, {cond.fSide, resultCompareFalse}} {
		ok, err := step.holds(ctx, eq, o.side)
		if err != nil {
			ss.log.Error("ldap: compare", "dn", r.dn, "err", err)
			return answer(resultOther, "the directory could not compare; try again later")
		}
		if ok {
			return answer(o.code, "")
		}
	}
	return answer(resultInvalidAttributeSyntax, r.attr+": the value is not one this attribute can hold")
}

// constantStep is the plan step of a constant entry.
func constantStep(e entry) planStep { return planStep{schema: container{e}, constant: e} }

// holds says whether the step's entry satisfies the side of f that side
// picks: decided on a constant entry's values, or by the store.
func (p planStep) holds(ctx context.Context, f *filter, side func(cond) side) (bool, error) {
	c, err := compileFilter(ctx, p.schema, f)
	if err != nil {
		return false, err
	}
	s := side(c)
	if p.query == nil {
		return s.is && s.v, nil
	}
	if s.is && !s.v {
		return false, nil
	}
	found, err := p.query(ctx, s, 1, order{by: "id"})
	return len(found) > 0, err
}

// equalityOf is t's equality matching rule, its own or its supertype's.
func equalityOf(t *attributeType) string {
	for t.equality == "" && t.sup != "" && attributes[strings.ToLower(t.sup)] != nil {
		t = attributes[strings.ToLower(t.sup)]
	}
	return t.equality
}
