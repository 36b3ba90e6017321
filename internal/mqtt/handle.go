package mqtt

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// handle acts on one packet after CONNECT; false ends the connection.
func (c *conn) handle(p packet.Packet) bool {
	switch p := p.(type) {
	case *packet.Publish:
		return c.publish(p)
	case *packet.Ack:
		if p.Kind == packet.PUBREL {
			return c.pubrel(p)
		}
		c.client.acked(p)
	case *packet.Subscribe:
		return c.subscribe(p)
	case *packet.Unsubscribe:
		c.unsubscribe(p)
	case *packet.Ping:
		if p.Response {
			c.close(packet.ProtocolError, "PINGRESP from a client")
			return false
		}
		c.send(&packet.Ping{Response: true})
	case *packet.Disconnect:
		return c.disconnect(p)
	case *packet.Auth:
		return c.auth(p)
	default:
		// CONNACK, SUBACK, UNSUBACK: only a server sends them.
		c.close(packet.ProtocolError, p.Type().String()+" from a client")
		return false
	}
	return true
}

// publish handles a PUBLISH from the client (§3.3.4, §4.3).
func (c *conn) publish(p *packet.Publish) bool {
	s, cl := c.srv, c.client
	s.Stats.Received.Add(1)
	if !c.resolveAlias(p) {
		return false
	}
	if !topic.ValidName(p.Topic) {
		c.close(packet.TopicNameInvalid, "not a valid topic name")
		return false
	}
	// §4.7.2: topics starting with '$' are the server's ($SYS).
	serverTopic := p.Topic[0] == '$'
	if p.QoS == 2 {
		cl.mu.Lock()
		_, replay := cl.qos2[p.PacketID]
		full := !replay && len(cl.qos2) >= int(s.cfg.ReceiveMaximum)
		cl.mu.Unlock()
		switch {
		case replay: // §4.3.3: acknowledged again, not routed again
			c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID})
			return true
		case full: // §3.3.4: more than the Receive Maximum announced
			c.close(packet.ReceiveMaximumExceeded, "more unacknowledged QoS 2 messages than the Receive Maximum")
			return false
		}
	}
	if serverTopic || !s.cfg.Auth.Publish(cl, p.Topic) {
		s.Stats.DeniedPublish.Add(1)
		if c.version != packet.V5 {
			// 3.1.1 §3.3.5: no negative acknowledgement; the connection ends.
			c.closeNow()
			return false
		}
		c.ack(p, packet.NotAuthorized)
		return true
	}
	m := &Message{Topic: p.Topic, Payload: p.Payload, QoS: p.QoS, Retain: p.Retain, From: cl.ID}
	if c.version == packet.V5 {
		m.Props = messageProps(&p.Props)
		if p.Props.Has(packet.PropMessageExpiry) {
			m.Expires = time.Now().Add(time.Duration(p.Props.MessageExpiry) * time.Second)
		}
	}
	repeated := false
	if p.QoS == 2 {
		cl.mu.Lock()
		if cl.qos2 == nil {
			cl.qos2 = map[uint16]struct{}{}
		}
		cl.qos2[p.PacketID] = struct{}{}
		stored := cl.stored
		cl.mu.Unlock()
		if r, ok := s.cfg.Remote.(Repeats); ok && stored {
			repeated = r.Repeated(m, p.PacketID, p.Dup)
		}
	}
	if !repeated {
		waitRoom(s.publish(m))
	}
	if p.QoS == 2 {
		s.storeReceived(cl)
	}
	// Never 0x10 No matching subscribers (§3.4.2.1 lets the server choose):
	// it would tell any publisher whether someone listens on a topic.
	c.ack(p, packet.Success)
	return true
}

// ack acknowledges a QoS 1 or 2 PUBLISH with code alone: never the
// publisher's properties (§3.4.2.2: an acknowledgement's user properties
// are the server's own).
func (c *conn) ack(p *packet.Publish, code packet.ReasonCode) {
	switch p.QoS {
	case 1:
		c.send(&packet.Ack{Kind: packet.PUBACK, PacketID: p.PacketID, Code: code})
	case 2:
		c.send(&packet.Ack{Kind: packet.PUBREC, PacketID: p.PacketID, Code: code})
	}
}

