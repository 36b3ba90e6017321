// Package server wires thingid's components into one running platform: it opens
// the store, prepares keys and certificates, creates the first administrator and
// serves the listeners until its context ends. Components never import it.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/console"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/gateway"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/netlimit"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/postgres"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/ui"
)

// Platform is the opened state shared by `serve` and the CLI commands that work
// on the data directory directly.
type Platform struct {
	Config   config.Config
	Store    store.Store
	Bus      *events.Bus
	Identity *identity.Service
	Key      secrets.Key

	relay *events.Relay // carries Bus events between the processes on the database
	// decisionClock is the households' clock (nil: time.Now); tests set it
	// to decide at 19:59 and 20:01.
	decisionClock func() time.Time
	// site is the pages' brand, overrides and languages once Serve made it
	// (nil: the built-in ones).
	site *ui.Site
	// clock is the clock tokens, the authorization server, UMA and the
	// gateway read (nil: time.Now); a test sets it with decisionClock to
	// issue an RPT at 19:59 and present it at 20:00.
	clock func() time.Time
	// oauthServer is the authorization server once Serve made it: the
	// households revoke grants through it (householdGrants).
	oauthServer atomic.Pointer[oauth.Server]
	// ace is ACE's token endpoint once Serve made it: the CoAP gateway
	// serves it too.
	ace atomic.Pointer[ace.Server]
	// table is the route table of the HTTPS listener once Serve built it.
	table atomic.Pointer[routes.Table]
	// draining: the node was told to stop; /readyz answers 503.
	draining atomic.Bool
	// history counts per minute what the console's dashboard draws; Serve
	// makes it.
	history *console.History
	// gateway is the identity gateway once Serve started it (the console
	// shows its routes).
	gateway atomic.Pointer[gateway.Gateway]
}

