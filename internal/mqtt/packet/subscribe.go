package packet

// Subscribe is a SUBSCRIBE packet (§3.8).
type Subscribe struct {
	PacketID uint16
	Props    Properties // MQTT 5: Subscription Identifier, User Property
	Filters  []Subscription
}

// Subscription is one topic filter of a SUBSCRIBE with its options
// (MQTT 5 §3.8.3.1; 3.1.1 has the QoS alone).
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte // 0 send retained, 1 only for a new subscription, 2 never
}

func (*Subscribe) Type() Type  { return SUBSCRIBE }
func (*Subscribe) flags() byte { return 0x02 }

func (s *Subscribe) size(v Version) int {
	n := 2
	if v == V5 {
		n += s.Props.size()
	}
	for _, f := range s.Filters {
		n += 2 + len(f.Filter) + 1
	}
	return n
}

func (s *Subscribe) appendBody(v Version, b []byte) []byte {
	b = appendUint16(b, s.PacketID)
	if v == V5 {
		b = s.Props.appendTo(b)
	}
	for _, f := range s.Filters {
		b = append(appendString(b, f.Filter), f.options(v))
	}
	return b
}

func (f Subscription) options(v Version) byte {
	o := f.QoS
	if v != V5 {
		return o
	}
	if f.NoLocal {
		o |= 0x04
	}
	if f.RetainAsPublished {
		o |= 0x08
	}
	return o | f.RetainHandling<<4
}

func (d *decoder) subscribe() (*Subscribe, error) {
	s := &Subscribe{}
	var err error
	if s.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if d.v == V5 {
		if s.Props, err = d.properties(SUBSCRIBE); err != nil {
			return nil, err
		}
	}
	for !d.done() {
		var f Subscription
		if f.Filter, err = d.string("topic filter"); err != nil {
			return nil, err
		}
		o, err := d.byte("subscription options")
		if err != nil {
			return nil, err
		}
		reserved := byte(0xFC) // 3.1.1 §3.8.3.1: the QoS bits alone
		if d.v == V5 {
			reserved = 0xC0 // MQTT 5 §3.8.3.1
		}
		f.QoS, f.NoLocal, f.RetainAsPublished, f.RetainHandling = o&3, o&0x04 != 0, o&0x08 != 0, o>>4&3
		switch {
		case o&reserved != 0:
			return nil, malformed("SUBSCRIBE: reserved subscription option bits set for %q", f.Filter)
		case f.QoS == 3:
			return nil, malformed("SUBSCRIBE: QoS 3 for %q", f.Filter)
		case f.RetainHandling == 3:
			return nil, protocolErr("SUBSCRIBE: Retain Handling 3 for %q", f.Filter)
		}
		s.Filters = append(s.Filters, f)
	}
	if len(s.Filters) == 0 {
		return nil, protocolErr("SUBSCRIBE without a topic filter") // §3.8.3
	}
	return s, nil
}

// Unsubscribe is an UNSUBSCRIBE packet (§3.10).
type Unsubscribe struct {
	PacketID uint16
	Props    Properties // MQTT 5: User Property
	Filters  []string
}

func (*Unsubscribe) Type() Type  { return UNSUBSCRIBE }
func (*Unsubscribe) flags() byte { return 0x02 }

func (u *Unsubscribe) size(v Version) int {
	n := 2
	if v == V5 {
		n += u.Props.size()
	}
	for _, f := range u.Filters {
		n += 2 + len(f)
	}
	return n
}

func (u *Unsubscribe) appendBody(v Version, b []byte) []byte {
	b = appendUint16(b, u.PacketID)
	if v == V5 {
		b = u.Props.appendTo(b)
	}
	for _, f := range u.Filters {
		b = appendString(b, f)
	}
	return b
}

func (d *decoder) unsubscribe() (*Unsubscribe, error) {
	u := &Unsubscribe{}
	var err error
	if u.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if d.v == V5 {
		if u.Props, err = d.properties(UNSUBSCRIBE); err != nil {
			return nil, err
		}
	}
	for !d.done() {
		f, err := d.string("topic filter")
		if err != nil {
			return nil, err
		}
		u.Filters = append(u.Filters, f)
	}
	if len(u.Filters) == 0 {
		return nil, protocolErr("UNSUBSCRIBE without a topic filter") // §3.10.3
	}
	return u, nil
}

// SubAck is a SUBACK or UNSUBACK packet (§3.9, §3.11): one reason code per
// filter of the request. A 3.1.1 UNSUBACK has no codes, and a 3.1.1 SUBACK
// says any refusal as 0x80.
type SubAck struct {
	Kind     Type // SUBACK or UNSUBACK
	PacketID uint16
	Props    Properties // MQTT 5 only
	Codes    []ReasonCode
}

func (a *SubAck) Type() Type { return a.Kind }
func (*SubAck) flags() byte  { return 0 }

func (a *SubAck) size(v Version) int {
	switch {
	case v == V5:
		return 2 + a.Props.size() + len(a.Codes)
	case a.Kind == UNSUBACK:
		return 2
	}
	return 2 + len(a.Codes)
}

func (a *SubAck) appendBody(v Version, b []byte) []byte {
	b = appendUint16(b, a.PacketID)
	switch {
	case v == V5:
		b = a.Props.appendTo(b)
	case a.Kind == UNSUBACK:
		return b
	}
	for _, c := range a.Codes {
		if v != V5 && c.IsError() {
			c = UnspecifiedError // 3.1.1 §3.9.3: 0x80 Failure
		}
		b = append(b, byte(c))
	}
	return b
}

func (d *decoder) subAck() (*SubAck, error) {
	a := &SubAck{Kind: d.t}
	var err error
	if a.PacketID, err = d.packetID(); err != nil {
		return nil, err
	}
	if d.v == V5 {
		if a.Props, err = d.properties(d.t); err != nil {
			return nil, err
		}
	} else if a.Kind == UNSUBACK {
		return a, nil
	}
	for !d.done() {
		c, _ := d.byte("reason code")
		ok := validReason(d.t, ReasonCode(c))
		if d.v != V5 {
			ok = c <= 2 || c == 0x80
		}
		if !ok {
			return nil, malformed("%s: reason code 0x%02x", d.t, c)
		}
		a.Codes = append(a.Codes, ReasonCode(c))
	}
	if len(a.Codes) == 0 {
		return nil, protocolErr("%s without a reason code", d.t)
	}
	return a, nil
}
