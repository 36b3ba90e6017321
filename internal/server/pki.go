package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
)

// PKI returns the platform CA and the device issuing CA of the data directory
// ($home/pki), importing them from the pki.* files or creating them on first
// use. The device CA issues with the configured lifetime and writes the CRL
// distribution point into its certificates. Everything that issues or checks
// platform certificates (server certificate, factory, EST, certauth) loads
// them here, so that none creates a CA of its own before the configured one
// is imported. The CAs are the database's: every node of one database
// (PostgreSQL) issues and checks with the same, kept in its own directory
// too.
func (p *Platform) PKI() (*pki.CA, *pki.DeviceCA, error) {
	dir := filepath.Join(p.Config.Home, "pki")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	stored, err := p.Store.GetCAFiles(ctx)
	if err != nil {
		return nil, nil, err
	}
	hadCA := pki.HasCA(dir)
	if len(stored) > 0 {
		if err := pki.WriteCAFiles(dir, stored, false); err != nil {
			return nil, nil, err
		}
	}
	root, dca, err := p.openPKI(dir)
	if err != nil && len(stored) > 0 {
		return nil, nil, fmt.Errorf("%w (the CAs are the database's: every node of one database needs the same masterKey)", err)
	}
	if err != nil || len(stored) > 0 {
		return root, dca, err
	}
	// The first node of the database stores its CAs for the others. When
	// another stored its own meanwhile, those are every node's: this node's,
	// if made just now, are replaced before anything is issued; if it had
	// them before, they must be the same (the same imported CA).
	files, err := pki.ReadCAFiles(dir)
	if err != nil {
		return nil, nil, err
	}
	switch err := p.Store.PutCAFiles(ctx, files); {
	case err == nil:
		return root, dca, nil
	case !errors.Is(err, store.ErrConflict):
		return nil, nil, fmt.Errorf("store the platform CA for the other nodes: %w", err)
	}
	if stored, err = p.Store.GetCAFiles(ctx); err != nil {
		return nil, nil, err
	}
	if err := pki.WriteCAFiles(dir, stored, !hadCA); err != nil {
		return nil, nil, err
	}
	return p.openPKI(dir)
}

// openPKI opens (imports, creates) the CAs kept in dir.
func (p *Platform) openPKI(dir string) (*pki.CA, *pki.DeviceCA, error) {
	c := p.Config.PKI
	root, dca, err := pki.Open(dir, p.Key, pki.Import{
		CertFile: c.CACertFile, KeyFile: c.CAKeyFile,
		IssuingCertFile: c.IssuingCACertFile, IssuingKeyFile: c.IssuingCAKeyFile,
	})
	if err != nil {
		if c.CACertFile != "" {
			return nil, nil, fmt.Errorf("platform CA (pki.caCertFile, pki.caKeyFile, pki.issuingCACertFile, pki.issuingCAKeyFile): %w", err)
		}
		return nil, nil, fmt.Errorf("platform CA in %s: %w", dir, err)
	}
	dca.Lifetime = time.Duration(c.DeviceCertLifetime)
	dca.CRLURL = p.crlURL()
	return root, dca, nil
}

// crlURL is where relying parties fetch the CRL.
func (p *Platform) crlURL() string {
	return cmp.Or(p.Config.PKI.CRLURL, p.Config.HTTP.PublicURL+certauth.PathCRL)
}

// newCertAuth returns the checker of client certificates; reg (nil on the
// command line) registers its metrics.
func (p *Platform) newCertAuth(ctx context.Context, reg prometheus.Registerer, log *slog.Logger) (*certauth.Checker, error) {
	_, dca, err := p.PKI()
	if err != nil {
		return nil, err
	}
	return certauth.New(ctx, certauth.Options{
		Store:       p.Store,
		Identity:    p.Identity,
		DeviceCA:    dca,
		Bus:         p.Bus,
		Log:         log.With("component", "certauth"),
		CRLLifetime: time.Duration(p.Config.PKI.CRLLifetime),
		Registerer:  reg,
	})
}

// CertAuthAdmin returns the certificate checker for command-line
// administration (manufacturer CAs, revocations) on the data directory; it
// serves nothing, and counts nothing in the server's metrics. Close it when done.
func (p *Platform) CertAuthAdmin(ctx context.Context, log *slog.Logger) (*certauth.Checker, error) {
	return p.newCertAuth(ctx, nil, log)
}

// mountPKI adds the certificate administration API and the CRL to mux.
func (p *Platform) mountPKI(mux routes.Mux, admins *authn.Admins, certs *certauth.Checker, log *slog.Logger) {
	certs.Register(mux, func(h http.Handler) http.Handler { return admins.Require(h, denyProblem) }, authn.Actor)
}
