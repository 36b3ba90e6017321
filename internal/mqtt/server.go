package mqtt

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// Auth decides who a client is and what it may do. The server asks it at
// CONNECT and AUTH, for every SUBSCRIBE filter, every PUBLISH and every
// delivery: live, queued, resumed, retained, will or alias-resolved, all
// through Deliver. The broker implements it with its identities and rules.
type Auth interface {
	// Connect admits c (its ID and Conn set, Identity nil) or refuses it
	// with a *packet.Error whose code the CONNACK carries. It sets
	// c.Identity. old is the identity of the session c's client identifier
	// already has (nil when none): Connect decides whether c may take it.
	Connect(ctx context.Context, c *Client, pk *packet.Connect, old any) error
	// Reauthenticate answers an MQTT 5 AUTH packet with Re-authenticate
	// (0x19) after CONNECT (§4.12.1); an error ends the connection with its
	// reason code.
	Reauthenticate(ctx context.Context, c *Client, pk *packet.Auth) error
	// Continue answers the client's AUTH (0x18) after Connect or
	// Reauthenticate returned a *Challenge (§4.12): nil authenticates,
	// another *Challenge asks again, any other error refuses.
	Continue(ctx context.Context, c *Client, pk *packet.Auth) error
	Publish(c *Client, topic string) bool
	Subscribe(c *Client, filter string) bool
	Deliver(c *Client, topic string) bool
}

// Challenge, returned by Auth.Connect, Reauthenticate or Continue, goes on
// with MQTT 5 enhanced authentication (§4.12): the server sends AUTH with
// Continue authentication (0x18) and Data, and the client's answer goes to
// Auth.Continue.
type Challenge struct{ Data []byte }

func (*Challenge) Error() string { return "mqtt: authentication continues" }

// Config configures a Server. Auth is required; zero limits take the
// defaults below.
type Config struct {
	Auth Auth
	// MaxPacketSize is announced in CONNACK (MQTT 5 §3.2.2.3.6); a larger
	// packet ends the connection (0x95).
	MaxPacketSize int
	// ReceiveMaximum is how many QoS 1 and 2 PUBLISH packets a client may
	// have unacknowledged towards the server (§3.2.2.3.3); more is 0x93.
	ReceiveMaximum uint16
	// Inflight is the most QoS 1 and 2 messages held for one session, sent
	// and awaiting acknowledgement or waiting for the client's Receive
	// Maximum; more are dropped and counted, except for a connected client
	// that keeps up, which holds up to twice as many while the publishers
	// wait for room (flow control, Client.deliver).
	Inflight int
	// Queue is the most packets waiting to be written to one connection; a
	// QoS 0 message finding it full is dropped and counted.
	Queue int
	// MaxSessionExpiry caps a session's expiry interval.
	MaxSessionExpiry time.Duration
	// MaxKeepAlive, when set, caps a client's keep-alive: the server sends
	// Server Keep Alive (§3.2.2.3.14) to an MQTT 5 client asking for more.
	MaxKeepAlive time.Duration
	// TopicAliasMaximum is announced to MQTT 5 clients (§3.2.2.3.8).
	TopicAliasMaximum uint16
	// ConnectTimeout bounds authenticating one CONNECT.
	ConnectTimeout time.Duration
	// PacketWait bounds how long a client without keep-alive may take to
	// send the rest of a packet it began (with keep-alive, 1.5 keep-alive
	// periods bound it, §3.1.2.10).
	PacketWait time.Duration
	// Store keeps persistent sessions and retained messages; nil: they
	// live in memory only. Identity encodes session identities for it.
	Store    Store
	Identity IdentityCodec
	// Remote, when set, carries every message published here (authorized
	// for its publisher) to the other nodes of a cluster, which Inject it;
	// nil: a single node.
	Remote Remote
	Log    *slog.Logger
}

