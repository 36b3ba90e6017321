package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"math"
	"time"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// connect reads and answers the CONNECT (MQTT 5 §3.1, §3.2); false when the
// connection ends.
func (c *conn) connect() bool {
	h, body, err := c.next()
	if err != nil {
		c.closeNow()
		return false
	}
	pk, err := packet.DecodeConnect(h, body, c.srv.cfg.MaxPacketSize)
	if pk != nil {
		c.wmu.Lock()
		c.version = pk.Version
		c.wmu.Unlock()
	}
	if err != nil {
		// §4.13.1: a CONNECT error may be answered with a CONNACK; 3.1.1
		// has one only for an unsupported version (§3.1.2.2).
		if c.version == packet.V5 || (c.version == packet.V311 && errors.Is(err, packet.ErrUnsupported)) {
			c.refuse(packet.ReasonOf(err), err.Error())
		} else {
			c.closeNow()
		}
		return false
	}
	s := c.srv
	cl := &Client{ID: pk.ClientID, srv: s}
	cl.version.Store(uint32(pk.Version))
	var assigned bool
	if cl.ID == "" {
		if pk.Version != packet.V5 && !pk.CleanStart {
			// 3.1.1 §3.1.3.1: no session to come back to without an id.
			c.refuse(packet.ClientIdentifierNotValid, "")
			return false
		}
		cl.ID, assigned = newClientID(), true
	}
	cl.connected.Store(c) // for Auth: Conn() is the candidate's connection
	c.keepAlive = time.Duration(pk.KeepAlive) * time.Second
	serverKeepAlive := false
	if max := s.cfg.MaxKeepAlive; max > 0 && pk.Version == packet.V5 && (c.keepAlive == 0 || c.keepAlive > max) {
		c.keepAlive, serverKeepAlive = max, true // §3.2.2.3.14
	}
	c.sendQuota = s.cfg.Inflight
	if pk.Props.Has(packet.PropReceiveMaximum) {
		c.sendQuota = min(int(pk.Props.ReceiveMaximum), s.cfg.Inflight) // §3.1.2.11.3
	}
	c.noProblemInfo = pk.Props.Has(packet.PropRequestProblemInfo) && pk.Props.RequestProblemInfo == 0
	c.aliasMaxOut = pk.Props.TopicAliasMaximum
	if pk.Props.Has(packet.PropMaximumPacketSize) {
		c.maxOut = int(min(pk.Props.MaximumPacketSize, math.MaxInt32))
	}
	var expiry time.Duration
	switch {
	case pk.Version == packet.V5:
		expiry = time.Duration(pk.Props.SessionExpiry) * time.Second // 0xFFFFFFFF: capped below
	case !pk.CleanStart:
		expiry = s.cfg.MaxSessionExpiry
	}
	capped := expiry > s.cfg.MaxSessionExpiry
	expiry = min(expiry, s.cfg.MaxSessionExpiry)
	if w := pk.Will; w != nil {
		c.will = w
		c.willDelay = time.Duration(w.Props.WillDelay) * time.Second
		if !topic.ValidName(w.Topic) {
			c.refuse(packet.TopicNameInvalid, "the will topic is not a valid topic name")
			return false
		}
	}

	s.mu.RLock()
	old := s.sessions[cl.ID]
	s.mu.RUnlock()
	// In a cluster, the session may live in the store, made or last held
	// by another node: read before Auth decides whether cl may take it,
	// clean start or not (§3.1.4: whose it is decides as on one server).
	shared, _ := s.cfg.Store.(SharedStore)
	var fetched *Client
	if old == nil && shared != nil {
		old = s.fetch(shared, cl.ID, pk.CleanStart)
		fetched = old
		defer func() {
			if c.client == nil {
				shared.Release(cl.ID) // refused: the session stays whoever's it was
			}
		}()
	}
	var oldIdentity any
	if old != nil {
		oldIdentity = old.Identity()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	err = s.cfg.Auth.Connect(ctx, cl, pk, oldIdentity)
	for ch := (*Challenge)(nil); errors.As(err, &ch) && pk.Version == packet.V5; {
		// §4.12: the exchange goes on in AUTH packets until CONNACK; the
		// listener's deadline for the CONNECT bounds it.
		var next *packet.Auth
		if next, err = c.challenge(pk.Props.AuthMethod, ch.Data); err == nil {
			err = s.cfg.Auth.Continue(ctx, cl, next)
		}
	}
	cancel()
	if err != nil {
		var pe *packet.Error
		if !errors.As(err, &pe) {
			// Not the client's doing (a store unreachable, a read that
			// failed): logged here, never told the client in detail.
			s.log.Warn("mqtt: CONNECT not decided", "client", cl.ID, "err", err)
			pe = &packet.Error{Code: packet.ServerUnavailable, Reason: "the server could not decide on the connection; try again later"}
		}
		c.refuse(pe.Code, pe.Reason)
		return false
	}

	clean := pk.CleanStart || cl.replace
	if s.cfg.Remote != nil {
		cl.claim, err = s.claim(cl.ID, clean)
		defer s.claimed(cl.ID)
		if err != nil {
			s.log.Warn("mqtt: the cluster did not order a connection", "client", cl.ID, "err", err)
			c.refuse(packet.ServerUnavailable, "the cluster cannot take the client identifier now")
			return false
		}
	}

	ack := &packet.Connack{}
	if pk.Version == packet.V5 {
		p := &ack.Props
		p.ReceiveMaximum, p.MaximumPacketSize, p.TopicAliasMaximum = s.cfg.ReceiveMaximum, uint32(s.cfg.MaxPacketSize), s.cfg.TopicAliasMaximum
		p.Set(packet.PropReceiveMaximum)
		p.Set(packet.PropMaximumPacketSize)
		p.Set(packet.PropTopicAliasMaximum)
		if assigned {
			p.AssignedClientID = cl.ID
			p.Set(packet.PropAssignedClientID)
		}
		if serverKeepAlive {
			p.ServerKeepAlive = uint16(c.keepAlive / time.Second)
			p.Set(packet.PropServerKeepAlive)
		}
		if capped {
			p.SessionExpiry = uint32(expiry / time.Second)
			p.Set(packet.PropSessionExpiry)
		}
	}
	// The listener's deadline for the CONNECT ends; keep-alive deadlines
	// are set for each read (fill).
	c.nc.SetDeadline(time.Time{})
	if shared != nil && clean && s.Client(cl.ID) == nil {
		// A session another node held, or one nobody holds since its node
		// ended: clean start discards it (§3.1.2.4) across the cluster,
		// and its will goes as it ends (§3.1.4): its holder, told of the
		// clean start, leaves the will to this node (Supersede), and a
		// dead one cannot publish it.
		s.discard(shared, cl.ID, fetched)
	}
	if clean {
		fetched = nil
	}
	c.client = s.attach(c, cl, fetched, clean, expiry, ack)
	if c.client == nil {
		return false
	}
	s.saveSession(c.client, time.Time{})
	return true
}

// attach makes cl's session the connection's: a new one, or the one its
// client identifier has (taken over from a connection still open, §3.1.4),
// which a clean start ends first, or the one fetched from a SharedStore.
// The CONNACK and the resent messages are queued under the session's
// lock, so no delivery overtakes them.
func (s *Server) attach(c *conn, cl, fetched *Client, clean bool, expiry time.Duration, ack *packet.Connack) *Client {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.closeNow()
			return nil
		}
		old := s.sessions[cl.ID]
		if old == nil && fetched != nil {
			s.mu.Unlock()
			s.adopt(fetched)
			fetched = nil
			continue
		}
		if old != nil && clean {
			s.mu.Unlock()
			s.takeOver(old, true)
			s.endSession(old)
			continue
		}
		sess := cl
		if old != nil {
			sess = old
		} else {
			s.sessions[cl.ID] = cl
			s.Stats.Sessions.Add(1)
		}
		s.mu.Unlock()
		if old != nil {
			s.takeOver(old, false)
		}
		sess.mu.Lock()
		if sess.ended || sess.ending {
			// It expired (or was discarded) since it was looked up: start
			// again, without it, once its end is done.
			ending := !sess.ended
			sess.mu.Unlock()
			if ending {
				s.endSession(sess)
			}
			continue
		}
		sess.stopTimersLocked() // §3.1.3.2.2: a new connection stops the will
		sess.will = nil
		sess.SetIdentity(cl.Identity())
		sess.version.Store(cl.version.Load())
		sess.expiry = expiry
		sess.claim = cl.claim
		sess.setConn(c)
		ack.SessionPresent = old != nil
		c.wmu.Lock()
		c.connected = true
		c.wmu.Unlock()
		s.Stats.Connected.Add(1)
		c.send(ack)
		if old != nil {
			sess.resume()
		}
		sess.mu.Unlock()
		return sess
	}
}

