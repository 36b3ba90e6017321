package server

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/certauth"
)

// newCertAuth returns the checker of client certificates.
func (p *Platform) newCertAuth(ctx context.Context, log *slog.Logger) (*certauth.Checker, error) {
	return certauth.New(ctx, certauth.Options{Store: p.Store, Identity: p.Identity, Bus: p.Bus, Log: log.With("component", "certauth")})
}

// mountPKI adds the certificate administration API and the CRL to mux.
func (p *Platform) mountPKI(mux *http.ServeMux, admins *authn.Admins, certs *certauth.Checker, log *slog.Logger) {
}
