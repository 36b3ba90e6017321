package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/gateway"
	"github.com/thingid/thingid/internal/netlimit"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/uma"
)

// startGateway starts the identity gateway listener configured in gateway,
// its uma filter asking u for tickets and its policy filter asking hh; stop
// closes it.
func (p *Platform) startGateway(ctx context.Context, tk *tokenSet, certs *certauth.Checker, u *uma.Server, reg prometheus.Registerer, conns *netlimit.Limiter, hh gateway.Decider, log *slog.Logger, out io.Writer) (stop func(), err error) {
	c := p.Config.Gateway
	if !c.Enabled {
		return func() {}, nil
	}
	log = log.With("component", "gateway")
	proxies, err := config.ParseProxies(c.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("gateway.trustedProxies: %w", err)
	}
	opts := gateway.Options{
		RoutesDir:        c.Routes,
		Audience:         c.Audience,
		PublicURL:        c.PublicURL,
		Verifier:         tk.verifier,
		Issuer:           tk.issuer,
		Bus:              p.Bus,
		Replay:           p.Store,
		Certificates:     certs,
		Things:           p.Identity,
		Decider:          hh,
		TokenCacheSize:   c.TokenCacheSize,
		MaxKeys:          c.Throttle.MaxKeys,
		TrustedProxies:   proxies,
		ForwardAuthPath:  c.ForwardAuthPath,
		ForwardAuthProxy: gateway.ProxyKind(c.ForwardAuthProxy),
		UpstreamTimeout:  time.Duration(c.UpstreamTimeout),
		// The uma filter stands in front of the trusted resource servers.
		UMA:        &gateway.UMAOptions{Issuer: p.Config.HTTP.PublicURL, ResourceServers: p.Config.UMA.TrustedResourceServers, Tickets: umaTickets{u}},
		Now:        p.clock,
		Registerer: reg, // served at /metrics of the main listener
		Log:        log,
	}
	if c.TokenCacheSize == 0 {
		opts.TokenCacheSize = -1 // 0 in the file means no cache; 0 in Options the default
	}
	if c.DPoPNonces {
		opts.DPoPNonceKey = p.derivedKey("thingid gateway dpop nonce v1")
	}
	if in := c.Introspection; in.URL != "" {
		opts.Introspection = &gateway.IntrospectionOptions{URL: in.URL, ClientID: in.ClientID, ClientSecret: in.ClientSecret, CacheTTL: time.Duration(in.CacheTTL)}
	}
	var rdb *redis.Client
	if c.Throttle.RedisURL != "" {
		ro, err := redis.ParseURL(c.Throttle.RedisURL)
		if err != nil {
			return nil, fmt.Errorf("gateway.throttle.redisURL: %w", err)
		}
		rdb = redis.NewClient(ro)
		opts.Redis = rdb
	}
	closeRedis := func() {
		if rdb != nil {
			rdb.Close()
		}
	}
	g, err := gateway.New(opts)
	if err != nil {
		closeRedis()
		return nil, err
	}
	cert, err := p.serverCertificate()
	if err != nil {
		g.Close()
		closeRedis()
		return nil, err
	}
	ln, err := net.Listen("tcp", c.Address)
	if err != nil {
		g.Close()
		closeRedis()
		return nil, fmt.Errorf("listen on %s (gateway.address): %w", c.Address, err)
	}
	srv := httpsServer("gateway", g, cert, c.Limits, conns, log)
	// Trusted proxies carry many clients: only the process's cap counts them.
	ln = limitListener(ln, srv, "gateway", c.Limits, conns, func(a netip.Addr) bool {
		return slices.ContainsFunc(proxies, func(n *net.IPNet) bool { return n.Contains(a.AsSlice()) })
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			log.Error("gateway listener stopped", "err", err)
		}
	}()
	p.gateway.Store(g)
	log.Info("gateway serving", "address", ln.Addr().String(), "publicURL", c.PublicURL, "routes", c.Routes)
	fmt.Fprintf(out, "thingid gateway is serving on https://%s (public URL %s, routes in %s)\n", ln.Addr(), c.PublicURL, c.Routes)
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Duration(p.Config.HTTP.ShutdownTimeout))
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			log.Warn("gateway: graceful shutdown", "err", err)
		}
		<-done
		g.Close()
		closeRedis()
	}, nil
}

// umaTickets adapts *uma.Server to gateway.Tickets: one permission per
// ticket, uma's refusals as the gateway's.
type umaTickets struct{ u *uma.Server }

func (a umaTickets) Ticket(ctx context.Context, resourceServer, client, resource string, scopes []string) (string, error) {
	t, err := a.u.Ticket(ctx, resourceServer, client, []store.UMAPermission{{ResourceID: resource, Scopes: scopes}})
	switch {
	case errors.Is(err, uma.ErrUnknownResource):
		return "", fmt.Errorf("%w: %w", gateway.ErrUnknownResource, err)
	case errors.Is(err, uma.ErrUnknownScope):
		return "", fmt.Errorf("%w: %w", gateway.ErrUnknownScope, err)
	}
	return t, err
}

var _ gateway.Tickets = umaTickets{}
