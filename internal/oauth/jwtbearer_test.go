package oauth

import (
	"context"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

func TestJWTBearer(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	k := newSigner(t, "k1")
	c, _ := e.client(t, ClientSpec{Name: "backend", TokenEndpointAuthMethod: methodPrivateKeyJWT, JWKS: publicJWKS(t, k),
		GrantTypes: []string{GrantJWTBearer}, Scopes: []string{"speaker:play"}})
	// alice authorized the client before; bob did not.
	if err := e.st.CreateGrant(ctx, &store.Grant{UserID: e.alice.ID, ClientID: c.ID, Scopes: []string{"speaker:play"}, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	request := func(a assertion, raw string) (*http.Response, string) {
		if raw == "" {
			raw = sign(t, k, a)
		}
		return e.tokenRequest(t, url.Values{"grant_type": {GrantJWTBearer}, "assertion": {raw},
			"client_assertion_type": {assertionType}, "client_assertion": {sign(t, k, e.goodAssertion(c.ID))}})
	}
	user := func() assertion { a := e.goodAssertion(c.ID); a.sub = e.alice.ID; return a }
	good := user()
	if resp, body := request(good, ""); resp.StatusCode != http.StatusOK {
		t.Fatalf("jwt-bearer: %d %s", resp.StatusCode, body)
	}
	cases := map[string]string{}
	a := user()
	first := sign(t, k, a)
	request(a, first)
	cases["replay"] = first
	a = user()
	a.aud = []string{"https://elsewhere.example"}
	cases["wrong aud"] = sign(t, k, a)
	a = user()
	a.exp = time.Now().Add(-time.Hour)
	cases["expired"] = sign(t, k, a)
	a = user()
	a.exp = time.Now().Add(time.Hour)
	cases["long exp"] = sign(t, k, a)
	cases["alg none"] = handmade(map[string]any{"alg": "none", "kid": "k1"}, user(), nil)
	pub, _ := publicJWKS(t, k).MarshalJSON()
	cases["HS256 with the public key"] = handmade(map[string]any{"alg": "HS256", "kid": "k1"}, user(), pub)
	a = user()
	a.sub = e.bob.ID
	cases["no grant"] = sign(t, k, a)
	for name, raw := range cases {
		resp, body := request(assertion{}, raw)
		if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
			t.Errorf("%s: %d %s", name, resp.StatusCode, body)
		}
	}
	if _, err := e.st.UpdateUser(ctx, e.alice.ID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if resp, body := request(user(), ""); resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_grant" {
		t.Errorf("disabled user: %d %s", resp.StatusCode, body)
	}
}
