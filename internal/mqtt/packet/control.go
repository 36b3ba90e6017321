package packet

// Ping is a PINGREQ, or a PINGRESP when Response is set (§3.12, §3.13).
type Ping struct{ Response bool }

func (p *Ping) Type() Type {
	if p.Response {
		return PINGRESP
	}
	return PINGREQ
}
func (*Ping) flags() byte                           { return 0 }
func (*Ping) size(Version) int                      { return 0 }
func (*Ping) appendBody(_ Version, b []byte) []byte { return b }

// Disconnect is a DISCONNECT packet (§3.14). An MQTT 3.1.1 DISCONNECT is
// the client's alone and carries nothing; a 3.1.1 server never sends one
// (3.1.1 §3.14): the server core closes the connection instead.
type Disconnect struct {
	Code  ReasonCode
	Props Properties
}

func (*Disconnect) Type() Type  { return DISCONNECT }
func (*Disconnect) flags() byte { return 0 }

func (p *Disconnect) size(v Version) int { return reasonAndProps(v, p.Code, &p.Props) }

func (p *Disconnect) appendBody(v Version, b []byte) []byte {
	return appendReasonAndProps(v, b, p.Code, &p.Props)
}

func (d *decoder) disconnect() (*Disconnect, error) {
	p := &Disconnect{}
	return p, d.reasonAndProps(&p.Code, &p.Props)
}

// Auth is an AUTH packet (MQTT 5 §3.15), for enhanced authentication.
type Auth struct {
	Code  ReasonCode
	Props Properties
}

func (*Auth) Type() Type  { return AUTH }
func (*Auth) flags() byte { return 0 }

func (p *Auth) size(v Version) int { return reasonAndProps(v, p.Code, &p.Props) }

func (p *Auth) appendBody(v Version, b []byte) []byte {
	return appendReasonAndProps(v, b, p.Code, &p.Props)
}

func (d *decoder) auth() (*Auth, error) {
	p := &Auth{}
	return p, d.reasonAndProps(&p.Code, &p.Props)
}

// reasonAndProps is the body of DISCONNECT and AUTH: empty for Success
// without properties (§3.14.2.1, §3.15.2.1), the code alone without
// properties, both otherwise; always empty in 3.1.1.
func reasonAndProps(v Version, c ReasonCode, p *Properties) int {
	switch {
	case v != V5 || (c == Success && p.propsLen() == 0):
		return 0
	case p.propsLen() == 0:
		return 1
	}
	return 1 + p.size()
}

func appendReasonAndProps(v Version, b []byte, c ReasonCode, p *Properties) []byte {
	switch reasonAndProps(v, c, p) {
	case 0:
		return b
	case 1:
		return append(b, byte(c))
	}
	return p.appendTo(append(b, byte(c)))
}

func (d *decoder) reasonAndProps(c *ReasonCode, p *Properties) error {
	if d.done() {
		return nil
	}
	if d.v != V5 {
		return malformed("%s with a body in MQTT 3.1.1", d.t) // 3.1.1 §3.14.1
	}
	b, _ := d.byte("reason code")
	if *c = ReasonCode(b); !validReason(d.t, *c) {
		return malformed("%s: reason code 0x%02x", d.t, b)
	}
	if d.done() {
		return nil
	}
	var err error
	*p, err = d.properties(d.t)
	return err
}
