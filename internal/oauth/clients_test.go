package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

func TestClientValidationNamesTheField(t *testing.T) {
	e := newEnv(t)
	ok := ClientSpec{Name: "ok", GrantTypes: []string{GrantClientCredentials}}
	with := func(f func(*ClientSpec)) ClientSpec { s := ok; f(&s); return s }
	cases := []struct {
		name  string
		spec  ClientSpec
		field string
	}{
		{"no name", with(func(s *ClientSpec) { s.Name = " " }), "client_name"},
		{"bad type", with(func(s *ClientSpec) { s.Type = "trusted" }), "client_type"},
		{"no grant types", with(func(s *ClientSpec) { s.GrantTypes = nil }), "grant_types"},
		{"unknown grant type", with(func(s *ClientSpec) { s.GrantTypes = []string{"password"} }), "grant_types[0]"},
		{"implicit", with(func(s *ClientSpec) { s.GrantTypes = []string{GrantClientCredentials, "implicit"} }), "grant_types[1]"},
		{"public client_credentials", with(func(s *ClientSpec) { s.Type = store.ClientPublic }), "grant_types"},
		{"public with secret method", with(func(s *ClientSpec) {
			s.Type, s.TokenEndpointAuthMethod, s.GrantTypes = store.ClientPublic, methodBasic, []string{GrantDeviceCode}
		}), "token_endpoint_auth_method"},
		{"unknown method", with(func(s *ClientSpec) { s.TokenEndpointAuthMethod = "client_secret_jwt" }), "token_endpoint_auth_method"},
		{"http redirect", with(func(s *ClientSpec) { s.RedirectURIs = []string{"http://app.example.com/cb"} }), "redirect_uris[0]"},
		{"localhost name", with(func(s *ClientSpec) { s.RedirectURIs = []string{"http://localhost:8080/cb"} }), "redirect_uris[0]"},
		{"fragment", with(func(s *ClientSpec) { s.RedirectURIs = []string{"https://app.example.com/cb#x"} }), "redirect_uris[0]"},
		{"relative", with(func(s *ClientSpec) { s.RedirectURIs = []string{"https://ok.example.com/", "/cb"} }), "redirect_uris[1]"},
		{"custom scheme", with(func(s *ClientSpec) { s.RedirectURIs = []string{"javascript:alert(1)"} }), "redirect_uris[0]"},
		{"unknown scope", with(func(s *ClientSpec) { s.Scopes = []string{"admin"} }), "scopes[0]"},
		{"bad scope", with(func(s *ClientSpec) { s.Scopes = []string{`a"b`} }), "scopes[0]"},
		{"jwks without private_key_jwt", with(func(s *ClientSpec) { s.JWKS = json.RawMessage(`{"keys":[]}`) }), "jwks"},
		{"private_key_jwt without jwks", with(func(s *ClientSpec) { s.TokenEndpointAuthMethod = methodPrivateKeyJWT }), "jwks"},
		{"symmetric key", with(func(s *ClientSpec) {
			s.TokenEndpointAuthMethod = methodPrivateKeyJWT
			s.JWKS = json.RawMessage(`{"keys":[{"kty":"oct","k":"c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0","alg":"HS256"}]}`)
		}), "jwks"},
		{"key without alg", with(func(s *ClientSpec) {
			s.TokenEndpointAuthMethod = methodPrivateKeyJWT
			s.JWKS = publicJWKS(t, newSigner(t, "k1"), func(m map[string]any) { delete(m, "alg") })
		}), "jwks"},
		{"private key", with(func(s *ClientSpec) {
			s.TokenEndpointAuthMethod = methodPrivateKeyJWT
			s.JWKS = privateJWKS(t, newSigner(t, "k1"))
		}), "jwks"},
		{"unknown thing", with(func(s *ClientSpec) { s.ThingID = "nope" }), "thing_id"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.s.CreateClient(context.Background(), "test", tc.spec)
			var ce *ClientError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("error %v, want one naming %s", err, tc.field)
			}
		})
	}
	for _, u := range []string{"https://app.example.com/cb?x=1", "http://127.0.0.1:4711/cb", "http://[::1]/cb"} {
		if _, _, err := e.s.CreateClient(context.Background(), "test", with(func(s *ClientSpec) { s.RedirectURIs = []string{u} })); err != nil {
			t.Errorf("%s refused: %v", u, err)
		}
	}
}

func TestClientSecretStoredOnlyAsKeyedHash(t *testing.T) {
	e := newEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "svc", GrantTypes: []string{GrantClientCredentials}})
	raw, err := b64.DecodeString(secret)
	if err != nil || len(raw) != 32 {
		t.Fatalf("secret %q: want 256 random bits in base64url", secret)
	}
	stored, _ := e.st.GetClient(context.Background(), c.ID)
	if len(stored.SecretHash) != 32 || strings.Contains(string(stored.SecretHash), secret) {
		t.Fatalf("stored secret hash %x", stored.SecretHash)
	}
	if !e.s.secretMatches(stored, secret) || e.s.secretMatches(stored, secret+"x") {
		t.Fatal("secret comparison wrong")
	}
	// A hash moved to another client does not authenticate it.
	other, _ := e.client(t, ClientSpec{Name: "other", GrantTypes: []string{GrantClientCredentials}})
	other.SecretHash = stored.SecretHash
	if e.s.secretMatches(other, secret) {
		t.Fatal("the hash is not bound to the client ID")
	}
	pub, secret := e.client(t, ClientSpec{Name: "tv", Type: store.ClientPublic, GrantTypes: []string{GrantDeviceCode}})
	if secret != "" || pub.SecretHash != nil || pub.TokenEndpointAuthMethod != methodNone {
		t.Fatalf("public client got a secret: %+v %q", pub, secret)
	}
}

