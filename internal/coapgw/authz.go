package coapgw

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/events"
)

// PathAuthzInfo is the resource server's authz-info resource (RFC 9200
// §5.10.1), where a client posts its access token.
const PathAuthzInfo = "/authz-info"

// maxTokensPerSession bounds the tokens one session holds (RFC 9200
// §5.10.1: the resource server bounds what it stores); a new one replaces
// the oldest.
const maxTokensPerSession = 4

// Token is an access token the resource server accepted at /authz-info
// for a session's client.
type Token struct {
	ID        []byte   // cti
	GrantID   string   // its grant: revoking the grant revokes it
	Scopes    []string // what it grants besides the thing's own rules
	ExpiresAt time.Time
}

// AuthzInfoFunc verifies token, posted to /authz-info on s, for this
// resource server: its signature, audience and expiry, and that s proved
// the key its cnf names (ace.Server.AuthzInfo). A refusal that names an
// HTTP status (400, 401, 403) with StatusCode is answered with that code.
type AuthzInfoFunc func(ctx context.Context, token []byte, s *Session) (*Token, error)

// statusError is a refusal naming its HTTP status (ace.Error).
type statusError interface {
	error
	StatusCode() int
}

// heldTokens are the tokens sessions posted, each until it expires; a
// token's scopes apply to every request of its session from then on.
type heldTokens struct {
	mu   sync.Mutex
	held map[*Session][]*held
}

type held struct {
	Token
	expiry *time.Timer
}

// ThingID is the id of the thing the session proved.
func (s *Session) ThingID() string { return s.thingID }

type scopesKey struct{}

// TokenScopes are the scopes of the tokens the session of a request's
// context posted to /authz-info: a Publisher or Subscriber grants them
// besides the thing's own rules (the broker adds mqtt:pub: and mqtt:sub:
// scopes to a thing's rules as it does for a token on MQTT).
func TokenScopes(ctx context.Context) []string {
	s, _ := ctx.Value(scopesKey{}).([]string)
	return s
}

// withScopes is ctx carrying the scopes of the tokens s holds.
func (h *heldTokens) withScopes(ctx context.Context, s *Session) context.Context {
	h.mu.Lock()
	var scopes []string
	for _, t := range h.held[s] {
		scopes = append(scopes, t.Scopes...)
	}
	h.mu.Unlock()
	if scopes == nil {
		return ctx
	}
	slices.Sort(scopes)
	return context.WithValue(ctx, scopesKey{}, slices.Compact(scopes))
}

// authzInfo serves POST /authz-info: the body is the token, a CWT as a
// CBOR byte string or the COSE message itself (f decides what it is).
// 2.01 when accepted; f's refusal as its code with the reason as a
// diagnostic payload (RFC 7252 §5.5.2); 4.01 on loopback UDP.
func (g *Gateway) authzInfo(f AuthzInfoFunc) Handler {
	return HandlerFunc(func(w mux.ResponseWriter, r *mux.Message, s *Session) {
		body, ok := readPost(w, r, s, maxEndpointBody)
		if !ok {
			return
		}
		t, err := f(r.Context(), body, s)
		if err != nil {
			var se statusError
			if !errors.As(err, &se) || se.StatusCode() >= http.StatusInternalServerError {
				g.opts.Log.Error("coapgw: authz-info failed", "thing", s.thingID, "err", err)
				_ = w.SetResponse(codes.InternalServerError, message.TextPlain, nil)
				return
			}
			_ = w.SetResponse(coapCode(se.StatusCode()), message.TextPlain, bytes.NewReader([]byte(se.Error())))
			return
		}
		if !g.tokens.hold(g, s, t) {
			_ = w.SetResponse(codes.Unauthorized, message.TextPlain, bytes.NewReader([]byte("the token has expired")))
			return
		}
		g.opts.Log.Info("coapgw: token accepted", "thing", s.thingID, "cti", hex.EncodeToString(t.ID), "scope", t.Scopes)
		_ = w.SetResponse(codes.Created, message.TextPlain, nil)
	})
}

// hold keeps t for s until it expires; at its expiry the session ends, as
// a certificate's does, so that nothing it allowed (an observation) outlives
// it. It reports false for a token already expired or a session closed.
func (h *heldTokens) hold(g *Gateway, s *Session, t *Token) bool {
	ttl := t.ExpiresAt.Sub(g.opts.Now())
	if ttl <= 0 {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.conn.Context().Err() != nil { // closed: its OnClose ran
		return false
	}
	if h.held == nil {
		h.held = map[*Session][]*held{}
	}
	ts := h.held[s]
	if ts == nil {
		// The first token of s: forget its tokens with it.
		s.conn.AddOnClose(func() { h.drop(s) })
	}
	ts = slices.DeleteFunc(ts, func(o *held) bool {
		if bytes.Equal(o.ID, t.ID) {
			o.expiry.Stop()
			return true
		}
		return false
	})
	if len(ts) == maxTokensPerSession {
		ts[0].expiry.Stop()
		ts = ts[1:]
	}
	h.held[s] = append(ts, &held{Token: *t, expiry: time.AfterFunc(ttl, func() { g.end(s, "token_expired") })})
	return true
}

// drop forgets the tokens of a closed session.
func (h *heldTokens) drop(s *Session) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.held[s] {
		t.expiry.Stop()
	}
	delete(h.held, s)
}

// holding are the sessions that hold a token match accepts.
func (h *heldTokens) holding(match func(*Token) bool) []*Session {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []*Session
	for s, ts := range h.held {
		if slices.ContainsFunc(ts, func(t *held) bool { return match(&t.Token) }) {
			out = append(out, s)
		}
	}
	return out
}

// onTokenRevoke ends the sessions holding a token revoked on its own (by
// its cti, ace.EventRevoke) or with its grant (tokens.EventGrantRevoke).
func (g *Gateway) onTokenRevoke(e events.Event) {
	match := func(t *Token) bool { return t.GrantID == e.ID }
	if e.Type == ace.EventRevoke {
		cti, err := hex.DecodeString(e.ID)
		if err != nil || len(cti) == 0 {
			g.opts.Log.Error("coapgw: a token revocation names no cti", "id", e.ID)
			return
		}
		match = func(t *Token) bool { return bytes.Equal(t.ID, cti) }
	}
	for _, s := range g.tokens.holding(match) {
		g.end(s, "token_revoked")
	}
}
