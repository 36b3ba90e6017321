package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

// Gateway configures the identity gateway: an HTTPS listener that
// reverse-proxies to the upstream APIs of the routes directory, as an OAuth
// 2.0 resource server with throttling.
type Gateway struct {
	// Enabled starts the gateway listener with `thingid serve`.
	Enabled bool   `json:"enabled"`
	Address string `json:"address"`
	// PublicURL is how clients reach the gateway: the origin DPoP proofs name
	// (htu) on routes that do not match on a host. Empty: derived from Address.
	PublicURL string `json:"publicURL"`
	// Routes is the directory of route files (*.yaml), reloaded on change;
	// empty: $home/routes.
	Routes string `json:"routes"`
	// Audience is the aud access tokens must carry to pass the gateway.
	Audience string `json:"audience"`
	// DPoPNonces makes DPoP proofs at the gateway carry a server nonce (RFC 9449 §8).
	DPoPNonces bool `json:"dpopNonces"`
	// TrustedProxies are comma-separated addresses or CIDRs of proxies (the
	// nginx, Traefik, Caddy or Envoy in front) whose forwarding headers are
	// believed; forward-auth answers only them.
	TrustedProxies string `json:"trustedProxies"`
	// ForwardAuthPath serves the forward-auth endpoint (nginx auth_request,
	// Traefik ForwardAuth, Caddy forward_auth, Envoy ext_authz) on the
	// gateway listener; empty: not served.
	ForwardAuthPath string `json:"forwardAuthPath"`
	// ForwardAuthProxy is the kind of proxy that asks forward-auth (nginx,
	// traefik, caddy, envoy): the one header set the original request is
	// read from.
	ForwardAuthProxy string `json:"forwardAuthProxy"`
	// UpstreamTimeout bounds the wait for an upstream's response headers.
	UpstreamTimeout Duration `json:"upstreamTimeout"`
	// TokenCacheSize is how many validated tokens are remembered (until their
	// expiry, or their grant's revocation).
	TokenCacheSize int                  `json:"tokenCacheSize"`
	Introspection  GatewayIntrospection `json:"introspection"`
	Throttle       GatewayThrottle      `json:"throttle"`
	// Limits bound what one client may hold of the gateway listener; the
	// addresses of TrustedProxies have no per-address cap.
	Limits HTTPLimits `json:"limits"`
}

// GatewayIntrospection is the RFC 7662 endpoint asked about tokens the
// gateway cannot validate locally (opaque tokens, other issuers).
type GatewayIntrospection struct {
	// URL of the endpoint; empty: no introspection, such tokens are refused.
	URL          string `json:"url"`
	ClientID     string `json:"clientID"`
	ClientSecret string `json:"clientSecret" secret:"true"`
	// CacheTTL caps how long an answer is reused (never past the token's exp).
	CacheTTL Duration `json:"cacheTTL"`
}

// GatewayThrottle configures the counters of the throttle filter.
type GatewayThrottle struct {
	// MaxKeys bounds the in-memory counters (one per throttled key).
	MaxKeys int `json:"maxKeys"`
	// RedisURL (redis:// or rediss://) shares the counters between gateway
	// nodes; empty: counters in memory.
	RedisURL string `json:"redisURL" secret:"true"`
}

func defaultGateway() Gateway {
	return Gateway{
		Enabled:          true,
		Address:          "127.0.0.1:9443",
		Audience:         "urn:thingid:gateway",
		ForwardAuthPath:  "/.thingid/forward-auth",
		ForwardAuthProxy: "nginx",
		UpstreamTimeout:  Duration(30 * time.Second),
		TokenCacheSize:   65536,
		Introspection:    GatewayIntrospection{CacheTTL: Duration(time.Minute)},
		Throttle:         GatewayThrottle{MaxKeys: 1_000_000},
		// Bodies stream to the upstream, which bounds their size.
		Limits: HTTPLimits{
			ConnectionsPerAddress: 256,
			ReadHeaderTimeout:     Duration(10 * time.Second),
			MaxHeaderBytes:        64 << 10,
			IdleTimeout:           Duration(2 * time.Minute),
			BodyTimeout:           Duration(time.Minute),
		},
	}
}

// validate checks the section; home is the data directory.
func (c *Gateway) validate(home string) error {
	host, port, err := net.SplitHostPort(c.Address)
	if err != nil {
		return fmt.Errorf("gateway.address: %q is not host:port (%v)", c.Address, err)
	}
	if c.PublicURL == "" {
		if host == "" || host == "0.0.0.0" || host == "::" || host == "127.0.0.1" {
			host = "localhost"
		}
		c.PublicURL = "https://" + net.JoinHostPort(host, port)
	}
	if u, err := url.Parse(c.PublicURL); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("gateway.publicURL: %q must be an https origin (no path, query or fragment)", c.PublicURL)
	}
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if c.Routes == "" {
		c.Routes = filepath.Join(home, "routes")
	}
	if strings.TrimSpace(c.Audience) != c.Audience || c.Audience == "" {
		return fmt.Errorf("gateway.audience: required, without surrounding spaces")
	}
	if _, err := ParseProxies(c.TrustedProxies); err != nil {
		return fmt.Errorf("gateway.trustedProxies: %w", err)
	}
	if p := c.ForwardAuthPath; p != "" && (!strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?# ") || strings.Contains(p, "..")) {
		return fmt.Errorf("gateway.forwardAuthPath: %q must be an absolute path such as /.thingid/forward-auth", p)
	}
	switch c.ForwardAuthProxy {
	case "nginx", "traefik", "caddy", "envoy":
	default:
		return fmt.Errorf("gateway.forwardAuthProxy: %q: want nginx, traefik, caddy or envoy (the proxy that asks forward-auth)", c.ForwardAuthProxy)
	}
	if c.UpstreamTimeout <= 0 {
		return fmt.Errorf("gateway.upstreamTimeout: must be positive")
	}
	if c.TokenCacheSize < 0 {
		return fmt.Errorf("gateway.tokenCacheSize: must not be negative")
	}
	if err := c.Limits.validate("gateway.limits"); err != nil {
		return err
	}
	if in := c.Introspection; in.URL != "" {
		u, err := url.Parse(in.URL)
		if err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname()))) {
			return fmt.Errorf("gateway.introspection.url: %q must be an https URL (http only on loopback)", in.URL)
		}
		if in.ClientID == "" || in.ClientSecret == "" {
			return fmt.Errorf("gateway.introspection.clientID and clientSecret: required with an introspection URL (RFC 7662 §2.1)")
		}
		if in.CacheTTL < 0 {
			return fmt.Errorf("gateway.introspection.cacheTTL: must not be negative")
		}
	}
	if c.Throttle.MaxKeys < 1024 {
		return fmt.Errorf("gateway.throttle.maxKeys: at least 1024")
	}
	if r := c.Throttle.RedisURL; r != "" {
		if u, err := url.Parse(r); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			return fmt.Errorf("gateway.throttle.redisURL: want redis://[user:password@]host:port[/db] or rediss:// for TLS")
		}
	}
	return nil
}

// ParseProxies reads a comma-separated list of addresses and CIDRs.
func ParseProxies(s string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !strings.Contains(f, "/") {
			ip := net.ParseIP(f)
			if ip == nil {
				return nil, fmt.Errorf("%q is not an address or CIDR", f)
			}
			bits := 128
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			out = append(out, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(f)
		if err != nil {
			return nil, fmt.Errorf("%q is not an address or CIDR", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
