package packet

import "fmt"

// protocolName is CONNECT's Protocol Name in both versions (§3.1.2.1).
const protocolName = "MQTT"

// Connect is a CONNECT packet (MQTT 5 §3.1, 3.1.1 §3.1).
type Connect struct {
	Version    Version
	CleanStart bool // Clean Session in 3.1.1
	KeepAlive  uint16
	Props      Properties
	ClientID   string
	Will       *Will // nil without the Will Flag
	// UsernameFlag and PasswordFlag say the fields are present: an empty
	// user name differs from none.
	UsernameFlag bool
	Username     string
	PasswordFlag bool
	Password     []byte
}

// Will is CONNECT's will message (§3.1.2.5, §3.1.3.2).
type Will struct {
	QoS     byte
	Retain  bool
	Props   Properties
	Topic   string
	Payload []byte
}

func (*Connect) Type() Type  { return CONNECT }
func (*Connect) flags() byte { return 0 }
func (c *Connect) connectFlags() byte {
	var f byte
	if c.CleanStart {
		f |= 0x02
	}
	if w := c.Will; w != nil {
		f |= 0x04 | w.QoS<<3
		if w.Retain {
			f |= 0x20
		}
	}
	if c.PasswordFlag {
		f |= 0x40
	}
	if c.UsernameFlag {
		f |= 0x80
	}
	return f
}

// size ignores v: a CONNECT is encoded in the version it names.
func (c *Connect) size(Version) int {
	n := 2 + len(protocolName) + 1 + 1 + 2 + 2 + len(c.ClientID)
	if c.Version == V5 {
		n += c.Props.size()
	}
	if w := c.Will; w != nil {
		if c.Version == V5 {
			n += w.Props.size()
		}
		n += 2 + len(w.Topic) + 2 + len(w.Payload)
	}
	if c.UsernameFlag {
		n += 2 + len(c.Username)
	}
	if c.PasswordFlag {
		n += 2 + len(c.Password)
	}
	return n
}

func (c *Connect) appendBody(_ Version, b []byte) []byte {
	b = appendString(b, protocolName)
	b = append(b, byte(c.Version), c.connectFlags())
	b = appendUint16(b, c.KeepAlive)
	if c.Version == V5 {
		b = c.Props.appendTo(b)
	}
	b = appendString(b, c.ClientID)
	if w := c.Will; w != nil {
		if c.Version == V5 {
			b = w.Props.appendTo(b)
		}
		b = appendString(b, w.Topic)
		b = appendBinary(b, w.Payload)
	}
	if c.UsernameFlag {
		b = appendString(b, c.Username)
	}
	if c.PasswordFlag {
		b = appendBinary(b, c.Password)
	}
	return b
}

// connect decodes a CONNECT body. On an error found after the Protocol
// Level, the returned Connect carries the Version alone, so that the server
// can answer in the CONNACK form the client reads (§3.1.4, §4.13: a server
// may answer a malformed CONNECT with a CONNACK reason code).
func (d *decoder) connect() (*Connect, error) {
	name, err := d.string("protocol name")
	if err != nil {
		return nil, err
	}
	level, err := d.byte("protocol level")
	if err != nil {
		return nil, err
	}
	c := &Connect{Version: Version(level)}
	d.v = c.Version
	switch {
	case name == "MQIsdp" || (name == protocolName && level != byte(V311) && level != byte(V5)):
		// MQTT 3.1 and levels to come: §3.1.2.2 answers CONNACK 0x84 (3.1.1:
		// 0x01), in MQTT 5's form for a level above it.
		c.Version = V311
		if level > byte(V5) {
			c.Version = V5
		}
		return c, &Error{Code: UnsupportedProtocolVersion, Reason: fmt.Sprintf("unsupported protocol %s level %d", name, level)}
	case name != protocolName:
		return nil, malformed("CONNECT: protocol name %q is not MQTT", name)
	}
	if err := d.connectBody(c); err != nil {
		return &Connect{Version: c.Version}, err
	}
	return c, nil
}

