package server

import (
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// newUMA returns the UMA server; metadata is the authorization server's
// metadata, read when the UMA configuration is served.
func (p *Platform) newUMA(tk *tokenSet, sessions *authn.Sessions, metadata func() any, log *slog.Logger) (*uma.Server, error) {
	cfg := p.Config
	return uma.New(uma.Options{
		Issuer:   cfg.HTTP.PublicURL,
		Store:    p.Store,
		Users:    p.Identity,
		Tokens:   &umaTokens{tk: tk, audience: cfg.HTTP.PublicURL, dpop: &dpop.Verifier{Replay: p.Store}},
		Sessions: sessions,
		Bus:      p.Bus,
		Key:      p.derivedKey("thingid uma v1"),
		// RPTs pass wherever access tokens do: the same audiences.
		Audience:               oauthAudience(cfg),
		TrustedResourceServers: cfg.UMA.TrustedResourceServers,
		Metadata:               metadata,
		TicketLifetime:         time.Duration(cfg.UMA.TicketLifetime),
		RPTLifetime:            time.Duration(cfg.OAuth.AccessTokenLifetime),
		Logger:                 log.With("component", "uma"),
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
// the one place that knows the verifier's signature.
type umaTokens struct {
	tk       *tokenSet
	audience string
	dpop     *dpop.Verifier
}

func (a *umaTokens) Request(r *http.Request) (*tokens.Claims, error) {
	vs := r.Header.Values("Authorization")
	if len(vs) == 0 {
		return nil, uma.ErrNoToken
	}
	scheme, tok, ok := strings.Cut(vs[0], " ")
	scheme = strings.ToLower(scheme)
	if len(vs) > 1 || !ok || (scheme != "bearer" && scheme != "dpop") {
		return nil, tokens.ErrMalformed
	}
	c, err := a.tk.verifier.Verify(r.Context(), tok, tokens.VerifyOptions{Audience: a.audience})
	if err != nil {
		return nil, err
	}
	var jkt, thumb string
	if scheme == "dpop" {
		proof, err := dpop.Header(r)
		if err != nil || proof == "" {
			return nil, tokens.ErrBinding
		}
		u := strings.TrimSuffix(a.audience, "/") + r.URL.EscapedPath()
		if jkt, err = a.dpop.Verify(r.Context(), proof, dpop.Request{Method: r.Method, URL: u, AccessToken: tok}); err != nil {
			return nil, tokens.ErrBinding
		}
	}
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		thumb = tokens.CertThumbprint(r.TLS.PeerCertificates[0])
	}
	if err := tokens.CheckBinding(c, thumb, jkt); err != nil {
		return nil, err
	}
	return c, nil
}

func (a *umaTokens) Access(ctx context.Context, raw string) (*tokens.Claims, error) {
	return a.tk.verifier.Verify(ctx, raw, tokens.VerifyOptions{Audience: a.audience})
}

func (a *umaTokens) IDToken(ctx context.Context, raw, client string) (*tokens.Claims, error) {
	return a.tk.verifier.VerifyIDToken(ctx, raw, tokens.IDTokenOptions{Clients: []string{client}})
}

func (a *umaTokens) Sign(c tokens.Claims) (string, error) { return a.tk.issuer.AccessToken(c) }

var _ uma.Tokens = (*umaTokens)(nil)
