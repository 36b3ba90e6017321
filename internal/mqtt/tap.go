package mqtt

import (
	"strconv"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/mqtt/topics"
)

// tapPrefix starts the identifier a tap subscribes under: U+0000 is in no
// client identifier a CONNECT can carry (§1.5.4), so a tap never shares
// its entries in the topic tree with a session.
const tapPrefix = "\x00tap/"

var tapSeq atomic.Uint64

// Tap subscribes f, as no session, to filter (not a shared subscription;
// the caller checked it and decided who may): f gets the retained messages
// matching it at once, then every message routed on this server that
// matches, published here or injected from another node, until stop. f
// runs on the publisher's path, in no particular order with other taps,
// and must not block. The CoAP gateway's observers are taps.
func (s *Server) Tap(filter string, f func(*Message)) (stop func()) {
	id := tapPrefix + strconv.FormatUint(tapSeq.Add(1), 10)
	s.mu.Lock()
	if s.taps == nil {
		s.taps = map[string]func(*Message){}
	}
	s.taps[id] = f
	s.mu.Unlock()
	s.subscribe(id, topics.Subscription{Filter: filter, QoS: 1})
	now := time.Now()
	s.retained.Match(filter, func(_ string, m *Message) {
		if m.Expires.IsZero() || now.Before(m.Expires) {
			f(m)
		}
	})
	return func() {
		s.unsubscribe(id, filter)
		s.mu.Lock()
		delete(s.taps, id)
		s.mu.Unlock()
	}
}

// tap is the function of a tap's identifier, nil for another.
func (s *Server) tap(id string) func(*Message) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.taps[id]
}

// RetainedMessage is the retained message of a topic name, unless none or
// expired.
func (s *Server) RetainedMessage(topic string) (*Message, bool) {
	m, ok := s.retainedAt(topic)
	if !ok || (!m.Expires.IsZero() && !time.Now().Before(m.Expires)) {
		return nil, false
	}
	return m, true
}
