package broker

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"

	"github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/tokens"
)

// refusal is why a CONNECT (or a re-authentication) was refused: the MQTT 5
// reason code and reason string, and a short label for metrics and the
// audit log.
type refusal struct {
	err   *packet.Error
	label string
}

func refuse(code packet.ReasonCode, label, reason string) *refusal {
	return &refusal{err: &packet.Error{Code: code, Reason: reason}, label: label}
}

// tokenLabels name the token refusals in metrics.
var tokenLabels = []struct {
	err   error
	label string
}{
	{tokens.ErrExpired, "expired"}, {tokens.ErrNotYetValid, "not_yet_valid"}, {tokens.ErrIssuedAt, "issued_in_future"},
	{tokens.ErrSignature, "signature"}, {tokens.ErrUnknownKey, "unknown_key"}, {tokens.ErrAlgorithm, "algorithm"},
	{tokens.ErrIssuer, "issuer"}, {tokens.ErrAudience, "audience"}, {tokens.ErrRevoked, "revoked"},
	{tokens.ErrBinding, "binding"}, {tokens.ErrType, "token_type"}, {tokens.ErrHeader, "header"}, {tokens.ErrMissing, "missing_claim"},
}

func tokenLabel(err error) string {
	for _, t := range tokenLabels {
		if errors.Is(err, t.err) {
			return t.label
		}
	}
	return "malformed"
}

// authenticate decides who a CONNECT is from: an access token (password, or
// Authentication Data under AuthMethod), else a client certificate when
// certificate login is on, else anonymous when the listener allows it.
func (h *auth) authenticate(ctx context.Context, cl *mqtt.Client, pk *packet.Connect) (*Identity, *refusal) {
	conn := cl.Conn()
	lc := listenerOf(conn).cfg
	id := &Identity{ClientIdentifier: cl.ID, AuthMethod: pk.Props.AuthMethod}
	raw := string(pk.Password)
	switch id.AuthMethod {
	case "":
	case AuthMethod:
		if len(pk.Props.AuthData) > 0 {
			raw = string(pk.Props.AuthData)
		}
	default:
		return nil, refuse(packet.BadAuthenticationMethod, "auth_method", "authentication method "+AuthMethod+" or none (token as password)")
	}
	chain := peerChain(conn)
	if len(chain) > 0 {
		sum := sha256.Sum256(chain[0].Raw)
		id.Cert = hex.EncodeToString(sum[:])
	}
	switch {
	case raw != "":
		if r := h.fromToken(ctx, id, raw, chain); r != nil {
			return nil, r
		}
	case len(chain) > 0 && h.b.opts.CertificateLogin && h.b.opts.VerifyCertificate != nil:
		thing, err := h.b.opts.VerifyCertificate(ctx, chain)
		if err != nil {
			return nil, refuse(packet.BadUserNameOrPassword, "certificate", "client certificate refused: "+err.Error())
		}
		id.Kind, id.Thing, id.Expires = kindThing, thing, chain[0].NotAfter
	case lc.Anonymous:
		id.Kind = kindAnonymous
	default:
		return nil, refuse(packet.NotAuthorized, "no_credentials", "send an access token as the password")
	}
	if r := h.checkClientID(ctx, cl.ID, id); r != nil {
		return nil, r
	}
	if err := h.b.resolver.resolve(ctx, id); err != nil {
		switch {
		case errors.Is(err, errForeignGrant):
			return nil, refuse(packet.BadUserNameOrPassword, "foreign_grant", err.Error())
		case errors.Is(err, errInactive):
			return nil, refuse(packet.NotAuthorized, "inactive", err.Error())
		}
		h.b.log.Error("mqtt: reading the identity failed", "client", cl.ID, "err", err)
		return nil, refuse(packet.ServerUnavailable, "error", "identity could not be read; try again")
	}
	return id, nil
}

// fromToken fills id from a verified access token or, for the clients in
// Options.IDTokenClients, ID token.
func (h *auth) fromToken(ctx context.Context, id *Identity, raw string, chain []*x509.Certificate) *refusal {
	v := h.b.opts.Verifier
	// The certificate of the TLS connection is the evidence of a
	// certificate-bound token (RFC 8705 §3). DPoP (cnf.jkt) has no MQTT
	// form: such tokens are refused, as they must be.
	c, err := v.Verify(ctx, tokens.FromConnection(raw, chain), tokens.VerifyOptions{Audience: h.b.opts.Audience})
	id.IDToken = false
	if errors.Is(err, tokens.ErrType) && len(h.b.opts.IDTokenClients) > 0 {
		// Not an access token (typ): perhaps an ID token of a client that
		// opted in. Its aud is that client, never the broker, so accepting
		// ID tokens of any client would let every relying party a user
		// signed in to replay the token here (RFC 9700 §2.3 on audiences).
		c, err = v.VerifyIDToken(ctx, raw, tokens.IDTokenOptions{Clients: h.b.opts.IDTokenClients})
		id.IDToken = err == nil
	}
	var te *tokens.Error
	if errors.As(err, &te) {
		return refuse(packet.BadUserNameOrPassword, tokenLabel(err), te.Description())
	}
	if err != nil {
		h.b.log.Error("mqtt: verifying a token failed", "err", err)
		return refuse(packet.ServerUnavailable, "error", "token could not be checked; try again")
	}
	id.Thing, id.Subject, id.Client, id.Grant = c.ThingID, c.Subject, c.ClientID, c.GrantID
	id.Scopes, id.Expires = c.Scope, c.ExpiresAt
	switch {
	case id.IDToken:
		id.Kind = kindUser // the user, through the client the token was issued to; no scopes
	case c.ThingID != "":
		id.Kind = kindThing // for itself (sub == client_id) or paired to the user sub
	case c.Subject == c.ClientID:
		id.Kind = kindService
	default:
		id.Kind = kindUser
	}
	return nil
}
