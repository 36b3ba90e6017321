package mqttnats

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/mqtt"
)

// A QoS 2 message of a persistent session's client is routed once across
// a node's death. Its node routes it (live over NATS, stored for the
// persistent sessions it matches), then writes its packet identifier in
// the session's record, then sends the PUBREC; a node dying between the
// routing and the write has the client send the PUBLISH again to another
// node, which finds no identifier in the record. Both attempts name the
// message alike: the session's epoch, which the record keeps and which
// changes only when a write removes a packet identifier from it (a
// completed exchange), and the packet identifier (Message.Exchange). A
// reuse of the identifier after its PUBCOMP comes under a new epoch.
//
// (A PUBLISH sent again, with DUP, is named with the epoch the record had
// when its node resumed the session: Sessions.epoch.)
//
// With that name, JetStream stores one copy per session (the header
// Nats-Msg-Id, within the stream's Duplicates window), which a node
// storing the message for a session it holds learns (mqtt.StoredBefore),
// and a node drops a live copy of a name it took within repeatWindow: the
// other nodes, and the node receiving the second attempt, if it had the
// first delivered (Router.Repeated).

// hdrExchange carries Message.Exchange.
const hdrExchange = "Thingid-Exchange"

// repeatWindow is how long a node remembers the exchanges it took, and
// JetStream the stored copies' names: the client sends the PUBLISH again
// as soon as it is connected to another node, which it tries when it
// notices the death (at once for a reset connection, within one and a
// half keep-alives otherwise); twice nodeTTL covers the sessions' move to
// another node (orphans.go) too.
func repeatWindow(nodeTTL time.Duration) time.Duration {
	return max(2*time.Minute, 2*nodeTTL)
}

// maxRepeats bounds the exchanges a node remembers: about 150 bytes each
// (measured, with the map and the order), under 20 MiB; past it, the
// oldest go first, so above about a thousand such messages a second taken
// live by one node, its window is shorter than repeatWindow.
const maxRepeats = 1 << 17

// repeats are the exchanges a node took live from the others, oldest
// first, for window.
type repeats struct {
	mu     sync.Mutex
	window time.Duration
	at     map[string]time.Time
	order  []string
	// Dropped counts the second attempts dropped here, live or stored.
	Dropped atomic.Int64
}

func newRepeats(window time.Duration) *repeats {
	return &repeats{window: window, at: map[string]time.Time{}}
}

// setWindow makes the window d, for a NodeTTL set after Dial.
func (rs *repeats) setWindow(d time.Duration) {
	rs.mu.Lock()
	rs.window = d
	rs.mu.Unlock()
}

// seen reports whether exchange was taken within the window, and takes
// it if not.
func (rs *repeats) seen(exchange string) bool {
	now := time.Now()
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.hasLocked(exchange, now) {
		return true
	}
	if len(rs.order) == maxRepeats {
		rs.forgetOldest()
	}
	rs.at[exchange] = now
	rs.order = append(rs.order, exchange)
	return false
}

// has reports whether exchange was taken within the window.
func (rs *repeats) has(exchange string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.hasLocked(exchange, time.Now())
}

// hasLocked forgets the exchanges out of the window, and reports whether
// exchange is among the rest.
func (rs *repeats) hasLocked(exchange string, now time.Time) bool {
	for len(rs.order) > 0 && now.Sub(rs.at[rs.order[0]]) > rs.window {
		rs.forgetOldest()
	}
	_, ok := rs.at[exchange]
	return ok
}

func (rs *repeats) forgetOldest() {
	delete(rs.at, rs.order[0])
	rs.order = rs.order[1:]
}

// Repeated names m, a persistent session's QoS 2 message, by the session's
// epoch and packetID, and reports whether this node took it live already:
// the client sends it again after the node that routed it died (the
// core's mqtt.Repeats).
func (r *Router) Repeated(m *mqtt.Message, packetID uint16, dup bool) bool {
	r.mu.Lock()
	s := r.sessions
	r.mu.Unlock()
	if s == nil {
		return false
	}
	epoch := s.epoch(m.From, dup)
	if epoch == "" {
		return false
	}
	m.Exchange = epoch + "." + strconv.Itoa(int(packetID))
	if r.repeats.has(m.Exchange) {
		r.repeats.Dropped.Add(1)
		r.log.Info("mqtt cluster: a QoS 2 message sent again after its node died was delivered already; acknowledged, not routed again", "client", m.From, "packet", packetID)
		return true
	}
	return false
}

// epoch is the epoch naming a QoS 2 message of clientID's session held
// here, "" for none. A message sent again (dup) before the first new one
// since this node resumed the session was first sent to the node before,
// which died taking it: under the epoch the record had then, which this
// node read. Its client may have completed other exchanges here since,
// their PUBREL sent again before the PUBLISH (§4.4 orders each kind
// alone), changing the record's.
func (s *Sessions) epoch(clientID string, dup bool) string {
	s.mu.Lock()
	h := s.held[clientID]
	s.mu.Unlock()
	if h == nil {
		return ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case dup && h.resumed != "":
		return h.resumed
	case !dup:
		h.resumed = "" // the client sent what it had to send again
	}
	return h.entry.Epoch
}

// renewEpoch gives h's entry a new epoch when it has none or when next,
// the record to write, completes one of its QoS 2 exchanges. h.mu is
// held.
func renewEpoch(h *held, next *mqtt.SessionRecord) {
	completed := slices.ContainsFunc(h.entry.Record.Received, func(id uint16) bool { return !slices.Contains(next.Received, id) })
	if h.entry.Epoch == "" || completed {
		var b [8]byte
		rand.Read(b[:])
		h.entry.Epoch = hex.EncodeToString(b[:])
	}
}
