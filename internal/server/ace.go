package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/tokens"
)

// aceAS adapts the authorization server to ace.AuthorizationServer: ACE's
// requests run oauth's client authentication, grants and device flow, and
// only the access token is ace's (a CWT).
type aceAS struct{ srv *oauth.Server }

func (a aceAS) Token(ctx context.Context, form url.Values, id ace.Identity, sign func(tokens.Claims) ([]byte, error)) (*ace.Answer, error) {
	t, err := a.srv.ConstrainedToken(ctx, form, proof(id), func(c tokens.Claims) (string, error) {
		b, err := sign(c)
		return string(b), err
	})
	if err != nil {
		return nil, aceError(err)
	}
	return &ace.Answer{AccessToken: []byte(t.AccessToken), RefreshToken: t.RefreshToken, ExpiresIn: t.ExpiresIn, Scope: t.Scope}, nil
}

func (a aceAS) DeviceAuthorization(ctx context.Context, form url.Values, id ace.Identity) (*ace.DeviceAnswer, error) {
	d, err := a.srv.ConstrainedDeviceAuthorization(ctx, form, proof(id))
	if err != nil {
		return nil, aceError(err)
	}
	a2 := ace.DeviceAnswer(*d)
	return &a2, nil
}

// Introspector authenticates an introspecting client through oauth.
func (a aceAS) Introspector(ctx context.Context, form url.Values, id ace.Identity) (string, error) {
	p := proof(id)
	p.Authorization = id.Authorization
	client, err := a.srv.ConstrainedIntrospector(ctx, form, p)
	return client, aceError(err)
}

// Disclose is oauth's introspection rule on oauth.resourceServers.
func (a aceAS) Disclose(caller, tokenClient string, aud []string) ([]string, bool) {
	return a.srv.Disclose(caller, tokenClient, aud)
}

// proof is what oauth's client authentication reads of an ACE client's
// identity. A raw public key proves no client: only a registered key could.
func proof(id ace.Identity) oauth.Proof { return oauth.Proof{Chain: id.Chain, PSKThing: id.PSKThing} }

// aceError is an oauth error as ace's, with the same code and status.
func aceError(err error) error {
	var e *oauth.Error
	if !errors.As(err, &e) {
		return err
	}
	return ace.NewError(e.Status, e.Code, e.Description, errors.Unwrap(e))
}

// mountACE serves ACE's token, device authorization, revocation and
// introspection endpoints on HTTPS (internal/ace), for the broker's
// audience when the broker is on: the resource server a constrained device
// reaches (CoAP maps onto its topics); and the administrators' API of a
// thing's CWTs behind admin.
func (p *Platform) mountACE(mux routes.Mux, admin func(http.Handler) http.Handler, tk *tokenSet, srv *oauth.Server, reg prometheus.Registerer, log *slog.Logger) error {
	audience := p.Config.HTTP.PublicURL
	if p.Config.MQTT.Enabled {
		audience = p.Config.MQTT.Audience
	}
	a, err := ace.New(ace.Options{
		Issuer: p.Config.HTTP.PublicURL, Audience: audience,
		Keys: tk.keys, Revocations: tk.verifier, AS: aceAS{srv},
		// It follows the revocations of CWTs on the platform's bus for the
		// platform's life.
		Store: p.Store, Bus: p.Bus,
		Logger: log.With("component", "ace"), Registerer: reg,
	})
	if err != nil {
		return err
	}
	a.Register(mux)
	a.RegisterAdmin(mux, admin, authn.Actor)
	p.ace.Store(a)
	return nil
}
