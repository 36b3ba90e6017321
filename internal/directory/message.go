package directory

import (
	"fmt"
	"unicode/utf8"

	ber "github.com/go-asn1-ber/asn1-ber"
)

// Protocol operations' application tags (RFC 4511 §4.2 to §4.14).
const (
	opBindRequest      = 0
	opBindResponse     = 1
	opUnbindRequest    = 2
	opSearchRequest    = 3
	opSearchEntry      = 4
	opSearchDone       = 5
	opModifyRequest    = 6
	opModifyResponse   = 7
	opAddRequest       = 8
	opAddResponse      = 9
	opDelRequest       = 10
	opDelResponse      = 11
	opModDNRequest     = 12
	opModDNResponse    = 13
	opCompareRequest   = 14
	opCompareResponse  = 15
	opAbandonRequest   = 16
	opExtendedRequest  = 23
	opExtendedResponse = 24
)

// maxMessageID is the largest MessageID (RFC 4511 §4.1.1.1: 0 .. maxInt).
const maxMessageID = 1<<31 - 1

// message is one decoded LDAPMessage from a client.
type message struct {
	id       int64
	op       any // *bindRequest, *searchRequest, *extendedRequest, *addRequest, *modifyRequest, *modDNRequest, *delRequest, *compareRequest, unbindRequest, abandonRequest
	controls []control
}

// control is one request control (RFC 4511 §4.1.11).
type control struct {
	oid      string
	critical bool
	value    []byte
	hasValue bool
}

// bindRequest is a BindRequest (RFC 4511 §4.2). A simple bind has no
// mechanism; a SASL bind names one.
type bindRequest struct {
	version     int64
	name        string
	sasl        bool
	mechanism   string
	credentials []byte
}

// searchRequest is a SearchRequest (RFC 4511 §4.5.1).
type searchRequest struct {
	base       string
	scope      int64
	deref      int64
	sizeLimit  int64
	timeLimit  int64
	typesOnly  bool
	filter     *filter
	attributes []string
}

// Scopes (RFC 4511 §4.5.1.2).
const (
	scopeBase     = 0
	scopeOne      = 1
	scopeSubtree  = 2
	scopeChildren = 3 // draft-sermersheim-ldap-subordinate-scope, sent by ldapsearch -s children
)

// extendedRequest is an ExtendedRequest (RFC 4511 §4.12).
type extendedRequest struct {
	oid      string
	value    []byte
	hasValue bool
}

type (
	unbindRequest  struct{}
	abandonRequest struct{ id int64 }
)

