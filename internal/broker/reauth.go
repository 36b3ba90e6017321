package broker

import (
	"context"
	"time"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// Reauthenticate re-authenticates a connection with a fresh token (MQTT 5
// §4.12.1): the client sends AUTH with reason 0x19, AuthMethod and the new
// access token as Authentication Data. The token must name the same identity
// and satisfy the same certificate binding; the deadline is re-armed to its
// expiry and the grants recompiled from its scopes. A refusal ends the
// connection with DISCONNECT and its reason code; success is answered by
// the core (AUTH 0x00), which stores the new identity of a persistent
// session.
func (h *auth) Reauthenticate(ctx context.Context, cl *mqtt.Client, pk *packet.Auth) error {
	s, st := live(cl)
	if s == nil {
		return &packet.Error{Code: packet.NotAuthorized, Reason: "session ended"}
	}
	old := st.id
	if old.AuthMethod != AuthMethod || pk.Props.AuthMethod != AuthMethod {
		// [MQTT-4.12.1-1]: only with the method of the CONNECT.
		h.b.metrics.authFailures.WithLabelValues("reauth_method").Inc()
		return &packet.Error{Code: packet.ProtocolError, Reason: "re-authentication needs the CONNECT's method " + AuthMethod}
	}
	id := &Identity{ClientIdentifier: old.ClientIdentifier, AuthMethod: old.AuthMethod, Cert: old.Cert}
	var v *verdict
	var r *refusal
	h.b.workers.run(func() {
		r = h.fromToken(ctx, id, string(pk.Props.AuthData), peerChain(cl.Conn()))
		if r == nil && id.principal() != old.principal() {
			r = refuse(packet.NotAuthorized, "reauth_identity", "the new token is for another identity")
		}
		if r == nil {
			if err := h.b.resolver.resolve(ctx, id); err != nil {
				r = refuse(packet.NotAuthorized, "inactive", err.Error())
			}
		}
		// The same thing may now act for another user, or for itself.
		if r == nil && h.governed(id) {
			v, r = h.admitPolicy(ctx, cl, id, false, cl.Subscriptions(), "mqtt.reauth.deny")
		}
	})
	if r != nil {
		h.b.metrics.authFailures.WithLabelValues(r.label).Inc()
		if r.label != "policy" { // audited with its rule
			h.b.audit.deny(old, cl, "mqtt.reauth.deny", r.label, r.err.Reason)
		}
		// DISCONNECT has no "bad username or password" (MQTT 5 §3.14.2.1).
		return &packet.Error{Code: packet.NotAuthorized, Reason: r.err.Reason}
	}
	s.state.Store(&sessionState{id: id, g: compile(h.b.opts.Rules, id)})
	h.arm(s, id.Expires)
	// After any decision under way for the identity the token replaced.
	s.deciding.Lock()
	s.policy.Store(v)
	var until time.Time
	if v != nil {
		until = v.until
	}
	h.armPolicy(s, until)
	s.deciding.Unlock()
	return nil
}

// Continue refuses: the broker's authentication takes one round (the token
// in CONNECT or AUTH), so it never asks for a second.
func (h *auth) Continue(context.Context, *mqtt.Client, *packet.Auth) error {
	return &packet.Error{Code: packet.ProtocolError, Reason: "authentication takes no further rounds"}
}
