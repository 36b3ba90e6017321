package server

import (
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/est"
	"github.com/thingid/thingid/internal/routes"
)

// mountEST adds certificate enrollment (RFC 7030) under /.well-known/est and
// the enrollment-token admin API to mux.
func (p *Platform) mountEST(mux routes.Mux, admins *authn.Admins, certs *certauth.Checker, reg prometheus.Registerer, log *slog.Logger) {
	srv, err := p.newEST(certs, reg, log)
	if err != nil {
		// The rest of the platform still serves; EST says why it cannot.
		log.Error("EST is unavailable", "err", err)
		mux.HandleFunc(est.Prefix, func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "EST is unavailable: the device CA could not be loaded; the server log says why", http.StatusServiceUnavailable)
		})
		return
	}
	srv.Register(mux, func(h http.Handler) http.Handler { return admins.Require(h, denyProblem) })
}

// EnrollmentTokens returns the EST server for command-line administration
// (creating enrollment tokens) on the data directory; it serves nothing.
func (p *Platform) EnrollmentTokens(log *slog.Logger) (*est.Server, error) {
	return p.newEST(nil, nil, log)
}

// newEST issues with the device CA of the data directory (Platform.PKI).
// certs may be nil: then no client certificate is accepted; reg (nil on
// the command line) registers its metrics.
func (p *Platform) newEST(certs *certauth.Checker, reg prometheus.Registerer, log *slog.Logger) (*est.Server, error) {
	_, ca, err := p.PKI()
	if err != nil {
		return nil, err
	}
	opts := est.Options{
		CA:         ca,
		Identity:   p.Identity,
		Audit:      p.Store,
		TokenKey:   p.derivedKey("thingid est enrollment token v1"),
		Actor:      authn.Actor,
		Registerer: reg,
		Logger:     log.With("component", "est"),
	}
	if certs != nil { // a nil *Checker in the interface would look like a checker
		opts.Certificates = certs
	}
	srv, err := est.New(opts)
	if err != nil {
		return nil, fmt.Errorf("EST: %w", err)
	}
	return srv, nil
}
