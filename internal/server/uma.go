package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// newUMA returns the UMA server; metadata is the authorization server's
// metadata, read when the UMA configuration is served.
func (p *Platform) newUMA(tk *tokenSet, sessions *authn.Sessions, decider uma.Decider, metadata func() any, proofs func() tokens.ProofVerifier, log *slog.Logger) (*uma.Server, error) {
	cfg := p.Config
	return uma.New(uma.Options{
		Issuer:   cfg.HTTP.PublicURL,
		Site:     p.site,
		Store:    p.Store,
		Users:    p.Identity,
		Tokens:   &umaTokens{tk: tk, audience: cfg.HTTP.PublicURL, proofs: proofs},
		Sessions: sessions,
		Decider:  decider,
		Bus:      p.Bus,
		Key:      p.derivedKey("thingid uma v1"),
		// RPTs pass wherever access tokens do: the same audiences.
		Audience:               oauthAudience(cfg),
		TrustedResourceServers: cfg.UMA.TrustedResourceServers,
		Metadata:               metadata,
		TicketLifetime:         time.Duration(cfg.UMA.TicketLifetime),
		RPTLifetime:            time.Duration(cfg.OAuth.AccessTokenLifetime),
		Logger:                 log.With("component", "uma"),
		Now:                    p.clock,
	})
}

// umaExtension plugs the UMA grant into the token endpoint.
func umaExtension(u *uma.Server) map[string]oauth.ExtensionGrant {
	return map[string]oauth.ExtensionGrant{uma.GrantType: {Things: true,
		Handle: func(ctx context.Context, c *store.Client, form url.Values, cnf *tokens.Confirmation) (int, any, error) {
			return u.Grant(ctx, uma.GrantRequest{Client: c, Form: form, Confirmation: cnf})
		}}}
}

// umaTokens adapts the platform's verifier and issuer to uma.Tokens. It is
// the one place that knows the verifier's signature; the evidence of a
// request comes from tokens.FromRequest, as at every door.
type umaTokens struct {
	tk       *tokenSet
	audience string
	// proofs is the authorization server's DPoP verifier (one replay cache,
	// one nonce for this listener), known once it is made.
	proofs func() tokens.ProofVerifier
}

func (a *umaTokens) Request(r *http.Request) (*tokens.Claims, error) {
	return verifyRequest(a.tk, a.audience, a.proofs(), r, uma.ErrNoToken)
}

// verifyRequest verifies the access token of r for audience (a platform
// API under the issuer), with its sender binding; none is errNone.
func verifyRequest(tk *tokenSet, audience string, proofs tokens.ProofVerifier, r *http.Request, errNone error) (*tokens.Claims, error) {
	p, err := tokens.FromRequest(r, strings.TrimSuffix(audience, "/")+r.URL.EscapedPath(), tokens.PeerCertificates(r))
	if err != nil {
		return nil, tokens.ErrMalformed
	}
	if p.Token() == "" {
		return nil, errNone
	}
	return tk.verifier.Verify(r.Context(), p, tokens.VerifyOptions{Audience: audience, Proofs: proofs})
}

func (a *umaTokens) Presented(ctx context.Context, raw string, cnf *tokens.Confirmation) (*tokens.Claims, error) {
	return a.tk.verifier.Verify(ctx, tokens.FromProven(raw, cnf), tokens.VerifyOptions{Audience: a.audience})
}

func (a *umaTokens) Inspect(ctx context.Context, raw string) (*tokens.Claims, error) {
	return a.tk.verifier.Inspect(ctx, raw, tokens.VerifyOptions{Audience: a.audience})
}

func (a *umaTokens) IDToken(ctx context.Context, raw, client string) (*tokens.Claims, error) {
	return a.tk.verifier.VerifyIDToken(ctx, raw, tokens.IDTokenOptions{Clients: []string{client}})
}

func (a *umaTokens) Sign(c tokens.Claims) (string, error) { return a.tk.issuer.AccessToken(c) }

var _ uma.Tokens = (*umaTokens)(nil)
