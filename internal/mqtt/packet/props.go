package packet

import "fmt"

// PropID is an MQTT 5 property identifier (§2.2.2.2, Table 2-4).
type PropID byte

const (
	PropPayloadFormat          PropID = 0x01
	PropMessageExpiry          PropID = 0x02
	PropContentType            PropID = 0x03
	PropResponseTopic          PropID = 0x08
	PropCorrelationData        PropID = 0x09
	PropSubscriptionIdentifier PropID = 0x0B
	PropSessionExpiry          PropID = 0x11
	PropAssignedClientID       PropID = 0x12
	PropServerKeepAlive        PropID = 0x13
	PropAuthMethod             PropID = 0x15
	PropAuthData               PropID = 0x16
	PropRequestProblemInfo     PropID = 0x17
	PropWillDelay              PropID = 0x18
	PropRequestResponseInfo    PropID = 0x19
	PropResponseInfo           PropID = 0x1A
	PropServerReference        PropID = 0x1C
	PropReasonString           PropID = 0x1F
	PropReceiveMaximum         PropID = 0x21
	PropTopicAliasMaximum      PropID = 0x22
	PropTopicAlias             PropID = 0x23
	PropMaximumQoS             PropID = 0x24
	PropRetainAvailable        PropID = 0x25
	PropUserProperty           PropID = 0x26
	PropMaximumPacketSize      PropID = 0x27
	PropWildcardSubAvailable   PropID = 0x28
	PropSubIDAvailable         PropID = 0x29
	PropSharedSubAvailable     PropID = 0x2A
)

// Properties are an MQTT 5 packet's properties. Present has bit id set for
// each property the packet carries (Set, Has), so that a property sent with
// its zero value (Session Expiry Interval 0, Maximum QoS 0) differs from
// one left out; User Property and Subscription Identifier are present when
// their slices are not empty.
type Properties struct {
	Present uint64

	PayloadFormat       byte
	MessageExpiry       uint32
	ContentType         string
	ResponseTopic       string
	CorrelationData     []byte
	SubscriptionIDs     []int // one in SUBSCRIBE; any number in PUBLISH to a client (§3.3.4)
	SessionExpiry       uint32
	AssignedClientID    string
	ServerKeepAlive     uint16
	AuthMethod          string
	AuthData            []byte
	RequestProblemInfo  byte
	WillDelay           uint32
	RequestResponseInfo byte
	ResponseInfo        string
	ServerReference     string
	ReasonString        string
	ReceiveMaximum      uint16
	TopicAliasMaximum   uint16
	TopicAlias          uint16
	MaximumQoS          byte
	RetainAvailable     byte
	User                []UserProperty
	MaximumPacketSize   uint32
	WildcardSubAvail    byte
	SubIDAvail          byte
	SharedSubAvail      byte
}

// UserProperty is a name-value pair (§3.1.2.11.8); names may repeat and
// their order is kept.
type UserProperty struct{ Key, Value string }

// Has reports whether the property id is present.
func (p *Properties) Has(id PropID) bool {
	switch id {
	case PropUserProperty:
		return len(p.User) > 0
	case PropSubscriptionIdentifier:
		return len(p.SubscriptionIDs) > 0
	}
	return p.Present&(1<<id) != 0
}

// Set marks the property id present; its value is the field's. User
// Property and Subscription Identifier need no Set: their slices say.
func (p *Properties) Set(id PropID) {
	if id != PropUserProperty && id != PropSubscriptionIdentifier {
		p.Present |= 1 << id
	}
}

// Clear marks the property id absent.
func (p *Properties) Clear(id PropID) { p.Present &^= 1 << id }

// kind is what a property's value is (§2.2.2.2).
type kind byte

const (
	kByte kind = iota
	kUint16
	kUint32
	kVarint
	kString
	kBinary
	kPair
)

// where a property may appear: a bit per packet type, and willProps for
// the will properties of CONNECT's payload (§3.1.3.2).
const willProps = 0

func in(ts ...Type) uint16 {
	var m uint16
	for _, t := range ts {
		m |= 1 << t
	}
	return m
}

type propDef struct {
	kind  kind
	where uint16
	name  string
}

