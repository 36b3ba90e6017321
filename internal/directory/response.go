package directory

import (
	ber "github.com/go-asn1-ber/asn1-ber"
)

// resultCode is an LDAPResult's resultCode (RFC 4511 §4.1.9, Appendix A).
type resultCode int64

const (
	resultSuccess                      resultCode = 0
	resultOperationsError              resultCode = 1
	resultProtocolError                resultCode = 2
	resultTimeLimitExceeded            resultCode = 3
	resultSizeLimitExceeded            resultCode = 4
	resultAuthMethodNotSupported       resultCode = 7
	resultUnavailableCriticalExtension resultCode = 12
	resultConfidentialityRequired      resultCode = 13
	resultNoSuchAttribute              resultCode = 16
	resultUndefinedAttributeType       resultCode = 17
	resultInappropriateMatching        resultCode = 18
	resultConstraintViolation          resultCode = 19
	resultAttributeOrValueExists       resultCode = 20
	resultInvalidAttributeSyntax       resultCode = 21
	resultNoSuchObject                 resultCode = 32
	resultInvalidDNSyntax              resultCode = 34
	resultInappropriateAuthentication  resultCode = 48
	resultInvalidCredentials           resultCode = 49
	resultInsufficientAccessRights     resultCode = 50
	resultBusy                         resultCode = 51
	resultUnavailable                  resultCode = 52
	resultUnwillingToPerform           resultCode = 53
	resultNamingViolation              resultCode = 64
	resultObjectClassViolation         resultCode = 65
	resultNotAllowedOnNonLeaf          resultCode = 66
	resultNotAllowedOnRDN              resultCode = 67
	resultEntryAlreadyExists           resultCode = 68
	resultOther                        resultCode = 80
)

// result is an LDAPResult: the code, the matched DN and a message for people.
type result struct {
	code       resultCode
	matchedDN  string
	diagnostic string
}

// OIDs of the extended operations and unsolicited notifications served.
const (
	oidStartTLS              = "1.3.6.1.4.1.1466.20037"  // RFC 4511 §4.14
	oidWhoAmI                = "1.3.6.1.4.1.4203.1.11.3" // RFC 4532
	oidNoticeOfDisconnection = "1.3.6.1.4.1.1466.20036"  // RFC 4511 §4.4.1
)

// envelope wraps a protocol operation, and response controls when there
// are any, into an LDAPMessage.
func envelope(id int64, op *ber.Packet, controls ...*ber.Packet) []byte {
	m := ber.NewSequence("LDAPMessage")
	m.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, "messageID"))
	m.AppendChild(op)
	if len(controls) > 0 {
		cs := ber.Encode(ber.ClassContext, ber.TypeConstructed, 0, nil, "controls")
		for _, c := range controls {
			cs.AppendChild(c)
		}
		m.AppendChild(cs)
	}
	return m.Bytes()
}

// resultOp is a response operation of tag op holding r's LDAPResult fields.
func resultOp(op int, r result) *ber.Packet {
	p := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ber.Tag(op), nil, "response")
	p.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(r.code), "resultCode"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, r.matchedDN, "matchedDN"))
	p.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, r.diagnostic, "diagnosticMessage"))
	return p
}

// extendedResponse is an ExtendedResponse with a responseName (when oid is
// not empty) and a responseValue (when value is not nil).
func extendedResponse(r result, oid string, value []byte) *ber.Packet {
	p := resultOp(opExtendedResponse, r)
	if oid != "" {
		p.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 10, oid, "responseName"))
	}
	if value != nil {
		p.AppendChild(ber.NewString(ber.ClassContext, ber.TypePrimitive, 11, string(value), "responseValue"))
	}
	return p
}

// noticeOfDisconnection is the unsolicited notification sent before the
// server ends a session (RFC 4511 §4.4.1).
func noticeOfDisconnection(code resultCode, why string) []byte {
	return envelope(0, extendedResponse(result{code: code, diagnostic: why}, oidNoticeOfDisconnection, nil))
}

// entry is one SearchResultEntry: a DN and attributes in order.
type entry struct {
	dn    string
	id    string // the stored identity's id; "" for constant entries
	attrs []attribute
}

