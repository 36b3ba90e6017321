package oauth

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

const (
	mqttResource    = "urn:thingid:mqtt"
	gatewayResource = "urn:thingid:gateway"
)

// withPlatformResources makes the platform's resources those of a full platform
// and allows the broker's scopes used here.
func withPlatformResources(o *Options) {
	o.Audience = []string{o.Issuer, mqttResource, gatewayResource}
	o.MQTTAudience, o.GatewayAudience = mqttResource, gatewayResource
	o.Scopes = append(o.Scopes, "mqtt:sub:things/+/telemetry", "mqtt:sub:x")
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

// Clients stored before resource indicators (no resources in the store) get
// the resources their scopes need by default (derivedResources) and may
// still ask for any resource of the platform.
func TestClientsStoredBeforeResources(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	ctx := context.Background()
	old := &store.Client{Name: "old", Type: store.ClientConfidential, TokenEndpointAuthMethod: methodPost, GrantTypes: []string{GrantClientCredentials},
		Scopes: []string{"mqtt:pub:things/#"}}
	if err := e.st.CreateClient(ctx, old); err != nil {
		t.Fatal(err)
	}
	secret := "an old secret"
	if _, err := e.st.UpdateClient(ctx, old.ID, 0, func(c *store.Client) error { c.SecretHash = e.s.secretHash(c.ID, secret); return nil }); err != nil {
		t.Fatal(err)
	}
	get := func(resources ...string) []string {
		t.Helper()
		form := url.Values{"grant_type": {GrantClientCredentials}, "client_id": {old.ID}, "client_secret": {secret}, "resource": resources}
		resp, body := e.tokenRequest(t, form)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("old client, resources %v: %d %s", resources, resp.StatusCode, body)
		}
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.Unmarshal([]byte(body), &tr); err != nil {
			t.Fatal(err)
		}
		return audOf(t, e, tr.AccessToken)
	}
	if aud := get(); !slices.Equal(aud, []string{mqttResource}) {
		t.Errorf("old client's token: aud %v, want the broker only, what its mqtt scope needs", aud)
	}
	if aud := get(gatewayResource, e.srv.URL); !slices.Equal(aud, []string{gatewayResource, e.srv.URL}) {
		t.Errorf("old client naming resources: aud %v, want those it named", aud)
	}
}

// A refresh token keeps the resources of the original grant (RFC 8707
// §2.2): without resource the new access token is for them, not for the
// client's (wider) defaults; a refresh may name some of them, never another,
// and a refused request does not use the refresh token up.
func TestRefreshKeepsTheGrantsResources(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	c := e.webClient(t) // defaults: the issuer (openid) and the gateway (speaker:play)
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	exchange := func(authResources []string, tokenResource string) *oauth2.Token {
		t.Helper()
		v := oauth2.GenerateVerifier()
		u := e.oauthConfig(c, "openid", "offline_access", "speaker:play").AuthCodeURL("s", oauth2.S256ChallengeOption(v))
		for _, r := range authResources {
			u += "&resource=" + url.QueryEscape(r)
		}
		back := e.authorize(t, b, u, "allow")
		opts := []oauth2.AuthCodeOption{oauth2.VerifierOption(v)}
		if tokenResource != "" {
			opts = append(opts, oauth2.SetAuthURLParam("resource", tokenResource))
		}
		tok, err := e.oauthConfig(c).Exchange(e.ctx(), back.Query().Get("code"), opts...)
		if err != nil || tok.RefreshToken == "" {
			t.Fatalf("exchange: %v %+v", err, tok)
		}
		return tok
	}
	tok := exchange([]string{gatewayResource, mqttResource}, gatewayResource)
	if aud := audOf(t, e, tok.AccessToken); !slices.Equal(aud, []string{gatewayResource}) {
		t.Fatalf("narrowed at the token request: aud %v", aud)
	}
	rt := tok.RefreshToken
	for _, widen := range []string{e.srv.URL, "https://elsewhere.example/"} {
		resp, body, _ := e.refresh(t, c.ID, rt, "resource", widen)
		if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_target" || !strings.Contains(body, widen) {
			t.Errorf("refresh widening to %s: %d %s, want 400 invalid_target naming it", widen, resp.StatusCode, body)
		}
	}
	// The refused requests did not use the token up: the grant's resources
	// (the authorization request's, not the first token's) come back.
	resp, body, tr := e.refresh(t, c.ID, rt)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %s", resp.StatusCode, body)
	}
	if aud := audOf(t, e, tr.AccessToken); !slices.Equal(aud, []string{gatewayResource, mqttResource}) {
		t.Errorf("refresh without resource: aud %v, want the original grant's", aud)
	}
	resp, body, tr = e.refresh(t, c.ID, tr.RefreshToken, "resource", mqttResource)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh naming one resource: %d %s", resp.StatusCode, body)
	}
	if aud := audOf(t, e, tr.AccessToken); !slices.Equal(aud, []string{mqttResource}) {
		t.Errorf("refresh naming the broker: aud %v", aud)
	}
	// Narrowing one refresh does not narrow the grant.
	if _, body, tr = e.refresh(t, c.ID, tr.RefreshToken); !slices.Equal(audOf(t, e, tr.AccessToken), []string{gatewayResource, mqttResource}) {
		t.Errorf("refresh after a narrowed one: %s", body)
	}

	// Resources an administrator takes from the client leave its grants.
	if _, err := e.s.SetClientResources(context.Background(), "test", c.ID, []string{e.srv.URL, gatewayResource}, nil); err != nil {
		t.Fatal(err)
	}
	if _, body, tr = e.refresh(t, c.ID, tr.RefreshToken); !slices.Equal(audOf(t, e, tr.AccessToken), []string{gatewayResource}) {
		t.Errorf("refresh after the broker was taken from the client: %s", body)
	}
	if _, err := e.s.SetClientResources(context.Background(), "test", c.ID, nil, nil); err != nil {
		t.Fatal(err)
	}

	// An authorization request without resource: the grant is for the
	// resources of the first token, here those its token request named.
	tok = exchange(nil, mqttResource)
	if _, body, tr = e.refresh(t, c.ID, tok.RefreshToken); !slices.Equal(audOf(t, e, tr.AccessToken), []string{mqttResource}) {
		t.Errorf("refresh of a grant for the broker: %s", body)
	}
	resp, body, _ = e.refresh(t, c.ID, tr.RefreshToken, "resource", gatewayResource)
	if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_target" {
		t.Errorf("refresh widening a grant for the broker: %d %s", resp.StatusCode, body)
	}
}

