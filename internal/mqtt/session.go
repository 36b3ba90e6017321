package mqtt

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// publish routes m to every subscriber (each delivery asks Auth.Deliver)
// and keeps or clears it as the topic's retained message (§3.3.1.3); with
// a Config.Remote, the other nodes get it too. It returns the full windows
// a publisher waits for (waitRoom).
func (s *Server) publish(m *Message) []<-chan struct{} {
	rooms := s.route(m)
	if s.cfg.Remote != nil {
		s.cfg.Remote.Forward(m)
	}
	return rooms
}

// Publish routes m as a PUBLISH of the client m.From that another door
// (the CoAP gateway) authenticated and authorized: retained, delivered to
// this server's subscribers (each delivery asking Auth.Deliver) and, with a
// Config.Remote, forwarded to the other nodes. Nobody waits for a full
// window.
func (s *Server) Publish(m *Message) { s.publish(m) }

// Inject routes a message another node of the cluster forwarded, as a
// publish on this server: retained, and delivered to this server's
// subscribers, each delivery asking Auth.Deliver. It is not forwarded
// again, and nobody waits for a full window.
func (s *Server) Inject(m *Message) { s.route(m) }

// KeepRetained keeps m as its topic's retained message, or clears the
// topic for an empty one, delivering it to nobody: for the retained
// messages a node starting in a cluster takes from the others.
func (s *Server) KeepRetained(m *Message) { s.retain(m) }

// route keeps or clears m as the retained message and delivers it.
func (s *Server) route(m *Message) []<-chan struct{} {
	if m.Retain {
		s.retain(m)
	}
	return s.routeOnly(m)
}

// routeOnly delivers m to its subscribers and returns the full windows a
// publisher waits for. With a Remote, the shared subscriptions get the
// messages it forwards through it (DeliverShared), except $ topics, which
// stay here.
func (s *Server) routeOnly(m *Message) []<-chan struct{} {
	var ds []topics.Delivery
	if s.cfg.Remote != nil && !strings.HasPrefix(m.Topic, "$") {
		ds = s.subs.MatchUnshared(m.Topic, m.From, nil)
	} else {
		ds = s.subs.Match(m.Topic, m.From, nil)
	}
	var b batch
	for _, d := range ds {
		if queuedElsewhere(m, d.ClientID) {
			continue
		}
		cl := s.Client(d.ClientID)
		if cl == nil {
			if f := s.tap(d.ClientID); f != nil {
				f(m)
			}
			continue
		}
		// §3.3.1.3: the RETAIN flag goes on only with Retain As Published.
		cl.deliver(m, d.QoS, m.Retain && d.RetainAsPublished, d.SubscriptionIDs, &b)
	}
	b.commit(s)
	return b.rooms
}

// DeliverShared delivers m, published on any node of the cluster, to the
// member of shared subscription filter ($share/<group>/<filter>) whose
// turn it is here, asking Auth.Deliver; false when it has no member here
// (any more). Nobody waits for a full window.
func (s *Server) DeliverShared(m *Message, filter string) bool {
	d, ok := s.subs.Pick(filter)
	if !ok {
		return false
	}
	cl := s.Client(d.ClientID)
	if cl == nil {
		return false
	}
	var b batch
	cl.deliver(m, d.QoS, m.Retain && d.RetainAsPublished, d.SubscriptionIDs, &b)
	b.commit(s)
	return true
}

// Members is the number of this server's members of shared subscription
// filter ($share/<group>/<filter>).
func (s *Server) Members(filter string) int { return s.subs.Members(filter) }

// Subscribers is the number of this server's subscriptions to filter, not
// shared, sessions' and taps', online or not.
func (s *Server) Subscribers(filter string) int { return s.subs.Subscribers(filter) }

// subscribe adds a subscription to the tree, telling the Remote, and
// reports whether it replaced one.
func (s *Server) subscribe(clientID string, sub topics.Subscription) bool {
	existed := s.subs.Subscribe(clientID, sub)
	s.filterChanged(sub.Filter)
	return existed
}