var propTable = [64]propDef{
	PropPayloadFormat:          {kByte, in(PUBLISH, willProps), "Payload Format Indicator"},
	PropMessageExpiry:          {kUint32, in(PUBLISH, willProps), "Message Expiry Interval"},
	PropContentType:            {kString, in(PUBLISH, willProps), "Content Type"},
	PropResponseTopic:          {kString, in(PUBLISH, willProps), "Response Topic"},
	PropCorrelationData:        {kBinary, in(PUBLISH, willProps), "Correlation Data"},
	PropSubscriptionIdentifier: {kVarint, in(PUBLISH, SUBSCRIBE), "Subscription Identifier"},
	PropSessionExpiry:          {kUint32, in(CONNECT, CONNACK, DISCONNECT), "Session Expiry Interval"},
	PropAssignedClientID:       {kString, in(CONNACK), "Assigned Client Identifier"},
	PropServerKeepAlive:        {kUint16, in(CONNACK), "Server Keep Alive"},
	PropAuthMethod:             {kString, in(CONNECT, CONNACK, AUTH), "Authentication Method"},
	PropAuthData:               {kBinary, in(CONNECT, CONNACK, AUTH), "Authentication Data"},
	PropRequestProblemInfo:     {kByte, in(CONNECT), "Request Problem Information"},
	PropWillDelay:              {kUint32, in(willProps), "Will Delay Interval"},
	PropRequestResponseInfo:    {kByte, in(CONNECT), "Request Response Information"},
	PropResponseInfo:           {kString, in(CONNACK), "Response Information"},
	PropServerReference:        {kString, in(CONNACK, DISCONNECT), "Server Reference"},
	PropReasonString:           {kString, in(CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT, AUTH), "Reason String"},
	PropReceiveMaximum:         {kUint16, in(CONNECT, CONNACK), "Receive Maximum"},
	PropTopicAliasMaximum:      {kUint16, in(CONNECT, CONNACK), "Topic Alias Maximum"},
	PropTopicAlias:             {kUint16, in(PUBLISH), "Topic Alias"},
	PropMaximumQoS:             {kByte, in(CONNACK), "Maximum QoS"},
	PropRetainAvailable:        {kByte, in(CONNACK), "Retain Available"},
	PropUserProperty:           {kPair, in(CONNECT, CONNACK, PUBLISH, willProps, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, DISCONNECT, AUTH), "User Property"},
	PropMaximumPacketSize:      {kUint32, in(CONNECT, CONNACK), "Maximum Packet Size"},
	PropWildcardSubAvailable:   {kByte, in(CONNACK), "Wildcard Subscription Available"},
	PropSubIDAvailable:         {kByte, in(CONNACK), "Subscription Identifier Available"},
	PropSharedSubAvailable:     {kByte, in(CONNACK), "Shared Subscription Available"},
}

// properties decodes a property list for packet type t (willProps for a
// will). §2.2.2.2: an identifier unknown or not valid for the packet, or
// a value of the wrong form, makes it malformed; a property that may
// appear once appearing twice, or a value the property's own section
// forbids, is a protocol error.
func (d *decoder) properties(t Type) (Properties, error) {
	var p Properties
	n, err := d.varint("property length")
	if err != nil {
		return p, err
	}
	if d.left() < n {
		return p, d.short("properties")
	}
	end := d.off + n
	var seen uint64
	sub := &decoder{b: d.b[:end], off: d.off, v: d.v, t: d.t}
	for !sub.done() {
		idv, err := sub.varint("property identifier")
		if err != nil {
			return p, err
		}
		if idv >= len(propTable) || propTable[idv].name == "" {
			return p, malformed("%s: unknown property identifier 0x%02x", d.t, idv)
		}
		id, def := PropID(idv), propTable[idv]
		if def.where&(1<<t) == 0 {
			return p, malformed("%s: %s is not allowed here", what(t), def.name)
		}
		multi := id == PropUserProperty || (id == PropSubscriptionIdentifier && t == PUBLISH)
		if seen&(1<<id) != 0 && !multi {
			return p, protocolErr("%s: %s more than once", what(t), def.name)
		}
		seen |= 1 << id
		if !multi {
			p.Set(id)
		}
		if err := sub.value(&p, id, def.kind, def.name); err != nil {
			return p, err
		}
	}
	d.off = end
	return p, p.check(what(t))
}

func what(t Type) string {
	if t == willProps {
		return "CONNECT will"
	}
	return t.String()
}