// The device authorization request takes resource (RFC 8707 §2, RFC 8628
// §3.1), refused like the token endpoint's; its tokens and their refreshes
// are for those resources, and the token request may narrow them only.
func TestDeviceAuthorizationResource(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	c := e.speakerClient(t) // default: the gateway (speaker:play)
	for _, bad := range []string{"https://elsewhere.example/", "not a uri", e.srv.URL + "#frag"} {
		resp, body := e.post(t, e.srv.Client(), "/oauth2/device_authorization", url.Values{"client_id": {c.ID}, "resource": {bad}})
		if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_target" || !strings.Contains(body, strconv.Quote(bad)[1:len(strconv.Quote(bad))-1]) {
			t.Errorf("device authorization for %q: %d %s, want 400 invalid_target naming it", bad, resp.StatusCode, body)
		}
	}
	d := e.startDevice(t, c.ID, "resource", mqttResource, "resource", e.srv.URL)
	e.approve(t, d.UserCode, e.alice, alicePassword)
	// Widening at the token request is refused and leaves the code usable.
	resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantDeviceCode}, "client_id": {c.ID}, "device_code": {d.DeviceCode}, "resource": {gatewayResource}})
	if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_target" || !strings.Contains(body, gatewayResource) {
		t.Errorf("device token widening: %d %s, want invalid_target", resp.StatusCode, body)
	}
	resp, body = e.pollDevice(t, c.ID, d.DeviceCode)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("device token: %d %s", resp.StatusCode, body)
	}
	var tr tokenResponse
	_ = json.Unmarshal([]byte(body), &tr)
	if aud := audOf(t, e, tr.AccessToken); !slices.Equal(aud, []string{mqttResource, e.srv.URL}) {
		t.Errorf("device token: aud %v, want the device authorization request's resources", aud)
	}
	if _, body, tr = e.refresh(t, c.ID, tr.RefreshToken); !slices.Equal(audOf(t, e, tr.AccessToken), []string{mqttResource, e.srv.URL}) {
		t.Errorf("refresh of the device grant: %s", body)
	}
	// Without resource: the client's default, the gateway; the token request
	// may name another of the client's resources.
	if aud := audOf(t, e, e.pair(t, c).AccessToken); !slices.Equal(aud, []string{gatewayResource}) {
		t.Errorf("device token without resource: aud %v, want the gateway", aud)
	}
}

// client_credentials and jwt-bearer have no earlier request: the token
// request's resources, among the client's, else its defaults.
func TestClientCredentialsResources(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	c, secret := e.client(t, ClientSpec{Name: "telemetry", GrantTypes: []string{GrantClientCredentials}, TokenEndpointAuthMethod: methodPost,
		Scopes: []string{"mqtt:sub:things/+/telemetry", "openid"}, Resources: []string{e.srv.URL, mqttResource}})
	for _, tc := range []struct {
		resources []string
		want      []string // nil: invalid_target
	}{
		{nil, []string{e.srv.URL, mqttResource}},
		{[]string{mqttResource}, []string{mqttResource}},
		{[]string{gatewayResource}, nil},
	} {
		resp, body := e.tokenRequest(t, url.Values{"grant_type": {GrantClientCredentials}, "client_id": {c.ID}, "client_secret": {secret}, "resource": tc.resources})
		if tc.want == nil {
			if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_target" {
				t.Errorf("%v: %d %s, want invalid_target", tc.resources, resp.StatusCode, body)
			}
			continue
		}
		var tr tokenResponse
		_ = json.Unmarshal([]byte(body), &tr)
		if resp.StatusCode != http.StatusOK || !slices.Equal(audOf(t, e, tr.AccessToken), tc.want) {
			t.Errorf("%v: %d %s, want aud %v", tc.resources, resp.StatusCode, body, tc.want)
		}
	}
}

