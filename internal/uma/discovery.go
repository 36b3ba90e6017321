package uma

import (
	"encoding/json"
	"net/http"
	"slices"
)

// Configuration returns the UMA discovery document: the OAuth metadata
// (RFC 8414) with the UMA 2.0 Grant §2 and Federated Authorization §2
// additions. introspection_endpoint is UMA's, which answers permissions to a
// resource server authenticated with its PAT.
func (s *Server) Configuration() map[string]any {
	m := map[string]any{}
	if s.opts.Metadata != nil {
		b, err := json.Marshal(s.opts.Metadata())
		if err == nil {
			_ = json.Unmarshal(b, &m)
		}
	}
	m["issuer"] = s.issuer
	gts, _ := m["grant_types_supported"].([]any)
	if !slices.Contains(gts, any(GrantType)) {
		gts = append(gts, GrantType)
	}
	m["grant_types_supported"] = gts
	m["token_endpoint"] = orString(m["token_endpoint"], s.issuer+"/oauth2/token")
	m["permission_endpoint"] = s.issuer + pathPermission
	m["resource_registration_endpoint"] = s.issuer + pathResourceSet
	m["introspection_endpoint"] = s.issuer + pathIntrospect
	m["claims_interaction_endpoint"] = s.issuer + pathClaims
	m["introspection_endpoint_auth_methods_supported"] = []string{"bearer_pat"}
	// UMA 2.0 Grant §2: no profiles beyond the recommendations themselves.
	m["uma_profiles_supported"] = []string{}
	m["claim_token_profiles_supported"] = []string{FormatIDToken, FormatAccessToken}
	m["claim_token_formats_supported"] = []string{FormatIDToken, FormatAccessToken}
	m["scopes_supported"] = appendMissing(m["scopes_supported"], ScopeProtection)
	return m
}

func orString(v any, def string) any {
	if s, ok := v.(string); ok && s != "" {
		return s
	}
	return def
}

func appendMissing(v any, add ...string) []any {
	l, _ := v.([]any)
	for _, a := range add {
		if !slices.Contains(l, any(a)) {
			l = append(l, a)
		}
	}
	return l
}

func (s *Server) serveConfiguration(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Header().Set("Access-Control-Allow-Origin", "*") // a public document
	_ = json.NewEncoder(w).Encode(s.Configuration())
}