func (d *decoder) value(p *Properties, id PropID, k kind, name string) (err error) {
	var b byte
	var u16 uint16
	var u32 uint32
	var vi int
	var s string
	var bin []byte
	switch k {
	case kByte:
		b, err = d.byte(name)
	case kUint16:
		u16, err = d.uint16(name)
	case kUint32:
		u32, err = d.uint32(name)
	case kVarint:
		vi, err = d.varint(name)
	case kString:
		s, err = d.string(name)
	case kBinary:
		bin, err = d.binary(name)
	case kPair:
		var k, v string
		if k, err = d.string(name + " name"); err == nil {
			if v, err = d.string(name + " value"); err == nil {
				p.User = append(p.User, UserProperty{k, v})
			}
		}
		return err
	}
	if err != nil {
		return err
	}
	switch id {
	case PropPayloadFormat:
		p.PayloadFormat = b
	case PropMessageExpiry:
		p.MessageExpiry = u32
	case PropContentType:
		p.ContentType = s
	case PropResponseTopic:
		p.ResponseTopic = s
	case PropCorrelationData:
		p.CorrelationData = bin
	case PropSubscriptionIdentifier:
		p.SubscriptionIDs = append(p.SubscriptionIDs, vi)
	case PropSessionExpiry:
		p.SessionExpiry = u32
	case PropAssignedClientID:
		p.AssignedClientID = s
	case PropServerKeepAlive:
		p.ServerKeepAlive = u16
	case PropAuthMethod:
		p.AuthMethod = s
	case PropAuthData:
		p.AuthData = bin
	case PropRequestProblemInfo:
		p.RequestProblemInfo = b
	case PropWillDelay:
		p.WillDelay = u32
	case PropRequestResponseInfo:
		p.RequestResponseInfo = b
	case PropResponseInfo:
		p.ResponseInfo = s
	case PropServerReference:
		p.ServerReference = s
	case PropReasonString:
		p.ReasonString = s
	case PropReceiveMaximum:
		p.ReceiveMaximum = u16
	case PropTopicAliasMaximum:
		p.TopicAliasMaximum = u16
	case PropTopicAlias:
		p.TopicAlias = u16
	case PropMaximumQoS:
		p.MaximumQoS = b
	case PropRetainAvailable:
		p.RetainAvailable = b
	case PropMaximumPacketSize:
		p.MaximumPacketSize = u32
	case PropWildcardSubAvailable:
		p.WildcardSubAvail = b
	case PropSubIDAvailable:
		p.SubIDAvail = b
	case PropSharedSubAvailable:
		p.SharedSubAvail = b
	}
	return nil
}

// check applies the value rules of each property's own section.
func (p *Properties) check(where string) error {
	bad := func(id PropID, v any) error {
		return protocolErr("%s: %s %v is not allowed", where, propTable[id].name, v)
	}
	for _, id := range []PropID{PropPayloadFormat, PropRequestProblemInfo, PropRequestResponseInfo, PropMaximumQoS,
		PropRetainAvailable, PropWildcardSubAvailable, PropSubIDAvailable, PropSharedSubAvailable} {
		if v := p.get(id).i; p.Has(id) && v > 1 {
			return bad(id, v) // §3.1.2.11.6, §3.1.2.11.7, §3.2.2.3.4, §3.3.2.3.2 ...: 0 or 1
		}
	}
	switch {
	case p.Has(PropReceiveMaximum) && p.ReceiveMaximum == 0:
		return bad(PropReceiveMaximum, 0) // §3.1.2.11.3, §3.2.2.3.3
	case p.Has(PropMaximumPacketSize) && p.MaximumPacketSize == 0:
		return bad(PropMaximumPacketSize, 0) // §3.1.2.11.4, §3.2.2.3.6
	case p.Has(PropTopicAlias) && p.TopicAlias == 0:
		return &Error{Code: TopicAliasInvalid, Reason: where + ": Topic Alias 0"} // §3.3.2.3.4
	}
	for _, id := range p.SubscriptionIDs {
		if id == 0 {
			return bad(PropSubscriptionIdentifier, 0) // §3.3.2.3.8, §3.8.2.1.2
		}
	}
	if p.Has(PropAuthData) && !p.Has(PropAuthMethod) {
		return protocolErr("%s: Authentication Data without Authentication Method", where) // §3.1.2.11.10
	}
	return nil
}

// propsLen is the encoded length of p's properties, without the length prefix.
func (p *Properties) propsLen() int {
	if p.Present == 0 && len(p.User) == 0 && len(p.SubscriptionIDs) == 0 {
		return 0
	}
	n := 0
	for _, id := range p.SubscriptionIDs {
		n += 1 + varintLen(id)
	}
	for _, u := range p.User {
		n += 5 + len(u.Key) + len(u.Value)
	}
	for id := range PropID(len(propTable)) {
		if p.Present&(1<<id) == 0 {
			continue
		}
		switch v := p.get(id); propTable[id].kind {
		case kByte:
			n += 2
		case kUint16:
			n += 3
		case kUint32:
			n += 5
		case kString:
			n += 3 + len(v.s)
		case kBinary:
			n += 3 + len(v.b)
		}
	}
	return n
}

