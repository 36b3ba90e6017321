package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// Resource indicators (RFC 8707): every access token is for the resources
// its request named (the resource parameter of the authorization, device
// authorization and token requests), or for the client's default resources
// when it named none (derivedResources for a client registered without); the
// platform's resources are Options.Audience (its own APIs under the issuer,
// the broker, the gateway). A client may ask only for the resources it was
// registered with, so that a token obtained for the gateway is not a SCIM
// credential (RFC 9700 §2.3).

// ErrInvalidTarget is RFC 8707 §2: a resource that is malformed, unknown or
// not allowed for the client.
var ErrInvalidTarget = &Error{Code: "invalid_target", Status: http.StatusBadRequest}

// paramResource is the RFC 8707 §2 parameter; it may appear more than once.
const paramResource = "resource"

// maxResources bounds the resource parameters of one request.
const maxResources = 10

// clientResources are the resources c may ask for: its registered ones or,
// for a client registered without (or before resources existed), every
// resource of the platform as configured now. Asking is explicit (the
// request names the resource), so this keeps existing clients working;
// what a client gets without asking is defaultResources.
func (s *Server) clientResources(c *store.Client) []string {
	if c.Resources == nil {
		return s.opts.Audience
	}
	return c.Resources
}

// defaultResources are the audiences of c's tokens when a request names
// none: its registered defaults, else its registered resources, else (a
// client registered without resources, before they existed included) those
// its scopes need, derived when asked, so that a change of scopes or of the
// platform's URLs moves them along and no data migration is needed.
func (s *Server) defaultResources(c *store.Client) []string {
	switch {
	case c.DefaultResources != nil:
		return c.DefaultResources
	case c.Resources != nil:
		return c.Resources
	}
	return derivedResources(platformResources{
		all: s.opts.Audience, issuer: s.opts.Issuer, mqtt: s.opts.MQTTAudience, gateway: s.opts.GatewayAudience,
	}, c.Scopes, isThingClient(c))
}

// platformResources names the platform's resources (Options.Audience) by role.
type platformResources struct {
	all                   []string
	issuer, mqtt, gateway string
}

// issuerScopes are served by the platform's own APIs under the issuer:
// UserInfo (OIDC Core §5.4), the admin APIs, SCIM, UMA's protection API and
// the AuthZEN decision API (authzen.Scope).
var issuerScopes = []string{"openid", "profile", "email", "address", "phone", "admin", "uma_protection", "authzen:evaluate"}

// derivedResources is the default audience of a client registered without
// resources, from what its scopes let it do, so that a token got without
// naming a resource is valid only where the client can use it (RFC 9700
// §2.3): OpenID, admin, scim:* and uma_protection scopes need the issuer,
// mqtt:* scopes the broker, any other scope the gateway (it is what routes
// them to the upstreams that define them); offline_access needs none. A
// thing's own client also gets the broker: a thing connects to it as itself
// with its token (its topics are its own by the broker's rules, not by
// scope). Only resources the platform has count, in its order; a client
// left with none (no scopes) gets the issuer, where a token says no more
// than who it is for.
func derivedResources(p platformResources, scopes []string, thing bool) []string {
	need := map[string]bool{p.mqtt: thing}
	for _, sc := range scopes {
		switch {
		case sc == "offline_access":
		case slices.Contains(issuerScopes, sc) || strings.HasPrefix(sc, "scim:"):
			need[p.issuer] = true
		case strings.HasPrefix(sc, "mqtt:"):
			need[p.mqtt] = true
		default:
			need[p.gateway] = true
		}
	}
	var out []string
	for _, r := range p.all {
		if r != "" && need[r] {
			out = append(out, r)
		}
	}
	if len(out) == 0 {
		return []string{p.issuer}
	}
	return out
}

