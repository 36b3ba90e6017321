package coapgw

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/tokens"
)

// issued stands for ACE's verifier (the real one runs in
// internal/server's tests): the posted body is the token's cti, valid for
// ttl, of grant "g-<cti>", with the scope mqtt:pub:fleet/<cti>.
func issued(ttl time.Duration) AuthzInfoFunc {
	return func(_ context.Context, token []byte, _ *Session) (*Token, error) {
		return &Token{ID: token, GrantID: "g-" + string(token), Scopes: []string{"mqtt:pub:fleet/" + string(token)},
			ExpiresAt: time.Now().Add(ttl)}, nil
	}
}

// postToken posts cti to /authz-info on cc and wants 2.01.
func postToken(t *testing.T, cc *udpClient.Conn, cti string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cc.Post(ctx, PathAuthzInfo, ACECBOR, bytes.NewReader([]byte(cti)))
	if err != nil || res.Code() != codes.Created {
		t.Fatalf("token %s: %v %v", cti, res, err)
	}
}

// A session holds at most maxTokensPerSession tokens, the oldest replaced,
// and their scopes go with its requests.
func TestAuthzInfoHoldsBoundedTokens(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AuthzInfo = issued(time.Hour) })
	_, cert := e.thing("AUTHZ-1")
	cc := e.open(t, cert, "session")
	for _, cti := range []string{"a", "b", "c", "d", "e"} {
		postToken(t, cc, cti)
	}
	e.gw.mu.Lock()
	var s *Session
	for _, x := range e.gw.sessions {
		s = x
	}
	e.gw.mu.Unlock()
	got := TokenScopes(e.gw.tokens.withScopes(context.Background(), s))
	if want := []string{"mqtt:pub:fleet/b", "mqtt:pub:fleet/c", "mqtt:pub:fleet/d", "mqtt:pub:fleet/e"}; !slices.Equal(got, want) {
		t.Fatalf("scopes %v; want %v", got, want)
	}
	if TokenScopes(context.Background()) != nil {
		t.Fatal("scopes without a session's tokens")
	}
}

// A session ends when its token's cti or grant is revoked, and at its exp;
// a session holding another token stays.
func TestTokenEndsItsSession(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.AuthzInfo = issued(time.Hour) })
	_, cert := e.thing("AUTHZ-2")
	byCTI, byGrant, bystander := e.open(t, cert, "one"), e.open(t, cert, "two"), e.open(t, cert, "three")
	postToken(t, byCTI, "x")
	postToken(t, byGrant, "y")
	postToken(t, bystander, "z")
	e.gw.opts.Bus.Publish(events.Event{Type: ace.EventRevoke, Kind: "token", ID: "78", Details: map[string]string{"exp": "0"}}) // hex of "x"
	waitClosed(t, byCTI, "the session of a token revoked by cti")
	e.gw.opts.Bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: "g-y"})
	waitClosed(t, byGrant, "the session of a token whose grant was revoked")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !callsHome(ctx, bystander) {
		t.Fatal("a session holding another token ended")
	}

	short := newEnv(t, func(o *Options) { o.AuthzInfo = issued(500 * time.Millisecond) })
	_, cert = short.thing("AUTHZ-3")
	cc := short.open(t, cert, "short")
	postToken(t, cc, "s")
	waitClosed(t, cc, "the session of an expired token")
}