func TestClientAdminAPI(t *testing.T) {
	e := newEnv(t)
	c := e.srv.Client()
	admin := []string{"Authorization", "Bearer " + e.adminToken}
	body := `{"client_name":"Speaker backend","grant_types":["client_credentials"],"scopes":["speaker:play"]}`
	if resp, _ := e.do(t, c, http.MethodPost, "/api/v1/admin/clients", "application/json", body); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("create without credentials: %d", resp.StatusCode)
	}
	resp, out := e.do(t, c, http.MethodPost, "/api/v1/admin/clients", "application/json", body, admin...)
	if resp.StatusCode != http.StatusCreated || resp.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("create: %d %s", resp.StatusCode, out)
	}
	var created clientView
	_ = json.Unmarshal([]byte(out), &created)
	if created.ID == "" || created.Secret == "" || created.TokenEndpointAuthMethod != methodBasic {
		t.Fatalf("created %+v", created)
	}
	resp, out = e.do(t, c, http.MethodGet, "/api/v1/admin/clients/"+created.ID, "", "", admin...)
	if resp.StatusCode != http.StatusOK || strings.Contains(out, created.Secret) || strings.Contains(out, `"client_secret":`) {
		t.Fatalf("get: %d %s (the secret is shown only once)", resp.StatusCode, out)
	}
	resp, out = e.do(t, c, http.MethodGet, "/api/v1/admin/clients?limit=10", "", "", admin...)
	if resp.StatusCode != http.StatusOK || !strings.Contains(out, `"total":1`) {
		t.Fatalf("list: %d %s", resp.StatusCode, out)
	}
	resp, out = e.do(t, c, http.MethodPost, "/api/v1/admin/clients", "application/json",
		`{"client_name":"x","grant_types":["client_credentials"],"redirect_uris":["http://evil.example/cb"]}`, admin...)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(out, `"field":"redirect_uris[0]"`) {
		t.Fatalf("invalid client: %d %s", resp.StatusCode, out)
	}
	resp, out = e.do(t, c, http.MethodPost, "/api/v1/admin/clients", "application/json", `{"client_name":"x","grant_types":["client_credentials"],"secret_hash":"AA=="}`, admin...)
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("unknown field: %d %s", resp.StatusCode, out)
	}

	// Deleting a client revokes its grants and publishes the revocations.
	ctx := context.Background()
	cl, _ := e.st.GetClient(ctx, created.ID)
	g, err := e.s.ownGrant(ctx, cl)
	if err != nil {
		t.Fatal(err)
	}
	if resp, out := e.do(t, c, http.MethodDelete, "/api/v1/admin/clients/"+created.ID, "", "", admin...); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.StatusCode, out)
	}
	if got, _ := e.st.GetGrant(ctx, g.ID); got == nil || got.RevokedAt.IsZero() {
		t.Fatalf("grant %+v not revoked", got)
	}
	if evs := e.eventsOf("grant.revoke"); len(evs) != 1 || evs[0].ID != g.ID || evs[0].Details["exp"] == "" {
		t.Fatalf("grant.revoke events %+v", evs)
	}
	if resp, _ := e.do(t, c, http.MethodGet, "/api/v1/admin/clients/"+created.ID, "", "", admin...); resp.StatusCode != http.StatusNotFound {
		t.Fatalf("get after delete: %d", resp.StatusCode)
	}
}

// A rotated secret replaces the old one at once; a client without a secret
// has none to rotate, and the refusal names the field.
func TestRotateSecret(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	c, old := e.client(t, ClientSpec{Name: "svc", GrantTypes: []string{GrantClientCredentials}})
	next, err := e.s.RotateSecret(ctx, "admin:test", c.ID)
	if err != nil || next == "" || next == old {
		t.Fatalf("rotate: %q %v", next, err)
	}
	stored, _ := e.st.GetClient(ctx, c.ID)
	if e.s.secretMatches(stored, old) || !e.s.secretMatches(stored, next) {
		t.Fatal("the old secret still matches, or the new one does not")
	}
	recs, _ := e.st.ListAudit(ctx, store.AuditQuery{Action: store.TextMatch{Value: "client.secret-rotate"}})
	if len(recs) != 1 || recs[0].Actor != "admin:test" || recs[0].Target.ID != c.ID {
		t.Fatalf("audit: %+v", recs)
	}
	pub, _ := e.client(t, ClientSpec{Name: "tv", Type: store.ClientPublic, GrantTypes: []string{GrantDeviceCode}})
	_, err = e.s.RotateSecret(ctx, "admin:test", pub.ID)
	if ce, ok := errors.AsType[*ClientError](err); !ok || ce.Field != "token_endpoint_auth_method" {
		t.Fatalf("a public client: %v", err)
	}
	if _, err := e.s.RotateSecret(ctx, "admin:test", "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("an unknown client: %v", err)
	}
}
