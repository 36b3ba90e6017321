package broker

import (
	"context"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// OnAuthPacket re-authenticates a connection with a fresh token (MQTT 5
// §4.12.1): the client sends AUTH with reason 0x19, AuthMethod and the new
// access token as Authentication Data. The token must name the same identity
// and satisfy the same certificate binding; the deadline is re-armed to its
// expiry and the grants recompiled from its scopes. A refusal is an error
// that mochi turns into DISCONNECT with its reason code.
func (h *hook) OnAuthPacket(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	s := h.session(cl)
	if s == nil || s.revoked.Load() {
		return pk, packets.ErrNotAuthorized
	}
	old := s.state.Load().id
	if pk.ReasonCode != packets.CodeReAuthenticate.Code || old.AuthMethod != AuthMethod || pk.Properties.AuthenticationMethod != AuthMethod {
		// [MQTT-4.12.1-1]: only with the method of the CONNECT.
		h.b.metrics.authFailures.WithLabelValues("reauth_method").Inc()
		return pk, packets.ErrProtocolViolation
	}
	id := &Identity{ClientIdentifier: old.ClientIdentifier, AuthMethod: old.AuthMethod, Cert: old.Cert}
	var v *verdict
	var r *refusal
	h.b.workers.run(func() {
		ctx, cancel := context.WithTimeout(h.ctx, h.b.opts.Limits.ConnectTimeout)
		defer cancel()
		r = h.fromToken(ctx, id, string(pk.Properties.AuthenticationData), peerChain(cl.Net.Conn))
		if r == nil && id.principal() != old.principal() {
			r = refuse(packets.ErrNotAuthorized, "reauth_identity", "the new token is for another identity")
		}
		if r == nil {
			if err := h.b.resolver.resolve(ctx, id); err != nil {
				r = refuse(packets.ErrNotAuthorized, "inactive", err.Error())
			}
		}
		// The same thing may now act for another user, or for itself.
		if r == nil && h.governed(id) {
			v, r = h.admitPolicy(ctx, cl, id, cl.State.Subscriptions.Len(), "mqtt.reauth.deny")
		}
	})
	if r != nil {
		h.b.metrics.authFailures.WithLabelValues(r.label).Inc()
		if r.label != "policy" { // audited with its rule
			h.b.audit.deny(old, cl, "mqtt.reauth.deny", r.label, r.code.Reason)
		}
		// DISCONNECT has no "bad username or password" (MQTT 5 §3.14.2.1).
		return pk, packets.Code{Code: packets.ErrNotAuthorized.Code, Reason: r.code.Reason}
	}
	s.state.Store(&sessionState{id: id, g: compile(h.b.opts.Rules, id)})
	h.arm(s, id.Expires)
	h.b.store.update(cl, id)
	// After any decision under way for the identity the token replaced.
	s.deciding.Lock()
	s.policy.Store(v)
	var until time.Time
	if v != nil {
		until = v.until
	}
	h.armPolicy(s, until)
	s.deciding.Unlock()
	return pk, cl.WritePacket(packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Auth},
		ReasonCode:  packets.CodeSuccess.Code,
		Properties:  packets.Properties{AuthenticationMethod: AuthMethod},
	})
}
