package mqtt

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
)

// conn is one network connection. Its memory is designed for many idle
// clients: the reader goroutine blocks on a 16-byte array and takes a
// pooled buffer only once bytes arrive, giving it back when no partial
// packet is left; packets to write are encoded into a pooled buffer, and a
// writer goroutine runs only while that buffer has something in it.
type conn struct {
	srv *Server
	nc  net.Conn

	// Set at CONNECT, then read-only.
	version    packet.Version
	client     *Client
	keepAlive  time.Duration
	maxOut     int // the client's Maximum Packet Size, 0 for none
	sendQuota  int // the client's Receive Maximum, capped by Config.Inflight
	connected  bool
	will       *packet.Will
	willDelay  time.Duration
	aliasesIn  map[uint16]string
	normalExit bool // DISCONNECT 0x00: the will is discarded
	// dropWill: the server discarded the session (a revocation); its will
	// is not published.
	dropWill atomic.Bool
	// leftAs is the session's identity when another connection took the
	// session over (set under the session's lock): the will is this
	// connection's publish, checked as who it was, not as who took over.
	leftAs any
	// sessionEnds: the connection that took the session over ends it (a
	// clean start, §3.1.4), so the will goes with the session's end
	// whatever its delay (set under the session's lock with leftAs).
	sessionEnds bool
	// noProblemInfo: the client sent Request Problem Information 0
	// (§3.1.2.11.7): no Reason String or User Property except on PUBLISH,
	// CONNACK and DISCONNECT.
	noProblemInfo bool
	aliasMaxOut   uint16 // the client's Topic Alias Maximum
	authing       bool   // a re-authentication awaits the client's AUTH 0x18

	// reading
	served bool // run serves the connection: read may return ErrWouldWait
	// timed: the read deadline runs for the packet being read, set at the
	// first read after the last whole packet (§3.1.2.10 counts packets,
	// so bytes trickling in do not extend it), to deadline (where the
	// parker ends a parked connection's park). Without keep-alive only a
	// packet begun has one (Config.PacketWait).
	timed    bool
	deadline time.Time
	parked   parkState
	small    [16]byte
	rbuf     *[]byte // pooled; nil while idle
	roff     int     // the start of what is not consumed yet

	// writing
	wmu        sync.Mutex
	drained    sync.Cond // on wmu: the writer took the buffer, or closing
	wbuf       *[]byte   // encoded packets not yet written
	queued     int       // packets in wbuf
	writing    bool      // a writer goroutine runs
	closing    bool      // close once wbuf is written
	closed     bool
	closeOnce  sync.Once
	aliasesOut map[string]uint16 // under wmu: aliases follow the write order
}

// serve reads and handles each packet after the CONNECT in turn, until
// the connection ends (false), or until a read would wait for the socket
// of a connection that can wait for it apart (nowReader; true: run parks
// the connection, and its reader ends).
func (c *conn) serve() (idle bool) {
	for {
		c.waitBacklog()
		h, body, err := c.next()
		if err == ErrWouldWait {
			return true
		}
		if err != nil {
			c.readFailed(err)
			return false
		}
		p, err := packet.Decode(c.version, h, body, c.srv.cfg.MaxPacketSize)
		if err != nil {
			c.fail(err)
			return false
		}
		if !c.handle(p) {
			return false
		}
	}
}

// nowReader is a connection that reads without waiting for its socket, so
// that an idle one can be parked (TLSConn, Plain): with nothing to read it
// says ErrWouldWait, and holds no byte above the socket then.
type nowReader interface {
	// ReadNow reads what needs no wait for the socket, or returns ErrWouldWait.
	ReadNow(p []byte) (int, error)
}

// read reads into p: through ReadNow for a nowReader once the connection
// is served (run), which returns ErrWouldWait for serve to park the
// connection; before (the CONNECT, on the goroutine that accepted it),
// read waits for the socket.
func (c *conn) read(p []byte) (int, error) {
	if r, ok := c.nc.(nowReader); ok && c.served {
		return r.ReadNow(p)
	}
	return c.nc.Read(p)
}

// waitBacklog holds the reader while more than Config.Queue packets wait
// to be written to this client: one that sends without reading (its
// PUBACKs pile up) is slowed through TCP instead of growing the buffer.
// Only a connection's own reader waits here, never another client's.
func (c *conn) waitBacklog() {
	c.wmu.Lock()
	for c.queued > c.srv.cfg.Queue && !c.closing && !c.closed {
		c.drained.Wait()
	}
	c.wmu.Unlock()
}

