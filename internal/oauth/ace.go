package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"

	"github.com/thingid/thingid/internal/tokens"
)

// The token and device authorization endpoints for requests that arrive in
// another encoding than the form: ACE's CBOR (internal/ace, RFC 9200). They
// run the same client authentication, grants, scopes, audiences and device
// flow as the HTTPS endpoints, on the parameters as the form would carry
// them; only the access token is signed by the caller (a CWT).

// Signer signs the claims of an access token.
type Signer func(tokens.Claims) (string, error)

// TokenAnswer is a successful token request (RFC 6749 §5.1).
type TokenAnswer struct {
	AccessToken  string
	RefreshToken string // "" unless the grant issues one (device code, refresh)
	ExpiresIn    int64  // seconds
	Scope        string // the granted scopes, space-separated
}

// DeviceAnswer is a device authorization response (RFC 8628 §3.2).
type DeviceAnswer struct {
	DeviceCode, UserCode, VerificationURI, VerificationURIComplete string
	ExpiresIn, Interval                                            int64 // seconds
}

type signerKey struct{}

// signer is the Signer of a ConstrainedToken request, else is's JWTs.
func signer(ctx context.Context, is *tokens.Issuer) Signer {
	if f, ok := ctx.Value(signerKey{}).(Signer); ok {
		return f
	}
	return is.AccessToken
}

// constrainedRequest carries what client authentication reads of a request:
// the certificate chain the client proved (mutual TLS or DTLS), no headers.
func constrainedRequest(ctx context.Context, chain []*x509.Certificate) *http.Request {
	r := (&http.Request{Method: http.MethodPost, Header: http.Header{}}).WithContext(ctx)
	if len(chain) > 0 {
		r.TLS = &tls.ConnectionState{PeerCertificates: chain}
	}
	return r
}

// ConstrainedToken answers a token request of form from the client that
// proved chain (nil for none), signing its access token with sign. Extension
// grants (UMA) are not served: their tokens are JWTs for HTTP resource
// servers. Errors are *Error; a server error wraps its cause.
func (s *Server) ConstrainedToken(ctx context.Context, form url.Values, chain []*x509.Certificate, sign Signer) (*TokenAnswer, error) {
	gt := form.Get("grant_type")
	resp, err := s.constrainedToken(ctx, form, chain, sign)
	if err != nil {
		s.metrics.token(s.grantLabel(gt), errorCode(err))
		return nil, asError(err)
	}
	s.metrics.token(s.grantLabel(gt), "")
	return &TokenAnswer{AccessToken: resp.AccessToken, RefreshToken: resp.RefreshToken, ExpiresIn: resp.ExpiresIn, Scope: resp.Scope}, nil
}

func (s *Server) constrainedToken(ctx context.Context, form url.Values, chain []*x509.Certificate, sign Signer) (*tokenResponse, error) {
	ctx = s.cache.forRequest(ctx)
	c, _, err := s.tokenClient(constrainedRequest(ctx, chain), form)
	if err != nil {
		return nil, err
	}
	if _, isExt := s.opts.Extensions[form.Get("grant_type")]; isExt {
		return nil, ErrUnsupportedGrantType.WithDescription("%q is not served to constrained clients", form.Get("grant_type"))
	}
	return s.grant(context.WithValue(ctx, signerKey{}, sign), c, form)
}

// ConstrainedDeviceAuthorization starts the device flow (RFC 8628 §3.1) for
// the client of form that proved chain (nil for none). Errors are *Error.
func (s *Server) ConstrainedDeviceAuthorization(ctx context.Context, form url.Values, chain []*x509.Certificate) (*DeviceAnswer, error) {
	c, _, err := s.clientAuth(constrainedRequest(ctx, chain), form)
	if err == nil {
		var d *deviceAuthResponse
		if d, err = s.deviceAuthorization(ctx, c, form); err == nil {
			return &DeviceAnswer{DeviceCode: d.DeviceCode, UserCode: d.UserCode, VerificationURI: d.VerificationURI,
				VerificationURIComplete: d.VerificationURIComplete, ExpiresIn: d.ExpiresIn, Interval: d.Interval}, nil
		}
	}
	return nil, asError(err)
}

// asError is err as the *Error it answers; the cause of a server error stays
// reachable (errors.Unwrap) for the caller's log.
func asError(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return serverError(err)
}