// Remote forwards the messages published on this server to the other
// nodes of a cluster (Config.Remote), and orders the connections of one
// client identifier across them (§3.1.4: one connection per client
// identifier).
type Remote interface {
	Forward(m *Message)
	// Claim takes clientID for a connection accepted here, before its
	// CONNACK, and tells the other nodes, which end an older session of
	// clientID (Supersede). It returns the claim's place in one order of
	// the whole cluster (a larger one is newer), not a clock's reading.
	// clean is the new connection's Clean Start. An error refuses the
	// connection (Server unavailable): it could not be ordered.
	Claim(clientID string, clean bool) (uint64, error)
	// Shared tells that the members here of shared subscription filter
	// ($share/<group>/<filter>) changed (Server.Members says how many):
	// the server leaves its messages to the Remote, which hands each to
	// one server of the cluster with members (Server.DeliverShared).
	Shared(filter string)
	// Interest tells that this server's subscriptions to filter, not
	// shared, changed (Server.Subscribers says how many): the messages of
	// other nodes that it matches must reach this server, and need not
	// when it has none. Called before SUBACK.
	Interest(filter string)
}

// Repeats is a Remote that recognizes a QoS 2 message which a client
// with a stored session sends again, to this node, after the node it
// sent it to first routed it and died before recording its packet
// identifier (so before its PUBREC): the other nodes got it then.
type Repeats interface {
	// Repeated names m, the QoS 2 message its publisher (m.From) sent under
	// packetID, with the DUP flag dup, across the attempts
	// (Message.Exchange), and reports whether this node had it delivered
	// already: then it is acknowledged, not routed again.
	Repeated(m *Message, packetID uint16, dup bool) bool
}

// Defaults of Config.
const (
	DefaultMaxPacketSize  = 256 << 10
	DefaultReceiveMaximum = 1024
	DefaultInflight       = 1000
	DefaultQueue          = 1024
	DefaultSessionExpiry  = 7 * 24 * time.Hour
	DefaultTopicAliases   = 64
	DefaultConnectTimeout = 10 * time.Second
	DefaultPacketWait     = time.Minute
)

// Stats are the server's counters, for metrics.
type Stats struct {
	Connected       atomic.Int64 // connections with an accepted CONNECT
	Sessions        atomic.Int64
	Received        atomic.Int64 // PUBLISH packets from clients
	Sent            atomic.Int64 // PUBLISH packets to clients
	Dropped         atomic.Int64 // messages dropped for a full write queue
	InflightDropped atomic.Int64 // QoS 1 and 2 messages dropped for a session's full window (Config.Inflight)
	DeniedPublish   atomic.Int64
	DeniedSubscribe atomic.Int64
	DeniedDeliver   atomic.Int64
	// Parked are the idle connections held without a reader: on Linux in
	// the server's epoll set, with no goroutine; elsewhere each waiting
	// for its socket on a goroutine of its own.
	Parked atomic.Int64
	// WillsWithheld are wills not published because their session's
	// record could not be written without them (takeWill): in a cluster,
	// another node holds the session now, or the store is unreachable.
	WillsWithheld atomic.Int64
}

// Server is an MQTT 3.1.1 and 5.0 server.
type Server struct {
	cfg      Config
	log      *slog.Logger
	subs     topics.Tree
	retained topics.Retained[*Message]
	Stats    Stats

	mu       sync.RWMutex
	sessions map[string]*Client
	taps     map[string]func(*Message) // by identifier (Tap)
	conns    map[*conn]struct{}
	// claiming are the client identifiers whose connections here wait
	// between Remote.Claim and attaching, with the newest claim another
	// node announced meanwhile, which the attached session then meets.
	claiming map[string]*claiming
	// restoredWills wait for StartWills.
	restoredWills []restoredWill
	closed        bool
	wg            sync.WaitGroup
	parker        *parker // the idle connections (nil where there is no epoll)
}

