package mqtt

import (
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
)

// publish routes m to every subscriber (each delivery asks Auth.Deliver)
// and keeps or clears it as the topic's retained message (§3.3.1.3). It
// returns the number of deliveries matched.
func (s *Server) publish(m *Message) int {
	if m.Retain {
		if len(m.Payload) == 0 {
			s.retained.Delete(m.Topic)
		} else {
			s.retained.Set(m.Topic, m)
		}
	}
	ds := s.subs.Match(m.Topic, m.From, nil)
	for _, d := range ds {
		cl := s.Client(d.ClientID)
		if cl == nil {
			continue
		}
		// §3.3.1.3: the RETAIN flag goes on only with Retain As Published.
		cl.deliver(m, d.QoS, m.Retain && d.RetainAsPublished, d.SubscriptionIDs)
	}
	return len(ds)
}

// scheduleWill publishes w for cl after delay (§3.1.3.2.2), unless a new
// connection to the session comes first; the session's end sends it at
// once.
func (s *Server) scheduleWill(cl *Client, w *packet.Will, delay time.Duration) {
	cl.mu.Lock()
	if delay <= 0 || cl.ended {
		cl.mu.Unlock()
		s.sendWill(cl, w)
		return
	}
	cl.will = w
	if cl.willTimer != nil {
		cl.willTimer.Stop()
	}
	cl.willTimer = time.AfterFunc(delay, func() {
		cl.mu.Lock()
		w := cl.will
		cl.will, cl.willTimer = nil, nil
		cl.mu.Unlock()
		if w != nil {
			s.sendWill(cl, w)
		}
	})
	cl.mu.Unlock()
}

// sendWill publishes a will as its client's message, if Auth lets the
// client publish to its topic now.
func (s *Server) sendWill(cl *Client, w *packet.Will) {
	if !s.cfg.Auth.Publish(cl, w.Topic) {
		s.Stats.DeniedPublish.Add(1)
		return
	}
	m := &Message{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, From: cl.ID}
	if cl.Version() == packet.V5 {
		m.Props = messageProps(&w.Props)
		m.Props = withoutWillDelay(m.Props)
		if w.Props.Has(packet.PropMessageExpiry) {
			m.Expires = time.Now().Add(time.Duration(w.Props.MessageExpiry) * time.Second)
		}
	}
	s.publish(m)
}

// withoutWillDelay drops the Will Delay Interval, which is no PUBLISH
// property.
func withoutWillDelay(p *packet.Properties) *packet.Properties {
	if p == nil || !p.Has(packet.PropWillDelay) {
		return p
	}
	p.Clear(packet.PropWillDelay)
	p.WillDelay = 0
	if p.Present == 0 && len(p.User) == 0 {
		return nil
	}
	return p
}

// expire ends a session whose expiry interval passed while it was away.
func (s *Server) expire(cl *Client) {
	cl.mu.Lock()
	away := cl.conn == nil
	cl.mu.Unlock()
	if away {
		s.endSession(cl)
	}
}

// endSession discards a session: its subscriptions and messages go, and a
// will still waiting is sent (§3.1.3.2.2: at the latest when the session
// ends).
func (s *Server) endSession(cl *Client) {
	s.mu.Lock()
	if s.sessions[cl.ID] == cl {
		delete(s.sessions, cl.ID)
		s.Stats.Sessions.Add(-1)
	}
	s.mu.Unlock()
	cl.mu.Lock()
	if cl.ended {
		cl.mu.Unlock()
		return
	}
	cl.ended = true
	cl.stopTimersLocked()
	w := cl.will
	cl.will = nil
	subs := cl.subs
	cl.subs, cl.inflight, cl.pending, cl.qos2 = nil, nil, nil, nil
	cl.mu.Unlock()
	for f := range subs {
		s.subs.Unsubscribe(cl.ID, f)
	}
	if w != nil {
		s.sendWill(cl, w)
	}
}
