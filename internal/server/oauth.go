package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// tokenSet is the platform's signing keys with the issuer and verifier on them.
type tokenSet struct {
	keys     *tokens.Keys
	issuer   *tokens.Issuer
	verifier *tokens.Verifier
}

// newTokens loads (or creates) the signing keys; cleanup stops their background work.
func (p *Platform) newTokens(ctx context.Context, log *slog.Logger) (*tokenSet, func(), error) {
	c := p.Config.OAuth
	keys, err := tokens.NewKeys(ctx, p.Store, tokens.KeysConfig{
		MasterKey:        p.Key,
		Alg:              c.SigningAlgorithm,
		MaxTokenLifetime: time.Duration(c.AccessTokenLifetime),
		Bus:              p.Bus,
		Now:              p.clock,
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
	// The revocations this node did not see as events (it was not running).
	if err := verifier.LoadRevoked(ctx, p.Store); err != nil {
		verifier.Close()
		keys.Close()
		return nil, nil, err
	}
	return &tokenSet{keys, issuer, verifier}, func() { verifier.Close(); keys.Close() }, nil
}

// newOAuth returns the authorization server; admin protects its admin API.
// oauthAudience is the audience of access tokens. The issuer comes first:
// introspection and revocation verify against Audience[0]. The broker and
// the gateway follow when they are on; which a token is for is RFC 8707's
// resource or the client's default (oauth.Options.MQTTAudience).
func oauthAudience(cfg config.Config) []string {
	audience := []string{cfg.HTTP.PublicURL}
	if cfg.MQTT.Enabled {
		audience = append(audience, cfg.MQTT.Audience)
	}
	if cfg.Gateway.Enabled {
		audience = append(audience, cfg.Gateway.Audience)
	}
	return audience
}

// onlyIf is v when on, "" otherwise.
func onlyIf(on bool, v string) string {
	if on {
		return v
	}
	return ""
}

// newOAuth returns the authorization server; extensions are the extension
// grants of other packages (UMA), nil for none; households decide whether
// things act for users, nil where nothing is served; reg registers the
// metrics, nil where nothing is served.
func (p *Platform) newOAuth(tk *tokenSet, certs oauth.Certificates, sessions *authn.Sessions, admin func(http.Handler) http.Handler, extensions map[string]oauth.ExtensionGrant, households oauth.Households, reg prometheus.Registerer, log *slog.Logger) (*oauth.Server, error) {
	c := p.Config.OAuth
	key := p.derivedKey("thingid oauth v1")
	var registration [][]byte
	if c.RegistrationToken != "" {
		registration = [][]byte{oauth.RegistrationTokenHash(key, c.RegistrationToken)}
	}
	return oauth.New(oauth.Options{
		Issuer:                  p.Config.HTTP.PublicURL,
		Site:                    p.site,
		Audience:                oauthAudience(p.Config),
		MQTTAudience:            onlyIf(p.Config.MQTT.Enabled, p.Config.MQTT.Audience),
		GatewayAudience:         onlyIf(p.Config.Gateway.Enabled, p.Config.Gateway.Audience),
		Extensions:              extensions,
		Households:              households,
		Now:                     p.clock,
		Store:                   p.Store,
		Identities:              p.Identity,
		Tokens:                  tk.issuer,
		Keys:                    tk.keys,
		Verifier:                tk.verifier,
		Bus:                     p.Bus,
		Sessions:                sessions,
		Admin:                   admin,
		Actor:                   authn.Actor,
		Key:                     key,
		RegistrationTokenHashes: registration,
		RegistrationScopes:      c.Registration.AllowedScopes,
		DPoPNonces:              c.DPoPNonces,
		ThingScopes:             c.ThingScopes,
		ScopeDescriptions:       c.ScopeDescriptions,
		ResourceServers:         oauth.ResourceServers(c.ResourceServers),
		Certificates:            certs,
		IDTokenAlg:              c.SigningAlgorithm,
		AccessTokenLifetime:     time.Duration(c.AccessTokenLifetime),
		RefreshTokenLifetime:    time.Duration(c.RefreshTokenLifetime),
		DeviceCodeLifetime:      time.Duration(c.DeviceCodeLifetime),
		Registerer:              reg,
		Logger:                  log.With("component", "oauth"),
	})
}

// OAuthAdmin returns the authorization server for command-line administration
// (the client registry) on the data directory; it serves nothing.
func (p *Platform) OAuthAdmin(ctx context.Context, log *slog.Logger) (*oauth.Server, func(), error) {
	sessions, err := p.newSessions(nil, nil, log)
	if err != nil {
		return nil, nil, err
	}
	tk, cleanup, err := p.newTokens(ctx, log)
	if err != nil {
		return nil, nil, err
	}
	// Clients may be registered with the UMA grant here too; nothing is served.
	srv, err := p.newOAuth(tk, nil, sessions, func(http.Handler) http.Handler { return http.NotFoundHandler() },
		map[string]oauth.ExtensionGrant{uma.GrantType: {Things: true}}, nil, nil, log)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return srv, cleanup, nil
}

// challenge sets the status and WWW-Authenticate challenges for a refused admin
// request: 403 insufficient_scope for a token without the scope (RFC 6750 §3.1),
// 401 otherwise, naming the error of a refused access token or DPoP proof
// in the challenge of its scheme (RFC 6750 §3, RFC 9449 §7.1).
func challenge(w http.ResponseWriter, err error) (status int, detail string) {
	var te *authn.TokenError
	isToken := errors.As(err, &te)
	bearerOrDPoP := func(code, desc string) {
		if isToken && te.DPoP {
			w.Header().Add("WWW-Authenticate", dpop.Challenge(code, desc))
			return
		}
		w.Header().Add("WWW-Authenticate", `Bearer realm="thingid", error="`+code+`", error_description="`+quotable(desc)+`"`)
	}
	if errors.Is(err, authn.ErrInsufficientScope) {
		bearerOrDPoP("insufficient_scope", authn.ErrInsufficientScope.Error())
		return http.StatusForbidden, err.Error()
	}
	w.Header().Add("WWW-Authenticate", `Basic realm="thingid", charset="UTF-8"`)
	var tokErr *tokens.Error
	var proofErr *dpop.Error
	switch {
	case errors.As(err, &proofErr):
		bearerOrDPoP(proofErr.Code, proofErr.Description)
		return http.StatusUnauthorized, "the DPoP proof was refused: " + proofErr.Description
	case errors.As(err, &tokErr):
		bearerOrDPoP(tokErr.Code(), tokErr.Description())
		return http.StatusUnauthorized, "the access token was refused: " + tokErr.Description()
	}
	w.Header().Add("WWW-Authenticate", `Bearer realm="thingid"`)
	w.Header().Add("WWW-Authenticate", dpop.Challenge("", ""))
	if errors.Is(err, authn.ErrPasswordChangeRequired) {
		return http.StatusUnauthorized, authn.MustChangeDetail
	}
	return http.StatusUnauthorized, "administrator credentials required: HTTP Basic with an administrator's user name and password, an admin API token (thingid admin token), or an OAuth access token with the scope this API needs (Bearer, or DPoP with a proof)"
}

// quotable keeps s inside an RFC 7230 quoted string: printable ASCII
// without '"' and '\'.
func quotable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '\''
		}
		return r
	}, s)
}

// denyProblem answers a refused admin JSON API request as an RFC 9457 problem.
func denyProblem(w http.ResponseWriter, r *http.Request, err error) {
	status, detail := challenge(w, err)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	writeJSONBody(w, map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": detail})
}