// readFailed ends the connection after a read error: a malformed header
// or oversized packet gets its reason code, the rest (EOF, reset, the
// keep-alive deadline) a plain close.
func (c *conn) readFailed(err error) {
	var pe *packet.Error
	if errors.As(err, &pe) {
		c.fail(err)
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() && c.connected {
		if c.keepAlive > 0 {
			c.close(packet.KeepAliveTimeout, "no packet within 1.5 times the keep alive")
		} else {
			c.close(packet.UnspecifiedError, "a packet not completed within "+c.srv.cfg.PacketWait.String())
		}
		return
	}
	c.closeNow()
}

// fail ends the connection for a packet error: MQTT 5 gets DISCONNECT with
// its reason (0x81, 0x82, 0x95 ...), MQTT 3.1.1 a closed connection.
func (c *conn) fail(err error) {
	c.srv.log.Debug("mqtt: closing a connection", "client", c.clientID(), "err", err)
	var pe *packet.Error
	if !errors.As(err, &pe) {
		pe = &packet.Error{Code: packet.UnspecifiedError, Reason: err.Error()}
	}
	c.close(pe.Code, pe.Reason)
}

func (c *conn) clientID() string {
	if c.client != nil {
		return c.client.ID
	}
	return ""
}

// next reads one packet: its header, and its body, valid until the next
// call. It checks the header against the server's Maximum Packet Size
// before it reads the body.
func (c *conn) next() (packet.Header, []byte, error) {
	for {
		if c.rbuf != nil {
			buf := (*c.rbuf)[c.roff:]
			h, _, err := packet.ParseHeader(buf)
			switch {
			case err == nil:
				v := c.version
				if v == 0 {
					v = packet.V5 // the CONNECT: AUTH is judged once the version is known
				}
				if err := h.Check(v, c.srv.cfg.MaxPacketSize); err != nil {
					return h, nil, err
				}
				hl := h.Size() - h.Remaining
				if len(buf) >= h.Size() {
					c.roff += h.Size()
					c.timed = false
					return h, buf[hl:h.Size()], nil
				}
				// Room for twice what came, up to the packet: the buffer
				// grows with the bytes received, not with what a header
				// announces (5 bytes would hold the Maximum Packet Size).
				c.grow(min(h.Size(), 2*len(buf)))
			case err != io.ErrUnexpectedEOF:
				return h, nil, err
			}
		}
		if err := c.fill(); err != nil {
			return packet.Header{}, nil, err
		}
	}
}

// grow makes room in the read buffer for a packet of n bytes.
func (c *conn) grow(n int) {
	rest := (*c.rbuf)[c.roff:]
	if c.roff == 0 && cap(*c.rbuf) >= n {
		return
	}
	nb := packet.GetBuffer(max(n, 4096))
	*nb = append(*nb, rest...)
	packet.PutBuffer(c.rbuf)
	c.rbuf, c.roff = nb, 0
}

// fill reads more bytes. With nothing left over it gives the buffer back
// and blocks on the connection's small array, so that an idle connection
// holds no buffer.
func (c *conn) fill() error {
	if !c.timed {
		switch {
		case !c.served:
			// The CONNECT, and the AUTH exchange before its CONNACK: the
			// listener's deadline runs, whatever keep-alive the CONNECT
			// asked for (§4.12; connect).
		case c.keepAlive > 0:
			c.setDeadline(time.Now().Add(c.keepAlive * 3 / 2)) // §3.1.2.10
		case c.rbuf != nil && c.roff < len(*c.rbuf):
			// No keep-alive: an idle connection may wait as long as it
			// likes, a packet begun may not hold its buffer longer.
			c.setDeadline(time.Now().Add(c.srv.cfg.PacketWait))
		case !c.deadline.IsZero():
			c.deadline = time.Time{}
			c.nc.SetReadDeadline(c.deadline)
		}
	}
	if c.rbuf == nil || c.roff == len(*c.rbuf) {
		if c.rbuf != nil {
			packet.PutBuffer(c.rbuf)
			c.rbuf = nil
		}
		n, err := c.read(c.small[:])
		if n > 0 {
			c.rbuf, c.roff = packet.GetBuffer(4096), 0
			*c.rbuf = append(*c.rbuf, c.small[:n]...)
		}
		return err
	}
	if c.roff > 0 && len(*c.rbuf) == cap(*c.rbuf) {
		c.grow(cap(*c.rbuf)) // move the partial packet to the front
	}
	b := *c.rbuf
	n, err := c.read(b[len(b):cap(b)])
	*c.rbuf = b[:len(b)+n]
	if n > 0 {
		return nil
	}
	return err
}

// setDeadline sets the read deadline of the packet being read.
func (c *conn) setDeadline(t time.Time) {
	c.deadline = t
	c.nc.SetReadDeadline(t)
	c.timed = true
}

// send queues p for writing; false when the connection is closing.
func (c *conn) send(p packet.Packet) bool {
	if c.noProblemInfo {
		switch p.(type) {
		case *packet.Connack, *packet.Disconnect:
		default:
			if props := propsOf(p); props != nil {
				props.Strip()
			}
		}
	}
	if c.maxOut > 0 && packet.Size(c.version, p) > c.maxOut {
		// §3.1.2.11.4: the Reason String and User Properties may go; a
		// packet still too large is not sent.
		if props := propsOf(p); props != nil {
			props.Strip()
		}
		if packet.Size(c.version, p) > c.maxOut {
			return false
		}
	}
	return c.enqueue(p, false)
}

func propsOf(p packet.Packet) *packet.Properties {
	switch p := p.(type) {
	case *packet.Ack:
		return &p.Props
	case *packet.SubAck:
		return &p.Props
	case *packet.Disconnect:
		return &p.Props
	case *packet.Connack:
		return &p.Props
	case *packet.Auth:
		return &p.Props
	}
	return nil
}

// sendPublish queues a PUBLISH of m at qos (with packet identifier id for
// QoS 1 and 2). ok is false when it was not queued: never when it can
// never go to this client (expired, or larger than the client takes,
// §3.1.2.11.4: the server drops it); otherwise the connection is closing,
// or a QoS 0 message found the queue full. A QoS 1 or 2 message not queued
// for a closing connection stays in the session, to be resent.
func (c *conn) sendPublish(m *Message, qos byte, id uint16, retain bool, subIDs []int, dup bool) (ok, never bool) {
	p := publishes.Get().(*packet.Publish)
	defer func() {
		*p = packet.Publish{}
		publishes.Put(p)
	}()
	*p = packet.Publish{Dup: dup, QoS: qos, Retain: retain, Topic: m.Topic, PacketID: id, Payload: m.Payload}
	if c.version == packet.V5 {
		if m.Props != nil {
			p.Props = *m.Props
		}
		p.Props.SubscriptionIDs = subIDs
		if !m.Expires.IsZero() {
			left := time.Until(m.Expires)
			if left <= 0 {
				return false, true
			}
			p.Props.MessageExpiry = uint32((left + time.Second - 1) / time.Second) // §3.3.2.3.3: what is left
		}
	}
	if c.maxOut > 0 && packet.Size(c.version, p)+aliasCost(c.aliasMaxOut) > c.maxOut {
		return false, true
	}
	if !c.enqueue(p, qos == 0) {
		return false, false
	}
	c.srv.Stats.Sent.Add(1)
	return true, false
}

// publishes are the PUBLISH packets sendPublish fills and encodes at once:
// one per delivery would be most of a fan-out's garbage.
var publishes = sync.Pool{New: func() any { return new(packet.Publish) }}

// enqueue encodes p into the write buffer and starts a writer if none
// runs. droppable packets (QoS 0 messages) are refused when Config.Queue
// packets are waiting already.
func (c *conn) enqueue(p packet.Packet, droppable bool) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closing || c.closed || (droppable && c.queued >= c.srv.cfg.Queue) {
		return false
	}
	if pub, ok := p.(*packet.Publish); ok && c.aliasMaxOut > 0 {
		c.alias(pub)
	}
	if c.wbuf == nil {
		c.wbuf = packet.GetBuffer(packet.Size(c.version, p))
	}
	var err error
	if *c.wbuf, err = packet.Append(*c.wbuf, c.version, p); err != nil {
		return false
	}
	c.queued++
	if !c.writing {
		c.writing = true
		go c.flush()
	}
	return true
}

