package server

import (
	"log/slog"
	"net/http"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/certauth"
)

// mountEST adds certificate enrollment (RFC 7030) under /.well-known/est and
// the enrollment-token admin API to mux.
func (p *Platform) mountEST(mux *http.ServeMux, admins *authn.Admins, certs *certauth.Checker, log *slog.Logger) {
}
