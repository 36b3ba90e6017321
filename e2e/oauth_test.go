package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// A service registered with the CLI gets a token from the running binary through
// golang.org/x/oauth2, found by OpenID discovery, and go-oidc verifies it against
// the published keys.
func TestClientCredentialsWithRealClients(t *testing.T) {
	home, addr := t.TempDir(), freeAddr(t)
	in := start(t, home, addr)
	out, errOut, err := thingid(t, nil, "", "--home", home, "clients", "create", "--name", "telemetry-reader",
		"--grant-type", "client_credentials", "--scope", "telemetry:read")
	if err != nil {
		t.Fatalf("clients create: %v %s", err, errOut)
	}
	id := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)
	secret := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(out)
	if id == nil || secret == nil {
		t.Fatalf("no client id or secret in %q", out)
	}

	_, port, _ := strings.Cut(addr, ":")
	issuer := "https://localhost:" + port
	ctx := oidc.ClientContext(context.Background(), in.client)
	ctx = context.WithValue(ctx, oauth2.HTTPClient, in.client)
	provider, err := oidc.NewProvider(ctx, issuer)
	if err != nil {
		t.Fatalf("OpenID discovery: %v", err)
	}
	cc := clientcredentials.Config{ClientID: id[1], ClientSecret: secret[1], TokenURL: provider.Endpoint().TokenURL, Scopes: []string{"telemetry:read"}}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client_credentials: %v", err)
	}
	v := provider.Verifier(&oidc.Config{SkipClientIDCheck: true})
	if _, err := v.Verify(ctx, tok.AccessToken); err != nil {
		t.Errorf("go-oidc rejects the access token: %v", err)
	}
	tampered := tok.AccessToken[:len(tok.AccessToken)-4] + "AAAA"
	if _, err := v.Verify(ctx, tampered); err == nil {
		t.Error("go-oidc accepted a tampered token")
	}

	for name, bad := range map[string]clientcredentials.Config{
		"wrong secret":      {ClientID: id[1], ClientSecret: secret[1] + "x", TokenURL: cc.TokenURL},
		"scope not allowed": {ClientID: id[1], ClientSecret: secret[1], TokenURL: cc.TokenURL, Scopes: []string{"admin"}},
		"unknown client":    {ClientID: "nobody", ClientSecret: secret[1], TokenURL: cc.TokenURL},
	} {
		if _, err := bad.Token(ctx); err == nil {
			t.Errorf("%s: got a token", name)
		}
	}

	// Deleting the client from the CLI ends its grant; a new token is refused.
	if _, errOut, err := thingid(t, nil, "", "--home", home, "clients", "delete", id[1]); err != nil {
		t.Fatalf("clients delete: %v %s", err, errOut)
	}
	if _, err := cc.Token(ctx); err == nil {
		t.Error("a deleted client still gets tokens")
	}
	resp, err := in.client.Get(issuer + "/oauth2/jwks")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: %v %v", resp, err)
	}
	resp.Body.Close()
}

// SCIM accepts OAuth access tokens by scope: scim:read reads, scim:write writes.
func TestSCIMWithScopedAccessTokens(t *testing.T) {
	home, addr := t.TempDir(), freeAddr(t)
	in := start(t, home, addr)
	_, port, _ := strings.Cut(addr, ":")
	tokenURL := "https://localhost:" + port + "/oauth2/token"
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, in.client)
	client := func(scope string) *http.Client {
		out, errOut, err := thingid(t, nil, "", "--home", home, "clients", "create", "--name", scope,
			"--grant-type", "client_credentials", "--scope", scope)
		if err != nil {
			t.Fatalf("clients create: %v %s", err, errOut)
		}
		id := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)[1]
		secret := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(out)[1]
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: tokenURL, Scopes: []string{scope}}
		return cc.Client(ctx)
	}
	reader, writer := client("scim:read"), client("scim:write")
	base := "https://localhost:" + port + "/scim/v2"
	newUser := func() *strings.Reader {
		return strings.NewReader(`{"schemas":["urn:ietf:params:scim:schemas:core:2.0:User"],"userName":"svc-made-` + strings.Repeat("x", len(t.Name())%3) + `"}`)
	}
	for _, tc := range []struct {
		name   string
		c      *http.Client
		method string
		want   int
	}{
		{"read with scim:read", reader, "GET", 200},
		{"write with scim:read", reader, "POST", 403},
		{"write with scim:write", writer, "POST", 201},
		{"read with scim:write", writer, "GET", 200},
	} {
		var req *http.Request
		if tc.method == "GET" {
			req, _ = http.NewRequest("GET", base+"/Users", nil)
		} else {
			req, _ = http.NewRequest("POST", base+"/Users", newUser())
			req.Header.Set("Content-Type", "application/scim+json")
		}
		resp, err := tc.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if tc.want == 403 && !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
			t.Errorf("%s: no insufficient_scope challenge: %q", tc.name, resp.Header.Get("WWW-Authenticate"))
		}
	}
	req, _ := http.NewRequest("GET", base+"/Users", nil)
	req.Header.Set("Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")
	resp, err := in.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("alg none token: %d, want 401", resp.StatusCode)
	}
}

// Dynamic client registration (RFC 7591) opens with the configured initial access
// token only, and the registered client gets tokens.
func TestDynamicRegistration(t *testing.T) {
	const iat = "initial-access-token-0123456789abcdef"
	home, addr := t.TempDir(), freeAddr(t)
	in := start(t, home, addr, "THINGID_OAUTH_REGISTRATIONTOKEN="+iat, "THINGID_OAUTH_REGISTRATION_ALLOWEDSCOPES=openid telemetry:read")
	_, port, _ := strings.Cut(addr, ":")
	base := "https://localhost:" + port
	register := func(token string, scope ...string) (int, map[string]any) {
		sc := "telemetry:read"
		if len(scope) > 0 {
			sc = scope[0]
		}
		req, _ := http.NewRequest("POST", base+"/oauth2/register", strings.NewReader(
			`{"client_name":"fleet-dashboard","grant_types":["client_credentials"],"scope":"`+sc+`"}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := in.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, _ := register(""); code != 401 {
		t.Errorf("without the initial access token: %d", code)
	}
	if code, _ := register(iat + "x"); code != 401 {
		t.Errorf("with a wrong initial access token: %d", code)
	}
	// Only oauth.registration.allowedScopes: no administrators.
	if code, body := register(iat, "telemetry:read admin"); code != 400 || body["error"] != "invalid_client_metadata" {
		t.Errorf("registering with the admin scope: %d %v", code, body)
	}
	code, body := register(iat)
	if code != 201 {
		t.Fatalf("register: %d %v", code, body)
	}
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, in.client)
	cc := clientcredentials.Config{ClientID: body["client_id"].(string), ClientSecret: body["client_secret"].(string),
		TokenURL: base + "/oauth2/token", Scopes: []string{"telemetry:read"}}
	if _, err := cc.Token(ctx); err != nil {
		t.Errorf("registered client gets no token: %v", err)
	}
}
