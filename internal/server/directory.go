package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/directory"
	"github.com/thingid/thingid/internal/netlimit"
)

// startDirectory starts the LDAP listeners configured in ldap (LDAPS and
// StartTLS, on the platform's server certificate), accepting through
// conns; passwords are checked by sign-in's code (its own Sessions on the
// same key and store, so the counters are the same), certificates by certs.
// stop closes the listeners and ends every session.
func (p *Platform) startDirectory(certs *certauth.Checker, admins *authn.Admins, reg prometheus.Registerer, conns *netlimit.Limiter, log *slog.Logger, out io.Writer) (stop func(), err error) {
	c := p.Config.LDAP
	if !c.Enabled {
		return func() {}, nil
	}
	log = log.With("component", "ldap")
	if _, err := directory.ParseDN(c.BaseDN); err != nil {
		return nil, fmt.Errorf("ldap.baseDN: %w", err)
	}
	cert, err := p.serverCertificate()
	if err != nil {
		return nil, err
	}
	sessions, err := p.newSessions(nil, nil, log)
	if err != nil {
		return nil, err
	}
	d, err := directory.New(directory.Options{
		BaseDN: c.BaseDN,
		TLS: &tls.Config{
			MinVersion:   tls.VersionTLS12,
			Certificates: []tls.Certificate{cert},
			// A thing's certificate (SASL EXTERNAL) is asked for but
			// optional; certauth decides what it proves, never the handshake.
			ClientAuth: tls.RequestClientCert,
		},
		Limits: directory.Limits{
			MaxMessageBytes: c.Limits.MaxMessageBytes,
			IdleTimeout:     time.Duration(c.Limits.IdleTimeout),
			ReadTimeout:     time.Duration(c.Limits.ReadTimeout),
			SizeLimit:       c.Limits.SizeLimit,
			TimeLimit:       time.Duration(c.Limits.TimeLimit),
		},
		Store:             p.Store,
		Passwords:         sessions,
		Writer:            p.Identity,
		ServiceAccounts:   c.ServiceAccounts,
		ClientSecrets:     clientSecrets{sessions, p},
		VerifyCertificate: certificateThing(certs),
		IsAdministrator:   admins.IsAdministrator,
		Log:               log,
		Registerer:        reg, // served at /metrics of the main listener
	})
	if err != nil {
		return nil, err
	}
	var listeners []net.Listener
	stop = func() {
		for _, ln := range listeners {
			ln.Close()
		}
		d.Close()
	}
	for _, l := range []struct {
		field, addr, name, scheme string
		ldaps                     bool
	}{
		{"ldap.ldapsAddress", c.LDAPSAddress, "ldaps", "ldaps", true},
		{"ldap.startTLSAddress", c.StartTLSAddress, "ldap", "ldap", false},
	} {
		if l.addr == "" {
			continue
		}
		ln, err := net.Listen("tcp", l.addr)
		if err != nil {
			stop()
			return nil, fmt.Errorf("listen on %s (%s): %w", l.addr, l.field, err)
		}
		// A refused LDAP client is closed at once: there is no answer it
		// could read before a bind.
		ln = conns.Listen(ln, netlimit.Policy{Name: l.name, PerAddress: c.Limits.ConnectionsPerAddress})
		listeners = append(listeners, ln)
		go func() {
			if err := d.Serve(ln, l.ldaps); err != nil && !errors.Is(err, net.ErrClosed) {
				log.Error("LDAP listener stopped", "listener", l.name, "err", err)
			}
		}()
		log.Info("LDAP serving", "listener", l.name, "address", ln.Addr().String(), "baseDN", c.BaseDN)
		fmt.Fprintf(out, "thingid directory (LDAP) is serving on %s://%s (base DN %s)\n", l.scheme, ln.Addr(), c.BaseDN)
	}
	return stop, nil
}

// clientSecrets checks a service account's secret as the token endpoint
// checks its client's, under sign-in's throttling: directory.ClientSecrets.
type clientSecrets struct {
	sessions *authn.Sessions
	p        *Platform
}

func (c clientSecrets) CheckClientSecret(ctx context.Context, client netip.Addr, clientID, secret string) (time.Duration, error) {
	return c.sessions.CheckSecret(ctx, client, "ldap", clientID, func() (bool, error) {
		// Serve made the authorization server before the directory.
		return c.p.oauthServer.Load().ClientSecretValid(ctx, clientID, secret)
	})
}

var _ directory.ClientSecrets = clientSecrets{}