func (d *decoder) connectBody(c *Connect) error {
	flags, err := d.byte("connect flags")
	if err != nil {
		return err
	}
	// §3.1.2.3: the reserved flag is 0; §3.1.2.6: Will QoS 3 is malformed;
	// §3.1.2.5-7: without a will, no Will QoS or Will Retain.
	willQoS := flags >> 3 & 3
	switch {
	case flags&0x01 != 0:
		return malformed("CONNECT: the reserved connect flag is set")
	case willQoS == 3:
		return malformed("CONNECT: Will QoS 3")
	case flags&0x04 == 0 && flags&0x38 != 0:
		return malformed("CONNECT: Will QoS or Will Retain without the Will Flag")
	case c.Version == V311 && flags&0xC0 == 0x40:
		return malformed("CONNECT: a password without a user name") // 3.1.1 §3.1.2.9
	}
	c.CleanStart = flags&0x02 != 0
	c.UsernameFlag = flags&0x80 != 0
	c.PasswordFlag = flags&0x40 != 0
	if c.KeepAlive, err = d.uint16("keep alive"); err != nil {
		return err
	}
	if c.Version == V5 {
		if c.Props, err = d.properties(CONNECT); err != nil {
			return err
		}
	}
	if c.ClientID, err = d.string("client identifier"); err != nil {
		return err
	}
	if flags&0x04 != 0 {
		w := &Will{QoS: willQoS, Retain: flags&0x20 != 0}
		if c.Version == V5 {
			if w.Props, err = d.properties(willProps); err != nil {
				return err
			}
		}
		if w.Topic, err = d.string("will topic"); err != nil {
			return err
		}
		if !validTopicName(w.Topic) {
			return &Error{Code: TopicNameInvalid, Reason: "CONNECT: the will topic has a wildcard"}
		}
		if w.Payload, err = d.binary("will payload"); err != nil {
			return err
		}
		c.Will = w
	}
	if c.UsernameFlag {
		if c.Username, err = d.string("user name"); err != nil {
			return err
		}
	}
	if c.PasswordFlag {
		if c.Password, err = d.binary("password"); err != nil {
			return err
		}
	}
	return nil
}

// Connack is a CONNACK packet (§3.2). Code is an MQTT 5 reason code, for a
// 3.1.1 connection too: the codec translates to and from its return codes.
type Connack struct {
	SessionPresent bool
	Code           ReasonCode
	Props          Properties
}

func (*Connack) Type() Type  { return CONNACK }
func (*Connack) flags() byte { return 0 }

func (c *Connack) size(v Version) int {
	if v == V5 {
		return 2 + c.Props.size()
	}
	return 2
}

func (c *Connack) appendBody(v Version, b []byte) []byte {
	var ack byte
	if c.SessionPresent {
		ack = 1
	}
	if v != V5 {
		return append(b, ack, c.Code.returnCodeV3())
	}
	return c.Props.appendTo(append(b, ack, byte(c.Code)))
}

func (d *decoder) connack() (*Connack, error) {
	ack, err := d.byte("acknowledge flags")
	if err != nil {
		return nil, err
	}
	code, err := d.byte("reason code")
	if err != nil {
		return nil, err
	}
	if ack&0xFE != 0 {
		return nil, malformed("CONNACK: reserved acknowledge flags set") // §3.2.2.1
	}
	c := &Connack{SessionPresent: ack == 1, Code: ReasonCode(code)}
	if d.v != V5 {
		if int(code) >= len(connackV3) {
			return nil, malformed("CONNACK: return code %d", code)
		}
		c.Code = connackV3[code]
	} else {
		if !validReason(CONNACK, c.Code) {
			return nil, malformed("CONNACK: reason code 0x%02x", code)
		}
		if c.Props, err = d.properties(CONNACK); err != nil {
			return nil, err
		}
	}
	if c.SessionPresent && c.Code != Success {
		return nil, protocolErr("CONNACK: Session Present with a refusal") // §3.2.2.1.1
	}
	return c, nil
}