// flush writes what is queued until nothing is, then ends; it closes the
// connection when it is closing.
func (c *conn) flush() {
	for {
		c.wmu.Lock()
		b := c.wbuf
		c.wbuf, c.queued = nil, 0
		c.drained.Broadcast()
		if b == nil {
			c.writing = false
			closing := c.closing
			c.wmu.Unlock()
			if closing {
				c.closeNow()
			}
			return
		}
		timeout := c.writeTimeout()
		if c.closing {
			timeout = closeWriteTimeout
		}
		c.wmu.Unlock()
		// A client that stops reading ends like one that stops sending
		// (the reader may be held by waitBacklog meanwhile). Set before
		// every write, the last ones of a closing connection too: the
		// deadline of an earlier write may have passed (shutdown sets one
		// as well, but maybe after this write began), and a TLS write it
		// fails has used a record's sequence number, so that the
		// close_notify alert after it reaches the client as a bad record.
		c.nc.SetWriteDeadline(time.Now().Add(timeout))
		_, err := c.nc.Write(*b)
		packet.PutBuffer(b)
		if err != nil {
			c.wmu.Lock()
			c.writing = false
			c.wmu.Unlock()
			c.closeNow()
			return
		}
	}
}

// writeTimeout is how long one write may wait for the client to read: one
// and a half keep-alive periods, or a minute without keep-alive.
func (c *conn) writeTimeout() time.Duration {
	if c.keepAlive > 0 {
		return c.keepAlive * 3 / 2
	}
	return time.Minute
}

