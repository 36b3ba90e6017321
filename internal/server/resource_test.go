package server

// Audience-restricted tokens (RFC 8707 resource indicators, RFC 9700 §2.3):
// issue 12 item 5, through the real token endpoint with golang.org/x/oauth2.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/authn"
)

// audienceOf reads the aud of an access token (already verified elsewhere).
func audienceOf(t *testing.T, tok string) []string {
	t.Helper()
	parts := strings.Split(tok, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Aud any `json:"aud"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	switch a := c.Aud.(type) {
	case string:
		return []string{a}
	case []any:
		var out []string
		for _, x := range a {
			out = append(out, x.(string))
		}
		return out
	}
	return nil
}

func TestAttackTokenForTheGatewayAtSCIM(t *testing.T) {
	r := serve(t)
	api, gw, mqtt := r.p.Config.HTTP.PublicURL, r.p.Config.Gateway.Audience, r.p.Config.MQTT.Audience
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, r.client)
	tokenOf := func(id, secret string, resources ...string) (string, error) {
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: r.base + "/oauth2/token", EndpointParams: url.Values{"resource": resources}, AuthStyle: oauth2.AuthStyleInHeader}
		tok, err := cc.Token(ctx)
		if err != nil {
			return "", err
		}
		return tok.AccessToken, nil
	}
	scim := func(tok string) int {
		resp, _ := r.do(t, nil, "GET", "/scim/v2/Users", bearer(tok))
		return resp.StatusCode
	}
	// A client registered without resources may ask for any (what clients
	// had before resource indicators); each token is for what it asked.
	id, secret := createClient(t, r, map[string]any{"client_name": "svc", "grant_types": []string{"client_credentials"}, "scopes": []string{authn.ScopeSCIMRead}})
	forGateway, err := tokenOf(id, secret, gw)
	if err != nil {
		t.Fatal(err)
	}
	if aud := audienceOf(t, forGateway); !slices.Equal(aud, []string{gw}) {
		t.Errorf("aud of a token for the gateway: %v", aud)
	}
	if code := scim(forGateway); code != http.StatusUnauthorized {
		t.Errorf("a token obtained for the gateway at SCIM: %d, want 401", code)
	}
	forMQTT, err := tokenOf(id, secret, mqtt, gw)
	if err != nil {
		t.Fatal(err)
	}
	if code := scim(forMQTT); code != http.StatusUnauthorized {
		t.Errorf("a token for the broker and the gateway at SCIM: %d, want 401", code)
	}
	forAPI, err := tokenOf(id, secret, api)
	if err != nil {
		t.Fatal(err)
	}
	if code := scim(forAPI); code != http.StatusOK {
		t.Errorf("a token for the platform's API at SCIM: %d, want 200", code)
	}
	unasked, err := tokenOf(id, secret)
	if err != nil {
		t.Fatal(err)
	}
	// Without resource: only what its scope (scim:read) needs, not every
	// resource at once (RFC 9700 §2.3; oauth.derivedResources).
	if aud := audienceOf(t, unasked); !slices.Equal(aud, []string{api}) {
		t.Errorf("default aud of a client registered without resources: %v, want the platform's API only", aud)
	}
	// Unknown, malformed and not-allowed resources: invalid_target naming it.
	for _, bad := range []string{"https://elsewhere.example/", "relative/path", api + "#frag"} {
		_, err := tokenOf(id, secret, bad)
		var re *oauth2.RetrieveError
		if !errors.As(err, &re) || re.ErrorCode != "invalid_target" || re.Response.StatusCode != 400 || !strings.Contains(re.ErrorDescription, "resource") {
			t.Errorf("resource %q: %v, want a 400 invalid_target", bad, err)
		}
	}
	// A client registered for the gateway alone gets gateway tokens by
	// default and nothing else on request.
	id, secret = createClient(t, r, map[string]any{"client_name": "gw", "grant_types": []string{"client_credentials"},
		"scopes": []string{authn.ScopeSCIMRead}, "resources": []string{gw}})
	tok, err := tokenOf(id, secret)
	if err != nil {
		t.Fatal(err)
	}
	if aud := audienceOf(t, tok); !slices.Equal(aud, []string{gw}) || scim(tok) != http.StatusUnauthorized {
		t.Errorf("gateway client's default token: aud %v, SCIM %d", aud, scim(tok))
	}
	if _, err := tokenOf(id, secret, api); err == nil || !strings.Contains(err.Error(), "invalid_target") {
		t.Errorf("gateway client asking for the platform's API: %v, want invalid_target", err)
	}
	// Registration names the field that is wrong.
	for _, spec := range []map[string]any{
		{"client_name": "x", "grant_types": []string{"client_credentials"}, "resources": []string{"https://elsewhere.example/"}},
		{"client_name": "x", "grant_types": []string{"client_credentials"}, "resources": []string{gw}, "default_resources": []string{api}},
	} {
		body, _ := json.Marshal(spec)
		req, _ := http.NewRequest("POST", r.base+"/api/v1/admin/clients", strings.NewReader(string(body)))
		req.Header.Set("Content-Type", "application/json")
		req.SetBasicAuth("admin", adminPassword(t, r))
		resp, err := r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Field string }
		json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(p.Field, "resources") {
			t.Errorf("client %s: %d field %q, want 400 naming the resources field", body, resp.StatusCode, p.Field)
		}
	}
}
