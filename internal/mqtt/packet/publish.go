package packet

// Publish is a PUBLISH packet (§3.3).
type Publish struct {
	Dup      bool
	QoS      byte
	Retain   bool
	Topic    string // empty when a Topic Alias stands for it (MQTT 5 §3.3.2.3.4)
	PacketID uint16 // QoS 1 and 2 only
	Props    Properties
	Payload  []byte
}

func (*Publish) Type() Type { return PUBLISH }

func (p *Publish) flags() byte {
	f := p.QoS << 1
	if p.Dup {
		f |= 0x08
	}
	if p.Retain {
		f |= 0x01
	}
	return f
}

func (p *Publish) size(v Version) int {
	n := 2 + len(p.Topic) + len(p.Payload)
	if p.QoS > 0 {
		n += 2
	}
	if v == V5 {
		n += p.Props.size()
	}
	return n
}

func (p *Publish) appendBody(v Version, b []byte) []byte {
	b = appendString(b, p.Topic)
	if p.QoS > 0 {
		b = appendUint16(b, p.PacketID)
	}
	if v == V5 {
		b = p.Props.appendTo(b)
	}
	return append(b, p.Payload...)
}

func (d *decoder) publish(flags byte) (*Publish, error) {
	p := &Publish{Dup: flags&0x08 != 0, QoS: flags >> 1 & 3, Retain: flags&0x01 != 0}
	if p.Dup && p.QoS == 0 {
		return nil, malformed("PUBLISH: DUP set on a QoS 0 message") // §3.3.1.1
	}
	var err error
	if p.Topic, err = d.string("topic name"); err != nil {
		return nil, err
	}
	if !validTopicName(p.Topic) {
		return nil, &Error{Code: TopicNameInvalid, Reason: "PUBLISH: the topic name has a wildcard"} // §3.3.2.1
	}
	if p.QoS > 0 {
		if p.PacketID, err = d.packetID(); err != nil {
			return nil, err
		}
	}
	if d.v == V5 {
		if p.Props, err = d.properties(PUBLISH); err != nil {
			return nil, err
		}
	}
	if p.Topic == "" && !p.Props.Has(PropTopicAlias) {
		// 3.1.1 §4.7.3: a topic name has one character at least; MQTT 5
		// §3.3.2.1 allows an empty one only with a Topic Alias.
		return nil, protocolErr("PUBLISH: an empty topic name without a Topic Alias")
	}
	p.Payload = append([]byte{}, d.b[d.off:]...)
	d.off = len(d.b)
	return p, nil
}

// packetID reads a Packet Identifier, which is never 0 (§2.2.1).
func (d *decoder) packetID() (uint16, error) {
	id, err := d.uint16("packet identifier")
	if err == nil && id == 0 {
		err = protocolErr("%s: packet identifier 0", d.t)
	}
	return id, err
}

// Ack is a PUBACK, PUBREC, PUBREL or PUBCOMP packet (§3.4–§3.7): they
// share one form.
type Ack struct {
	Kind     Type
	PacketID uint16
	Code     ReasonCode // MQTT 5 only
	Props    Properties // MQTT 5 only
}

func (a *Ack) Type() Type { return a.Kind }

func (a *Ack) flags() byte {
	if a.Kind == PUBREL {
		return 0x02
	}
	return 0
}

// size: MQTT 5 §3.4.2.1 leaves out a Success code without properties, and
// the property length when there are none.
func (a *Ack) size(v Version) int {
	switch {
	case v != V5 || (a.Code == Success && a.Props.propsLen() == 0):
		return 2
	case a.Props.propsLen() == 0:
		return 3
	}
	return 3 + a.Props.size()
}

func (a *Ack) appendBody(v Version, b []byte) []byte {
	b = appendUint16(b, a.PacketID)
	switch a.size(v) {
	case 2:
		return b
	case 3:
		return append(b, byte(a.Code))
	}
	return a.Props.appendTo(append(b, byte(a.Code)))
}

func (d *decoder) ack() (*Ack, error) {
	a := &Ack{Kind: d.t}
	var err error
	if a.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if d.v != V5 || d.done() {
		return a, nil
	}
	c, err := d.byte("reason code")
	if err != nil {
		return nil, err
	}
	if a.Code = ReasonCode(c); !validReason(d.t, a.Code) {
		return nil, malformed("%s: reason code 0x%02x", d.t, c)
	}
	if d.done() {
		return a, nil
	}
	a.Props, err = d.properties(d.t)
	return a, err
}
