package oauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"

	"github.com/thingid/thingid/internal/store"
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

// Proof is what a constrained client proved on its connection: the
// certificate chain of mutual TLS or DTLS (leaf first), or the thing whose
// pre-shared key made its DTLS session (the CoAP gateway's PSK callback
// decided that: the key was the thing's current one and the thing active).
type Proof struct {
	Chain    []*x509.Certificate
	PSKThing string
	// Authorization is the HTTP Authorization header of an HTTPS request:
	// a client's Basic credentials (client_secret_basic).
	Authorization string
}

type pskThingKey struct{}

// constrainedRequest carries what client authentication reads of a request:
// the certificate chain the client proved, or the thing of its pre-shared
// key (a context value only this file sets), no headers.
func constrainedRequest(ctx context.Context, proof Proof) *http.Request {
	if proof.PSKThing != "" {
		ctx = context.WithValue(ctx, pskThingKey{}, proof.PSKThing)
	}
	r := (&http.Request{Method: http.MethodPost, Header: http.Header{}}).WithContext(ctx)
	if proof.Authorization != "" {
		r.Header.Set("Authorization", proof.Authorization)
	}
	if len(proof.Chain) > 0 {
		r.TLS = &tls.ConnectionState{PeerCertificates: proof.Chain}
	}
	return r
}

// pskClient authenticates c by the pre-shared key of the DTLS session, when
// the request came with one: only the client of the thing the key is for.
// ok is false when the request proved no pre-shared key.
func pskClient(r *http.Request, c *store.Client) (ok bool, err error) {
	thing, _ := r.Context().Value(pskThingKey{}).(string)
	switch {
	case thing == "":
		return false, nil
	case !isThingClient(c):
		return true, ErrInvalidClient.WithDescription("a DTLS pre-shared key authenticates the client of its thing only, not a registered client")
	case c.ThingID != thing:
		return true, ErrInvalidClient.WithDescription("the DTLS pre-shared key belongs to another thing than client_id")
	}
	return true, nil
}

// ConstrainedToken answers a token request of form from the client that
// proved proof (empty for nothing), signing its access token with sign. Extension
// grants (UMA) are not served: their tokens are JWTs for HTTP resource
// servers. Errors are *Error; a server error wraps its cause.
func (s *Server) ConstrainedToken(ctx context.Context, form url.Values, proof Proof, sign Signer) (*TokenAnswer, error) {
	gt := form.Get("grant_type")
	resp, err := s.constrainedToken(ctx, form, proof, sign)
	if err != nil {
		s.metrics.token(s.grantLabel(gt), errorCode(err))
		return nil, asError(err)
	}
	s.metrics.token(s.grantLabel(gt), "")
	return &TokenAnswer{AccessToken: resp.AccessToken, RefreshToken: resp.RefreshToken, ExpiresIn: resp.ExpiresIn, Scope: resp.Scope}, nil
}

func (s *Server) constrainedToken(ctx context.Context, form url.Values, proof Proof, sign Signer) (*tokenResponse, error) {
	ctx = s.cache.forRequest(ctx)
	c, _, err := s.tokenClient(constrainedRequest(ctx, proof), form)
	if err != nil {
		return nil, err
	}
	if _, isExt := s.opts.Extensions[form.Get("grant_type")]; isExt {
		return nil, ErrUnsupportedGrantType.WithDescription("%q is not served to constrained clients", form.Get("grant_type"))
	}
	return s.grant(context.WithValue(ctx, signerKey{}, sign), c, form)
}

// ConstrainedDeviceAuthorization starts the device flow (RFC 8628 §3.1) for
// the client of form that proved proof (empty for nothing). Errors are *Error.
func (s *Server) ConstrainedDeviceAuthorization(ctx context.Context, form url.Values, proof Proof) (*DeviceAnswer, error) {
	c, _, err := s.clientAuth(constrainedRequest(ctx, proof), form)
	if err == nil {
		var d *deviceAuthResponse
		if d, err = s.deviceAuthorization(ctx, c, form); err == nil {
			return &DeviceAnswer{DeviceCode: d.DeviceCode, UserCode: d.UserCode, VerificationURI: d.VerificationURI,
				VerificationURIComplete: d.VerificationURIComplete, ExpiresIn: d.ExpiresIn, Interval: d.Interval}, nil
		}
	}
	return nil, asError(err)
}

// ConstrainedIntrospector authenticates the client of an ACE
// introspection request (form and proof) as the token endpoint does, and
// returns its id: a registered confidential client, never a thing's or a
// public one, as at /oauth2/introspect (RFC 7662 §2.1). Errors are *Error.
func (s *Server) ConstrainedIntrospector(ctx context.Context, form url.Values, proof Proof) (string, error) {
	c, _, err := s.clientAuth(constrainedRequest(ctx, proof), form)
	if err != nil {
		return "", asError(err)
	}
	if err := refuseIntrospector(c); err != nil {
		return "", err
	}
	return c.ID, nil
}

// Disclose is /oauth2/introspect's rule (ResourceServers.Disclose on
// oauth.resourceServers) for ACE's introspection of a CWT: the audiences
// client caller may learn of a token issued to tokenClient for aud, false
// when it may learn nothing.
func (s *Server) Disclose(caller, tokenClient string, aud []string) ([]string, bool) {
	return s.opts.ResourceServers.Disclose(caller, tokenClient, aud)
}

// asError is err as the *Error it answers; the cause of a server error stays
// reachable (errors.Unwrap) for the caller's log.
func asError(err error) *Error {
	if e, ok := err.(*Error); ok {
		return e
	}
	return serverError(err)
}
