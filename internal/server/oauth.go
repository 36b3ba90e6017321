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

// mountOAuth starts the token-signing keys and mounts the authorization server.
// cleanup stops the keys' and the verifier's background work.
func (p *Platform) mountOAuth(ctx context.Context, mux *http.ServeMux, sessions *authn.Sessions, admins *authn.Admins, log *slog.Logger) (cleanup func(), err error) {
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
		return nil, err
	}
	issuer, err := tokens.NewIssuer(keys, p.Config.HTTP.PublicURL)
	if err != nil {
		keys.Close()
		return nil, err
	}
	verifier, err := tokens.NewVerifier(keys, tokens.VerifierConfig{
		Issuer: p.Config.HTTP.PublicURL, Bus: p.Bus, Log: log.With("component", "tokens"),
	})
	if err != nil {
		keys.Close()
		return nil, err
	}
	cleanup = func() {
		verifier.Close()
		keys.Close()
	}
	srv, err := oauth.New(oauth.Options{
		Issuer:               p.Config.HTTP.PublicURL,
		Store:                p.Store,
		Identities:           p.Identity,
		Tokens:               issuer,
		Keys:                 keys,
		Verifier:             verifier,
		Bus:                  p.Bus,
		Sessions:             sessions,
		Admin:                func(h http.Handler) http.Handler { return admins.Require(h, denyProblem) },
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
		return nil, err
	}
	srv.Register(mux)
	return cleanup, nil
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
