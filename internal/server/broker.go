package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/broker"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/mqttnats"
	"github.com/thingid/thingid/internal/netlimit"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// startBroker starts the MQTT listeners configured in mqtt; it returns nil
// when the broker is off. Close the broker when done.
func (p *Platform) startBroker(ctx context.Context, tk *tokenSet, certs *certauth.Checker, reg prometheus.Registerer, conns *netlimit.Limiter, admins *authn.Admins,
	hh broker.Policies, log *slog.Logger, out io.Writer) (*broker.Broker, error) {
	c := p.Config.MQTT
	if !c.Enabled {
		return nil, nil
	}
	cert, err := p.serverCertificate()
	if err != nil {
		return nil, err
	}
	tlsConfig := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		// Device certificates are optional at the handshake; the broker checks
		// them (certificate login, token binding), never the handshake alone.
		ClientAuth: tls.RequestClientCert,
	}
	var listeners []broker.Listener
	if c.TLS.Enabled {
		listeners = append(listeners, broker.Listener{Name: "tls", Kind: broker.ListenerTCP, Address: c.TLS.Address, TLS: tlsConfig, Anonymous: c.TLS.Anonymous})
	}
	if w := c.WebSocket; w.Enabled {
		l := broker.Listener{Name: "websocket", Kind: broker.ListenerWebSocket, Address: w.Address, Anonymous: w.Anonymous, AllowedOrigins: w.AllowedOrigins}
		if w.TLS {
			l.TLS = tlsConfig
		}
		listeners = append(listeners, l)
	}
	if c.TCP.Enabled {
		listeners = append(listeners, broker.Listener{Name: "tcp", Kind: broker.ListenerTCP, Address: c.TCP.Address, Anonymous: c.TCP.Anonymous})
	}
	rules := make([]broker.Rule, len(c.Rules))
	for i, r := range c.Rules {
		rules[i] = broker.Rule{Who: r.Who, Publish: r.Publish, Subscribe: r.Subscribe,
			Deny: broker.Deny{Publish: r.Deny.Publish, Subscribe: r.Deny.Subscribe}}
	}
	cluster, err := dialCluster(c.Cluster, reg, log)
	if err != nil {
		return nil, err
	}
	b, err := broker.Start(ctx, broker.Options{
		Listeners:         listeners,
		Audience:          c.Audience,
		IDTokenClients:    c.IDTokenClients,
		Verifier:          tk.verifier,
		VerifyCertificate: certificateThing(certs),
		CertificateLogin:  c.CertificateLogin,
		Directory:         p.Store,
		Rules:             rules,
		Limits: broker.Limits{
			MaxPacketSize:  c.Limits.MaxPacketSize,
			Queue:          c.Limits.Queue,
			Inflight:       c.Limits.Inflight,
			SessionExpiry:  time.Duration(c.Limits.SessionExpiry),
			ConnectTimeout: time.Duration(c.Limits.ConnectTimeout),

			ConnectionsPerAddress: c.Limits.ConnectionsPerAddress,
		},
		Connections:     conns,
		Dir:             c.Dir,
		Bus:             p.Bus,
		Audit:           p.Store,
		Log:             log,
		Metrics:         reg,
		IsAdministrator: admins.IsAdministrator,
		Policies:        hh,
		Cluster:         cluster,
	})
	if err != nil {
		if cluster != nil {
			cluster.Close()
		}
		return nil, err
	}
	for _, l := range listeners {
		scheme := map[bool]string{true: "mqtts", false: "mqtt"}[l.TLS != nil]
		if l.Kind == broker.ListenerWebSocket {
			scheme = map[bool]string{true: "wss", false: "ws"}[l.TLS != nil]
		}
		path := ""
		if l.Kind == broker.ListenerWebSocket {
			path = broker.WebSocketPath
		}
		fmt.Fprintf(out, "MQTT broker (%s) on %s://%s%s\n", l.Name, scheme, b.Addr(l.Name), path)
	}
	return b, nil
}

