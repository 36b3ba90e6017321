package oauth

import (
	"net/http"
	"slices"
)

// Metadata is the authorization server metadata (RFC 8414 §2), served both at
// /.well-known/oauth-authorization-server and, with the OpenID fields, at
// /.well-known/openid-configuration (OIDC Discovery §3). It lists only what
// this server implements: response type code, PKCE with S256 only.
type Metadata struct {
	Issuer                      string `json:"issuer"`
	AuthorizationEndpoint       string `json:"authorization_endpoint"`
	UserinfoEndpoint            string `json:"userinfo_endpoint"`
	TokenEndpoint               string `json:"token_endpoint"`
	JWKSURI                     string `json:"jwks_uri"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
	RevocationEndpoint          string `json:"revocation_endpoint"`
	IntrospectionEndpoint       string `json:"introspection_endpoint"`
	// RegistrationEndpoint is set only when dynamic registration is enabled.
	RegistrationEndpoint string   `json:"registration_endpoint,omitempty"`
	ScopesSupported      []string `json:"scopes_supported,omitempty"`
	// RFC 8414 §2: REQUIRED.
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgsSupported  []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
	// RFC 8414 §2: public clients may not introspect (RFC 7662 §2.1).
	IntrospectionEndpointAuthMethodsSupported []string `json:"introspection_endpoint_auth_methods_supported"`
	// OIDC Discovery §3: REQUIRED there.
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
	CodeChallengeMethodsSupported    []string `json:"code_challenge_methods_supported"`
	ClaimsSupported                  []string `json:"claims_supported"`
	// RFC 9207 §3: iss is in every authorization response.
	AuthorizationResponseIssParameterSupported bool `json:"authorization_response_iss_parameter_supported"`
	// RFC 9449 §5.1: the algorithms of DPoP proofs this server accepts.
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported"`
	// RFC 8705 §3.3: access tokens are bound to the client certificate of a
	// mutual-TLS token request.
	TLSClientCertificateBoundAccessTokens bool `json:"tls_client_certificate_bound_access_tokens"`
}

// supportedGrantTypes is the set a client may be registered with.
var supportedGrantTypes = []string{GrantClientCredentials, GrantDeviceCode, GrantRefreshToken, GrantAuthorizationCode, GrantJWTBearer}

// supportedClaims are what ID tokens and the UserInfo endpoint return.
var supportedClaims = []string{"sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "azp", "at_hash",
	"name", "given_name", "family_name", "preferred_username", "locale", "zoneinfo", "updated_at", "email", "email_verified"}

// scopesSupported adds the OpenID scopes this server answers to the
// configured ones (nil configured: only those).
func scopesSupported(configured []string) []string {
	return union(configured, []string{"openid", "profile", "email", "offline_access"})
}

// authMethods are the token endpoint authentication methods (RFC 7591 §2).
var authMethods = []string{methodBasic, methodPost, methodPrivateKeyJWT, methodTLSClientAuth, methodSelfSignedTLS, methodNone}

// Metadata returns the server's metadata document.
func (s *Server) Metadata() Metadata {
	m := Metadata{
		Issuer:                        s.issuer,
		AuthorizationEndpoint:         s.issuer + pathAuthorize,
		UserinfoEndpoint:              s.issuer + pathUserinfo,
		CodeChallengeMethodsSupported: []string{"S256"},
		ClaimsSupported:               slices.Clone(supportedClaims),
		AuthorizationResponseIssParameterSupported: true,
		TokenEndpoint:                          s.issuer + PathToken,
		JWKSURI:                                s.issuer + pathJWKS,
		DeviceAuthorizationEndpoint:            s.issuer + pathDeviceReq,
		RevocationEndpoint:                     s.issuer + pathRevoke,
		ScopesSupported:                        scopesSupported(s.opts.Scopes),
		ResponseTypesSupported:                 []string{"code"},
		GrantTypesSupported:                    s.grantTypes(),
		TokenEndpointAuthMethodsSupported:      slices.Clone(authMethods),
		TokenEndpointAuthSigningAlgsSupported:  slices.Clone(assertionAlgs),
		RevocationEndpointAuthMethodsSupported: slices.Clone(authMethods),
		SubjectTypesSupported:                  []string{"public"},
		IDTokenSigningAlgValuesSupported:       []string{s.opts.IDTokenAlg},
		DPoPSigningAlgValuesSupported:          slices.Clone(dpopAlgs),
		TLSClientCertificateBoundAccessTokens:  true,
	}
	m.IntrospectionEndpoint = s.issuer + pathIntrospect
	m.IntrospectionEndpointAuthMethodsSupported = slices.Clone(introspectionAuthMethods)
	if s.registrationEnabled() {
		m.RegistrationEndpoint = s.issuer + pathRegister
	}
	return m
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Access-Control-Allow-Origin", "*") // public document (OIDC Discovery §4)
	writeBody(w, s.Metadata())
}