// requestedResources checks the resource parameters of a request (RFC 8707
// §2): absolute URIs without a fragment, each one c may ask for. nil when
// the request named none.
func (s *Server) requestedResources(c *store.Client, values []string) ([]string, *Error) {
	if len(values) > maxResources {
		return nil, ErrInvalidTarget.WithDescription("at most %d resource parameters", maxResources)
	}
	var out []string
	for _, v := range values {
		if err := checkResource(v); err != nil {
			return nil, ErrInvalidTarget.WithDescription("resource %q %s (RFC 8707 §2)", v, err)
		}
		if !slices.Contains(s.clientResources(c), v) {
			return nil, ErrInvalidTarget.WithDescription("resource %q is not one this client may ask for (%s)", v, strings.Join(s.clientResources(c), " "))
		}
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out, nil
}

// checkResource: RFC 8707 §2, an absolute URI without a fragment.
func checkResource(v string) error {
	u, err := url.Parse(v)
	switch {
	case err != nil || !u.IsAbs():
		return errors.New("must be an absolute URI")
	case u.Fragment != "" || strings.Contains(v, "#"):
		return errors.New("must not have a fragment")
	}
	return nil
}

// inspectAny checks a token issued by this server for any of its resources
// (introspection and revocation: the token is the request's subject, not
// its credential; see tokens.Verifier.Inspect).
func (s *Server) inspectAny(ctx context.Context, tok string) (*tokens.Claims, error) {
	var err error
	for _, aud := range s.opts.Audience {
		var c *tokens.Claims
		if c, err = s.opts.Verifier.Inspect(ctx, tok, tokens.VerifyOptions{Audience: aud}); !errors.Is(err, tokens.ErrAudience) {
			return c, err
		}
	}
	return nil, err
}

// resourcesKey carries the token request's resources to issue.
type resourcesKey struct{}

func withResources(ctx context.Context, r []string) context.Context {
	return context.WithValue(ctx, resourcesKey{}, r)
}

// requested are the resources the token request named (nil: none).
func requested(ctx context.Context) []string {
	r, _ := ctx.Value(resourcesKey{}).([]string)
	return r
}

// audience is the aud of a token for c: the token request's resources,
// else the client's defaults.
func (s *Server) audience(ctx context.Context, c *store.Client) []string {
	if r := requested(ctx); len(r) > 0 {
		return r
	}
	return s.defaultResources(c)
}

// grantedKey carries the resources of the original grant (RFC 8707 §2.2),
// which the refresh token issued with an access token keeps: those of the
// authorization or device authorization request when it named some, which
// the token request may have narrowed for its access token.
type grantedKey struct{}

func withGranted(ctx context.Context, r []string) context.Context {
	return context.WithValue(ctx, grantedKey{}, r)
}

// withinGrant applies the resources of an earlier request, the grant's,
// to a token request (RFC 8707 §2.2): the token request may name some of
// them, never another; without resource its token is for all of them.
// granted nil (the earlier request named none) leaves ctx as it is.
func withinGrant(ctx context.Context, granted []string, what string) (context.Context, error) {
	if len(granted) == 0 {
		return ctx, nil
	}
	res := requested(ctx)
	for _, r := range res {
		if !slices.Contains(granted, r) {
			return nil, ErrInvalidTarget.WithDescription("resource %q was not in the %s (%s); a token request may narrow its resources, not widen them (RFC 8707 §2.2)", r, what, strings.Join(granted, " "))
		}
	}
	if len(res) == 0 {
		ctx = withResources(ctx, granted)
	}
	return withGranted(ctx, granted), nil
}

// checkClientResources validates the resources of a client spec against
// the platform's and sets them on c. Empty stays nil: every resource of the
// platform as configured when a token is asked for, and by default those
// the client's scopes need (so that changing http.publicURL or an audience
// does not strand the client); empty defaults with resources mean all of
// the client's resources.
func (s *Server) checkClientResources(c *store.Client, resources, defaults []string) error {
	if len(resources) > maxListItems || len(defaults) > maxListItems {
		return invalidField("resources", "at most %d", maxListItems)
	}
	for i, r := range resources {
		switch {
		case checkResource(r) != nil:
			return invalidField(fmt.Sprintf("resources[%d]", i), "%q %v (RFC 8707 §2)", r, checkResource(r))
		case !slices.Contains(s.opts.Audience, r):
			return invalidField(fmt.Sprintf("resources[%d]", i), "%q is not a resource of this platform (one of %s)", r, strings.Join(s.opts.Audience, " "))
		case slices.Contains(resources[:i], r):
			return invalidField(fmt.Sprintf("resources[%d]", i), "%q is listed twice", r)
		}
	}
	c.Resources = nil
	if len(resources) > 0 {
		c.Resources = slices.Clone(resources)
	}
	for i, r := range defaults {
		switch {
		case !slices.Contains(s.clientResources(c), r):
			return invalidField(fmt.Sprintf("default_resources[%d]", i), "%q is not one of the client's resources", r)
		case slices.Contains(defaults[:i], r):
			return invalidField(fmt.Sprintf("default_resources[%d]", i), "%q is listed twice", r)
		}
	}
	c.DefaultResources = nil
	if len(defaults) > 0 {
		c.DefaultResources = slices.Clone(defaults)
	}
	return nil
}

// SetClientResources changes the resources a client may ask for and its
// defaults (empty: as at registration); tokens already issued keep their
// audiences until they expire. The change is audited.
func (s *Server) SetClientResources(ctx context.Context, actor, id string, resources, defaults []string) (*store.Client, error) {
	var up *store.Client
	err := s.st.WithTx(ctx, func(tx store.Tx) error {
		var err error
		up, err = tx.UpdateClient(ctx, id, 0, func(c *store.Client) error {
			return s.checkClientResources(c, resources, defaults)
		})
		if err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]any{"resources": up.Resources, "defaultResources": up.DefaultResources})
		return s.audit(ctx, tx, actor, "client.update", clientRef(id), string(detail))
	})
	if err != nil {
		return nil, err
	}
	return up, nil
}