// takeOver ends the connection a session has, if any (§3.1.4: DISCONNECT
// 0x8E for MQTT 5), and detaches it. ends: the session ends with it (a
// clean start), which the connection's end learns here, with the detaching:
// it may run before the session's end does.
func (s *Server) takeOver(cl *Client, ends bool) {
	cl.mu.Lock()
	prev := cl.conn
	if prev != nil {
		prev.leftAs, prev.sessionEnds = cl.Identity(), ends
	}
	cl.setConn(nil)
	cl.mu.Unlock()
	if prev != nil {
		prev.close(packet.SessionTakenOver, "another connection took the session over")
	}
}

// refuse answers a CONNECT with a refusal and closes the connection.
func (c *conn) refuse(code packet.ReasonCode, reason string) {
	ack := &packet.Connack{Code: code}
	if c.version == packet.V5 && reason != "" {
		ack.Props.ReasonString = reason
		ack.Props.Set(packet.PropReasonString)
	}
	c.send(ack)
	c.close(code, "")
}

func newClientID() string {
	b := make([]byte, 12)
	rand.Read(b)
	return "auto-" + hex.EncodeToString(b)
}

// challenge sends AUTH 0x18 with data under method and reads the client's
// answer, which must be AUTH 0x18 with the same method (§4.12.0).
func (c *conn) challenge(method string, data []byte) (*packet.Auth, error) {
	a := &packet.Auth{Code: packet.ContinueAuthentication}
	a.Props.AuthMethod, a.Props.AuthData = method, data
	a.Props.Set(packet.PropAuthMethod)
	if data != nil {
		a.Props.Set(packet.PropAuthData)
	}
	c.send(a)
	h, body, err := c.next()
	if err != nil {
		return nil, err
	}
	p, err := packet.Decode(packet.V5, h, body, c.srv.cfg.MaxPacketSize)
	if err != nil {
		return nil, err
	}
	answer, ok := p.(*packet.Auth)
	switch {
	case !ok:
		return nil, &packet.Error{Code: packet.ProtocolError, Reason: p.Type().String() + " during authentication"}
	case answer.Code != packet.ContinueAuthentication || answer.Props.AuthMethod != method:
		return nil, &packet.Error{Code: packet.ProtocolError, Reason: "AUTH without Continue authentication and the CONNECT's method"}
	}
	return answer, nil
}
