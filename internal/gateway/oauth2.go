package gateway

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/tokens"
)

// oauth2Filter is the OAuth 2.0 resource server (RFC 6750, RFC 9068): the
// request must carry an access token for the gateway's audience, valid, not
// revoked, with the route's scopes, and sent by its holder when it is
// sender-constrained (RFC 8705 certificate, RFC 9449 DPoP key).
type oauth2Filter struct {
	g            *Gateway
	audience     string
	scopes       methodScopes
	forwardToken bool
	upstream     *upstreamToken
}

type oauth2Config struct {
	// Audience replaces the gateway's audience for this route.
	Audience string `json:"audience"`
	// Scopes maps a method (or "*", any method) to the scopes it needs.
	Scopes map[string][]string `json:"scopes"`
	// ForwardToken passes the client's Authorization and DPoP headers on.
	ForwardToken bool `json:"forwardToken"`
	// UpstreamToken has the gateway sign a short-lived token for the upstream.
	UpstreamToken *struct {
		Audience string   `json:"audience"`
		Lifetime duration `json:"lifetime"`
	} `json:"upstreamToken"`
}

// upstreamToken is a token the gateway signs for the upstream, in HeaderToken.
type upstreamToken struct {
	audience string
	lifetime time.Duration
}

const realm = `realm="thingid"`

func newOAuth2Filter(g *Gateway, _ *route, raw json.RawMessage, _ bool) (Filter, error) {
	var c oauth2Config
	if err := decodeConfig(raw, &c); err != nil {
		return nil, err
	}
	scopes, err := parseMethodScopes(c.Scopes)
	if err != nil {
		return nil, err
	}
	f := &oauth2Filter{g: g, audience: g.opts.Audience, scopes: scopes, forwardToken: c.ForwardToken}
	if c.Audience != "" {
		f.audience = c.Audience
	}
	if u := c.UpstreamToken; u != nil {
		lt := time.Duration(u.Lifetime)
		switch {
		case u.Audience == "":
			return nil, errors.New("upstreamToken.audience: required (the upstream verifies it)")
		case u.Audience == f.audience || u.Audience == g.opts.Audience:
			return nil, errors.New("upstreamToken.audience: must differ from the gateway's, or the upstream's token would open the gateway")
		case g.opts.Issuer == nil:
			return nil, errors.New("upstreamToken: this gateway has no token issuer")
		case lt == 0:
			lt = time.Minute
		case lt < 10*time.Second || lt > 10*time.Minute:
			return nil, errors.New("upstreamToken.lifetime: between 10s and 10m")
		}
		f.upstream = &upstreamToken{audience: u.Audience, lifetime: lt}
	}
	return f, nil
}

func (f *oauth2Filter) Handle(w http.ResponseWriter, r *http.Request, next http.Handler) error {
	x := exchangeOf(r)
	p, id, err := f.g.credential(w, r, x, f.audience)
	if err != nil {
		return err
	}
	if id == nil {
		// RFC 6750 §3.1: no error code when the request had no token.
		detail := "an access token is required: Authorization: Bearer <token> (or DPoP with a proof)"
		if r.Header.Get("Authorization") != "" {
			detail = "the Authorization scheme must be Bearer or DPoP"
		}
		return &Denial{Status: http.StatusUnauthorized, Reason: "no_token", Detail: detail,
			Challenges: []string{"Bearer " + realm, dpop.Challenge("", "")}}
	}
	cl := id.claims
	if need := f.scopes.required(r.Method); !hasAll(cl.Scope, need) {
		desc := "the token lacks a scope this request needs: " + strings.Join(need, " ")
		ch := "Bearer " + realm + `, error="insufficient_scope", error_description="` + quoted(desc) + `", scope="` + strings.Join(need, " ") + `"`
		if p.DPoP() {
			ch = dpop.Challenge("insufficient_scope", desc) + `, scope="` + strings.Join(need, " ") + `"`
		}
		return &Denial{Status: http.StatusForbidden, Code: "insufficient_scope", Reason: "insufficient_scope", Detail: desc, Challenges: []string{ch}}
	}
	x.id, x.keepToken = id, f.forwardToken
	if f.upstream != nil {
		if x.upstreamToken, err = f.g.upstreamToken(p.Token(), cl, f.upstream); err != nil {
			return err
		}
	}
	next.ServeHTTP(w, r)
	return nil
}

