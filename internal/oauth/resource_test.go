package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

const (
	mqttResource    = "urn:thingid:mqtt"
	gatewayResource = "urn:thingid:gateway"
)

// withResources makes the platform's resources those of a full platform.
func withPlatformResources(o *Options) {
	o.Audience = []string{o.Issuer, mqttResource, gatewayResource}
}

func audOf(t testing.TB, e *env, tok string) []string {
	t.Helper()
	for _, aud := range []string{e.srv.URL, mqttResource, gatewayResource} {
		if c, err := e.verifier.Inspect(context.Background(), tok, tokens.VerifyOptions{Audience: aud}); err == nil {
			return c.Audience
		}
	}
	t.Fatal("the token is for none of the platform's resources")
	return nil
}

// The resources of the authorization request (RFC 8707 §2.1) are those of
// the code's tokens; the token request may narrow them, not widen them.
func TestResourceThroughAuthorizationCode(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	c := e.webClient(t)
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	code := func(resources ...string) (string, string) {
		v := oauth2.GenerateVerifier()
		opts := []oauth2.AuthCodeOption{oauth2.S256ChallengeOption(v)}
		u := e.oauthConfig(c, "speaker:play").AuthCodeURL("s", opts...)
		for _, r := range resources {
			u += "&resource=" + url.QueryEscape(r)
		}
		back := e.authorize(t, b, u, "allow")
		if back.Query().Get("code") == "" {
			t.Fatalf("no code: %s", back)
		}
		return back.Query().Get("code"), v
	}
	k, v := code(gatewayResource, mqttResource)
	tok, err := e.oauthConfig(c).Exchange(e.ctx(), k, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	if aud := audOf(t, e, tok.AccessToken); !slices.Equal(aud, []string{gatewayResource, mqttResource}) {
		t.Errorf("aud %v, want the resources of the authorization request", aud)
	}
	k, v = code(gatewayResource, mqttResource)
	tok, err = e.oauthConfig(c).Exchange(e.ctx(), k, oauth2.VerifierOption(v), oauth2.SetAuthURLParam("resource", mqttResource))
	if err != nil {
		t.Fatal(err)
	}
	if aud := audOf(t, e, tok.AccessToken); !slices.Equal(aud, []string{mqttResource}) {
		t.Errorf("aud %v, want the one resource the token request narrowed to", aud)
	}
	k, v = code(gatewayResource)
	_, err = e.oauthConfig(c).Exchange(e.ctx(), k, oauth2.VerifierOption(v), oauth2.SetAuthURLParam("resource", e.srv.URL))
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "invalid_target" {
		t.Errorf("widening the code's resources: %v, want invalid_target", err)
	}
	// An unknown resource at the authorization endpoint goes back to the
	// client as invalid_target (RFC 8707 §2).
	u := e.oauthConfig(c, "speaker:play").AuthCodeURL("s", oauth2.S256ChallengeOption(oauth2.GenerateVerifier())) + "&resource=" + url.QueryEscape("https://elsewhere.example/")
	resp, body := e.get(t, b, u)
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther || loc.Query().Get("error") != "invalid_target" || !strings.Contains(loc.Query().Get("error_description"), "resource") {
		t.Errorf("unknown resource at authorize: %d %s %.200s", resp.StatusCode, loc, body)
	}
}

// Clients stored before resource indicators (no resources in the store)
// keep every resource they had, as configured now.
func TestClientsStoredBeforeResources(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	ctx := context.Background()
	old := &store.Client{Name: "old", Type: store.ClientConfidential, TokenEndpointAuthMethod: methodPost, GrantTypes: []string{GrantClientCredentials}}
	if err := e.st.CreateClient(ctx, old); err != nil {
		t.Fatal(err)
	}
	secret := "an old secret"
	if _, err := e.st.UpdateClient(ctx, old.ID, 0, func(c *store.Client) error { c.SecretHash = e.s.secretHash(c.ID, secret); return nil }); err != nil {
		t.Fatal(err)
	}
	resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantClientCredentials}, "client_id": {old.ID}, "client_secret": {secret}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("old client: %d %s", resp.StatusCode, body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal([]byte(body), &tr); err != nil {
		t.Fatal(err)
	}
	if aud := audOf(t, e, tr.AccessToken); !slices.Equal(aud, []string{e.srv.URL, mqttResource, gatewayResource}) {
		t.Errorf("old client's token: aud %v, want every resource of the platform, as before", aud)
	}
}

// go test -run '^$' -fuzz FuzzRequestedResources ./internal/oauth/
func FuzzRequestedResources(f *testing.F) {
	s := &Server{opts: Options{Audience: []string{"https://id.example", mqttResource}}}
	c := &store.Client{}
	for _, v := range []string{"https://id.example", mqttResource, "urn:x", "https://id.example#f", "/rel", "", "%zz", "https://id.example/?q"} {
		f.Add(v)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := s.requestedResources(c, []string{v, v})
		switch {
		case err != nil && (err.Code != "invalid_target" || err.Description == ""):
			t.Fatalf("%q: %v", v, err)
		case err == nil && (len(got) != 1 || !slices.Contains(s.opts.Audience, got[0])):
			t.Fatalf("%q accepted as %v", v, got)
		}
	})
}

func TestSetClientResources(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	ctx := context.Background()
	c, _ := e.client(t, ClientSpec{Name: "svc", GrantTypes: []string{GrantClientCredentials}})
	if c.Resources != nil || c.DefaultResources != nil || !slices.Equal(e.s.defaultResources(c), []string{e.srv.URL, mqttResource, gatewayResource}) {
		t.Fatalf("registered without resources: %v / %v, want every resource of the platform", c.Resources, c.DefaultResources)
	}
	up, err := e.s.SetClientResources(ctx, "test", c.ID, []string{mqttResource, gatewayResource}, []string{mqttResource})
	if err != nil || !slices.Equal(up.Resources, []string{mqttResource, gatewayResource}) || !slices.Equal(up.DefaultResources, []string{mqttResource}) {
		t.Fatalf("narrowed: %+v %v", up, err)
	}
	for _, bad := range [][2][]string{
		{{"https://elsewhere.example/"}, nil},
		{{mqttResource}, {gatewayResource}},
		{{mqttResource, mqttResource}, nil},
		{{"not a uri"}, nil},
	} {
		_, err := e.s.SetClientResources(ctx, "test", c.ID, bad[0], bad[1])
		var ce *ClientError
		if !errors.As(err, &ce) || !strings.Contains(ce.Field, "resources") {
			t.Errorf("%v: %v, want a ClientError naming the field", bad, err)
		}
	}
}
