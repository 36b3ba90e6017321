package mqtt

import (
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// StoredBefore is what a SharedStore's PutMessages returns when it had
// some of the messages stored already, under their Message.Exchange: the
// first attempt of a QoS 2 message its publisher sent again after the
// node that routed it died (Repeats). Those, by index in the batch, are
// not delivered again; the others are stored.
type StoredBefore []int

func (b StoredBefore) Error() string {
	return fmt.Sprintf("mqtt: %d of the messages stored before, under the same exchange", len(b))
}

// SharedStore is a Store the nodes of a cluster share (mqttnats.Sessions):
// a persistent session lives in it rather than in one node, so that its
// client resumes it on any node. A node holds a session while its client
// is connected there or since it left; the Remote's claims decide which
// node, and another node's newer connection takes the session away
// (Supersede) without deleting it. Messages other nodes queue for a
// session held here reach it through Server.Enqueue, already stored.
type SharedStore interface {
	Store
	// Fetch reads clientID's session (nil when the cluster has none), with
	// its subscriptions, for a connection that resumes it here; for one
	// with Clean Start (clean), only for Auth to see whose it is (no
	// subscriptions needed, and it may come from what the node already
	// knows rather than from a request).
	Fetch(clientID string, clean bool) (*SessionRecord, []topics.Subscription, error)
	// Release says this server holds clientID's session no longer: another
	// node took it, or a connection that fetched it was refused. The
	// session stays in the store.
	Release(clientID string)
	// Discard deletes clientID's session for a clean start here, when this
	// server holds it not (another node does, or none since its node
	// ended), and returns its record as it deleted it: the session ends
	// there, and this server publishes the will the record still had
	// (§3.1.4). The deletion is compare-and-set on the record it read, so
	// that of this server and one taking the will from the record
	// (takeWill), one publishes it; nil: no record, or not this server's
	// to publish.
	Discard(clientID string) (*SessionRecord, error)
}

// WillStore is a SharedStore that also keeps, while its client is
// connected, the will of a connection whose session ends with it (Session
// Expiry Interval 0), which no session record holds: so that when the
// node dies, another node publishes it (§3.1.3.2.2: the connection ended
// without DISCONNECT 0x00).
type WillStore interface {
	// PutWill keeps r.Will (r as a session's record would be).
	PutWill(r *SessionRecord) error
	// TakeWill removes the will before this server publishes it; false:
	// another node took it (this one was deemed ended), or the store
	// cannot say, and this server does not publish it.
	TakeWill(clientID string) bool
	// DropWill removes the will, which is not published.
	DropWill(clientID string)
}

// PublishWill publishes the will a WillStore kept for a connection of a
// node that ended, as its owner's publish (Reviver, Auth.Publish).
func (s *Server) PublishWill(r *SessionRecord) {
	cl, _ := s.revive(r, nil, nil)
	if cl != nil && cl.will != nil {
		s.publishWill(cl, cl.will)
	}
}

// discard ends clientID's session, which no connection here holds, for a
// clean start here or because it expired while no server held it (its
// node ended before a node took it): SharedStore.Discard deletes it, and
// the will its record still had is published at once, whatever its delay,
// since the session ended (§3.1.3.2.2, §3.1.4). It goes as its owner's
// publish: as the identity Auth was shown at the CONNECT (old, the session
// fetched then, nil if none), which Auth may have revoked (a thing taking
// its client identifier back), or else the record's, read again (Reviver).
func (s *Server) discard(shared SharedStore, clientID string, old *Client) {
	r, err := shared.Discard(clientID)
	if err != nil {
		s.log.Error("mqtt: deleting a session failed", "client", clientID, "err", err)
	}
	if r == nil || r.Will == nil {
		return
	}
	cl, _ := s.revive(r, nil, nil)
	if cl == nil || cl.will == nil {
		return
	}
	as := cl
	if old != nil {
		as = old
	}
	s.publishWill(as, cl.will)
}

// fetch is clientID's session from a SharedStore, built but not yet in
// the server (attach adds it), or nil: none, or expired (then deleted).
func (s *Server) fetch(shared SharedStore, clientID string, clean bool) *Client {
	r, subs, err := shared.Fetch(clientID, clean)
	if err != nil {
		s.log.Warn("mqtt: reading a session from the cluster failed; starting a new one", "client", clientID, "err", err)
		return nil
	}
	if r == nil {
		return nil
	}
	cl, left := s.revive(r, subs, nil)
	switch {
	case cl == nil: // nobody can say whose it is: no will goes either
		if err := shared.DeleteSession(clientID); err != nil {
			s.log.Error("mqtt: deleting a session failed", "client", clientID, "err", err)
		}
		return nil
	case left <= 0:
		// It expired while no server held it: it ends now, and its will
		// goes, once (Discard is compare-and-set: of this server and
		// another ending it meanwhile, one publishes).
		s.discard(shared, clientID, nil)
		return nil
	}
	return cl
}

// Enqueue gives the session clientID holds here a QoS 1 or 2 message
// another node stored for it (SharedStore): asked to Auth.Deliver, sent
// when the client's Receive Maximum allows. kept is called with the
// message's place in the session (the Seq of Store.DeleteMessage once
// delivered), under the session's lock, before it can be sent. false: the
// session does not take it (the store discards it), or, with room, not
// yet: its window (Config.Inflight) is full, and room is closed when it
// may have room again (or the client left or returned); the message waits
// in the store meanwhile.
func (s *Server) Enqueue(clientID string, r MessageRecord, kept func(seq uint64)) (ok bool, room <-chan struct{}) {
	cl := s.Client(clientID)
	if cl == nil {
		return false, nil
	}
	if !s.cfg.Auth.Deliver(cl, r.Message.Topic) {
		s.Stats.DeniedDeliver.Add(1)
		return false, nil
	}
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.ended || !cl.stored {
		return false, nil
	}
	if len(cl.inflight)+len(cl.pending) >= s.cfg.Inflight {
		if cl.room == nil {
			cl.room = make(chan struct{})
		}
		return false, cl.room
	}
	cl.seq++
	kept(cl.seq)
	o := &outbound{msg: r.Message, qos: r.QoS, retain: r.Retain, subIDs: r.SubIDs, seq: cl.seq}
	if r.PacketID != 0 && cl.resumeSent(o, r) {
		return true, nil
	}
	cl.pending = append(cl.pending, o)
	cl.release()
	return true, nil
}

// resumeSent takes back o, a QoS 2 message sent before under r.PacketID
// (by this node or one that ended), as the client knows it: in flight
// under that identifier, resent now if the client is connected (§4.4:
// PUBREL if it was released, else PUBLISH with DUP), so that it is not
// delivered twice (§4.3.3). false: the identifier is used by another
// message meanwhile, and o is sent anew. cl.mu is held.
func (cl *Client) resumeSent(o *outbound, r MessageRecord) bool {
	delete(cl.reserved, r.PacketID)
	if _, used := cl.inflight[r.PacketID]; used {
		return false
	}
	if cl.inflight == nil {
		cl.inflight = map[uint16]*outbound{}
	}
	o.id, o.released = r.PacketID, r.Released
	cl.inflight[o.id] = o
	switch {
	case cl.conn == nil:
	case o.released:
		cl.conn.send(&packet.Ack{Kind: packet.PUBREL, PacketID: o.id})
	default:
		if _, never := cl.conn.sendPublish(o.msg, o.qos, o.id, o.retain, o.subIDs, true); never {
			cl.forget(o)
			cl.srv.Stats.Dropped.Add(1)
		}
	}
	return true
}

// queuedElsewhere says whether the node that published m stored it for
// clientID's session already (Message.QueuedFor), which then comes through
// Enqueue, not through this copy.
func queuedElsewhere(m *Message, clientID string) bool {
	for _, id := range m.QueuedFor {
		if id == clientID {
			return true
		}
	}
	return false
}

// revive builds a stored session from its records, not yet in the server:
// nil when its identity cannot be read; left is how long it has before it
// expires.
func (s *Server) revive(r *SessionRecord, subs []topics.Subscription, msgs []MessageRecord) (cl *Client, left time.Duration) {
	cl = &Client{ID: r.ClientID, srv: s, expiry: r.Expiry, stored: true, claim: r.Claim, subs: map[string]topics.Subscription{}}
	cl.version.Store(uint32(r.Version))
	if s.cfg.Identity != nil && r.Identity != nil {
		id, err := s.cfg.Identity.DecodeIdentity(r.Identity)
		if err != nil {
			// Nothing could say who may read it: it ends, with its messages.
			s.log.Warn("mqtt: stored session without a readable identity discarded", "client", r.ClientID, "err", err)
			return nil, 0
		}
		cl.SetIdentity(id)
		cl.revived.Store(true)
	}
	for _, sub := range subs {
		cl.subs[sub.Filter] = sub
	}
	cl.nsubs.Store(int64(len(cl.subs)))
	for _, m := range msgs {
		o := &outbound{msg: m.Message, qos: m.QoS, retain: m.Retain, subIDs: m.SubIDs, seq: m.Seq, id: m.PacketID, released: m.Released}
		cl.seq = max(cl.seq, m.Seq)
		if o.id != 0 {
			if cl.inflight == nil {
				cl.inflight = map[uint16]*outbound{}
			}
			cl.inflight[o.id] = o
			cl.nextID = max(cl.nextID, o.id)
		} else {
			cl.pending = append(cl.pending, o)
		}
	}
	cl.away = r.Away
	if cl.away.IsZero() {
		cl.away = time.Now() // connected when its node ended
	}
	switch w := r.Will; {
	case w == nil:
	case w.QoS > 2 || !topic.ValidName(w.Topic):
		// No node stores such a will (CONNECT refuses it): a damaged record.
		s.log.Warn("mqtt: a stored session's will is no message to publish; dropped", "client", r.ClientID, "topic", w.Topic, "qos", w.QoS)
	default:
		cl.will, cl.willAt = w, cl.away.Add(r.WillDelay)
	}
	for _, id := range r.Received {
		if cl.qos2 == nil {
			cl.qos2 = map[uint16]struct{}{}
		}
		cl.qos2[id] = struct{}{}
	}
	for _, id := range r.Sending {
		if cl.reserved == nil {
			cl.reserved = map[uint16]struct{}{}
		}
		cl.reserved[id] = struct{}{}
	}
	return cl, r.Expiry - time.Since(cl.away)
}

// Reviver is an Auth that checks again, against what decides identities
// now, the identity of a session built from a Store's record without its
// client (restored at start, or adopted from an ended node), before that
// session's will is published: false refuses the will. The identity may
// have been disabled, deleted or unlinked while no server held the
// session, which no event told anyone holding it.
type Reviver interface {
	Revive(c *Client) bool
}

// Adopt makes a session of the cluster this server's while its client is
// away: one whose node ended (mqttnats, after the SharedStore gave this
// node the session's record). It is kept as a session restored from a
// Store is: its will goes when due, under its own identity's rules, and
// it expires when its expiry interval ends, unless its client returns
// first. A copy the server still had of it gives way.
func (s *Server) Adopt(r *SessionRecord, subs []topics.Subscription) {
	cl, left := s.revive(r, subs, nil)
	if cl == nil {
		if err := s.cfg.Store.DeleteSession(r.ClientID); err != nil {
			s.log.Error("mqtt: deleting a session failed", "client", r.ClientID, "err", err)
		}
		return
	}
	if old := s.Client(r.ClientID); old != nil {
		old.mu.Lock()
		old.stored, old.will, old.expiry = false, nil, 0
		c := old.conn
		if c != nil {
			c.dropWill.Store(true) // under the lock, as its end reads it
		}
		old.mu.Unlock()
		if c != nil {
			c.close(packet.SessionTakenOver, "the session moved")
		} else {
			s.endSession(old)
		}
	}
	s.adopt(cl)
	if left <= 0 {
		s.endSession(cl)
		return
	}
	s.keepAway(cl, left)
}