// dialCluster connects to the NATS of mqtt.cluster; nil (no error) when
// none is configured: a single node.
func dialCluster(c config.MQTTCluster, reg prometheus.Registerer, log *slog.Logger) (broker.Cluster, error) {
	if c.NATS.URL == "" {
		return nil, nil
	}
	var opts []nats.Option
	if c.NATS.CredentialsFile != "" {
		opts = append(opts, nats.UserCredentials(c.NATS.CredentialsFile))
	}
	if c.NATS.CAFile != "" {
		opts = append(opts, nats.RootCAs(c.NATS.CAFile))
	}
	r, err := mqttnats.Dial(c.NATS.URL, c.Node, log, opts...)
	if err != nil {
		return nil, fmt.Errorf("mqtt.cluster.nats.url: %w", err)
	}
	r.Replicas, r.NodeTTL = c.NATS.Replicas, time.Duration(c.NATS.NodeTTL)
	if reg != nil {
		if err := r.Register(reg); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// certificateThing is the id of the active thing a client certificate
// chain identifies, as certs decides: how the broker and the directory
// authenticate a thing by its certificate.
func certificateThing(certs *certauth.Checker) func(ctx context.Context, chain []*x509.Certificate) (string, error) {
	return func(ctx context.Context, chain []*x509.Certificate) (string, error) {
		id, err := certs.Verify(ctx, chain)
		if err != nil {
			return "", err
		}
		return id.Thing.ID, nil
	}
}

// BenchToken is an MQTT client identifier with the access token it connects with.
type BenchToken struct {
	ClientID string
	Token    string
}

// benchModel marks the things `thingid bench mqtt` creates, so that a later
// run reuses them.
const benchModel = "thingid-bench"

// BenchTokens prepares `thingid bench mqtt --mint-tokens` against this
// platform's broker: n things of model thingid-bench (created once, then
// reused), and for each an access token for the broker's audience under one
// grant of the client thingid-bench (revoking it ends every bench
// connection); service is a token of the client thingid-bench-service that
// may subscribe to things/+/telemetry and publish to things/+/commands/#.
func (p *Platform) BenchTokens(ctx context.Context, n int, log *slog.Logger) (things []BenchToken, service BenchToken, err error) {
	tk, cleanup, err := p.newTokens(ctx, log)
	if err != nil {
		return nil, service, err
	}
	defer cleanup()
	existing, _, err := p.Store.ListThings(ctx, store.Query{Filter: store.Compare{Field: "model", Op: store.OpEq, Value: benchModel}, Limit: n})
	if err != nil {
		return nil, service, err
	}
	for len(existing) < n {
		batch := make([]*store.Thing, min(n-len(existing), 1000))
		for i := range batch {
			batch[i] = &store.Thing{Type: store.ThingDevice, DisplayName: "bench", Model: benchModel, Status: store.StatusActive}
		}
		errs, err := p.Identity.CreateThings(ctx, "cli", batch)
		if err != nil {
			return nil, service, err
		}
		for i, e := range errs {
			if e != nil {
				return nil, service, fmt.Errorf("create bench thing: %w", e)
			}
			existing = append(existing, batch[i])
		}
	}
	grant := func(client string) (string, error) {
		gs, err := p.Store.ListGrants(ctx, store.GrantFilter{ClientID: client})
		if err != nil {
			return "", err
		}
		if len(gs) > 0 {
			return gs[0].ID, nil
		}
		g := &store.Grant{ClientID: client}
		if err := p.Store.CreateGrant(ctx, g); err != nil {
			return "", err
		}
		return g.ID, nil // assigned by CreateGrant
	}
	exp := time.Now().Add(time.Duration(p.Config.OAuth.AccessTokenLifetime))
	aud := []string{p.Config.MQTT.Audience}
	gid, err := grant("thingid-bench")
	if err != nil {
		return nil, service, err
	}
	things = make([]BenchToken, n)
	for i, th := range existing[:n] {
		tok, err := tk.issuer.AccessToken(tokens.Claims{Subject: "thingid-bench", ClientID: "thingid-bench", ThingID: th.ID, Audience: aud, GrantID: gid, ExpiresAt: exp})
		if err != nil {
			return nil, service, err
		}
		things[i] = BenchToken{ClientID: th.ID, Token: tok}
	}
	if gid, err = grant("thingid-bench-service"); err != nil {
		return nil, service, err
	}
	tok, err := tk.issuer.AccessToken(tokens.Claims{Subject: "thingid-bench-service", ClientID: "thingid-bench-service", Audience: aud, GrantID: gid, ExpiresAt: exp,
		Scope: []string{"mqtt:sub:things/+/telemetry", "mqtt:pub:things/+/commands/#"}})
	return things, BenchToken{ClientID: "thingid-bench-service", Token: tok}, err
}
