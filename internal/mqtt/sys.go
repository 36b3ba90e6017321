package mqtt

import (
	"context"
	"strconv"
	"time"
)

// RunSys publishes the server's figures as retained messages under
// $SYS/broker/ every interval until ctx ends: a subscriber to $SYS/# gets
// them at once and as they change. Auth.Deliver decides who sees them, as
// for any message.
func (s *Server) RunSys(ctx context.Context, interval time.Duration) {
	start := time.Now()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.publishSys(time.Since(start))
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Server) publishSys(uptime time.Duration) {
	for _, f := range []struct {
		topic string
		value int64
	}{
		{"$SYS/broker/uptime", int64(uptime / time.Second)},
		{"$SYS/broker/clients/connected", s.Stats.Connected.Load()},
		{"$SYS/broker/sessions", s.Stats.Sessions.Load()},
		{"$SYS/broker/messages/received", s.Stats.Received.Load()},
		{"$SYS/broker/messages/sent", s.Stats.Sent.Load()},
		{"$SYS/broker/messages/dropped", s.Stats.Dropped.Load() + s.Stats.InflightDropped.Load()},
		{"$SYS/broker/subscriptions/count", int64(s.subs.Len())},
		{"$SYS/broker/retained/count", int64(s.retained.Len())},
	} {
		payload := []byte(strconv.FormatInt(f.value, 10))
		if old, ok := s.retainedAt(f.topic); ok && string(old.Payload) == string(payload) {
			continue // unchanged: no write, no message
		}
		m := &Message{Topic: f.topic, Payload: payload, Retain: true}
		s.retained.Set(m.Topic, m) // never stored: recounted after a restart
		s.routeOnly(m)
	}
}

// retainedAt is the retained message of a topic name.
func (s *Server) retainedAt(topic string) (*Message, bool) {
	var found *Message
	s.retained.Match(topic, func(_ string, m *Message) { found = m })
	return found, found != nil
}

// Each calls f with every session, connected or away, until f returns
// false: for revocations by identity.
func (s *Server) Each(f func(*Client) bool) {
	s.mu.RLock()
	all := make([]*Client, 0, len(s.sessions))
	for _, cl := range s.sessions {
		all = append(all, cl)
	}
	s.mu.RUnlock()
	for _, cl := range all {
		if !f(cl) {
			return
		}
	}
}