// messageProps keeps the properties a message carries on to subscribers
// (§3.3.2.3); the Topic Alias and Subscription Identifiers are the
// connection's own.
func messageProps(p *packet.Properties) *packet.Properties {
	kept := *p
	kept.Clear(packet.PropTopicAlias)
	kept.TopicAlias = 0
	kept.SubscriptionIDs = nil
	kept.Clear(packet.PropMessageExpiry) // recomputed per delivery
	kept.MessageExpiry = 0
	if kept.Present == 0 && len(kept.User) == 0 {
		return nil
	}
	return &kept
}

// resolveAlias applies a Topic Alias (§3.3.2.3.4): a topic with an alias
// sets it, an empty topic uses it. The name it stands for is then checked
// like any other.
func (c *conn) resolveAlias(p *packet.Publish) bool {
	if !p.Props.Has(packet.PropTopicAlias) {
		return true
	}
	a := p.Props.TopicAlias
	if a > c.srv.cfg.TopicAliasMaximum {
		c.close(packet.TopicAliasInvalid, "a topic alias above the Topic Alias Maximum")
		return false
	}
	if p.Topic != "" {
		if c.aliasesIn == nil {
			c.aliasesIn = map[uint16]string{}
		}
		c.aliasesIn[a] = p.Topic
		return true
	}
	t, ok := c.aliasesIn[a]
	if !ok {
		c.close(packet.ProtocolError, "a topic alias that was never set")
		return false
	}
	p.Topic = t
	return true
}

// pubrel completes a QoS 2 message from the client (§4.3.3).
func (c *conn) pubrel(p *packet.Ack) bool {
	cl := c.client
	cl.mu.Lock()
	_, ok := cl.qos2[p.PacketID]
	delete(cl.qos2, p.PacketID)
	cl.mu.Unlock()
	code := packet.Success
	if ok {
		c.srv.storeReceived(cl)
	} else {
		code = packet.PacketIdentifierNotFound
	}
	c.send(&packet.Ack{Kind: packet.PUBCOMP, PacketID: p.PacketID, Code: code})
	return true
}

// subscribe handles SUBSCRIBE (§3.8.4): each filter checked, granted or
// refused on its own; then the retained messages the options ask for.
func (c *conn) subscribe(p *packet.Subscribe) bool {
	s, cl := c.srv, c.client
	ack := &packet.SubAck{Kind: packet.SUBACK, PacketID: p.PacketID, Codes: make([]packet.ReasonCode, len(p.Filters))}
	id := 0
	if len(p.Props.SubscriptionIDs) > 0 {
		id = p.Props.SubscriptionIDs[0]
	}
	var want, granted []topics.Subscription
	for i, f := range p.Filters {
		inner, shareOK := topic.ShareFilter(f.Filter)
		shared := inner != f.Filter
		switch {
		case !topic.ValidFilter(f.Filter) || !shareOK:
			ack.Codes[i] = packet.TopicFilterInvalid
			continue
		case shared && f.NoLocal:
			c.close(packet.ProtocolError, "No Local on a shared subscription") // §3.8.3.1
			return false
		case !s.cfg.Auth.Subscribe(cl, f.Filter):
			s.Stats.DeniedSubscribe.Add(1)
			ack.Codes[i] = packet.NotAuthorized
			continue
		}
		sub := topics.Subscription{Filter: f.Filter, QoS: f.QoS, NoLocal: f.NoLocal,
			RetainAsPublished: f.RetainAsPublished, RetainHandling: f.RetainHandling, ID: id}
		cl.mu.Lock()
		ended := cl.ended
		if !ended {
			if cl.subs == nil {
				cl.subs = map[string]topics.Subscription{}
			}
			cl.subs[f.Filter] = sub
			cl.nsubs.Store(int64(len(cl.subs)))
		}
		cl.mu.Unlock()
		if ended {
			return false
		}
		existed := s.subscribe(cl.ID, sub)
		granted = append(granted, sub)
		ack.Codes[i] = packet.ReasonCode(f.QoS)
		// §3.3.1.3: retained messages go to a new subscription with Retain
		// Handling 0 or 1, to a replaced one with 0 only, never to a shared one.
		if !shared && (f.RetainHandling == 0 || (f.RetainHandling == 1 && !existed)) {
			want = append(want, sub)
		}
	}
	s.storeSubscriptions(cl, granted, nil)
	c.send(ack)
	for _, sub := range want {
		var ms, expired []*Message
		inner, _ := topic.ShareFilter(sub.Filter)
		now := time.Now()
		s.retained.Match(inner, func(_ string, m *Message) {
			if !m.Expires.IsZero() && !now.Before(m.Expires) {
				expired = append(expired, m) // §3.3.2.3.3: no longer sent, nor kept
				return
			}
			ms = append(ms, m)
		})
		for _, m := range expired {
			s.dropExpired(m)
		}
		var ids []int
		if sub.ID != 0 {
			ids = []int{sub.ID}
		}
		var b batch
		for _, m := range ms {
			cl.deliver(m, sub.QoS, true, ids, &b)
		}
		b.commit(s)
	}
	return true
}