// credential reads and verifies the request's access token for audience:
// the path every filter that authenticates (oauth2, uma) shares. The token
// and its evidence come from the request (presentation); the token is
// verified locally, or from the cache, or by introspection (authenticate),
// with its sender binding (DPoP proof, certificate thumbprint) and the
// revocation deny set; a certificate-bound token's certificate must still
// be good. A request without a token gives a nil principal and no error;
// a refused one a *Denial, which wraps the reason (tokens.ErrExpired, ...).
func (g *Gateway) credential(w http.ResponseWriter, r *http.Request, x *exchange, audience string) (*tokens.Presentation, *principal, error) {
	p, err := presentation(r, x)
	if err != nil {
		return nil, nil, err
	}
	if p.Token() == "" {
		return p, nil, nil
	}
	if p.Scheme() == tokens.SchemeDPoP {
		if n := g.dpop.Nonce(); n != "" {
			w.Header().Set("DPoP-Nonce", n)
		}
	}
	ctx := r.Context()
	id, err := g.authenticate(ctx, p, audience)
	if err != nil {
		return p, nil, refused(err, p)
	}
	if cnf := id.claims.Confirmation; cnf != nil && cnf.X5TS256 != "" {
		// The thumbprint matched (the presentation's evidence); a
		// certificate of a CA the platform knows must also still be good.
		if err := g.checkCertificate(ctx, x.certs); err != nil {
			return p, nil, err
		}
	}
	return p, id, nil
}

func hasAll(have, need []string) bool {
	for _, n := range need {
		if !slices.Contains(have, n) {
			return false
		}
	}
	return true
}

// presentation reads the request's token with its evidence: RFC 6750 §2.1
// Bearer or RFC 9449 §7.1 DPoP in the one Authorization header, the proof
// for the route's public origin, and the client certificate of the
// connection or of the trusted proxy. Tokens in the query (RFC 6750 §2.3)
// are refused, as RFC 9700 §2.5 advises; a form body is the upstream's and
// is not read.
func presentation(r *http.Request, x *exchange) (*tokens.Presentation, error) {
	p, err := tokens.FromRequest(r, x.origin+r.URL.EscapedPath(), x.certs)
	var re *tokens.RequestError
	if errors.As(err, &re) {
		return nil, &Denial{Status: http.StatusBadRequest, Code: "invalid_request", Reason: "bad_authorization", Detail: re.Description,
			Challenges: []string{"Bearer " + realm + `, error="invalid_request", error_description="` + quoted(re.Description) + `"`}}
	}
	return p, err
}

// refusedToken is a token the introspection endpoint did not vouch for.
type refusedToken struct{ desc string }

func (e *refusedToken) Error() string { return e.desc }

// refused turns a refusal of the token or its proof into RFC 6750 §3.1
// invalid_token or RFC 9449 §12.2 invalid_dpop_proof / use_dpop_nonce,
// with the DPoP challenge for DPoP requests and DPoP-bound tokens; other
// errors (the store, the introspection endpoint) pass.
func refused(err error, p *tokens.Presentation) error {
	var de *dpop.Error
	if errors.As(err, &de) {
		return &Denial{Status: http.StatusUnauthorized, Code: de.Code, Reason: "dpop", Detail: de.Description,
			Challenges: []string{dpop.Challenge(de.Code, de.Description)}}
	}
	var te *tokens.Error
	var rt *refusedToken
	var desc string
	switch {
	case errors.As(err, &te):
		desc = te.Description()
	case errors.As(err, &rt):
		desc = rt.desc
	default:
		return err
	}
	ch := "Bearer " + realm + `, error="invalid_token", error_description="` + quoted(desc) + `"`
	if p.DPoP() {
		ch = dpop.Challenge("invalid_token", desc)
	}
	reason := "invalid_token"
	if errors.Is(err, tokens.ErrBinding) {
		reason = "binding"
	}
	return &Denial{Status: http.StatusUnauthorized, Code: "invalid_token", Reason: reason, Detail: desc, Challenges: []string{ch}, cause: err}
}

