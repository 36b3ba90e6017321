package oauth

import (
	"net/http"
	"slices"
)

// Metadata is the authorization server metadata (RFC 8414 §2), served both at
// /.well-known/oauth-authorization-server and, with the OpenID fields, at
// /.well-known/openid-configuration (OIDC Discovery §3). It lists only what
// this server implements: no authorization endpoint yet, so no response
// types and no PKCE methods (code_challenge_methods_supported comes with the
// authorization code flow).
type Metadata struct {
	Issuer                      string   `json:"issuer"`
	TokenEndpoint               string   `json:"token_endpoint"`
	JWKSURI                     string   `json:"jwks_uri"`
	DeviceAuthorizationEndpoint string   `json:"device_authorization_endpoint"`
	RevocationEndpoint          string   `json:"revocation_endpoint"`
	ScopesSupported             []string `json:"scopes_supported,omitempty"`
	// RFC 8414 §2: REQUIRED; empty while there is no authorization endpoint.
	ResponseTypesSupported                 []string `json:"response_types_supported"`
	GrantTypesSupported                    []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported      []string `json:"token_endpoint_auth_methods_supported"`
	TokenEndpointAuthSigningAlgsSupported  []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	RevocationEndpointAuthMethodsSupported []string `json:"revocation_endpoint_auth_methods_supported"`
	// OIDC Discovery §3: REQUIRED there.
	SubjectTypesSupported            []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported []string `json:"id_token_signing_alg_values_supported"`
}

// supportedGrantTypes is the set a client may be registered with.
var supportedGrantTypes = []string{GrantClientCredentials, GrantDeviceCode, GrantRefreshToken}

// authMethods are the token endpoint authentication methods (RFC 7591 §2).
var authMethods = []string{methodBasic, methodPost, methodPrivateKeyJWT, methodNone}

// Metadata returns the server's metadata document.
func (s *Server) Metadata() Metadata {
	return Metadata{
		Issuer:                                 s.issuer,
		TokenEndpoint:                          s.issuer + pathToken,
		JWKSURI:                                s.issuer + pathJWKS,
		DeviceAuthorizationEndpoint:            s.issuer + pathDeviceReq,
		RevocationEndpoint:                     s.issuer + pathRevoke,
		ScopesSupported:                        slices.Clone(s.opts.Scopes),
		ResponseTypesSupported:                 []string{},
		GrantTypesSupported:                    slices.Clone(supportedGrantTypes),
		TokenEndpointAuthMethodsSupported:      slices.Clone(authMethods),
		TokenEndpointAuthSigningAlgsSupported:  slices.Clone(assertionAlgs),
		RevocationEndpointAuthMethodsSupported: slices.Clone(authMethods),
		SubjectTypesSupported:                  []string{"public"},
		IDTokenSigningAlgValuesSupported:       []string{s.opts.IDTokenAlg},
	}
}

func (s *Server) serveMetadata(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Access-Control-Allow-Origin", "*") // public document (OIDC Discovery §4)
	writeBody(w, s.Metadata())
}
