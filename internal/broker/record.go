package broker

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
)

// A persistent session is stored by mochi's bolt hook, which keeps the
// client's user name. thingid never uses the CONNECT user name (the token
// is the credential), so it replaces it with the session's identity: stored
// in the same record, it comes back with the session after a restart, and
// messages for an away client are checked against the grants it had.
const recordPrefix = "thingid.session.v1:"

func encodeRecord(id *Identity) []byte {
	b, _ := json.Marshal(id) // plain strings, times and slices: cannot fail
	return append([]byte(recordPrefix), b...)
}

func decodeRecord(b []byte) (*Identity, bool) {
	rest, ok := strings.CutPrefix(string(b), recordPrefix)
	if !ok {
		return nil, false
	}
	id := &Identity{}
	if err := json.Unmarshal([]byte(rest), id); err != nil || id.Kind == "" {
		return nil, false
	}
	return id, true
}

// restore attaches an identity to every session mochi read from the
// persistence file, before any listener accepts a client. Sessions without
// a readable identity are discarded: nothing could say who may read them.
// The identities are then read again from the store in the background, so
// that a thing disabled while the broker was down loses its session.
func (h *hook) restore(ctx context.Context) {
	info := h.b.server.Info
	var restored []*session
	var inflight, subs int64
	for _, cl := range h.b.server.Clients.GetAll() {
		s := &session{cl: cl}
		id, ok := decodeRecord(cl.Properties.Username)
		if !ok {
			h.b.log.Warn("mqtt: stored session without identity discarded", "client", cl.ID)
			s.state.Store(&sessionState{id: &Identity{}, g: &grants{}})
			h.discard(s)
			continue
		}
		s.state.Store(&sessionState{id: id, g: compile(h.b.opts.Rules, id)})
		if h.governed(id) {
			s.policy.Store(undecided)
		}
		h.sessions.Store(cl, s)
		restored = append(restored, s)
		inflight += int64(cl.State.Inflight.Len())
		subs += int64(len(cl.State.Subscriptions.GetAll()))
	}
	// mochi's $SYS counters, which are not persisted (persist.go).
	atomic.StoreInt64(&info.Retained, int64(h.b.server.Topics.Retained.Len()))
	atomic.StoreInt64(&info.Inflight, inflight)
	atomic.StoreInt64(&info.Subscriptions, subs)
	if len(restored) == 0 {
		return
	}
	h.b.log.Info("mqtt: sessions restored", "count", len(restored))
	go func() {
		for _, s := range restored {
			if ctx.Err() != nil {
				return
			}
			if h.session(s.cl) == s { // not resumed meanwhile
				h.refresh(ctx, s)
			}
		}
	}()
}
