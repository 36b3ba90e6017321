package oauth

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"

	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// ClientSpec is what an administrator registers (RFC 7591 §2 names on the wire).
type ClientSpec struct {
	Name string `json:"client_name"`
	// Type is confidential (default) or public (RFC 6749 §2.1).
	Type store.ClientType `json:"client_type,omitempty"`
	// TokenEndpointAuthMethod defaults to client_secret_basic for confidential
	// clients and is none for public ones.
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method,omitempty"`
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	GrantTypes              []string        `json:"grant_types"`
	Scopes                  []string        `json:"scopes,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	// Resources are the resource indicators (RFC 8707) the client may ask
	// tokens for, among the platform's (Options.Audience); empty for all.
	Resources []string `json:"resources,omitempty"`
	// DefaultResources are the audiences of a token whose request names
	// no resource, among Resources; empty for all of Resources.
	DefaultResources []string `json:"default_resources,omitempty"`
	// ThingID makes the client stand for a thing: device pairing links it
	// to the approving user.
	ThingID string `json:"thing_id,omitempty"`
}

// ClientError names the field of a ClientSpec that is wrong and why:
// Error() in English (the admin API's answer), which a page translates
// (ui.Refusal).
type ClientError struct{ refusal.FieldError }

func invalidField(field, format string, args ...any) error {
	return &ClientError{refusal.FieldError{Field: field, Src: format, Args: args}}
}

// clientView is a client as the admin API shows it: never a secret hash.
type clientView struct {
	ID                      string           `json:"client_id"`
	Secret                  string           `json:"client_secret,omitempty"` // only in the answer to create
	Name                    string           `json:"client_name"`
	Type                    store.ClientType `json:"client_type"`
	TokenEndpointAuthMethod string           `json:"token_endpoint_auth_method"`
	RedirectURIs            []string         `json:"redirect_uris"`
	GrantTypes              []string         `json:"grant_types"`
	Scopes                  []string         `json:"scopes"`
	Resources               []string         `json:"resources"`
	DefaultResources        []string         `json:"default_resources"`
	JWKS                    json.RawMessage  `json:"jwks,omitempty"`
	ThingID                 string           `json:"thing_id,omitempty"`
	Disabled                bool             `json:"disabled"`
	Created                 time.Time        `json:"created"`
}

func viewOf(c *store.Client) clientView {
	return clientView{
		ID: c.ID, Name: c.Name, Type: c.Type, TokenEndpointAuthMethod: c.TokenEndpointAuthMethod,
		RedirectURIs: nonNil(c.RedirectURIs), GrantTypes: nonNil(c.GrantTypes), Scopes: nonNil(c.Scopes),
		Resources: nonNil(c.Resources), DefaultResources: nonNil(c.DefaultResources),
		JWKS: c.JWKS, ThingID: c.ThingID, Disabled: c.Disabled, Created: c.Created,
	}
}

func nonNil(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

// secretHash is the HMAC-SHA256 a client secret is stored under, bound to
// the client ID so that a hash cannot be moved to another client.
func (s *Server) secretHash(clientID, secret string) []byte {
	return keyedHash(s.secretKey, "client-secret", clientID, secret)
}

func (s *Server) secretMatches(c *store.Client, secret string) bool {
	return len(c.SecretHash) > 0 && hmac.Equal(c.SecretHash, s.secretHash(c.ID, secret))
}

// CreateClient validates spec and registers the client. For a confidential
// client authenticating with a secret, it returns the secret (256 random
// bits), which is shown this once and stored only as a keyed hash.
func (s *Server) CreateClient(ctx context.Context, actor string, spec ClientSpec) (*store.Client, string, error) {
	c, err := s.validateClient(ctx, spec)
	if err != nil {
		return nil, "", err
	}
	var secret string
	err = s.st.WithTx(ctx, func(tx store.Tx) error {
		c.SecretHash = nil
		if err := tx.CreateClient(ctx, c); err != nil {
			return err
		}
		if c.TokenEndpointAuthMethod == methodBasic || c.TokenEndpointAuthMethod == methodPost {
			// The hash binds the ID, which the store assigns on create.
			secret = base64.RawURLEncoding.EncodeToString(randomBytes(32))
			h := s.secretHash(c.ID, secret)
			stored, err := tx.UpdateClient(ctx, c.ID, 0, func(x *store.Client) error { x.SecretHash = h; return nil })
			if err != nil {
				return err
			}
			*c = *stored
		}
		return s.audit(ctx, tx, actor, "client.create", clientRef(c.ID), "")
	})
	if err != nil {
		return nil, "", err
	}
	return c, secret, nil
}

// GetClient returns a registered client (store.ErrNotFound when missing).
func (s *Server) GetClient(ctx context.Context, id string) (*store.Client, error) {
	return s.st.GetClient(ctx, id)
}

// ListClients pages through clients in creation order.
func (s *Server) ListClients(ctx context.Context, offset, limit int) ([]*store.Client, int, error) {
	return s.st.ListClients(ctx, offset, limit)
}

// DeleteClient deletes a client and revokes all its grants in one
// transaction, then publishes the revocations.
func (s *Server) DeleteClient(ctx context.Context, actor, id string) error {
	var revoked []string
	now := s.now()
	err := s.st.WithTx(ctx, func(tx store.Tx) error {
		revoked = revoked[:0]
		grants, err := tx.ListGrants(ctx, store.GrantFilter{ClientID: id})
		if err != nil {
			return err
		}
		for _, g := range grants {
			if err := tx.RevokeGrant(ctx, g.ID, now); err != nil {
				return err
			}
			revoked = append(revoked, g.ID)
		}
		if err := tx.DeleteClient(ctx, id); err != nil {
			return err
		}
		return s.audit(ctx, tx, actor, "client.delete", clientRef(id), "")
	})
	if err != nil {
		return err
	}
	for _, g := range revoked {
		s.publishRevoke(actor, g, "client deleted", now)
	}
	return nil
}

// RotateSecret gives a client that authenticates with a secret a new one
// (256 random bits), returned this once; the old secret stops working at
// once. Tokens and grants issued before stay: revoke them apart when the
// old secret leaked.
func (s *Server) RotateSecret(ctx context.Context, actor, id string) (string, error) {
	secret := base64.RawURLEncoding.EncodeToString(randomBytes(32))
	err := s.st.WithTx(ctx, func(tx store.Tx) error {
		_, err := tx.UpdateClient(ctx, id, 0, func(c *store.Client) error {
			if c.TokenEndpointAuthMethod != methodBasic && c.TokenEndpointAuthMethod != methodPost {
				return invalidField("token_endpoint_auth_method", "the client authenticates with %s, not with a secret", c.TokenEndpointAuthMethod)
			}
			c.SecretHash = s.secretHash(c.ID, secret)
			return nil
		})
		if err != nil {
			return err
		}
		return s.audit(ctx, tx, actor, "client.secret-rotate", clientRef(id), "")
	})
	if err != nil {
		return "", err
	}
	return secret, nil
}

func clientRef(id string) store.Ref { return store.Ref{Kind: "client", ID: id} }

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never fails (Go 1.24+)
	return b
}

const (
	maxClientName = 200
	maxListItems  = 50
	maxJWKSBytes  = 16 << 10
)

// validateClient checks spec and returns the client to store.
func (s *Server) validateClient(ctx context.Context, spec ClientSpec) (*store.Client, error) {
	c := &store.Client{Name: strings.TrimSpace(spec.Name), Type: spec.Type, TokenEndpointAuthMethod: spec.TokenEndpointAuthMethod}
	if c.Name == "" || len(c.Name) > maxClientName {
		return nil, invalidField("client_name", "is required, at most %d characters", maxClientName)
	}
	switch c.Type {
	case "":
		c.Type = store.ClientConfidential
	case store.ClientConfidential, store.ClientPublic:
	default:
		return nil, invalidField("client_type", "must be confidential or public")
	}
	if c.Type == store.ClientPublic {
		// RFC 6749 §2.1: a public client cannot keep a secret.
		if c.TokenEndpointAuthMethod != "" && c.TokenEndpointAuthMethod != methodNone {
			return nil, invalidField("token_endpoint_auth_method", "a public client has no credentials: it must be none")
		}
		c.TokenEndpointAuthMethod = methodNone
	} else {
		if c.TokenEndpointAuthMethod == "" {
			c.TokenEndpointAuthMethod = methodBasic
		}
		switch c.TokenEndpointAuthMethod {
		case methodBasic, methodPost, methodPrivateKeyJWT, methodSelfSignedTLS:
		case methodTLSClientAuth:
			// The certificate must name the thing (certauth); other subjects
			// are not matched (RFC 8705 §2.1.2 metadata is not supported).
			if spec.ThingID == "" {
				return nil, invalidField("thing_id", "tls_client_auth needs the thing whose certificate the client presents")
			}
		default:
			return nil, invalidField("token_endpoint_auth_method", "must be one of client_secret_basic, client_secret_post, private_key_jwt, tls_client_auth, self_signed_tls_client_auth for a confidential client")
		}
	}
	if len(spec.RedirectURIs) > maxListItems {
		return nil, invalidField("redirect_uris", "at most %d", maxListItems)
	}
	for i, u := range spec.RedirectURIs {
		if err := checkRedirectURI(fmt.Sprintf("redirect_uris[%d]", i), u); err != nil {
			return nil, err
		}
	}
	c.RedirectURIs = slices.Clone(spec.RedirectURIs)
	grantTypes := s.grantTypes()
	if len(spec.GrantTypes) == 0 {
		return nil, invalidField("grant_types", "at least one of %s", strings.Join(grantTypes, ", "))
	}
	for i, g := range spec.GrantTypes {
		if !slices.Contains(grantTypes, g) {
			return nil, invalidField(fmt.Sprintf("grant_types[%d]", i), "%q is not supported (supported: %s)", g, strings.Join(grantTypes, ", "))
		}
		if slices.Contains(spec.GrantTypes[:i], g) {
			return nil, invalidField(fmt.Sprintf("grant_types[%d]", i), "%q is listed twice", g)
		}
	}
	if c.Type == store.ClientPublic && slices.Contains(spec.GrantTypes, GrantClientCredentials) {
		return nil, invalidField("grant_types", "client_credentials needs a confidential client (RFC 6749 §4.4)")
	}
	if slices.Contains(spec.GrantTypes, GrantRefreshToken) && !slices.Contains(spec.GrantTypes, GrantDeviceCode) && !slices.Contains(spec.GrantTypes, GrantAuthorizationCode) {
		return nil, invalidField("grant_types", "refresh_token needs a grant that issues refresh tokens (device_code, authorization_code)")
	}
	if slices.Contains(spec.GrantTypes, GrantAuthorizationCode) && len(spec.RedirectURIs) == 0 {
		return nil, invalidField("redirect_uris", "authorization_code needs at least one redirect URI")
	}
	if slices.Contains(spec.GrantTypes, GrantJWTBearer) && c.TokenEndpointAuthMethod != methodPrivateKeyJWT {
		return nil, invalidField("grant_types", "jwt-bearer needs registered keys (token_endpoint_auth_method private_key_jwt)")
	}
	c.GrantTypes = slices.Clone(spec.GrantTypes)
	if len(spec.Scopes) > maxListItems {
		return nil, invalidField("scopes", "at most %d", maxListItems)
	}
	for i, sc := range spec.Scopes {
		switch {
		case !validScopeToken(sc):
			return nil, invalidField(fmt.Sprintf("scopes[%d]", i), "%q is not a scope token (RFC 6749 §3.3)", sc)
		case s.opts.Scopes != nil && !slices.Contains(s.opts.Scopes, sc):
			return nil, invalidField(fmt.Sprintf("scopes[%d]", i), "%q is not a scope of this server", sc)
		case slices.Contains(spec.Scopes[:i], sc):
			return nil, invalidField(fmt.Sprintf("scopes[%d]", i), "%q is listed twice", sc)
		}
	}
	c.Scopes = slices.Clone(spec.Scopes)
	if err := s.checkClientResources(c, spec.Resources, spec.DefaultResources); err != nil {
		return nil, err
	}
	if c.TokenEndpointAuthMethod == methodPrivateKeyJWT || c.TokenEndpointAuthMethod == methodSelfSignedTLS {
		if err := checkClientJWKS(spec.JWKS); err != nil {
			return nil, invalidField("jwks", "%v", err)
		}
		c.JWKS = slices.Clone(spec.JWKS)
	} else if len(spec.JWKS) > 0 {
		return nil, invalidField("jwks", "only private_key_jwt and self_signed_tls_client_auth clients register keys")
	}
	if spec.ThingID != "" {
		if _, err := s.opts.Identities.GetThing(ctx, spec.ThingID); errors.Is(err, store.ErrNotFound) {
			return nil, invalidField("thing_id", "no thing %q", spec.ThingID)
		} else if err != nil {
			return nil, err
		}
		c.ThingID = spec.ThingID
	}
	return c, nil
}

// checkRedirectURI refuses field, the redirect URI raw, unless it is
// absolute, without a fragment (RFC 6749 §3.1.2), and https, or http on a
// loopback IP literal for native apps (RFC 8252 §7.3, §8.3).
func checkRedirectURI(field, raw string) error {
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "":
		return invalidField(field, "must be an absolute URL")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return invalidField(field, "must not have a fragment (RFC 6749 §3.1.2)")
	case u.User != nil:
		return invalidField(field, "must not carry user information")
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http":
		if a, err := netip.ParseAddr(u.Hostname()); err == nil && a.IsLoopback() {
			return nil
		}
		return invalidField(field, "http is allowed only on a loopback IP literal such as 127.0.0.1 (RFC 8252 §7.3)")
	default:
		return invalidField(field, "must use https")
	}
}

// assertionAlgs are the algorithms a client key may have for private_key_jwt:
// asymmetric only (a shared secret would be a client secret, RFC 7523 §3).
var assertionAlgs = []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256", "RS384", "RS512"}

// checkClientJWKS requires a JWK Set of public keys, each with an asymmetric
// "alg": verification uses the key's algorithm, never the token's header.
func checkClientJWKS(raw json.RawMessage) error {
	if len(raw) == 0 {
		return errors.New("the client's public keys are required (jwks)")
	}
	if len(raw) > maxJWKSBytes {
		return fmt.Errorf("at most %d bytes", maxJWKSBytes)
	}
	set, err := jwk.Parse(raw)
	if err != nil {
		return fmt.Errorf("not a JWK Set: %v", err)
	}
	if set.Len() == 0 {
		return errors.New("has no keys")
	}
	for i := range set.Len() {
		k, _ := set.Key(i)
		if priv, err := jwk.IsPrivateKey(k); err != nil || priv {
			return fmt.Errorf("key %d: must be a public key", i)
		}
		alg, ok := k.Algorithm()
		if !ok || !slices.Contains(assertionAlgs, alg.String()) {
			return fmt.Errorf("key %d: needs \"alg\", one of %s", i, strings.Join(assertionAlgs, ", "))
		}
		if _, err := keyAlgorithm(k); err != nil {
			return fmt.Errorf("key %d: %v", i, err)
		}
	}
	return nil
}

// keyAlgorithm is the one signature algorithm a registered key verifies.
func keyAlgorithm(k jwk.Key) (jwa.SignatureAlgorithm, error) {
	a, ok := k.Algorithm()
	if !ok || !slices.Contains(assertionAlgs, a.String()) {
		return jwa.SignatureAlgorithm{}, errors.New("no allowed alg")
	}
	sa, ok := jwa.LookupSignatureAlgorithm(a.String())
	if !ok || sa.IsSymmetric() {
		return jwa.SignatureAlgorithm{}, fmt.Errorf("alg %s is not an asymmetric signature algorithm", a)
	}
	kt := k.KeyType()
	want := map[string]jwa.KeyType{"E": jwa.EC(), "R": jwa.RSA(), "P": jwa.RSA(), "Ed": jwa.OKP()}
	for prefix, t := range want {
		if strings.HasPrefix(a.String(), prefix) && kt != t {
			return jwa.SignatureAlgorithm{}, fmt.Errorf("alg %s does not fit a %s key", a, kt)
		}
	}
	return sa, nil
}

// validScopeToken: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ) (RFC 6749 §3.3).
func validScopeToken(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// --- admin JSON API ---

func (s *Server) apiError(w http.ResponseWriter, r *http.Request, err error) {
	var ce *ClientError
	switch {
	case errors.As(err, &ce):
		problem.Write(w, http.StatusBadRequest, ce.Field, ce.Error())
	case errors.Is(err, store.ErrNotFound):
		problem.Write(w, http.StatusNotFound, "", "no such client")
	case errors.Is(err, store.ErrConflict):
		problem.Write(w, http.StatusConflict, "", "a client with this ID exists")
	default:
		s.log.Error("oauth: client API", "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error")
	}
}

const maxClientBody = 64 << 10

func (s *Server) apiCreateClient(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		problem.Write(w, http.StatusUnsupportedMediaType, "", "send application/json")
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxClientBody))
	dec.DisallowUnknownFields()
	var spec ClientSpec
	if err := dec.Decode(&spec); err != nil {
		problem.Write(w, http.StatusBadRequest, "", "the body is not a client: "+err.Error())
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		problem.Write(w, http.StatusBadRequest, "", "one JSON object expected")
		return
	}
	c, secret, err := s.CreateClient(r.Context(), s.opts.Actor(r), spec)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	v := viewOf(c)
	v.Secret = secret
	w.Header().Set("Location", "/api/v1/admin/clients/"+url.PathEscape(c.ID))
	writeJSON(w, http.StatusCreated, v)
}

func (s *Server) apiGetClient(w http.ResponseWriter, r *http.Request) {
	c, err := s.GetClient(r.Context(), r.PathValue("id"))
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(c))
}

func (s *Server) apiListClients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	num := func(name string, def, maxV int) (int, bool) {
		v := q.Get(name)
		if v == "" {
			return def, true
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > maxV {
			problem.Write(w, http.StatusBadRequest, name, fmt.Sprintf("%s must be a number from 0 to %d", name, maxV))
			return 0, false
		}
		return n, true
	}
	offset, ok := num("offset", 0, 1<<30)
	if !ok {
		return
	}
	limit, ok := num("limit", 100, 1000)
	if !ok {
		return
	}
	list, total, err := s.ListClients(r.Context(), offset, limit)
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	out := struct {
		Clients []clientView `json:"clients"`
		Total   int          `json:"total"`
	}{Clients: make([]clientView, 0, len(list)), Total: total}
	for _, c := range list {
		out.Clients = append(out.Clients, viewOf(c))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) apiDeleteClient(w http.ResponseWriter, r *http.Request) {
	if err := s.DeleteClient(r.Context(), s.opts.Actor(r), r.PathValue("id")); err != nil {
		s.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
