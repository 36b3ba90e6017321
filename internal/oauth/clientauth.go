package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/thingid/thingid/internal/store"
)

// Token endpoint authentication methods (RFC 7591 §2, RFC 7523 §2.2).
const (
	methodBasic         = "client_secret_basic"
	methodPost          = "client_secret_post"
	methodPrivateKeyJWT = "private_key_jwt"
	methodNone          = "none"

	assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
)

const (
	// maxAssertionLifetime bounds exp of a client assertion from now: RFC 7523
	// §3 lets the server refuse assertions with an unreasonably far exp, and
	// the replay record lives as long as the assertion does.
	maxAssertionLifetime = 5 * time.Minute
	assertionLeeway      = 30 * time.Second
)

// clientRequest reads the form of a client's POST and authenticates the
// client (device authorization, revocation, introspection); false when it
// has answered w with the error.
func (s *Server) clientRequest(w http.ResponseWriter, r *http.Request) (url.Values, *store.Client, bool) {
	form, ferr := readForm(w, r)
	if ferr != nil {
		s.writeError(w, r, ferr)
		return nil, nil, false
	}
	c, err := s.authenticateClient(r, form)
	if err != nil {
		s.writeError(w, r, err)
		return nil, nil, false
	}
	return form, c, true
}

// authenticateClient identifies the client of a token, device authorization
// or revocation request by exactly one method (RFC 6749 §2.3: more than one
// is invalid_request) and checks it is a method the client may use.
func (s *Server) authenticateClient(r *http.Request, form url.Values) (*store.Client, error) {
	c, _, err := s.clientAuth(r, form)
	return c, err
}

// clientAuth is authenticateClient that also returns the x5t#S256 of the
// client certificate when the client authenticated with it (RFC 8705 §2),
// "" otherwise.
func (s *Server) clientAuth(r *http.Request, form url.Values) (*store.Client, string, error) {
	ctx := r.Context()
	user, pass, hasBasic := r.BasicAuth()
	if !hasBasic && r.Header.Get("Authorization") != "" {
		return nil, "", ErrInvalidClient.WithDescription("unsupported Authorization scheme")
	}
	_, hasSecret := form["client_secret"]
	_, hasAssertion := form["client_assertion"]
	n := 0
	for _, b := range []bool{hasBasic, hasSecret, hasAssertion} {
		if b {
			n++
		}
	}
	if n > 1 {
		return nil, "", ErrInvalidRequest.WithDescription("use exactly one client authentication method (RFC 6749 §2.3)")
	}
	formID := form.Get("client_id")
	switch {
	case hasBasic:
		// RFC 6749 §2.3.1: both parts are form-urlencoded before base64.
		id, err1 := url.QueryUnescape(user)
		secret, err2 := url.QueryUnescape(pass)
		if err1 != nil || err2 != nil {
			return nil, "", basicFailure("malformed Basic credentials")
		}
		if formID != "" && formID != id {
			return nil, "", ErrInvalidRequest.WithDescription("client_id does not match the Basic credentials")
		}
		c, err := s.secretClient(ctx, id, secret, methodBasic)
		if e, ok := err.(*Error); ok && e.Code == ErrInvalidClient.Code {
			e.basic = true
		}
		return c, "", err
	case hasSecret:
		c, err := s.secretClient(ctx, formID, form.Get("client_secret"), methodPost)
		return c, "", err
	case hasAssertion:
		if form.Get("client_assertion_type") != assertionType {
			return nil, "", ErrInvalidRequest.WithDescription("client_assertion_type must be " + assertionType)
		}
		c, err := s.assertionClient(ctx, formID, form.Get("client_assertion"))
		return c, "", err
	default:
		if formID == "" {
			return nil, "", ErrInvalidClient.WithDescription("client authentication required")
		}
		c, err := s.loadClient(ctx, formID)
		if err != nil {
			return nil, "", err
		}
		if ok, err := pskClient(r, c); ok {
			if err != nil {
				return nil, "", err
			}
			return c, "", nil
		}
		if chain := peerCertificates(r); chain != nil && (allowsMethod(c, methodTLSClientAuth) || allowsMethod(c, methodSelfSignedTLS)) {
			x5t, err := s.certificateClient(ctx, c, chain)
			if err != nil {
				return nil, "", err
			}
			return c, x5t, nil
		}
		if c.Type != store.ClientPublic || c.TokenEndpointAuthMethod != methodNone {
			if allowsMethod(c, methodTLSClientAuth) || allowsMethod(c, methodSelfSignedTLS) {
				return nil, "", ErrInvalidClient.WithDescription("this client authenticates with its certificate: connect with mutual TLS")
			}
			return nil, "", ErrInvalidClient.WithDescription("this client must authenticate")
		}
		return c, "", nil
	}
}