// authenticate returns what p's token says for audience, its sender binding
// confirmed against p: from the cache, from local validation against the
// platform's keys, or from introspection for tokens that are not the
// platform's JWTs. A cached or introspected token is confirmed for every
// request, as Verify confirms a new one.
func (g *Gateway) authenticate(ctx context.Context, p *tokens.Presentation, audience string) (*principal, error) {
	now := g.now()
	raw := p.Token()
	k := cacheKey(audience, raw)
	if id, ok := g.tokens.get(k, now); ok {
		if err := p.Confirm(ctx, id.claims, g.dpop); err != nil {
			return nil, err
		}
		return id, nil
	}
	started := time.Now()
	cl, err := g.opts.Verifier.Verify(ctx, p, tokens.VerifyOptions{Audience: audience, Proofs: g.dpop})
	if err == nil {
		id := newPrincipal(cl)
		g.tokens.put(k, id, cl.ExpiresAt, cl.GrantID, now, started)
		return id, nil
	}
	if g.intro != nil && notOurs(err) {
		id, err := g.intro.lookup(ctx, raw, audience)
		if err != nil {
			return nil, err
		}
		if err := p.Confirm(ctx, id.claims, g.dpop); err != nil {
			return nil, err
		}
		return id, nil
	}
	return nil, err
}

// notOurs: refusals meaning the token is not a JWT of this platform (opaque,
// or signed by a key we never had), as opposed to one of ours that is bad.
func notOurs(err error) bool {
	return errors.Is(err, tokens.ErrMalformed) || errors.Is(err, tokens.ErrUnknownKey) ||
		errors.Is(err, tokens.ErrHeader) || errors.Is(err, tokens.ErrType)
}

// checkCertificate checks the client certificate a certificate-bound token
// matched (RFC 8705 §3 asks only that they match, which the presentation
// confirmed): a certificate of a CA the platform knows is checked now as
// well (revoked, thing disabled), so that a revocation ends its tokens at
// once; a self-signed one (self_signed_tls_client_auth) was matched against
// the client's keys when the token was issued and has nothing more to check.
func (g *Gateway) checkCertificate(ctx context.Context, chain []*x509.Certificate) error {
	if g.opts.Certificates != nil {
		_, err := g.opts.Certificates.Verify(ctx, chain)
		switch {
		case err == nil, errors.Is(err, certauth.ErrUnknownCA):
		case certauth.Refused(err):
			desc := "client certificate refused: " + err.Error()
			return &Denial{Status: http.StatusUnauthorized, Code: "invalid_token", Reason: "binding", Detail: desc,
				Challenges: []string{"Bearer " + realm + `, error="invalid_token", error_description="` + quoted(desc) + `"`}}
		default:
			return fmt.Errorf("gateway: client certificate check: %w", err)
		}
	}
	return nil
}

// upstreamToken signs (or reuses, for the first half of its life) the token
// for the route's upstream: the same subject, client, scopes, thing and
// grant, for the upstream's audience, never outliving the client's token.
func (g *Gateway) upstreamToken(raw string, cl *tokens.Claims, u *upstreamToken) (string, error) {
	if cl.GrantID == "" {
		return "", &Denial{Status: http.StatusForbidden, Code: "invalid_token", Reason: "no_grant",
			Detail: "this route passes a token of the platform to its upstream, which needs a token with a grant (gid)"}
	}
	now := g.now()
	k := cacheKey("upstream", u.audience, raw)
	if t, ok := g.minted.get(k, now); ok {
		return t, nil
	}
	exp := now.Add(u.lifetime)
	if exp.After(cl.ExpiresAt) {
		exp = cl.ExpiresAt
	}
	t, err := g.opts.Issuer.AccessToken(tokens.Claims{
		Subject: cl.Subject, Audience: []string{u.audience}, ClientID: cl.ClientID, Scope: cl.Scope,
		IssuedAt: now, ExpiresAt: exp, AuthTime: cl.AuthTime, GrantID: cl.GrantID, ThingID: cl.ThingID,
	})
	if err != nil {
		return "", fmt.Errorf("gateway: sign the upstream token: %w", err)
	}
	g.minted.put(k, t, now.Add(exp.Sub(now)/2), cl.GrantID, now)
	return t, nil
}

var _ Filter = (*oauth2Filter)(nil)
