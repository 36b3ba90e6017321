package oauth

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"net/http"
	"slices"

	jwkcert "github.com/lestrrat-go/jwx/v3/cert"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// Mutual-TLS client authentication methods (RFC 8705 §2.1, §2.2).
const (
	methodTLSClientAuth  = "tls_client_auth"
	methodSelfSignedTLS  = "self_signed_tls_client_auth"
	maxPresentedCertsLen = 8
)

// Certificates decides whether a client certificate identifies an active
// thing (*certauth.Checker).
type Certificates interface {
	Verify(ctx context.Context, chain []*x509.Certificate) (*certauth.Identity, error)
	// Revoked tells whether the certificate of thumbprint x5t is revoked.
	Revoked(x5t string) bool
}

// peerCertificates is the client's certificate chain on a mutual-TLS
// connection, leaf first; nil without one.
func peerCertificates(r *http.Request) []*x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates
}

// thingClient is the client every thing is without registration, under the
// thing's own id: it authenticates with a certificate that names it
// (tls_client_auth) or, when the thing registered public keys, with a signed
// assertion or a self-signed certificate of one of those keys. It may get
// tokens for itself and ask its owner for access with the device flow.
func (s *Server) thingClient(t *store.Thing) *store.Client {
	c := &store.Client{
		Meta:                    store.Meta{ID: t.ID},
		Name:                    thingName(t),
		Type:                    store.ClientConfidential,
		TokenEndpointAuthMethod: methodTLSClientAuth,
		GrantTypes:              []string{GrantClientCredentials, GrantDeviceCode, GrantRefreshToken},
		Scopes:                  slices.Clone(s.opts.ThingScopes),
		JWKS:                    t.JWKS,
		ThingID:                 t.ID,
		Disabled:                t.Status != store.StatusActive,
	}
	if len(t.JWKS) > 0 {
		c.GrantTypes = append(c.GrantTypes, GrantJWTBearer)
	}
	for gt, x := range s.opts.Extensions {
		if x.Things {
			c.GrantTypes = append(c.GrantTypes, gt)
		}
	}
	return c
}

func thingName(t *store.Thing) string {
	if t.DisplayName != "" {
		return t.DisplayName
	}
	if t.Model != "" && t.SerialNumber != "" {
		return t.Model + " " + t.SerialNumber
	}
	return t.ID
}

// clientReader reads clients and things: the store or a transaction.
type clientReader interface {
	GetClient(ctx context.Context, id string) (*store.Client, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
}

// getClient returns the registered client id or, when there is none, the
// client of the thing with that id (thingClient); store.ErrNotFound when
// neither exists. Disabled clients are returned: callers decide.
func (s *Server) getClient(ctx context.Context, r clientReader, id string) (*store.Client, error) {
	c, err := r.GetClient(ctx, id)
	if !errors.Is(err, store.ErrNotFound) {
		return c, err
	}
	t, err := r.GetThing(ctx, id)
	if err != nil {
		return nil, err
	}
	return s.thingClient(t), nil
}

// isThingClient tells the client of a thing (thingClient) from a registered one.
func isThingClient(c *store.Client) bool { return c.ThingID != "" && c.ID == c.ThingID }

// allowsMethod tells whether c may authenticate by method: a registered
// client only by its own; the client of a thing by a certificate naming it,
// and by its registered keys when it has some.
func allowsMethod(c *store.Client, method string) bool {
	if !isThingClient(c) {
		return c.TokenEndpointAuthMethod == method
	}
	switch method {
	case methodTLSClientAuth:
		return true
	case methodSelfSignedTLS, methodPrivateKeyJWT:
		return len(c.JWKS) > 0
	}
	return false
}

// certificateClient authenticates c by the client certificate of the
// connection (RFC 8705 §2) and returns its x5t#S256, to which the tokens of
// this request are bound (RFC 8705 §3). With tls_client_auth the certificate
// must be one certauth accepts (platform or manufacturer CA, valid, not
// revoked, an active thing with a matching serial) and name the thing the
// client stands for; with self_signed_tls_client_auth it must be one of the
// client's registered keys (RFC 8705 §2.2), checked for validity dates only.
func (s *Server) certificateClient(ctx context.Context, c *store.Client, chain []*x509.Certificate) (string, error) {
	if len(chain) > maxPresentedCertsLen {
		return "", ErrInvalidClient.WithDescription("too many certificates presented")
	}
	leaf := chain[0]
	if allowsMethod(c, methodTLSClientAuth) && s.opts.Certificates != nil {
		id, err := s.opts.Certificates.Verify(ctx, chain)
		switch {
		case err == nil && c.ThingID != "" && id.Thing.ID == c.ThingID:
			return id.Thumbprint, nil
		case err == nil:
			// A genuine certificate of another thing: RFC 8705 §2.1 binds the
			// certificate to the client, not just to the CA.
			return "", ErrInvalidClient.WithDescription("the client certificate belongs to another thing than client_id")
		case !errors.Is(err, certauth.ErrUnknownCA) || !allowsMethod(c, methodSelfSignedTLS):
			if certauth.Refused(err) {
				return "", ErrInvalidClient.WithDescription("client certificate refused: %v", err)
			}
			return "", serverError(err)
		}
	}
	if !allowsMethod(c, methodSelfSignedTLS) {
		return "", ErrInvalidClient.WithDescription("this client does not authenticate with a certificate")
	}
	now := s.now()
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return "", ErrInvalidClient.WithDescription("client certificate is outside its validity period")
	}
	ok, err := jwksHoldsCertificate(c.JWKS, leaf)
	if err != nil {
		return "", serverError(err)
	}
	if !ok {
		return "", ErrInvalidClient.WithDescription("the client certificate is not one of the client's registered keys")
	}
	return tokens.CertThumbprint(leaf), nil
}

// jwksHoldsCertificate tells whether the set registers cert: a key whose x5c
// starts with it, or, for a key without x5c, the same public key (RFC 8705
// §2.2: the certificate is matched against the registered keys).
func jwksHoldsCertificate(raw []byte, cert *x509.Certificate) (bool, error) {
	set, err := jwk.Parse(raw)
	if err != nil {
		return false, err
	}
	certKey, err := jwk.Import(cert.PublicKey)
	if err != nil {
		return false, nil // a key type we do not register
	}
	want, err := certKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return false, nil
	}
	for i := range set.Len() {
		k, _ := set.Key(i)
		if chain, ok := k.X509CertChain(); ok && chain.Len() > 0 {
			first, _ := chain.Get(0)
			if c, err := jwkcert.Parse(first); err == nil && c.Equal(cert) {
				return true, nil
			}
			continue
		}
		if tp, err := k.Thumbprint(crypto.SHA256); err == nil && slices.Equal(tp, want) {
			return true, nil
		}
	}
	return false, nil
}

// certBindingKey carries the x5t#S256 of the token request's client
// certificate to issue.
type certBindingKey struct{}

func withCertBinding(ctx context.Context, x5t string) context.Context {
	if x5t == "" {
		return ctx
	}
	return context.WithValue(ctx, certBindingKey{}, x5t)
}

// certBinding is the x5t#S256 the tokens of this request are bound to, "" for none.
func certBinding(ctx context.Context) string {
	x5t, _ := ctx.Value(certBindingKey{}).(string)
	return x5t
}