// registeredMethod names how c authenticates at the token endpoint.
func registeredMethod(c *store.Client) string {
	if isThingClient(c) {
		return methodTLSClientAuth
	}
	return c.TokenEndpointAuthMethod
}

func basicFailure(desc string) *Error {
	e := ErrInvalidClient.WithDescription("%s", desc)
	e.basic = true
	return e
}

// loadClient returns an enabled client; unknown and disabled are invalid_client.
func (s *Server) loadClient(ctx context.Context, id string) (*store.Client, error) {
	if id == "" {
		return nil, ErrInvalidClient.WithDescription("client_id is required")
	}
	c, err := s.cachedClient(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, ErrInvalidClient.WithDescription("client authentication failed")
	}
	if err != nil {
		return nil, serverError(err)
	}
	if c.Disabled {
		return nil, ErrInvalidClient.WithDescription("client is disabled")
	}
	return c, nil
}

// cachedClient is getClient on the store, through the token endpoint's cache.
// The client it returns may be shared with concurrent requests: read only.
func (s *Server) cachedClient(ctx context.Context, id string) (*store.Client, error) {
	k := cacheKey{clientID: id}
	if c, ok := s.cache.get(ctx, k).(*store.Client); ok {
		return c, nil
	}
	c, err := s.getClient(ctx, s.st, id)
	if err == nil {
		s.cache.put(ctx, k, c)
	}
	return c, err
}

func (s *Server) secretClient(ctx context.Context, id, secret, method string) (*store.Client, error) {
	c, err := s.loadClient(ctx, id)
	if err != nil {
		return nil, err
	}
	// The method a client is registered for is no secret (it is in its
	// registration); saying it tells a developer what to fix. It is checked
	// before the secret, so the answer says nothing about the secret.
	if !allowsMethod(c, method) {
		return nil, ErrInvalidClient.WithDescription("this client is registered for token_endpoint_auth_method %s, but authenticated with %s", registeredMethod(c), method)
	}
	if !s.secretMatches(c, secret) {
		return nil, ErrInvalidClient.WithDescription("client authentication failed")
	}
	return c, nil
}

// assertionClient checks a private_key_jwt client assertion (RFC 7523 §3,
// §2.2): iss = sub = client_id, aud our issuer or token endpoint, a short
// exp, a single-use jti, and a signature by one of the client's registered
// keys with that key's own algorithm.
func (s *Server) assertionClient(ctx context.Context, formID, raw string) (*store.Client, error) {
	fail := ErrInvalidClient.WithDescription("client assertion refused")
	if len(raw) > 8<<10 {
		return nil, fail
	}
	unverified, err := jwt.ParseInsecure([]byte(raw))
	if err != nil {
		return nil, fail
	}
	iss, _ := unverified.Issuer()
	if formID != "" && formID != iss {
		return nil, ErrInvalidRequest.WithDescription("client_id does not match the assertion's issuer")
	}
	c, err := s.loadClient(ctx, iss)
	if err != nil {
		return nil, err
	}
	if !allowsMethod(c, methodPrivateKeyJWT) {
		return nil, fail
	}
	_, refusal, err := s.verifyAssertion(ctx, c, raw, "client-assertion", jwt.WithSubject(c.ID))
	if err != nil {
		return nil, serverError(err)
	}
	if refusal != "" {
		return nil, ErrInvalidClient.WithDescription("client assertion %s", refusal)
	}
	return c, nil
}

// ClientSecretValid checks a client's secret as the token endpoint does
// (the keyed hash, compared in constant time), for another door: the
// directory's service-account binds. Only an enabled confidential client
// that authenticates with a secret has one that can be valid.
func (s *Server) ClientSecretValid(ctx context.Context, id, secret string) (bool, error) {
	if id == "" {
		return false, nil
	}
	c, err := s.cachedClient(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return false, nil
	case err != nil:
		return false, err
	case c.Disabled || c.Type != store.ClientConfidential || !(allowsMethod(c, methodBasic) || allowsMethod(c, methodPost)):
		return false, nil
	}
	return s.secretMatches(c, secret), nil
}