type attribute struct {
	name   string
	values []string
}

// entryMessage is the LDAPMessage of a SearchResultEntry for e with the
// attributes sel keeps, only their types when typesOnly. It writes BER
// directly into one buffer of the exact size: a page of entries is most of
// what a search sends, and a tree of asn1-ber packets per value cost more
// than the store's query.
func entryMessage(id int64, e entry, sel *selection, typesOnly bool) []byte {
	vals := func(a attribute) int {
		n := 0
		if !typesOnly {
			for _, v := range a.values {
				n += tlvLen(len(v))
			}
		}
		return n
	}
	list := 0
	for _, a := range e.attrs {
		if sel.keeps(a) {
			list += tlvLen(tlvLen(len(a.name)) + tlvLen(vals(a)))
		}
	}
	op := tlvLen(len(e.dn)) + tlvLen(list)
	msgID := tlvLen(intLen(id))
	b := make([]byte, 0, tlvLen(msgID+tlvLen(op)))
	b = appendHeader(b, tagSequence, msgID+tlvLen(op))
	b = appendInt(b, 0x02, id)                  // INTEGER messageID
	b = appendHeader(b, 0x60|opSearchEntry, op) // [APPLICATION 4] constructed
	b = appendOctets(b, e.dn)
	b = appendHeader(b, tagSequence, list)
	for _, a := range e.attrs {
		if !sel.keeps(a) {
			continue
		}
		n := vals(a)
		b = appendHeader(b, tagSequence, tlvLen(len(a.name))+tlvLen(n))
		b = appendOctets(b, a.name)
		b = appendHeader(b, 0x31, n) // SET OF
		if !typesOnly {
			for _, v := range a.values {
				b = appendOctets(b, v)
			}
		}
	}
	return b
}

// resultMessage is the LDAPMessage of a response operation op that is an
// LDAPResult alone, without controls (a SearchResultDone most often),
// written as entryMessage writes entries.
func resultMessage(id int64, op int, r result) []byte {
	msgID := tlvLen(intLen(id))
	body := tlvLen(intLen(int64(r.code))) + tlvLen(len(r.matchedDN)) + tlvLen(len(r.diagnostic))
	b := make([]byte, 0, tlvLen(msgID+tlvLen(body)))
	b = appendHeader(b, tagSequence, msgID+tlvLen(body))
	b = appendInt(b, 0x02, id)
	b = appendHeader(b, 0x60|byte(op), body)
	b = appendInt(b, 0x0a, int64(r.code)) // ENUMERATED resultCode
	b = appendOctets(b, r.matchedDN)
	return appendOctets(b, r.diagnostic)
}

// tlvLen is the size of a BER element with n bytes of content.
func tlvLen(n int) int { return 1 + lenLen(n) + n }

// lenLen is the size of the definite length n.
func lenLen(n int) int {
	if n < 0x80 {
		return 1
	}
	k := 1
	for ; n > 0; n >>= 8 {
		k++
	}
	return k
}

// intLen is the size of the INTEGER content of a messageID (0 .. maxInt).
func intLen(v int64) int {
	n := 1
	for v > 0x7f {
		v >>= 8
		n++
	}
	return n
}

func appendHeader(b []byte, tag byte, n int) []byte {
	b = append(b, tag)
	k := lenLen(n)
	if k == 1 {
		return append(b, byte(n))
	}
	b = append(b, 0x80|byte(k-1))
	for i := k - 2; i >= 0; i-- {
		b = append(b, byte(n>>(8*i)))
	}
	return b
}

// appendInt appends an INTEGER or ENUMERATED (tag) of v, 0 .. maxInt.
func appendInt(b []byte, tag byte, v int64) []byte {
	n := intLen(v)
	b = appendHeader(b, tag, n)
	for i := n - 1; i >= 0; i-- {
		b = append(b, byte(v>>(8*i)))
	}
	return b
}

// appendOctets appends an OCTET STRING.
func appendOctets(b []byte, s string) []byte {
	return append(appendHeader(b, 0x04, len(s)), s...)
}