// unsubscribe handles UNSUBSCRIBE (§3.10.4).
func (c *conn) unsubscribe(p *packet.Unsubscribe) {
	s, cl := c.srv, c.client
	ack := &packet.SubAck{Kind: packet.UNSUBACK, PacketID: p.PacketID, Codes: make([]packet.ReasonCode, len(p.Filters))}
	for i, f := range p.Filters {
		cl.mu.Lock()
		delete(cl.subs, f)
		cl.nsubs.Store(int64(len(cl.subs)))
		cl.mu.Unlock()
		if !s.unsubscribe(cl.ID, f) {
			ack.Codes[i] = packet.NoSubscriptionExisted
		}
	}
	s.storeSubscriptions(cl, nil, p.Filters)
	c.send(ack)
}

// disconnect handles the client's DISCONNECT (§3.14.4): the will is
// discarded unless the reason is 0x04, and an MQTT 5 client may change its
// session expiry, though not from 0 (§3.14.2.2.2).
func (c *conn) disconnect(p *packet.Disconnect) bool {
	cl := c.client
	c.normalExit = p.Code != packet.DisconnectWithWill
	if p.Props.Has(packet.PropSessionExpiry) {
		cl.mu.Lock()
		was := cl.expiry
		if was > 0 {
			cl.expiry = min(time.Duration(p.Props.SessionExpiry)*time.Second, c.srv.cfg.MaxSessionExpiry)
		}
		cl.mu.Unlock()
		if was == 0 && p.Props.SessionExpiry > 0 {
			c.normalExit = false // a protocol error: the will is sent
			c.close(packet.ProtocolError, "session expiry set at DISCONNECT after 0 at CONNECT")
			return false
		}
	}
	c.closeNow()
	return false
}

// auth handles an MQTT 5 AUTH after CONNECT: re-authentication (§4.12.1),
// in as many rounds as Auth asks for.
func (c *conn) auth(p *packet.Auth) bool {
	s := c.srv
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ConnectTimeout)
	var err error
	switch {
	case p.Code == packet.ReAuthenticate && !c.authing:
		err = s.cfg.Auth.Reauthenticate(ctx, c.client, p)
	case p.Code == packet.ContinueAuthentication && c.authing:
		err = s.cfg.Auth.Continue(ctx, c.client, p)
	default:
		err = &packet.Error{Code: packet.ProtocolError, Reason: fmt.Sprintf("AUTH 0x%02x out of turn", byte(p.Code))}
	}
	cancel()
	var ch *Challenge
	if c.authing = errors.As(err, &ch); c.authing {
		a := &packet.Auth{Code: packet.ContinueAuthentication}
		a.Props.AuthMethod, a.Props.AuthData = p.Props.AuthMethod, ch.Data
		a.Props.Set(packet.PropAuthMethod)
		a.Props.Set(packet.PropAuthData)
		c.send(a)
		return true
	}
	if err != nil {
		c.fail(err)
		return false
	}
	ok := &packet.Auth{Code: packet.Success}
	ok.Props.AuthMethod = p.Props.AuthMethod
	ok.Props.Set(packet.PropAuthMethod)
	c.send(ok)
	s.saveSession(c.client, time.Time{}) // its identity changed
	return true
}