// New returns a server; serve connections with ServeConn.
func New(cfg Config) (*Server, error) {
	if cfg.Auth == nil {
		return nil, errors.New("mqtt: Config.Auth is required")
	}
	cfg.MaxPacketSize = cmp.Or(cfg.MaxPacketSize, DefaultMaxPacketSize)
	cfg.ReceiveMaximum = cmp.Or(cfg.ReceiveMaximum, DefaultReceiveMaximum)
	cfg.Inflight = cmp.Or(cfg.Inflight, DefaultInflight)
	cfg.Queue = cmp.Or(cfg.Queue, DefaultQueue)
	cfg.MaxSessionExpiry = cmp.Or(cfg.MaxSessionExpiry, DefaultSessionExpiry)
	cfg.TopicAliasMaximum = cmp.Or(cfg.TopicAliasMaximum, DefaultTopicAliases)
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, DefaultConnectTimeout)
	cfg.PacketWait = cmp.Or(cfg.PacketWait, DefaultPacketWait)
	if cfg.MaxPacketSize < 64 || cfg.MaxPacketSize > packet.MaxRemaining || cfg.Inflight < 1 || cfg.Inflight > math.MaxUint16 || cfg.Queue < 1 {
		return nil, errors.New("mqtt: limits out of range")
	}
	s := &Server{
		cfg:      cfg,
		log:      cmp.Or(cfg.Log, slog.Default()),
		sessions: map[string]*Client{},
		conns:    map[*conn]struct{}{},
		claiming: map[string]*claiming{},
	}
	if cfg.Store != nil {
		if err := s.restore(); err != nil {
			return nil, fmt.Errorf("mqtt: restoring sessions: %w", err)
		}
	}
	p, err := newParker()
	if err != nil {
		return nil, fmt.Errorf("mqtt: the idle connections' poller: %w", err)
	}
	s.parker = p
	return s, nil
}

// ServeConn serves one client connection; the caller has accepted it (and
// finished any TLS handshake) and set a deadline for the CONNECT. It reads
// and answers the CONNECT on the calling goroutine and returns; a
// connection whose CONNECT is accepted is then served by a goroutine of its
// own (run) while it has something to read, and parked when idle. nc is
// closed when the connection ends (Close waits for that). A nowReader (a
// TLSConn, or a plain connection wrapped by Plain) can be parked; any
// other nc is read by a goroutine that waits in its Read.
//
// The goroutine is new for memory: decoding and authenticating a CONNECT
// (and a TLS handshake before it) grow the caller's stack to 4 KiB or more,
// and Go keeps a grown stack while its goroutine lives (issue 16).
func (s *Server) ServeConn(nc net.Conn) {
	c := &conn{srv: s, nc: nc}
	c.drained.L = &c.wmu
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	if !c.connect() {
		c.finish()
		return
	}
	go c.run()
}

// run serves the connection on a goroutine of its own until it ends, or
// until it has nothing more to read (a nowReader: TLSConn, Plain): then
// it parks the connection and returns. On Linux a parked connection holds
// no goroutine (parker: one epoll set per server); a new reader starts
// once its socket is readable, with the smallest stack. A reader that
// waited on would keep its stack, and one that read through crypto/tls
// keeps 4 KiB (Go shrinks a stack only while less than a quarter of it,
// minus 800 bytes, is in use, which no waiting reader is).
func (c *conn) run() {
	c.served = true
	if c.serve() {
		c.park()
		return
	}
	c.finish()
}

// woke ends a park: the socket is readable (err nil: serve it), or the
// wait failed as a read would (the keep-alive deadline, closed).
func (c *conn) woke(err error) {
	if err != nil {
		c.readFailed(err)
		c.finish()
		return
	}
	c.run()
}

// finish ends the connection once its reader has stopped.
func (c *conn) finish() {
	c.end()
	s := c.srv
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// Close ends every connection (MQTT 5: Server shutting down) and waits for
// them; sessions end with it.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.close(packet.ServerShuttingDown, "the server is shutting down")
	}
	s.wg.Wait()
	s.parker.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, cl := range s.sessions {
		cl.stopTimers()
	}
}

// Retained is the number of retained messages.
func (s *Server) Retained() int { return s.retained.Len() }

// Subscriptions is the number of subscriptions of every session.
func (s *Server) Subscriptions() int { return s.subs.Len() }

// Client returns the session of a client identifier, nil when there is none.
func (s *Server) Client(id string) *Client {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.sessions[id]
}