// Open prepares the data directory and opens the store. Close it when done.
func Open(ctx context.Context, cfg config.Config) (*Platform, error) {
	if err := os.MkdirAll(cfg.Home, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory %s: %w", cfg.Home, err)
	}
	key, err := secrets.LoadOrCreate(cfg.Home, cfg.MasterKey)
	if err != nil {
		return nil, err
	}
	st, err := openStore(ctx, cfg.Storage)
	if err != nil {
		return nil, err
	}
	bus := events.New()
	// DESIGN.md: events reach every process on the same database within a
	// second — the other nodes on PostgreSQL, the serving process when a CLI
	// command changes its SQLite file.
	var relay *events.Relay
	if cfg.Storage.Type == "postgres" {
		relay, err = events.StartRelay(ctx, bus, cfg.Storage.Postgres.DSN, slog.Default())
	} else {
		relay, err = events.StartLogRelay(ctx, bus, st.(events.EventLog), slog.Default())
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	policy := password.Policy{MinLength: cfg.Passwords.MinLength}
	return &Platform{Config: cfg, Store: st, Bus: bus, Identity: identity.New(st, bus, policy), Key: key, relay: relay}, nil
}

// Close stops relaying events (after sending those already published) and
// closes the store.
func (p *Platform) Close() error {
	p.relay.Close()
	return p.Store.Close()
}

// TokenKey keys the stored hashes of admin API tokens; it is derived from the
// master key so that a copy of the database alone cannot verify guesses.
func (p *Platform) TokenKey() []byte { return p.derivedKey("thingid admin api token v1") }

func openStore(ctx context.Context, c config.Storage) (store.Store, error) {
	switch c.Type {
	case "postgres":
		st, err := postgres.Open(ctx, c.Postgres.DSN)
		if err != nil {
			return nil, fmt.Errorf("open PostgreSQL (storage.postgres.dsn): %w", err)
		}
		return st, nil
	default:
		st, err := sqlite.Open(c.SQLite.Path)
		if err != nil {
			return nil, fmt.Errorf("open SQLite database %s: %w", c.SQLite.Path, err)
		}
		return st, nil
	}
}

// Run opens the platform and serves it on cfg.HTTP.Address until ctx ends.
// Messages meant for the operator (the first administrator's password, the
// address) go to out.
func Run(ctx context.Context, cfg config.Config, log *slog.Logger, out io.Writer) error {
	p, err := Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	ln, err := net.Listen("tcp", cfg.HTTP.Address)
	if err != nil {
		return fmt.Errorf("listen on %s (http.address): %w", cfg.HTTP.Address, err)
	}
	return p.Serve(ctx, ln, log, out)
}

// Serve creates the first administrator if needed and serves HTTPS on ln until
// ctx ends, then shuts down gracefully.
func (p *Platform) Serve(ctx context.Context, ln net.Listener, log *slog.Logger, out io.Writer) error {
	defer ln.Close()
	cfg := p.Config
	site, err := p.newSite()
	if err != nil {
		return fmt.Errorf("ui: %w", err)
	}
	p.site = site
	if err := p.bootstrapAdmin(ctx, out); err != nil {
		return fmt.Errorf("create first administrator: %w", err)
	}
	defer p.forgetAdminPassword(ctx, log)()
	tlsCert, err := p.serverCertificate()
	if err != nil {
		return err
	}
	tk, cleanupTokens, err := p.newTokens(ctx, log)
	if err != nil {
		return err
	}
	defer cleanupTokens()
	reg := newRegistry()
	certs, err := p.newCertAuth(ctx, reg, log)
	if err != nil {
		return err
	}
	defer certs.Close()
	// One accounting of connections for every listener: no client may take
	// the descriptors the others, and the health checks, need.
	proxies, err := cfg.Connections.ProxyProtocol.TrustedPrefixes()
	if err != nil {
		return err
	}
	conns, err := netlimit.New(netlimit.Options{Max: cfg.Connections.Max, Log: log.With("component", "netlimit"), Registerer: reg, Proxies: proxies})
	if err != nil {
		return err
	}
	admins := authn.NewAdmins(adminReader{p.Identity, p.Store}, p.TokenKey())
	hh, err := p.newHouseholds(log)
	if err != nil {
		return err
	}
	mqtt, err := p.startBroker(ctx, tk, certs, reg, conns, admins, hh, log, out)
	if err != nil {
		return err
	}
	if mqtt != nil {
		defer mqtt.Close()
	}
	p.history = console.NewHistory()
	go p.history.Sample(ctx, time.Minute, dashboardTotals(reg, log))
	handler, umaServer, err := p.routes(tk, certs, reg, admins, hh, mqtt, log)
	if err != nil {
		return err
	}
	if err := p.site.Err(); err != nil {
		return fmt.Errorf("ui.templates: %w", err)
	}
	stopGateway, err := p.startGateway(ctx, tk, certs, umaServer, reg, conns, hh, log, out)
	if err != nil {
		return err
	}
	stopGateway = sync.OnceFunc(stopGateway)
	defer stopGateway()
	stopDirectory, err := p.startDirectory(certs, admins, reg, conns, log, out)
	if err != nil {
		return err
	}
	defer stopDirectory()
	stopCoAP, err := p.startCoAP(certs, mqtt, reg, log, out)
	if err != nil {
		return err
	}
	defer stopCoAP()
	go p.purgeLoop(ctx, log)
	srv := httpsServer("https", handler, tlsCert, cfg.HTTP.Limits, conns, log)
	ln = limitListener(ln, srv, "https", cfg.HTTP.Limits, conns, nil)
	log.Info("thingid serving", "address", ln.Addr().String(), "publicURL", cfg.HTTP.PublicURL,
		"storage", cfg.Storage.Type, "home", cfg.Home, "maxConnections", conns.Max())
	fmt.Fprintf(out, "thingid is serving on https://%s (public URL %s)\n", ln.Addr(), cfg.HTTP.PublicURL)
	if cfg.HTTP.CertFile == "" {
		ca := filepath.Join(cfg.Home, "pki", pki.CACertFile)
		fmt.Fprintf(out, "its TLS certificates come from the platform CA %s; trust it, for example: curl --cacert %s %s/healthz\n", ca, ca, cfg.HTTP.PublicURL)
	}

	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	if err := p.drain(log, errc); err != nil {
		return err
	}
	log.Info("shutting down", "timeout", time.Duration(cfg.HTTP.ShutdownTimeout).String())
	// Every listener stops accepting now (the broker's before the HTTPS
	// listener, so that no connection is taken once HTTPS refuses); MQTT 5
	// clients are told to go elsewhere (DISCONNECT 0x8B, server shutting
	// down) while requests in flight on the HTTPS listeners finish.
	if mqtt != nil {
		mqtt.StopAccepting()
	}
	var stopping sync.WaitGroup
	stopping.Go(stopGateway)
	if mqtt != nil {
		stopping.Go(func() { mqtt.Close() })
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Duration(cfg.HTTP.ShutdownTimeout))
	defer cancel()
	err = srv.Shutdown(sctx)
	stopping.Wait()
	if err != nil {
		return fmt.Errorf("graceful shutdown: %w", err)
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// drain makes /readyz answer 503 and waits http.drainDelay, every listener
// still serving, so that a load balancer has taken the node out before it
// stops accepting. The HTTPS listener failing meanwhile is its error.
func (p *Platform) drain(log *slog.Logger, errc <-chan error) error {
	p.draining.Store(true)
	d := time.Duration(p.Config.HTTP.DrainDelay)
	log.Info("draining: /readyz answers 503", "drainDelay", d.String())
	select {
	case <-time.After(d):
		return nil
	case err := <-errc:
		return fmt.Errorf("HTTPS listener stopped while draining: %w", err)
	}
}

// serverCertificate loads the configured certificate or one from the platform CA
// for localhost and the public URL's host.
func (p *Platform) serverCertificate() (tls.Certificate, error) {
	if c := p.Config.HTTP; c.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return cert, fmt.Errorf("http.certFile/http.keyFile: %w", err)
		}
		return cert, nil
	}
	ca, _, err := p.PKI()
	if err != nil {
		return tls.Certificate{}, err
	}
	dir := filepath.Join(p.Config.Home, "pki")
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if u, err := url.Parse(p.Config.HTTP.PublicURL); err == nil && !slices.Contains(hosts, u.Hostname()) {
		hosts = append(hosts, u.Hostname())
	}
	return ca.ServerCertificate(dir, hosts, p.Key)
}
