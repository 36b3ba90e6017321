package server

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/oauth"
)

// introspectAt posts an RFC 7662 form to path with auth and reads the
// JSON answer.
func introspectAt(t *testing.T, r *running, path string, form url.Values, auth func(*http.Request)) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", r.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if auth != nil {
		auth(req)
	}
	resp, err := r.client.Do(req)
	must(t, "introspecting", err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("introspection answer %d %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	return resp.StatusCode, out
}

// TestIntrospectionByConfiguredResourceServers: the platform as an operator
// runs it, oauth.resourceServers in its configuration. The resource server
// listed for the gateway's audience introspects a gateway token of another
// client at /oauth2/introspect (what every confidential client could do
// before; listing it keeps it working), seeing only its audience; the one
// listed for the broker's and a client listed nowhere learn nothing of it.
func TestIntrospectionByConfiguredResourceServers(t *testing.T) {
	var app, gatewayRS, brokerRS, other registered
	r := serveWith(t, func(p *Platform) {
		ctx := context.Background()
		srv, cleanup, err := p.OAuthAdmin(ctx, slog.New(slog.DiscardHandler))
		must(t, "opening the authorization server", err)
		defer cleanup()
		for _, c := range []struct {
			name string
			into *registered
		}{{"app", &app}, {"gateway-rs", &gatewayRS}, {"broker-rs", &brokerRS}, {"other", &other}} {
			cl, secret, err := srv.CreateClient(ctx, "test", oauth.ClientSpec{Name: c.name, GrantTypes: []string{"client_credentials"}})
			must(t, "registering "+c.name, err)
			*c.into = registered{cl.ID, secret}
		}
		p.Config.OAuth.ResourceServers = map[string][]string{
			gatewayRS.id: {p.Config.Gateway.Audience},
			brokerRS.id:  {p.Config.MQTT.Audience},
		}
	})
	gw := r.p.Config.Gateway.Audience
	cc := clientcredentials.Config{ClientID: app.id, ClientSecret: app.secret, TokenURL: r.base + "/oauth2/token",
		EndpointParams: url.Values{"resource": {gw}}, AuthStyle: oauth2.AuthStyleInHeader}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, r.client))
	must(t, "the app's token for the gateway", err)
	form := url.Values{"token": {tok.AccessToken}}

	for _, tc := range []struct {
		name   string
		caller registered
		active bool
	}{
		{"the gateway's resource server", gatewayRS, true},
		{"the token's own client", app, true},
		{"the broker's resource server", brokerRS, false},
		{"a client listed nowhere", other, false},
	} {
		code, out := introspectAt(t, r, "/oauth2/introspect", form, basic(tc.caller.id, tc.caller.secret))
		if !tc.active {
			if code != http.StatusOK || len(out) != 1 || out["active"] != false {
				t.Errorf("%s: %d %v; want only active false", tc.name, code, out)
			}
			continue
		}
		aud, _ := out["aud"].([]any)
		if code != http.StatusOK || out["active"] != true || out["client_id"] != app.id || len(aud) != 1 || aud[0] != gw {
			t.Errorf("%s: %d %v; want active, the app's, for the gateway", tc.name, code, out)
		}
	}
}
