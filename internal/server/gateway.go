package server

import (
	"context"
	"io"
	"log/slog"

	"github.com/thingid/thingid/internal/certauth"
)

// startGateway starts the identity gateway listener configured in gateway; stop closes it.
func (p *Platform) startGateway(ctx context.Context, tk *tokenSet, certs *certauth.Checker, log *slog.Logger, out io.Writer) (stop func(), err error) {
	return func() {}, nil
}
