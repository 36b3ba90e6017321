package oauth

import (
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/thingid/thingid/internal/broker/topic"
	"github.com/thingid/thingid/internal/store"
)

const pathRegister = "/oauth2/register"

// Errors of dynamic client registration (RFC 7591 §3.2.2).
var (
	ErrInvalidClientMetadata = &Error{Code: "invalid_client_metadata", Status: http.StatusBadRequest}
	ErrInvalidRedirectURI    = &Error{Code: "invalid_redirect_uri", Status: http.StatusBadRequest}
)

// RegistrationTokenHash is the keyed hash under which an initial access
// token is configured in Options.RegistrationTokenHashes; key is Options.Key.
// The configuration then holds no usable token.
func RegistrationTokenHash(key []byte, token string) []byte {
	return keyedHash(derive(key, "thingid oauth registration token v1"), "initial-access-token", token)
}

// registrationEnabled: dynamic registration exists only when an initial
// access token is configured (RFC 7591 §3: the server may require one).
func (s *Server) registrationEnabled() bool { return len(s.opts.RegistrationTokenHashes) > 0 }

// registrationRequest is the client metadata of RFC 7591 §2 this server
// understands; other members are ignored (§2: "The authorization server MUST
// ignore any client metadata sent by the client that it does not
// understand"). thing_id is not client metadata: binding a client to a thing
// stays with the administrators.
type registrationRequest struct {
	ClientName              string          `json:"client_name"`
	RedirectURIs            []string        `json:"redirect_uris"`
	GrantTypes              []string        `json:"grant_types"`
	ResponseTypes           []string        `json:"response_types"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	Scope                   *string         `json:"scope"`
	JWKS                    json.RawMessage `json:"jwks"`
	JWKSURI                 string          `json:"jwks_uri"`
	// RFC 8707 resource indicators the client may ask for (issue 12 item
	// 5); not RFC 7591 metadata, named as in the admin API.
	Resources        []string `json:"resources"`
	DefaultResources []string `json:"default_resources"`
}

// registrationResponse is RFC 7591 §3.2.1: the client information and the
// metadata as registered.
type registrationResponse struct {
	ClientID                string          `json:"client_id"`
	ClientSecret            string          `json:"client_secret,omitempty"`
	ClientIDIssuedAt        int64           `json:"client_id_issued_at"`
	ClientSecretExpiresAt   *int64          `json:"client_secret_expires_at,omitempty"`
	ClientName              string          `json:"client_name"`
	RedirectURIs            []string        `json:"redirect_uris,omitempty"`
	GrantTypes              []string        `json:"grant_types"`
	TokenEndpointAuthMethod string          `json:"token_endpoint_auth_method"`
	Scope                   string          `json:"scope,omitempty"`
	JWKS                    json.RawMessage `json:"jwks,omitempty"`
	Resources               []string        `json:"resources"`         // RFC 8707 (issue 12 item 5)
	DefaultResources        []string        `json:"default_resources"` // RFC 8707 (issue 12 item 5)
}

// serveRegister is the client registration endpoint of RFC 7591 §3,
// protected by an initial access token (§3, RFC 6750 Bearer).
func (s *Server) serveRegister(w http.ResponseWriter, r *http.Request) {
	actor, ok := s.initialAccessToken(w, r)
	if !ok {
		return
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		// RFC 7591 §3.1: the metadata is sent as JSON.
		s.writeError(w, r, ErrInvalidRequest.WithDescription("send the client metadata as application/json (RFC 7591 §3.1)"))
		return
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxClientBody))
	var req registrationRequest
	if err := dec.Decode(&req); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			s.writeError(w, r, ErrInvalidClientMetadata.WithDescription("%s has the wrong type", te.Field))
			return
		}
		s.writeError(w, r, ErrInvalidRequest.WithDescription("the body is not a JSON object"))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		s.writeError(w, r, ErrInvalidRequest.WithDescription("one JSON object expected"))
		return
	}
	spec, err := req.spec()
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.registrationScopes(spec.Scopes); err != nil {
		s.writeError(w, r, err)
		return
	}
	c, secret, err := s.CreateClient(r.Context(), actor, spec)
	if err != nil {
		s.writeError(w, r, registrationError(err))
		return
	}
	resp := registrationResponse{
		ClientID: c.ID, ClientSecret: secret, ClientIDIssuedAt: c.Created.Unix(),
		ClientName: c.Name, RedirectURIs: c.RedirectURIs, GrantTypes: nonNil(c.GrantTypes),
		TokenEndpointAuthMethod: c.TokenEndpointAuthMethod, Scope: strings.Join(c.Scopes, " "), JWKS: c.JWKS,
		Resources: nonNil(c.Resources), DefaultResources: nonNil(c.DefaultResources),
	}
	if secret != "" {
		// RFC 7591 §3.2.1: REQUIRED with a secret; 0 means it never expires.
		resp.ClientSecretExpiresAt = new(int64)
	}
	writeJSON(w, http.StatusCreated, resp)
}

// initialAccessToken checks the Bearer token of a registration request
// against the configured keyed hashes, in constant time, and returns the
// actor to audit it as (which configured token was used).
func (s *Server) initialAccessToken(w http.ResponseWriter, r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(auth, " ")
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		// RFC 6750 §3.1: no error code when no credentials were sent.
		w.Header().Set("WWW-Authenticate", `Bearer realm="thingid"`)
		writeJSON(w, http.StatusUnauthorized, struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}{"invalid_token", "an initial access token is required (RFC 7591 §3)"})
		return "", false
	}
	h := RegistrationTokenHash(s.opts.Key, tok)
	match := -1
	for i, want := range s.opts.RegistrationTokenHashes {
		// No early exit: the time does not say which token nearly matched.
		if hmac.Equal(h, want) && match < 0 {
			match = i
		}
	}
	if match < 0 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="thingid", error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}{"invalid_token", "the initial access token is not valid"})
		return "", false
	}
	return "registration:initial-access-token-" + strconv.Itoa(match), true
}

// spec maps RFC 7591 §2 metadata onto a ClientSpec, refusing what this
// server cannot honour rather than registering something else.
func (m *registrationRequest) spec() (ClientSpec, error) {
	spec := ClientSpec{
		Name: m.ClientName, RedirectURIs: m.RedirectURIs, GrantTypes: m.GrantTypes,
		TokenEndpointAuthMethod: m.TokenEndpointAuthMethod, JWKS: m.JWKS,
		Resources: m.Resources, DefaultResources: m.DefaultResources, // RFC 8707 (issue 12 item 5)
	}
	if strings.TrimSpace(m.ClientName) == "" {
		return spec, ErrInvalidClientMetadata.WithDescription("client_name is required by this server")
	}
	if len(m.GrantTypes) == 0 {
		// RFC 7591 §2: the default grant is authorization_code (which then
		// needs redirect_uris, and says so).
		spec.GrantTypes = []string{GrantAuthorizationCode}
	}
	// RFC 7591 §2.1: response_types "code" goes with authorization_code,
	// the only response type of /oauth2/authorize (no implicit flow, RFC 9700
	// §2.1.2).
	for i, rt := range m.ResponseTypes {
		switch {
		case rt != "code":
			return spec, ErrInvalidClientMetadata.WithDescription("response_types[%d]: %q is not supported; the only response type is code", i, rt)
		case !slices.Contains(spec.GrantTypes, GrantAuthorizationCode):
			return spec, ErrInvalidClientMetadata.WithDescription("response_types: code needs the authorization_code grant in grant_types (RFC 7591 §2.1)")
		}
	}
	if m.TokenEndpointAuthMethod == methodTLSClientAuth {
		// tls_client_auth matches a thing's certificate, and only
		// administrators bind a client to a thing.
		return spec, ErrInvalidClientMetadata.WithDescription("token_endpoint_auth_method: tls_client_auth is for clients an administrator binds to a thing; register with self_signed_tls_client_auth, private_key_jwt or client_secret_basic")
	}
	if m.JWKSURI != "" {
		return spec, ErrInvalidClientMetadata.WithDescription("jwks_uri is not supported: register the keys by value in jwks")
	}
	if m.TokenEndpointAuthMethod == "" {
		// RFC 7591 §2: the default is client_secret_basic.
		spec.TokenEndpointAuthMethod = methodBasic
	}
	spec.Type = store.ClientConfidential
	if spec.TokenEndpointAuthMethod == methodNone {
		spec.Type = store.ClientPublic
	}
	if m.Scope != nil {
		spec.Scopes = []string{}
		for _, sc := range strings.Split(*m.Scope, " ") {
			if sc != "" {
				spec.Scopes = append(spec.Scopes, sc)
			}
		}
	}
	return spec, nil
}

// registrationError maps a ClientSpec refusal onto RFC 7591 §3.2.2, naming
// the metadata field by its RFC 7591 name.
func registrationError(err error) error {
	var ce *ClientError
	if !errors.As(err, &ce) {
		return err
	}
	field := ce.Field
	if strings.HasPrefix(field, "scopes") {
		field = "scope" + strings.TrimPrefix(field, "scopes")
	}
	msg := fmt.Sprintf("%s: %s", field, ce.Reason())
	if strings.HasPrefix(field, "redirect_uris") {
		return ErrInvalidRedirectURI.WithDescription("%s", msg)
	}
	return ErrInvalidClientMetadata.WithDescription("%s", msg)
}

// Scopes of the form mqtt:pub:<filter> and mqtt:sub:<filter> grant MQTT topics
// at the broker (internal/broker).
var mqttScopePrefixes = []string{"mqtt:pub:", "mqtt:sub:"}

// checkRegistrationScopes checks Options.RegistrationScopes: scope tokens, and
// mqtt: patterns whose filter is a valid MQTT topic filter.
func checkRegistrationScopes(allowed []string) error {
	for i, a := range allowed {
		if !validScopeToken(a) {
			return fmt.Errorf("oauth: registration scope %d: %q is not a scope token (RFC 6749 §3.3)", i, a)
		}
		if f, ok := mqttFilter(a); ok && !topic.ValidFilter(f) {
			return fmt.Errorf("oauth: registration scope %d: %q: %q is not an MQTT topic filter (MQTT 5 §4.7)", i, a, f)
		}
	}
	return nil
}

// mqttFilter returns the topic filter of an mqtt:pub: or mqtt:sub: scope.
func mqttFilter(scope string) (string, bool) {
	for _, p := range mqttScopePrefixes {
		if f, ok := strings.CutPrefix(scope, p); ok {
			return f, true
		}
	}
	return "", false
}

// registrationScopes refuses any requested scope that Options.RegistrationScopes
// does not allow. RFC 7591 §2 lets the server register fewer scopes than
// asked; refusing instead says so, naming the scope, rather than handing out
// a client that silently lacks what it asked for.
func (s *Server) registrationScopes(requested []string) error {
	for i, sc := range requested {
		if !registrationScopeAllowed(s.opts.RegistrationScopes, sc) {
			return ErrInvalidClientMetadata.WithDescription("scope[%d]: %q may not be given to a dynamically registered client (allowed: %s); an administrator registers clients with other scopes", i, sc, describeScopes(s.opts.RegistrationScopes))
		}
	}
	return nil
}

// registrationScopeAllowed reports whether the allow-list allows scope: an
// equal entry, or for mqtt: scopes an entry of the same kind whose filter
// covers the requested one, so a requested filter is never wider than an
// allowed one ("things/+/telemetry" allows "things/t1/telemetry" but not
// "things/#", and "#" in a request is wider than any literal level).
// Placeholders such as ${client.id} stand for one plain level (the broker
// expands them so), which only "+", "#" or the same placeholder covers.
func registrationScopeAllowed(allowed []string, scope string) bool {
	for _, a := range allowed {
		if a == scope {
			return true
		}
		for _, p := range mqttScopePrefixes {
			af, aok := strings.CutPrefix(a, p)
			rf, rok := strings.CutPrefix(scope, p)
			if aok && rok && topic.ValidFilter(rf) && topic.Covers(af, rf) {
				return true
			}
		}
	}
	return false
}

func describeScopes(scopes []string) string {
	if len(scopes) == 0 {
		return "none"
	}
	return strings.Join(scopes, " ")
}
