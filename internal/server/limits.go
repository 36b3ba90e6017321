package server

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/netlimit"
)

// httpsServer is the configuration of thingid's HTTPS listeners (the main
// one, named "https", and the gateway's): headers, idle connections and
// every request body are bounded by lim, whatever the route.
func httpsServer(name string, h http.Handler, cert tls.Certificate, lim config.HTTPLimits, conns *netlimit.Limiter, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           netlimit.Bodies(h, bodyLimits(lim.BodyTimeout, lim.MaxBodyBytes), bodyRules(lim), conns, name),
		ReadHeaderTimeout: time.Duration(lim.ReadHeaderTimeout),
		MaxHeaderBytes:    lim.MaxHeaderBytes,
		IdleTimeout:       time.Duration(lim.IdleTimeout),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		TLSConfig: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			// Mutual TLS is optional at the handshake: a thing's certificate
			// (platform, manufacturer or self-signed) is checked by certauth
			// where one is needed, never by the handshake alone.
			ClientAuth: tls.RequestClientCert,
		},
	}
}

// limitListener puts ln under the process's connection accounting with the
// per-address cap of lim; a refused client is answered 429 or 503 over TLS.
// exempt (trusted proxies) may be nil.
func limitListener(ln net.Listener, srv *http.Server, name string, lim config.HTTPLimits, conns *netlimit.Limiter, exempt func(netip.Addr) bool) net.Listener {
	return conns.Listen(ln, netlimit.Policy{
		Name:       name,
		PerAddress: lim.ConnectionsPerAddress,
		Exempt:     exempt,
		Refuse:     netlimit.HTTPRefusal(srv.TLSConfig),
	})
}

func bodyLimits(timeout config.Duration, maxBytes int) netlimit.BodyLimits {
	return netlimit.BodyLimits{Timeout: time.Duration(timeout), MaxBytes: int64(maxBytes)}
}

func bodyRules(lim config.HTTPLimits) []netlimit.BodyRule {
	rules := make([]netlimit.BodyRule, len(lim.Routes))
	for i, r := range lim.Routes {
		rules[i] = netlimit.BodyRule{Path: r.Path, BodyLimits: bodyLimits(r.BodyTimeout, r.MaxBodyBytes)}
	}
	return rules
}

// scimBulkPayload is the SCIM Bulk body bound that the listener enforces,
// so that SCIM advertises (maxPayloadSize) what it accepts; 0: SCIM's default.
func scimBulkPayload(lim config.HTTPLimits) int64 {
	for _, r := range lim.Routes {
		if r.Path == "/scim/v2/Bulk" {
			return int64(r.MaxBodyBytes)
		}
	}
	return int64(lim.MaxBodyBytes)
}
