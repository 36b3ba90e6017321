package server

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/broker"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/console"
	"github.com/thingid/thingid/internal/gateway"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/selfservice"
	"github.com/thingid/thingid/internal/store"
)

// mountConsole adds the admin console at /admin, on the services the APIs
// use; mqtt is nil when the broker is off.
func (p *Platform) mountConsole(mux routes.Mux, sessions *authn.Sessions, admins *authn.Admins, certs *certauth.Checker, srv *oauth.Server, resets console.PasswordResets, mqtt *broker.Broker, log *slog.Logger) error {
	o := console.Options{
		BaseURL:      p.Config.HTTP.PublicURL,
		Site:         p.site,
		CSRFKey:      p.derivedKey(consoleCSRFPurpose),
		CursorKey:    p.derivedKey(auditCursorPurpose), // the audit API's: its cursors work in both
		Sessions:     sessions,
		Staff:        admins,
		Identities:   p.Identity,
		Certificates: certs,
		Grants:       srv,
		Resets:       resets,
		Store:        p.Store,
		History:      p.history,
		Clients:      consoleClients{srv},
		Authorities:  certs,
		Logger:       log.With("component", "console"),
	}
	if mqtt != nil {
		o.Connections = brokerConnections{mqtt}
		o.TopicRules = []console.TopicRule{}
		for _, r := range p.Config.MQTT.Rules {
			o.TopicRules = append(o.TopicRules, console.TopicRule{Who: r.Who, Publish: r.Publish, Subscribe: r.Subscribe})
		}
	}
	if a := p.ace.Load(); a != nil { // mounted before the console
		o.CWTs = a
	}
	if p.Config.Gateway.Enabled {
		o.Gateway = gatewayRoutes{&p.gateway}
	}
	c, err := console.New(o)
	if err != nil {
		return err
	}
	c.Register(mux)
	return nil
}

// dashboardTotals reads, from the process's own metrics, the totals the
// dashboard's history counts: access tokens issued (the token endpoint's
// successful answers) and authentication failures (refused sign-ins and
// client authentications, and MQTT logins).
func dashboardTotals(g prometheus.Gatherer, log *slog.Logger) func() map[string]float64 {
	signin := map[string]bool{"POST /signin": true, "POST /api/v1/signin": true, oauth.PathToken: true}
	return func() map[string]float64 {
		mfs, err := g.Gather()
		if err != nil {
			log.Warn("console: reading the metrics for the dashboard", "err", err)
		}
		var tokens, failures float64
		for _, mf := range mfs {
			switch mf.GetName() {
			case "thingid_http_requests_total":
				for _, m := range mf.GetMetric() {
					route, code := label(m, "route"), label(m, "code")
					switch {
					case route == oauth.PathToken && code == "200":
						tokens += m.GetCounter().GetValue()
					case signin[route] && code == "401":
						failures += m.GetCounter().GetValue()
					}
				}
			case "thingid_mqtt_auth_failures_total":
				for _, m := range mf.GetMetric() {
					failures += m.GetCounter().GetValue()
				}
			}
		}
		return map[string]float64{console.SeriesTokens: tokens, console.SeriesAuthFailures: failures}
	}
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// consoleCSRFPurpose derives the key of the console's CSRF tokens.
const consoleCSRFPurpose = "thingid console csrf v1"

// brokerConnections shows the broker's sessions to the console.
type brokerConnections struct{ b *broker.Broker }

func (bc brokerConnections) Connections() []console.Connection {
	clients := bc.b.Clients()
	out := make([]console.Connection, len(clients))
	for i, c := range clients {
		out[i] = console.Connection{ClientID: c.ClientID, Thing: c.Thing, Listener: c.Listener, Remote: c.Remote, Connected: c.Connected}
	}
	return out
}

func (bc brokerConnections) Disconnect(clientID string) bool { return bc.b.Disconnect(clientID) }

// consoleClients is the authorization server's client registry as the
// console calls it: its spec, and its refusals (oauth.ClientError, a
// ui.Refusal naming the field).
type consoleClients struct{ srv *oauth.Server }

func (c consoleClients) ListClients(ctx context.Context, offset, limit int) ([]*store.Client, int, error) {
	return c.srv.ListClients(ctx, offset, limit)
}

func (c consoleClients) CreateClient(ctx context.Context, actor string, spec console.ClientSpec) (*store.Client, string, error) {
	cl, secret, err := c.srv.CreateClient(ctx, actor, oauth.ClientSpec{Name: spec.Name, Type: store.ClientType(spec.Type),
		TokenEndpointAuthMethod: spec.AuthMethod, RedirectURIs: spec.RedirectURIs, GrantTypes: spec.GrantTypes, Scopes: spec.Scopes})
	return cl, secret, err
}

func (c consoleClients) RotateSecret(ctx context.Context, actor, id string) (string, error) {
	return c.srv.RotateSecret(ctx, actor, id)
}

func (c consoleClients) DeleteClient(ctx context.Context, actor, id string) error {
	return c.srv.DeleteClient(ctx, actor, id)
}

// gatewayRoutes shows the routes of the gateway once it started.
type gatewayRoutes struct {
	g *atomic.Pointer[gateway.Gateway]
}

func (gr gatewayRoutes) Routes() ([]console.GatewayRoute, error) {
	g := gr.g.Load()
	if g == nil {
		return nil, nil
	}
	routes, err := g.Routes()
	out := make([]console.GatewayRoute, len(routes))
	for i, r := range routes {
		out[i] = console.GatewayRoute{Name: r.Name, Upstream: r.Upstream, Hosts: r.Hosts}
	}
	return out, err
}

// consoleResets mails a forced reset's link through the self-service
// (its forgot-password mail), saying so when the user has no address.
type consoleResets struct{ h *selfservice.Handler }

func (r consoleResets) SendPasswordReset(ctx context.Context, actor, userID string) error {
	err := r.h.SendPasswordReset(ctx, actor, userID)
	if errors.Is(err, selfservice.ErrNoVerifiedEmail) {
		return console.ErrNoVerifiedAddress
	}
	return err
}