// size is the properties' length with their length prefix.
func (p *Properties) size() int {
	n := p.propsLen()
	return varintLen(n) + n
}

// appendTo appends the properties with their length prefix, in identifier
// order, the repeatable ones once per value.
func (p *Properties) appendTo(b []byte) []byte {
	b = appendVarint(b, p.propsLen())
	for id := range PropID(len(propTable)) {
		switch {
		case id == PropSubscriptionIdentifier:
			for _, sid := range p.SubscriptionIDs {
				b = appendVarint(append(b, byte(id)), sid)
			}
			continue
		case id == PropUserProperty:
			for _, u := range p.User {
				b = appendString(appendString(append(b, byte(id)), u.Key), u.Value)
			}
			continue
		case p.Present&(1<<id) == 0:
			continue
		}
		b = append(b, byte(id))
		switch v := p.get(id); propTable[id].kind {
		case kByte:
			b = append(b, byte(v.i))
		case kUint16:
			b = appendUint16(b, uint16(v.i))
		case kUint32:
			b = appendUint32(b, uint32(v.i))
		case kString:
			b = appendString(b, v.s)
		case kBinary:
			b = appendBinary(b, v.b)
		}
	}
	return b
}

type propValue struct {
	i int
	s string
	b []byte
}

// get is the value of a property that appears at most once.
func (p *Properties) get(id PropID) propValue {
	switch id {
	case PropPayloadFormat:
		return propValue{i: int(p.PayloadFormat)}
	case PropMessageExpiry:
		return propValue{i: int(p.MessageExpiry)}
	case PropContentType:
		return propValue{s: p.ContentType}
	case PropResponseTopic:
		return propValue{s: p.ResponseTopic}
	case PropCorrelationData:
		return propValue{b: p.CorrelationData}
	case PropSessionExpiry:
		return propValue{i: int(p.SessionExpiry)}
	case PropAssignedClientID:
		return propValue{s: p.AssignedClientID}
	case PropServerKeepAlive:
		return propValue{i: int(p.ServerKeepAlive)}
	case PropAuthMethod:
		return propValue{s: p.AuthMethod}
	case PropAuthData:
		return propValue{b: p.AuthData}
	case PropRequestProblemInfo:
		return propValue{i: int(p.RequestProblemInfo)}
	case PropWillDelay:
		return propValue{i: int(p.WillDelay)}
	case PropRequestResponseInfo:
		return propValue{i: int(p.RequestResponseInfo)}
	case PropResponseInfo:
		return propValue{s: p.ResponseInfo}
	case PropServerReference:
		return propValue{s: p.ServerReference}
	case PropReasonString:
		return propValue{s: p.ReasonString}
	case PropReceiveMaximum:
		return propValue{i: int(p.ReceiveMaximum)}
	case PropTopicAliasMaximum:
		return propValue{i: int(p.TopicAliasMaximum)}
	case PropTopicAlias:
		return propValue{i: int(p.TopicAlias)}
	case PropMaximumQoS:
		return propValue{i: int(p.MaximumQoS)}
	case PropRetainAvailable:
		return propValue{i: int(p.RetainAvailable)}
	case PropMaximumPacketSize:
		return propValue{i: int(p.MaximumPacketSize)}
	case PropWildcardSubAvailable:
		return propValue{i: int(p.WildcardSubAvail)}
	case PropSubIDAvailable:
		return propValue{i: int(p.SubIDAvail)}
	case PropSharedSubAvailable:
		return propValue{i: int(p.SharedSubAvail)}
	}
	return propValue{}
}

// Strip removes the Reason String and User Properties, which a sender may
// leave out of a packet that would otherwise exceed the receiver's Maximum
// Packet Size (MQTT 5 §3.1.2.11.4, §3.4.2.2.2).
func (p *Properties) Strip() {
	p.Clear(PropReasonString)
	p.ReasonString = ""
	p.User = nil
}

func (id PropID) String() string {
	if int(id) < len(propTable) && propTable[id].name != "" {
		return propTable[id].name
	}
	return fmt.Sprintf("property 0x%02x", byte(id))
}