// decodeMessage decodes one LDAPMessage read by readMessage. Any error is
// a protocol error that ends the session (RFC 4511 §4.1.1).
func decodeMessage(b []byte) (*message, error) {
	p, err := decodeBER(b)
	if err != nil {
		return nil, err
	}
	if len(p.Children) < 2 || len(p.Children) > 3 {
		return nil, fmt.Errorf("%w: an LDAPMessage has a messageID, an operation and perhaps controls", errFraming)
	}
	id, err := integer(p.Children[0], ber.ClassUniversal, ber.TagInteger)
	if err != nil {
		return nil, fmt.Errorf("messageID: %w", err)
	}
	if id < 0 || id > maxMessageID {
		return nil, fmt.Errorf("%w: messageID %d out of range", errFraming, id)
	}
	m := &message{id: id}
	if m.op, err = decodeOp(p.Children[1]); err != nil {
		return nil, err
	}
	if len(p.Children) == 3 {
		if m.controls, err = decodeControls(p.Children[2]); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func decodeOp(p *ber.Packet) (any, error) {
	if p.ClassType != ber.ClassApplication {
		return nil, fmt.Errorf("%w: the operation is not of class application", errFraming)
	}
	switch p.Tag {
	case opBindRequest:
		return decodeBind(p)
	case opUnbindRequest:
		if p.TagType != ber.TypePrimitive {
			return nil, fmt.Errorf("%w: UnbindRequest is NULL", errFraming)
		}
		return unbindRequest{}, nil
	case opSearchRequest:
		return decodeSearch(p)
	case opAbandonRequest:
		if p.TagType != ber.TypePrimitive {
			return nil, fmt.Errorf("%w: AbandonRequest is a MessageID", errFraming)
		}
		id, err := ber.ParseInt64(p.Data.Bytes())
		if err != nil {
			return nil, fmt.Errorf("%w: AbandonRequest: %v", errFraming, err)
		}
		return abandonRequest{id: id}, nil
	case opExtendedRequest:
		return decodeExtended(p)
	case opDelRequest:
		dn, err := text(p, ber.ClassApplication, opDelRequest)
		if err != nil {
			return nil, fmt.Errorf("DelRequest: %w", err)
		}
		return &delRequest{dn: dn}, nil
	case opAddRequest:
		return decodeAdd(p)
	case opModifyRequest:
		return decodeModify(p)
	case opModDNRequest:
		return decodeModDN(p)
	case opCompareRequest:
		return decodeCompare(p)
	}
	return nil, fmt.Errorf("%w: operation %d is not a request", errFraming, p.Tag)
}

func decodeBind(p *ber.Packet) (*bindRequest, error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) != 3 {
		return nil, fmt.Errorf("%w: BindRequest has a version, a name and an authentication", errFraming)
	}
	r := &bindRequest{}
	var err error
	if r.version, err = integer(p.Children[0], ber.ClassUniversal, ber.TagInteger); err != nil {
		return nil, fmt.Errorf("BindRequest version: %w", err)
	}
	if r.name, err = text(p.Children[1], ber.ClassUniversal, ber.TagOctetString); err != nil {
		return nil, fmt.Errorf("BindRequest name: %w", err)
	}
	auth := p.Children[2]
	switch {
	case auth.ClassType == ber.ClassContext && auth.Tag == 0 && auth.TagType == ber.TypePrimitive: // simple
		r.credentials = auth.Data.Bytes()
	case auth.ClassType == ber.ClassContext && auth.Tag == 3 && auth.TagType == ber.TypeConstructed: // sasl
		r.sasl = true
		if len(auth.Children) < 1 || len(auth.Children) > 2 {
			return nil, fmt.Errorf("%w: SaslCredentials has a mechanism and perhaps credentials", errFraming)
		}
		if r.mechanism, err = text(auth.Children[0], ber.ClassUniversal, ber.TagOctetString); err != nil {
			return nil, fmt.Errorf("SASL mechanism: %w", err)
		}
		if len(auth.Children) == 2 {
			if r.credentials, err = octets(auth.Children[1], ber.ClassUniversal, ber.TagOctetString); err != nil {
				return nil, fmt.Errorf("SASL credentials: %w", err)
			}
		}
	default:
		return nil, fmt.Errorf("%w: BindRequest authentication is neither simple nor sasl", errFraming)
	}
	return r, nil
}

func decodeSearch(p *ber.Packet) (*searchRequest, error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) != 8 {
		return nil, fmt.Errorf("%w: SearchRequest has eight fields", errFraming)
	}
	c := p.Children
	r := &searchRequest{}
	var err error
	if r.base, err = text(c[0], ber.ClassUniversal, ber.TagOctetString); err != nil {
		return nil, fmt.Errorf("baseObject: %w", err)
	}
	if r.scope, err = integer(c[1], ber.ClassUniversal, ber.TagEnumerated); err != nil {
		return nil, fmt.Errorf("scope: %w", err)
	}
	if r.deref, err = integer(c[2], ber.ClassUniversal, ber.TagEnumerated); err != nil {
		return nil, fmt.Errorf("derefAliases: %w", err)
	}
	if r.sizeLimit, err = integer(c[3], ber.ClassUniversal, ber.TagInteger); err != nil {
		return nil, fmt.Errorf("sizeLimit: %w", err)
	}
	if r.timeLimit, err = integer(c[4], ber.ClassUniversal, ber.TagInteger); err != nil {
		return nil, fmt.Errorf("timeLimit: %w", err)
	}
	if c[5].ClassType != ber.ClassUniversal || c[5].Tag != ber.TagBoolean || c[5].TagType != ber.TypePrimitive || c[5].Data.Len() != 1 {
		return nil, fmt.Errorf("%w: typesOnly is not a BOOLEAN", errFraming)
	}
	r.typesOnly = c[5].Data.Bytes()[0] != 0
	if r.scope < scopeBase || r.scope > scopeChildren || r.deref < 0 || r.deref > 3 || r.sizeLimit < 0 || r.timeLimit < 0 {
		return nil, fmt.Errorf("%w: scope, derefAliases, sizeLimit or timeLimit out of range", errFraming)
	}
	if r.filter, err = decodeFilter(c[6], 0); err != nil {
		return nil, err
	}
	if c[7].ClassType != ber.ClassUniversal || c[7].Tag != ber.TagSequence || c[7].TagType != ber.TypeConstructed {
		return nil, fmt.Errorf("%w: attributes is not a SEQUENCE", errFraming)
	}
	for _, a := range c[7].Children {
		s, err := text(a, ber.ClassUniversal, ber.TagOctetString)
		if err != nil {
			return nil, fmt.Errorf("attributes: %w", err)
		}
		r.attributes = append(r.attributes, s)
	}
	return r, nil
}

