package server

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/tokens"
)

// newOAuth starts the token-signing keys and returns the authorization server;
// admin protects its admin API. cleanup stops the keys' and the verifier's
// background work.
func (p *Platform) newOAuth(ctx context.Context, sessions *authn.Sessions, admin func(http.Handler) http.Handler, log *slog.Logger) (srv *oauth.Server, cleanup func(), err error) {
	c := p.Config.OAuth
	access := time.Duration(c.AccessTokenLifetime)
	keys, err := tokens.NewKeys(ctx, p.Store, tokens.KeysConfig{
		MasterKey:        p.Key,
		Alg:              c.SigningAlgorithm,
		MaxTokenLifetime: access,
		Bus:              p.Bus,
		Log:              log.With("component", "tokens"),
	})
	if err != nil {
		return nil, nil, err
	}
	issuer, err := tokens.NewIssuer(keys, p.Config.HTTP.PublicURL)
	if err != nil {
		keys.Close()
		return nil, nil, err
	}
	verifier, err := tokens.NewVerifier(keys, tokens.VerifierConfig{
		Issuer: p.Config.HTTP.PublicURL, Bus: p.Bus, Log: log.With("component", "tokens"),
	})
	if err != nil {
		keys.Close()
		return nil, nil, err
	}
	cleanup = func() {
		verifier.Close()
		keys.Close()
	}
	srv, err = oauth.New(oauth.Options{
		Issuer:               p.Config.HTTP.PublicURL,
		Store:                p.Store,
		Identities:           p.Identity,
		Tokens:               issuer,
		Keys:                 keys,
		Verifier:             verifier,
		Bus:                  p.Bus,
		Sessions:             sessions,
		Admin:                admin,
		Actor:                authn.Actor,
		Key:                  p.derivedKey("thingid oauth v1"),
		IDTokenAlg:           c.SigningAlgorithm,
		AccessTokenLifetime:  access,
		RefreshTokenLifetime: time.Duration(c.RefreshTokenLifetime),
		DeviceCodeLifetime:   time.Duration(c.DeviceCodeLifetime),
		Logger:               log.With("component", "oauth"),
	})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return srv, cleanup, nil
}

// OAuthAdmin returns the authorization server for command-line administration
// (the client registry) on the data directory; it serves nothing.
func (p *Platform) OAuthAdmin(ctx context.Context, log *slog.Logger) (*oauth.Server, func(), error) {
	sessions, err := p.newSessions(nil, log)
	if err != nil {
		return nil, nil, err
	}
	noHTTP := func(http.Handler) http.Handler { return http.NotFoundHandler() }
	return p.newOAuth(ctx, sessions, noHTTP, log)
}

// denyProblem answers an admin JSON API request without administrator
// credentials as an RFC 9457 problem.
func denyProblem(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Add("WWW-Authenticate", `Basic realm="thingid", charset="UTF-8"`)
	w.Header().Add("WWW-Authenticate", `Bearer realm="thingid"`)
	w.WriteHeader(http.StatusUnauthorized)
	writeJSONBody(w, map[string]any{
		"type": "about:blank", "title": "Unauthorized", "status": 401,
		"detail": "administrator credentials required: HTTP Basic or an admin API token (thingid admin token)",
	})
}