// close ends the connection: an MQTT 5 client gets DISCONNECT with code
// and reason first (never an MQTT 3.1.1 client, §3.14: only clients send
// it there), once what is queued is written.
func (c *conn) close(code packet.ReasonCode, reason string) {
	c.wmu.Lock()
	v5 := c.version == packet.V5 && c.connected
	c.wmu.Unlock()
	if v5 {
		d := &packet.Disconnect{Code: code}
		if reason != "" {
			d.Props.ReasonString = reason
			d.Props.Set(packet.PropReasonString)
		}
		c.send(d)
	}
	c.shutdown()
}

// shutdown closes the connection once what is queued is written.
func (c *conn) shutdown() {
	c.wmu.Lock()
	c.closing = true
	c.drained.Broadcast()
	writing := c.writing
	c.wmu.Unlock()
	if !writing {
		c.closeNow()
		return
	}
	// A client that stops reading must not hold the writer for ever.
	c.nc.SetWriteDeadline(time.Now().Add(closeWriteTimeout))
}

// closeWriteTimeout bounds the writes of a closing connection.
const closeWriteTimeout = 5 * time.Second

func (c *conn) closeNow() {
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		c.closed = true
		c.drained.Broadcast()
		if c.wbuf != nil && !c.writing {
			packet.PutBuffer(c.wbuf)
			c.wbuf = nil
		}
		c.wmu.Unlock()
		c.nc.Close()
		c.closedParked()
	})
}

// end runs when the reader stops: the session loses its connection, the
// will is scheduled unless the client disconnected normally, and a session
// without expiry ends.
func (c *conn) end() {
	if c.rbuf != nil {
		packet.PutBuffer(c.rbuf)
		c.rbuf = nil
	}
	c.shutdown()
	cl := c.client
	if cl == nil {
		return
	}
	s := c.srv
	s.Stats.Connected.Add(-1)
	cl.mu.Lock()
	// dropWill is set under the session's lock, with the expiry and the
	// will of the session it goes with (Supersede, Disconnect, Adopt).
	will := c.will
	if c.normalExit || c.dropWill.Load() {
		will = nil
	}
	if cl.conn != c {
		if will != nil && c.sessionEnds && !cl.ended {
			// A clean start took the session over and ends it next
			// (attach): the session's end publishes the will (§3.1.4),
			// as it does when this end runs after it.
			cl.will = will
			cl.mu.Unlock()
			return
		}
		// Taken over: a new connection to the session exists already, so a
		// delayed will is not sent (§3.1.3.2.2); one without delay is, and
		// any will once the session ended (a clean start took it over).
		ended := cl.ended
		as := &Client{ID: cl.ID, srv: s}
		as.SetIdentity(c.leftAs)
		as.version.Store(uint32(c.version))
		cl.mu.Unlock()
		if will != nil && (ended || c.willDelay == 0) {
			s.sendWill(as, will)
		}
		return
	}
	cl.setConn(nil)
	expiry := cl.expiry
	cl.ending = cl.ending || expiry == 0
	cl.mu.Unlock()
	if will != nil {
		s.scheduleWill(cl, will, min(c.willDelay, expiry))
	}
	if expiry == 0 {
		s.endSession(cl)
		return
	}
	s.saveSession(cl, time.Now())
	cl.mu.Lock()
	if !cl.ended && cl.conn == nil {
		cl.expiryTimer = time.AfterFunc(expiry, func() { s.expire(cl) })
	}
	cl.mu.Unlock()
}

// aliasCost is what a Topic Alias property adds to a PUBLISH.
func aliasCost(max uint16) int {
	if max > 0 {
		return 3
	}
	return 0
}

// alias gives p's topic an alias towards the client (§3.3.2.3.4): the
// first PUBLISH on a topic carries it with a new alias while the client's
// Topic Alias Maximum allows, later ones the alias alone. c.wmu is held, so
// an alias is always written before it is used.
func (c *conn) alias(p *packet.Publish) {
	if a, ok := c.aliasesOut[p.Topic]; ok {
		p.Topic = ""
		p.Props.TopicAlias = a
		p.Props.Set(packet.PropTopicAlias)
		return
	}
	if len(c.aliasesOut) >= int(c.aliasMaxOut) {
		return
	}
	if c.aliasesOut == nil {
		c.aliasesOut = map[string]uint16{}
	}
	a := uint16(len(c.aliasesOut) + 1)
	c.aliasesOut[p.Topic] = a
	p.Props.TopicAlias = a
	p.Props.Set(packet.PropTopicAlias)
}
