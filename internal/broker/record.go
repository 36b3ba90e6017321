package broker

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/thingid/thingid/internal/mqtt"
)

// A persistent session is stored with its identity (the core's
// IdentityCodec is the broker's auth): it comes back with the session after
// a restart, and messages for an away client are checked against the
// grants it had.
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

// EncodeIdentity is the record of a session's identity.
func (h *auth) EncodeIdentity(v any) []byte {
	s, _ := v.(*session)
	if s == nil {
		return nil
	}
	return encodeRecord(s.state.Load().id)
}

// DecodeIdentity gives a restored session its identity back; the core
// discards a session without a readable one: nothing could say who may
// read it. A session the policies govern delivers nothing before they are
// asked.
func (h *auth) DecodeIdentity(b []byte) (any, error) {
	id, ok := decodeRecord(b)
	if !ok {
		return nil, errors.New("no identity record")
	}
	s := newSession(id, h.b.opts.Rules)
	if h.governed(id) {
		s.policy.Store(undecided)
	}
	return s, nil
}

// Revive reads again, before the core publishes its will, the identity of
// a session a record gave (DecodeIdentity): restored at start, or taken
// over from an ended node of a cluster, its thing or user may have been
// disabled, deleted or unlinked while no broker held the session, which
// no event told the broker holding it now. Only an identity that still
// stands publishes the will, under its rules of now.
func (h *auth) Revive(cl *mqtt.Client) bool {
	s, _ := live(cl)
	if s == nil {
		return false
	}
	if err := h.resolveAgain(h.ctx, s); err != nil {
		h.b.log.Info("mqtt: a will not published: its session's identity no longer stands", "client", cl.ID, "err", err)
		return false
	}
	return true
}

// restore reads the identities of the restored sessions again from the
// store, in the background, so that a thing disabled while the broker was
// down loses its session.
func (h *auth) restore(ctx context.Context) {
	var restored []*session
	h.b.server.Each(func(cl *mqtt.Client) bool {
		if s := sessionOf(cl); s != nil {
			restored = append(restored, s)
		}
		return true
	})
	if len(restored) == 0 {
		return
	}
	h.b.log.Info("mqtt: sessions restored", "count", len(restored))
	go func() {
		for _, s := range restored {
			if ctx.Err() != nil {
				return
			}
			if h.client(s) != nil { // not resumed meanwhile
				h.refresh(ctx, s)
			}
		}
	}()
}

var _ mqtt.Reviver = (*auth)(nil)