// Supersede ends the session of id if its connection claimed the client
// identifier before claim, which another node's connection made (§3.1.4);
// a later claim leaves it. The session does not move, so it ends here,
// and its will is published as when a connection on one server takes over
// (§3.1.3.2.2): unless the new connection resumes (clean false) and the
// will has a delay, or, for a session in a SharedStore, starts clean: the
// new connection's node publishes the will of the record it deletes.
func (s *Server) Supersede(id string, claim uint64, clean bool) {
	s.mu.Lock()
	if p := s.claiming[id]; p != nil && claim > p.newest {
		p.newest, p.clean = claim, clean
	}
	s.mu.Unlock()
	cl := s.Client(id)
	if cl == nil {
		return
	}
	cl.mu.Lock()
	if cl.claim >= claim {
		cl.mu.Unlock()
		return
	}
	cl.expiry = 0 // a delayed will goes when the session ends, at once
	recorded := false
	if shared, ok := s.cfg.Store.(SharedStore); ok && cl.stored {
		// The session moves, in the store, to the newer connection's node:
		// it ends here without being deleted there. A clean start there
		// deletes the record, and publishes the will it holds (Discard):
		// not here too.
		cl.stored, recorded = false, clean
		shared.Release(id)
	}
	if !clean || recorded {
		cl.will = nil // the will of a connection that ended already, or the record's
	}
	c := cl.conn
	if c != nil && (recorded || !clean && c.willDelay > 0) {
		// Under the lock: the connection's end reads it there, with the
		// expiry set above (a delayed will is not sent: resumed elsewhere;
		// nor a recorded one: the clean start's node sends it).
		c.dropWill.Store(true)
	}
	cl.mu.Unlock()
	if c == nil {
		s.endSession(cl)
		return
	}
	c.close(packet.SessionTakenOver, "the client connected to another node")
}

// claiming counts the connections of one client identifier between their
// claim and their attaching, and keeps the newest claim announced meanwhile.
type claiming struct {
	n      int
	newest uint64
	clean  bool
}

// claim takes id for a connection through the Remote (Claim).
func (s *Server) claim(id string, clean bool) (uint64, error) {
	s.mu.Lock()
	p := s.claiming[id]
	if p == nil {
		p = &claiming{}
		s.claiming[id] = p
	}
	p.n++
	s.mu.Unlock()
	return s.cfg.Remote.Claim(id, clean)
}

// claimed ends the wait of a connection of id that claimed it; a newer
// claim announced meanwhile, which found the session not attached yet,
// ends it now.
func (s *Server) claimed(id string) {
	s.mu.Lock()
	p := s.claiming[id]
	if p.n--; p.n == 0 {
		delete(s.claiming, id)
	}
	newest, clean := p.newest, p.clean
	s.mu.Unlock()
	if newest != 0 {
		s.Supersede(id, newest, clean)
	}
}

// Disconnect ends the connection of session id, if connected, with code
// (MQTT 5 DISCONNECT; a 3.1.1 client's connection is closed) and, when
// discard is set, ends the session without publishing its will: for
// revocations.
func (s *Server) Disconnect(id string, code packet.ReasonCode, reason string, discard bool) {
	s.disconnect(id, nil, code, reason, discard)
}

// DisconnectIdentity is Disconnect when session id still has identity (as
// Client.Identity returns it): what the caller decided about one identity
// (its token expired, its grant was revoked) does not end a connection
// that has taken the client identifier over since as another. A takeover
// changes the session's identity and connection together. Identities are
// compared with ==, so they must be of comparable types (a pointer, as the
// broker's). It reports whether the session had identity.
func (s *Server) DisconnectIdentity(id string, identity any, code packet.ReasonCode, reason string, discard bool) bool {
	return s.disconnect(id, &identity, code, reason, discard)
}

func (s *Server) disconnect(id string, identity *any, code packet.ReasonCode, reason string, discard bool) bool {
	cl := s.Client(id)
	if cl == nil {
		return false
	}
	cl.mu.Lock()
	if identity != nil && cl.Identity() != *identity {
		cl.mu.Unlock()
		return false
	}
	if discard {
		cl.expiry = 0
		cl.will = nil
	}
	c := cl.conn
	if c != nil {
		c.dropWill.Store(discard) // under the lock, as its end reads it
	} else if discard {
		cl.ending = true
	}
	cl.mu.Unlock()
	if c != nil {
		c.close(code, reason)
	} else if discard {
		s.endSession(cl)
	}
	return true
}