// unsubscribe removes a subscription from the tree, telling the Remote,
// and reports whether there was one.
func (s *Server) unsubscribe(clientID, filter string) bool {
	ok := s.subs.Unsubscribe(clientID, filter)
	if ok {
		s.filterChanged(filter)
	}
	return ok
}

// filterChanged tells the Remote that the subscriptions to filter changed:
// a shared one's members, or another's interest.
func (s *Server) filterChanged(filter string) {
	if s.cfg.Remote == nil {
		return
	}
	if inner, _ := topic.ShareFilter(filter); inner != filter {
		s.cfg.Remote.Shared(filter)
		return
	}
	s.cfg.Remote.Interest(filter)
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
	cl.will, cl.willAt = w, time.Now().Add(delay)
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

// sendWill publishes a will as its client's message (publishWill), once
// a stored session's record no longer holds it (takeWill).
func (s *Server) sendWill(cl *Client, w *packet.Will) {
	cl.mu.Lock()
	var r *SessionRecord
	if cl.stored && !cl.ended {
		r = cl.recordLocked()
	}
	kept := cl.willKept
	cl.willKept = false
	cl.mu.Unlock()
	if kept && !s.cfg.Store.(WillStore).TakeWill(cl.ID) {
		s.Stats.WillsWithheld.Add(1)
		return
	}
	if s.takeWill(r) {
		s.publishWill(cl, w)
	}
}

// takeWill writes a stored session's record r without its will before the
// will is published, and says whether this server may publish it. In a
// cluster, several nodes may think they hold a session for a moment (one
// cut off from NATS, another that took the session over from it); the
// SharedStore keeps one writer's record, and only that one publishes: at
// most once rather than twice when a node dies between the write and the
// publish. nil: a session the Store does not hold.
//
// The record is written whether it has the will or not: while its client
// is connected, the record holds the connection's will (recordLocked).
func (s *Server) takeWill(r *SessionRecord) bool {
	if r == nil {
		return true
	}
	r.Will, r.WillDelay = nil, 0
	if err := s.cfg.Store.PutSession(r, nil); err != nil {
		s.Stats.WillsWithheld.Add(1)
		s.log.Warn("mqtt: a will not published: its session's record could not be written", "client", r.ClientID, "err", err)
		return false
	}
	return true
}

// publishWill publishes a will as its client's message, if Auth lets the
// client publish to its topic now.
func (s *Server) publishWill(cl *Client, w *packet.Will) {
	if rv, ok := s.cfg.Auth.(Reviver); ok && cl.revived.Load() && !rv.Revive(cl) {
		s.Stats.DeniedPublish.Add(1)
		return
	}
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
	cl.ending = cl.ending || away
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
	var r *SessionRecord
	if cl.stored && cl.will != nil {
		r = cl.recordLocked()
	}
	cl.ended = true
	cl.stopTimersLocked()
	w := cl.will
	cl.will = nil
	subs := cl.subs
	cl.subs, cl.inflight, cl.pending, cl.qos2 = nil, nil, nil, nil
	cl.nsubs.Store(0)
	stored, kept := cl.stored, cl.willKept
	cl.stored, cl.willKept = false, false
	cl.mu.Unlock()
	if kept { // the client disconnected normally, or the session was discarded
		s.cfg.Store.(WillStore).DropWill(cl.ID)
	}
	if w != nil && !s.takeWill(r) {
		w = nil
	}
	if stored {
		if err := s.cfg.Store.DeleteSession(cl.ID); err != nil {
			s.log.Error("mqtt: deleting a session failed", "client", cl.ID, "err", err)
		}
	}
	for f := range subs {
		s.unsubscribe(cl.ID, f)
	}
	if w != nil {
		s.publishWill(cl, w)
	}
}

// retain keeps m as its topic's retained message, or clears the topic for
// an empty one (§3.3.1.3), in the Store too.
func (s *Server) retain(m *Message) {
	var err error
	if len(m.Payload) == 0 {
		s.retained.Delete(m.Topic)
		if s.cfg.Store != nil {
			err = s.cfg.Store.DeleteRetained(m.Topic)
		}
	} else {
		s.retained.Set(m.Topic, m)
		if s.cfg.Store != nil {
			err = s.cfg.Store.PutRetained(m)
		}
	}
	if err != nil {
		s.log.Error("mqtt: storing a retained message failed", "topic", m.Topic, "err", err)
	}
}

// saveSession writes cl's record when it outlives its connection (and a
// Store is set), or removes it when it no longer does. away is when the
// connection ended, zero while connected.
func (s *Server) saveSession(cl *Client, away time.Time) {
	if s.cfg.Store == nil {
		return
	}
	cl.mu.Lock()
	if cl.ended {
		cl.mu.Unlock()
		return
	}
	if cl.expiry == 0 {
		stored := cl.stored
		cl.stored = false
		ws, lone := s.cfg.Store.(WillStore)
		var r *SessionRecord
		if lone && cl.conn != nil && cl.conn.will != nil {
			r = cl.recordLocked()
		}
		kept := cl.willKept
		cl.willKept = r != nil
		cl.mu.Unlock()
		if stored {
			if err := s.cfg.Store.DeleteSession(cl.ID); err != nil {
				s.log.Error("mqtt: deleting a session failed", "client", cl.ID, "err", err)
			}
		}
		switch {
		case r != nil:
			if err := ws.PutWill(r); err != nil {
				s.log.Error("mqtt: storing a will failed", "client", cl.ID, "err", err)
			}
		case kept: // the connection before this one had a will, this one none
			ws.DropWill(cl.ID)
		}
		return
	}
	cl.away = away
	r := cl.recordLocked()
	var subs []topics.Subscription
	if !cl.stored { // its subscriptions so far, once
		for _, sub := range cl.subs {
			subs = append(subs, sub)
		}
	}
	cl.stored = true
	cl.mu.Unlock()
	if err := s.cfg.Store.PutSession(r, subs); err != nil {
		s.log.Error("mqtt: storing a session failed", "client", cl.ID, "err", err)
	}
}

// recordLocked is cl's record for the Store, with the will it would
// leave; cl.mu is held.
func (cl *Client) recordLocked() *SessionRecord {
	r := &SessionRecord{ClientID: cl.ID, Version: byte(cl.Version()), Expiry: cl.expiry, Away: cl.away, Claim: cl.claim}
	if codec := cl.srv.cfg.Identity; codec != nil {
		r.Identity = codec.EncodeIdentity(cl.Identity())
	}
	switch c := cl.conn; {
	case c != nil && c.will != nil:
		r.Will, r.WillDelay = c.will, min(c.willDelay, cl.expiry)
	case cl.will != nil:
		r.Will, r.WillDelay = cl.will, max(cl.willAt.Sub(cl.away), 0)
	}
	if len(cl.qos2) > 0 {
		r.Received = slices.Sorted(maps.Keys(cl.qos2))
	}
	return r
}

// storedRecord is the record of a stored session that has not ended, nil
// for any other.
func (cl *Client) storedRecord() *SessionRecord {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if !cl.stored || cl.ended {
		return nil
	}
	return cl.recordLocked()
}

// storeReceived rewrites a stored session's record once the QoS 2 messages
// its client sent and the server acknowledged (PUBREC) changed: before
// the PUBREC of a new one, after the PUBCOMP of one released.
func (s *Server) storeReceived(cl *Client) {
	r := cl.storedRecord()
	if r == nil {
		return
	}
	if err := s.cfg.Store.PutSession(r, nil); err != nil {
		s.log.Error("mqtt: storing a session's QoS 2 state failed", "client", cl.ID, "err", err)
	}
}

// storeSubscriptions writes a SUBSCRIBE's granted filters, or removes an
// UNSUBSCRIBE's, for a stored session.
func (s *Server) storeSubscriptions(cl *Client, added []topics.Subscription, removed []string) {
	r := cl.storedRecord()
	if r == nil {
		return
	}
	var err error
	if len(added) > 0 {
		err = s.cfg.Store.PutSession(r, added)
	}
	if len(removed) > 0 && err == nil {
		err = s.cfg.Store.DeleteSubscriptions(cl.ID, removed)
	}
	if err != nil {
		s.log.Error("mqtt: storing subscriptions failed", "client", cl.ID, "err", err)
	}
}

// restore loads the Store's sessions, their queued messages and the
// retained messages; each session is away until its client returns, and
// expires as it would have.
func (s *Server) restore() error {
	snap, err := s.cfg.Store.Load()
	if err != nil {
		return err
	}
	for _, m := range snap.Retained {
		s.retained.Set(m.Topic, m)
	}
	var expired []*Client
	for _, r := range snap.Sessions {
		cl, left := s.revive(&r, snap.Subscriptions[r.ClientID], snap.Messages[r.ClientID])
		if cl == nil {
			if err := s.cfg.Store.DeleteSession(r.ClientID); err != nil {
				s.log.Error("mqtt: deleting a session failed", "client", r.ClientID, "err", err)
			}
			continue
		}
		s.adopt(cl)
		// Auth is not asked about a will before StartWills: it may not be
		// ready while New runs.
		if cl.will != nil {
			s.restoredWills = append(s.restoredWills, restoredWill{cl, cl.will})
			cl.will = nil
		}
		if left <= 0 {
			expired = append(expired, cl)
			continue
		}
		s.keepAway(cl, left)
	}
	for _, cl := range expired {
		s.endSession(cl)
	}
	return nil
}

// restoredWill is the will of a session restored from the Store, until
// StartWills.
type restoredWill struct {
	cl *Client
	w  *packet.Will
}

// StartWills publishes the wills of the sessions restored from the Store
// that ended since (expired), and schedules those of the others (after
// their delays, counted from when their clients left, or from New for a
// client connected when its server ended): call it once Auth may be asked
// and before serving connections.
func (s *Server) StartWills() {
	s.mu.Lock()
	wills := s.restoredWills
	s.restoredWills = nil
	s.mu.Unlock()
	for _, rw := range wills {
		cl := rw.cl
		cl.mu.Lock()
		ended, back, due := cl.ended, cl.conn != nil, time.Until(cl.willAt)
		cl.mu.Unlock()
		switch {
		case ended:
			s.publishWill(cl, rw.w)
		case !back: // a client that came back cancelled it
			s.scheduleWill(cl, rw.w, due)
		}
	}
}

// keepAway keeps a revived session until its client returns: it expires
// after left, and its will goes when due (WillDelay) or as it ends.
func (s *Server) keepAway(cl *Client, left time.Duration) {
	cl.mu.Lock()
	w, due := cl.will, time.Until(cl.willAt)
	cl.will = nil
	cl.expiryTimer = time.AfterFunc(left, func() { s.expire(cl) })
	cl.mu.Unlock()
	if w != nil {
		s.scheduleWill(cl, w, min(due, left))
	}
}

// adopt makes a revived session the server's: in the sessions, its
// subscriptions in the tree.
func (s *Server) adopt(cl *Client) {
	s.mu.Lock()
	s.sessions[cl.ID] = cl
	s.mu.Unlock()
	s.Stats.Sessions.Add(1)
	for _, sub := range cl.subs {
		s.subscribe(cl.ID, sub)
	}
}

// dropExpired removes a retained message whose expiry passed, unless a
// newer one replaced it.
func (s *Server) dropExpired(m *Message) {
	if !s.retained.CompareAndDelete(m.Topic, m) || s.cfg.Store == nil {
		return
	}
	if err := s.cfg.Store.DeleteRetained(m.Topic); err != nil {
		s.log.Error("mqtt: deleting an expired retained message failed", "topic", m.Topic, "err", err)
	}
}
