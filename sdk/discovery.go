package sdk

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Metadata is what the SDK uses of the platform's authorization server
// metadata (RFC 8414 §2).
type Metadata struct {
	Issuer                      string `json:"issuer"`
	TokenEndpoint               string `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
	UserinfoEndpoint            string `json:"userinfo_endpoint"`
	JWKSURI                     string `json:"jwks_uri"`
	// MTLSEndpointAliases are the endpoints to use with mutual TLS when the
	// platform serves them elsewhere (RFC 8705 §5).
	MTLSEndpointAliases                   map[string]string `json:"mtls_endpoint_aliases"`
	TLSClientCertificateBoundAccessTokens bool              `json:"tls_client_certificate_bound_access_tokens"`
	DPoPSigningAlgValuesSupported         []string          `json:"dpop_signing_alg_values_supported"`
}

// endpoint is the named endpoint, its mutual-TLS alias when the device
// authenticates with its certificate.
func (m *Metadata) endpoint(name, plain string, mtls bool) string {
	if alias := m.MTLSEndpointAliases[name]; mtls && alias != "" {
		return alias
	}
	return plain
}

// maxMetadata bounds the metadata document.
const maxMetadata = 1 << 20

// Discover fetches the platform's metadata once (RFC 8414 §3) and keeps it.
func (c *Client) Discover(ctx context.Context) (*Metadata, error) {
	c.mu.Lock()
	m := c.meta
	c.mu.Unlock()
	if m != nil {
		return m, nil
	}
	// RFC 8414 §3.1: the well-known segment goes between host and path.
	u := *c.server
	u.Path = "/.well-known/oauth-authorization-server" + strings.TrimSuffix(c.server.Path, "/")
	u.RawPath = ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sdk: discovery at %s: %w", u.String(), explainTransport(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadata))
	if err != nil {
		return nil, fmt.Errorf("sdk: discovery at %s: %w", u.String(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sdk: discovery at %s answered %s: is Config.Server the platform's address?", u.String(), resp.Status)
	}
	m = &Metadata{}
	if err := json.Unmarshal(body, m); err != nil {
		return nil, fmt.Errorf("sdk: discovery at %s: not a metadata document: %w", u.String(), err)
	}
	// RFC 8414 §3.3: the issuer must be the one asked for, or the document
	// is not this server's.
	if m.Issuer != c.issuer() {
		return nil, fmt.Errorf("sdk: the platform says its issuer is %q, not %q: set Config.Server to %q", m.Issuer, c.issuer(), m.Issuer)
	}
	if m.TokenEndpoint == "" {
		return nil, fmt.Errorf("sdk: discovery at %s: no token_endpoint", u.String())
	}
	for name, e := range m.MTLSEndpointAliases {
		if p, err := url.Parse(e); err != nil || p.Scheme != "https" {
			return nil, fmt.Errorf("sdk: discovery: mtls_endpoint_aliases.%s %q is not an https URL", name, e)
		}
	}
	c.mu.Lock()
	c.meta = m
	c.mu.Unlock()
	return m, nil
}