func decodeExtended(p *ber.Packet) (*extendedRequest, error) {
	if p.TagType != ber.TypeConstructed || len(p.Children) < 1 || len(p.Children) > 2 {
		return nil, fmt.Errorf("%w: ExtendedRequest has a name and perhaps a value", errFraming)
	}
	r := &extendedRequest{}
	var err error
	if r.oid, err = text(p.Children[0], ber.ClassContext, 0); err != nil {
		return nil, fmt.Errorf("requestName: %w", err)
	}
	if len(p.Children) == 2 {
		if r.value, err = octets(p.Children[1], ber.ClassContext, 1); err != nil {
			return nil, fmt.Errorf("requestValue: %w", err)
		}
		r.hasValue = true
	}
	return r, nil
}

func decodeControls(p *ber.Packet) ([]control, error) {
	if p.ClassType != ber.ClassContext || p.Tag != 0 || p.TagType != ber.TypeConstructed {
		return nil, fmt.Errorf("%w: controls are not [0] SEQUENCE", errFraming)
	}
	cs := make([]control, 0, len(p.Children))
	for _, c := range p.Children {
		if c.ClassType != ber.ClassUniversal || c.Tag != ber.TagSequence || c.TagType != ber.TypeConstructed || len(c.Children) < 1 || len(c.Children) > 3 {
			return nil, fmt.Errorf("%w: a control is a SEQUENCE of a type, perhaps criticality and perhaps a value", errFraming)
		}
		var ctl control
		var err error
		if ctl.oid, err = text(c.Children[0], ber.ClassUniversal, ber.TagOctetString); err != nil {
			return nil, fmt.Errorf("controlType: %w", err)
		}
		rest := c.Children[1:]
		if len(rest) > 0 && rest[0].ClassType == ber.ClassUniversal && rest[0].Tag == ber.TagBoolean {
			if rest[0].TagType != ber.TypePrimitive || rest[0].Data.Len() != 1 {
				return nil, fmt.Errorf("%w: criticality is not a BOOLEAN", errFraming)
			}
			ctl.critical = rest[0].Data.Bytes()[0] != 0
			rest = rest[1:]
		}
		switch len(rest) {
		case 0:
		case 1:
			if ctl.value, err = octets(rest[0], ber.ClassUniversal, ber.TagOctetString); err != nil {
				return nil, fmt.Errorf("controlValue: %w", err)
			}
			ctl.hasValue = true
		default:
			return nil, fmt.Errorf("%w: a control has one value", errFraming)
		}
		cs = append(cs, ctl)
	}
	return cs, nil
}

// octets returns the content of a primitive element of the given class and tag.
func octets(p *ber.Packet, class ber.Class, tag ber.Tag) ([]byte, error) {
	if p.ClassType != class || p.Tag != tag || p.TagType != ber.TypePrimitive {
		return nil, fmt.Errorf("%w: expected tag %d of class %d, got tag %d of class %d", errFraming, tag, class, p.Tag, p.ClassType)
	}
	return p.Data.Bytes(), nil
}

// text is octets that must be UTF-8 (LDAPString, RFC 4511 §4.1.2).
func text(p *ber.Packet, class ber.Class, tag ber.Tag) (string, error) {
	b, err := octets(p, class, tag)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", fmt.Errorf("%w: not UTF-8", errFraming)
	}
	return string(b), nil
}

// integer decodes an INTEGER or ENUMERATED of at most 8 bytes.
func integer(p *ber.Packet, class ber.Class, tag ber.Tag) (int64, error) {
	b, err := octets(p, class, tag)
	if err != nil {
		return 0, err
	}
	if len(b) == 0 || len(b) > 8 {
		return 0, fmt.Errorf("%w: an integer of %d bytes", errFraming, len(b))
	}
	return ber.ParseInt64(b)
}
