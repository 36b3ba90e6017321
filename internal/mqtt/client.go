package mqtt

import (
	"cmp"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// Message is a PUBLISH as the server keeps it: shared by every delivery
// and never changed once routed.
type Message struct {
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Props are the message's own properties (MQTT 5 §3.3.2.3: payload
	// format, expiry, content type, response topic, correlation data, user
	// properties), passed through to subscribers; nil for none.
	Props   *packet.Properties
	From    string    // the publisher's client identifier, for No Local
	Expires time.Time // from the Message Expiry Interval; zero for never
	// QueuedFor, on a message another node of a cluster forwarded, are the
	// persistent sessions (client identifiers) that node stored it for in
	// the SharedStore: they get it from there (Enqueue), not from Inject.
	QueuedFor []string
	// Exchange names a QoS 2 message of a stored session's client across
	// its attempts on a cluster's nodes (Repeats), empty for any other.
	// Never stored: it lives for the message's routing.
	Exchange string `json:"-"`
}

// Client is one MQTT session: connected, or kept for a client that will
// come back (clean start 0 with a session expiry).
type Client struct {
	ID  string
	srv *Server

	// What Auth may read at any time, the session locked or not: the
	// server asks Auth with the session's lock held.
	identity  atomic.Pointer[any]
	version   atomic.Uint32
	connected atomic.Pointer[conn]
	nsubs     atomic.Int64
	// revived: the identity is a Store record's, not set by Auth since
	// (SetIdentity), so not checked since (Reviver).
	revived atomic.Bool

	// replace: Auth.Connect asked for the identifier's session to be ended
	// rather than resumed (ReplaceSession).
	replace bool

	mu     sync.Mutex
	conn   *conn         // nil while disconnected; set with setConn
	expiry time.Duration // how long the session outlives its connection
	subs   map[string]topics.Subscription
	ended  bool
	// ending: its end is decided (discarded, or its expiry passed or was
	// 0 when its connection ended) and follows once the lock is released
	// (endSession); attach ends it rather than resume it meanwhile.
	ending bool
	stored bool // the Store holds the session
	// willKept: the Store holds the will of the connection, of a session
	// it does not hold otherwise (WillStore).
	willKept bool
	// claim is the cluster's order of the connection that attached last
	// (Remote.Claim), 0 on a single node: Supersede compares it.
	claim uint64

	// Messages to the client at QoS 1 and 2: sent and unacknowledged, by
	// packet identifier, and waiting for the client's Receive Maximum or
	// its return.
	inflight map[uint16]*outbound
	pending  []*outbound
	seq      uint64 // send order, to resend in it (§4.6)
	nextID   uint16
	// reserved are the packet identifiers of QoS 2 messages a SharedStore
	// will give back (SessionRecord.Sending), not to be used meanwhile.
	reserved map[uint16]struct{}
	// room is closed when the window falls below Config.Inflight again,
	// for the publishers waiting for it (flow control, see deliver);
	// lastAck is when the connected client last acknowledged a message.
	room    chan struct{}
	lastAck time.Time
	// qos2 are the packet identifiers of QoS 2 messages from the client
	// awaiting PUBREL: a PUBLISH repeating one is not routed again (§4.3.3).
	qos2 map[uint16]struct{}

	will        *packet.Will // of the connection that ended, until sent
	willAt      time.Time    // when will is due
	willTimer   *time.Timer
	expiryTimer *time.Timer
	away        time.Time // when the connection ended; zero while connected
}

// outbound is a message on its way to one client at QoS 1 or 2.
type outbound struct {
	msg      *Message
	qos      byte
	retain   bool
	subIDs   []int
	id       uint16
	seq      uint64
	released bool // PUBREC received: PUBREL sent, awaiting PUBCOMP
	// unstored: waiting in pending for its batch to reach the Store; not
	// sent before, so that no acknowledgement overtakes the write.
	unstored bool
}

// batch gathers the messages one PUBLISH queues for stored sessions, so
// that they reach the Store in one write before any is sent and before
// the publisher is acknowledged.
type batch struct {
	recs []QueuedMessage
	held []*Client
	outs []*outbound
	// rooms are the full windows of subscribers that keep up; the
	// publisher waits for them before its acknowledgement (waitRoom).
	rooms []<-chan struct{}
}

// commit stores the batch and lets its messages go; a failed write drops
// them, counted, rather than acknowledging what would not survive.
func (b *batch) commit(s *Server) {
	if len(b.recs) == 0 {
		return
	}
	err := s.cfg.Store.PutMessages(b.recs)
	var before StoredBefore
	if errors.As(err, &before) {
		err = nil
	} else if err != nil {
		s.log.Error("mqtt: storing queued messages failed", "messages", len(b.recs), "err", err)
	}
	for i, cl := range b.held {
		o := b.outs[i]
		cl.mu.Lock()
		o.unstored = false
		switch {
		case err != nil:
			cl.pending = slices.DeleteFunc(cl.pending, func(p *outbound) bool { return p == o })
			s.Stats.Dropped.Add(1)
		case slices.Contains(before, i):
			// Its first attempt is the session's already (Repeats).
			cl.pending = slices.DeleteFunc(cl.pending, func(p *outbound) bool { return p == o })
		}
		cl.release()
		cl.mu.Unlock()
	}
}

// Identity is what Auth set for the client.
func (cl *Client) Identity() any {
	if p := cl.identity.Load(); p != nil {
		return *p
	}
	return nil
}

// SetIdentity replaces the client's identity (after a re-authentication).
func (cl *Client) SetIdentity(id any) {
	cl.identity.Store(&id)
	cl.revived.Store(false)
}

// Version is the protocol version of the client's last connection.
func (cl *Client) Version() packet.Version { return packet.Version(cl.version.Load()) }

// Conn is the client's network connection, nil while it is away: for its
// addresses and TLS state.
func (cl *Client) Conn() net.Conn {
	if c := cl.connected.Load(); c != nil {
		return c.nc
	}
	return nil
}

// Queued is the number of QoS 1 and 2 messages the session holds: sent
// and unacknowledged, or waiting to be sent.
func (cl *Client) Queued() int {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return len(cl.inflight) + len(cl.pending)
}

// Subscriptions is the number of the session's subscriptions.
func (cl *Client) Subscriptions() int { return int(cl.nsubs.Load()) }

// ReplaceSession is for Auth.Connect: the session the client identifier
// has is ended, not resumed, whatever Clean Start says, and the CONNACK
// says Session Present 0. The broker uses it when a thing takes its own
// client identifier back from another identity, which must not inherit
// that identity's subscriptions and queued messages.
func (cl *Client) ReplaceSession() { cl.replace = true }

// setConn attaches or detaches the connection; cl.mu is held.
func (cl *Client) setConn(c *conn) {
	cl.conn = c
	cl.connected.Store(c)
	cl.lastAck = time.Time{}
	cl.freeRoom(c == nil)
}

// freeRoom lets the publishers waiting for the window go once it is below
// Config.Inflight again, or at once. cl.mu is held.
func (cl *Client) freeRoom(now bool) {
	if cl.room != nil && (now || len(cl.inflight)+len(cl.pending) < cl.srv.cfg.Inflight) {
		close(cl.room)
		cl.room = nil
	}
}

// deliver is the one way a message reaches a client, whatever brought it
// (a live publish, a retained message, a will): Auth.Deliver decides, then
// QoS 0 goes to the connection's queue and QoS 1 and 2 to the session's
// window, held while the client's Receive Maximum is used up or it is away.
//
// A full window (Config.Inflight) of a connected client that keeps up (it
// acknowledged a message within stallAfter) is flow control, not loss: the
// message is taken, up to twice the window, and the publisher waits for
// room before its PUBACK or PUBREC (b.rooms, waitRoom), so that it sends no
// faster than the subscriber acknowledges. A client away, stalled, or at
// twice its window loses the message, counted in Stats.InflightDropped: a
// subscriber that stops reading holds a publisher up for stallAfter once.
func (cl *Client) deliver(m *Message, qos byte, retain bool, subIDs []int, b *batch) {
	s := cl.srv
	if !s.cfg.Auth.Deliver(cl, m.Topic) {
		s.Stats.DeniedDeliver.Add(1)
		return
	}
	qos = min(qos, m.QoS)
	cl.mu.Lock()
	defer cl.mu.Unlock()
	if cl.ended {
		return
	}
	if qos == 0 {
		// QoS 0 is not kept for a session that is away (§4.1: the server
		// may, and does not): that is no loss to count.
		if cl.conn != nil {
			if ok, _ := cl.conn.sendPublish(m, 0, 0, retain, subIDs, false); !ok {
				s.Stats.Dropped.Add(1)
			}
		}
		return
	}
	if n := len(cl.inflight) + len(cl.pending); n >= s.cfg.Inflight {
		keepsUp := cl.conn != nil && !cl.lastAck.IsZero() && time.Since(cl.lastAck) < stallAfter
		if !keepsUp || n >= 2*s.cfg.Inflight {
			s.Stats.InflightDropped.Add(1)
			return
		}
		if m.From != cl.ID { // a client's own reader must not wait for its own acknowledgements
			if cl.room == nil {
				cl.room = make(chan struct{})
			}
			b.rooms = append(b.rooms, cl.room)
		}
	}
	cl.seq++
	o := &outbound{msg: m, qos: qos, retain: retain, subIDs: subIDs, seq: cl.seq}
	if cl.stored {
		o.unstored = true
		b.recs = append(b.recs, QueuedMessage{ClientID: cl.ID, MessageRecord: cl.record(o)})
		b.held = append(b.held, cl)
		b.outs = append(b.outs, o)
		cl.pending = append(cl.pending, o)
		return
	}
	if cl.conn != nil && len(cl.pending) == 0 && len(cl.inflight) < cl.conn.sendQuota {
		cl.send(o)
		return
	}
	cl.pending = append(cl.pending, o)
}

// send gives o a packet identifier and writes it; cl.mu is held and the
// client connected.
func (cl *Client) send(o *outbound) {
	if cl.inflight == nil {
		cl.inflight = map[uint16]*outbound{}
	}
	for {
		cl.nextID++
		if cl.nextID == 0 {
			cl.nextID = 1
		}
		_, used := cl.inflight[cl.nextID]
		_, kept := cl.reserved[cl.nextID]
		if !used && !kept {
			break
		}
	}
	o.id = cl.nextID
	cl.inflight[o.id] = o
	if o.qos == 2 {
		cl.persist(o) // the packet identifier, for a resend after a restart
	}
	if _, never := cl.conn.sendPublish(o.msg, o.qos, o.id, o.retain, o.subIDs, false); never {
		cl.forget(o)
		cl.srv.Stats.Dropped.Add(1)
	}
}

// record is o as the Store keeps it.
func (cl *Client) record(o *outbound) MessageRecord {
	r := MessageRecord{Seq: o.seq, QoS: o.qos, Retain: o.retain, SubIDs: o.subIDs, Message: o.msg, Released: o.released}
	if o.qos == 2 {
		r.PacketID = o.id
	}
	return r
}

// persist rewrites a stored message whose state changed (a QoS 2 message
// sent, or released). cl.mu is held.
func (cl *Client) persist(o *outbound) {
	if !cl.stored {
		return
	}
	if err := cl.srv.cfg.Store.PutMessages([]QueuedMessage{{ClientID: cl.ID, MessageRecord: cl.record(o)}}); err != nil {
		cl.srv.log.Error("mqtt: storing a queued message failed", "client", cl.ID, "err", err)
	}
}

// forget removes o, sent, from the session and the Store. cl.mu is held.
func (cl *Client) forget(o *outbound) {
	delete(cl.inflight, o.id)
	if cl.stored {
		if err := cl.srv.cfg.Store.DeleteMessage(cl.ID, o.seq); err != nil {
			cl.srv.log.Error("mqtt: deleting a delivered message failed", "client", cl.ID, "err", err)
		}
	}
}

// release sends waiting messages while the client's Receive Maximum
// allows; cl.mu is held.
func (cl *Client) release() {
	for cl.conn != nil && len(cl.pending) > 0 && !cl.pending[0].unstored && len(cl.inflight) < cl.conn.sendQuota {
		o := cl.pending[0]
		cl.pending[0] = nil
		cl.pending = cl.pending[1:]
		cl.send(o)
	}
	if len(cl.pending) == 0 {
		cl.pending = nil // let the backing array go
	}
}

// resume resends, in their order, the messages a returning client had not
// acknowledged (§4.4: with DUP set, or PUBREL for those it received), each
// allowed again for the identity now connected, then what was waiting.
// cl.mu is held.
func (cl *Client) resume() {
	sent := make([]*outbound, 0, len(cl.inflight))
	for _, o := range cl.inflight {
		sent = append(sent, o)
	}
	slices.SortFunc(sent, func(a, b *outbound) int { return cmp.Compare(a.seq, b.seq) })
	for _, o := range sent {
		if o.released {
			cl.conn.send(&packet.Ack{Kind: packet.PUBREL, PacketID: o.id})
			continue
		}
		if !cl.srv.cfg.Auth.Deliver(cl, o.msg.Topic) {
			cl.forget(o)
			cl.srv.Stats.DeniedDeliver.Add(1)
			continue
		}
		if _, never := cl.conn.sendPublish(o.msg, o.qos, o.id, o.retain, o.subIDs, true); never {
			cl.forget(o)
			cl.srv.Stats.Dropped.Add(1)
		}
	}
	kept := cl.pending[:0]
	for _, o := range cl.pending {
		if cl.srv.cfg.Auth.Deliver(cl, o.msg.Topic) {
			kept = append(kept, o)
			continue
		}
		cl.srv.Stats.DeniedDeliver.Add(1)
		o.id = 0
		cl.forget(o)
	}
	cl.pending = kept
	cl.release()
}

// acked handles PUBACK, PUBREC and PUBCOMP from the client (§4.3).
func (cl *Client) acked(a *packet.Ack) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	o := cl.inflight[a.PacketID]
	switch {
	case a.Kind == packet.PUBREC && (o == nil || o.qos != 2):
		// §4.3.3: answer PUBREL all the same, with 0x92 in MQTT 5.
		if cl.conn != nil {
			cl.conn.send(&packet.Ack{Kind: packet.PUBREL, PacketID: a.PacketID, Code: packet.PacketIdentifierNotFound})
		}
		return
	case o == nil:
		return // a late or repeated acknowledgement
	case a.Kind == packet.PUBACK && o.qos != 1, a.Kind == packet.PUBCOMP && !o.released:
		return
	case a.Kind == packet.PUBREC && a.Code < 0x80:
		o.released = true
		cl.persist(o)
		if cl.conn != nil {
			cl.conn.send(&packet.Ack{Kind: packet.PUBREL, PacketID: a.PacketID})
		}
		return
	}
	cl.forget(o)
	cl.lastAck = time.Now()
	cl.release()
	cl.freeRoom(false)
}

// stallAfter is how long a subscriber with a full window may go without
// acknowledging anything before publishers stop waiting for it.
const stallAfter = time.Second

// waitRoom holds a publisher's reader, before its acknowledgement, until
// the full windows its message went to have room again, for stallAfter at
// most.
func waitRoom(rooms []<-chan struct{}) {
	if len(rooms) == 0 {
		return
	}
	t := time.NewTimer(stallAfter)
	defer t.Stop()
	for _, r := range rooms {
		select {
		case <-r:
		case <-t.C:
			return
		}
	}
}

func (cl *Client) stopTimers() {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	cl.stopTimersLocked()
}

func (cl *Client) stopTimersLocked() {
	for _, t := range []**time.Timer{&cl.willTimer, &cl.expiryTimer} {
		if *t != nil {
			(*t).Stop()
			*t = nil
		}
	}
}