// The default audience of a client registered without resources, from its
// scopes (RFC 9700 §2.3).
func TestDerivedResources(t *testing.T) {
	const iss = "https://id.example"
	full := platformResources{all: []string{iss, mqttResource, gatewayResource}, issuer: iss, mqtt: mqttResource, gateway: gatewayResource}
	noBroker := platformResources{all: []string{iss, gatewayResource}, issuer: iss, gateway: gatewayResource}
	issuerOnly := platformResources{all: []string{iss}, issuer: iss}
	for _, tc := range []struct {
		name   string
		p      platformResources
		scopes []string
		thing  bool
		want   []string
	}{
		{"no scopes", full, nil, false, []string{iss}},
		{"offline_access only", full, []string{"offline_access"}, false, []string{iss}},
		{"OpenID", full, []string{"openid", "profile", "email", "offline_access"}, false, []string{iss}},
		{"admin", full, []string{"admin"}, false, []string{iss}},
		{"SCIM", full, []string{"scim:read", "scim:write"}, false, []string{iss}},
		{"UMA protection", full, []string{"uma_protection"}, false, []string{iss}},
		{"MQTT", full, []string{"mqtt:pub:things/#", "mqtt:sub:things/+/telemetry"}, false, []string{mqttResource}},
		{"an upstream's scope", full, []string{"speaker:play"}, false, []string{gatewayResource}},
		{"everything, in the platform's order", full, []string{"speaker:play", "mqtt:sub:x", "openid"}, false, []string{iss, mqttResource, gatewayResource}},
		{"a thing: its scopes and the broker", full, []string{"device", "profile"}, false, []string{iss, gatewayResource}},
		{"a thing's own client", full, []string{"device", "profile"}, true, []string{iss, mqttResource, gatewayResource}},
		{"a thing without scopes", full, nil, true, []string{mqttResource}},
		{"MQTT scope, broker off", noBroker, []string{"mqtt:pub:x"}, false, []string{iss}},
		{"a thing, broker off", noBroker, []string{"device"}, true, []string{gatewayResource}},
		{"an upstream's scope, gateway off", issuerOnly, []string{"speaker:play"}, false, []string{iss}},
		{"a scope that only looks like SCIM", full, []string{"scimitar"}, false, []string{gatewayResource}},
	} {
		if got := derivedResources(tc.p, tc.scopes, tc.thing); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
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
	c, _ := e.client(t, ClientSpec{Name: "svc", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"mqtt:sub:x", "telemetry:write"}})
	if c.Resources != nil || c.DefaultResources != nil || !slices.Equal(e.s.defaultResources(c), []string{mqttResource, gatewayResource}) ||
		!slices.Equal(e.s.clientResources(c), []string{e.srv.URL, mqttResource, gatewayResource}) {
		t.Fatalf("registered without resources: %v / %v, want by default what its scopes need, every resource on request", c.Resources, c.DefaultResources)
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

// jwt-bearer is like client_credentials: the token request's resources,
// among the client's, else its defaults (here the gateway, for speaker:play).
func TestJWTBearerResources(t *testing.T) {
	e := newEnv(t, withPlatformResources)
	k := newSigner(t, "k1")
	c, _ := e.client(t, ClientSpec{Name: "backend", TokenEndpointAuthMethod: methodPrivateKeyJWT, JWKS: publicJWKS(t, k),
		GrantTypes: []string{GrantJWTBearer}, Scopes: []string{"speaker:play"}})
	if err := e.st.CreateGrant(context.Background(), &store.Grant{UserID: e.alice.ID, ClientID: c.ID, Scopes: []string{"speaker:play"}, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	request := func(resources ...string) (*http.Response, string) {
		a := e.goodAssertion(c.ID)
		a.sub = e.alice.ID
		return e.tokenRequest(t, url.Values{"grant_type": {GrantJWTBearer}, "assertion": {sign(t, k, a)}, "resource": resources,
			"client_assertion_type": {assertionType}, "client_assertion": {sign(t, k, e.goodAssertion(c.ID))}})
	}
	for _, tc := range []struct {
		resources, want []string
	}{
		{nil, []string{gatewayResource}},
		{[]string{mqttResource}, []string{mqttResource}},
		{[]string{"https://elsewhere.example/"}, nil},
	} {
		resp, body := request(tc.resources...)
		if tc.want == nil {
			if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "invalid_target" {
				t.Errorf("%v: %d %s, want invalid_target", tc.resources, resp.StatusCode, body)
			}
			continue
		}
		var tr tokenResponse
		_ = json.Unmarshal([]byte(body), &tr)
		if resp.StatusCode != http.StatusOK || !slices.Equal(audOf(t, e, tr.AccessToken), tc.want) {
			t.Errorf("%v: %d %s, want aud %v", tc.resources, resp.StatusCode, body, tc.want)
		}
	}
}
