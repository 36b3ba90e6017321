package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// metricsEnv is an env whose server registers its metrics with reg.
func metricsEnv(t *testing.T) (*env, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	return newEnv(t, func(o *Options) { o.Registerer = reg }), reg
}

// TestTokenMetrics: real token requests with golang.org/x/oauth2, counted
// by grant and result as the operator reads them.
func TestTokenMetrics(t *testing.T) {
	e, reg := metricsEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}})
	cfg := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.srv.URL + PathToken}
	for range 2 {
		if _, err := cfg.Token(e.ctx()); err != nil {
			t.Fatalf("token: %v", err)
		}
	}
	var re *oauth2.RetrieveError
	wrong := cfg
	wrong.ClientSecret = "not the secret"
	if _, err := wrong.Token(e.ctx()); !errors.As(err, &re) || re.ErrorCode != "invalid_client" {
		t.Fatalf("wrong secret: %v", err)
	}
	wide := cfg
	wide.Scopes = []string{"speaker:admin"}
	if _, err := wide.Token(e.ctx()); !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
		t.Fatalf("wider scope: %v", err)
	}
	sp := e.speakerClient(t)
	d := e.startDevice(t, sp.ID)
	if _, body := e.pollDevice(t, sp.ID, d.DeviceCode); oauthError(t, body) != "authorization_pending" {
		t.Fatalf("poll: %s", body)
	}

	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP thingid_oauth_tokens_total Token endpoint answers by grant type and result (issued, or the OAuth error code).
# TYPE thingid_oauth_tokens_total counter
thingid_oauth_tokens_total{grant="authorization_code",result="issued"} 0
thingid_oauth_tokens_total{grant="client_credentials",result="invalid_client"} 1
thingid_oauth_tokens_total{grant="client_credentials",result="invalid_scope"} 1
thingid_oauth_tokens_total{grant="client_credentials",result="issued"} 2
thingid_oauth_tokens_total{grant="refresh_token",result="issued"} 0
thingid_oauth_tokens_total{grant="urn:ietf:params:oauth:grant-type:device_code",result="authorization_pending"} 1
thingid_oauth_tokens_total{grant="urn:ietf:params:oauth:grant-type:device_code",result="issued"} 0
thingid_oauth_tokens_total{grant="urn:ietf:params:oauth:grant-type:jwt-bearer",result="issued"} 0
`), "thingid_oauth_tokens_total")
	if err != nil {
		t.Fatal(err)
	}
}

// TestAttackTokenMetricsBounded: whatever a client sends as grant_type, and
// whatever an extension answers as its error code, the labels are the
// server's own; nobody grows /metrics with a series per request.
func TestAttackTokenMetricsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	const odd, plain = "urn:example:odd", "urn:example:plain"
	e := newEnv(t, func(o *Options) {
		o.Registerer = reg
		o.Extensions = map[string]ExtensionGrant{
			odd: {Handle: func(context.Context, *store.Client, url.Values, *tokens.Confirmation) (int, any, error) {
				return http.StatusBadRequest, wireError{"attacker-chosen-code"}, nil
			}},
			plain: {Handle: func(context.Context, *store.Client, url.Values, *tokens.Confirmation) (int, any, error) {
				return http.StatusForbidden, map[string]string{"error": "no"}, nil
			}},
		}
	})
	c, secret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials, odd, plain}})
	for _, gt := range []string{"password", "x-attacker-1", "x-attacker-2", strings.Repeat("g", 500)} {
		resp, body := e.tokenRequest(t, url.Values{"grant_type": {gt}}, basic(c.ID, secret)...)
		if resp.StatusCode != http.StatusBadRequest || oauthError(t, body) != "unsupported_grant_type" {
			t.Fatalf("grant_type %.20q: %d %s", gt, resp.StatusCode, body)
		}
	}
	if resp, body := e.tokenRequest(t, url.Values{}, basic(c.ID, secret)...); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("no grant_type: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.tokenRequest(t, url.Values{"grant_type": {odd}}, basic(c.ID, secret)...); oauthError(t, body) != "attacker-chosen-code" {
		t.Fatalf("extension: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.tokenRequest(t, url.Values{"grant_type": {plain}}, basic(c.ID, secret)...); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("extension without a code: %d %s", resp.StatusCode, body)
	}
	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP thingid_oauth_tokens_total Token endpoint answers by grant type and result (issued, or the OAuth error code).
# TYPE thingid_oauth_tokens_total counter
thingid_oauth_tokens_total{grant="authorization_code",result="issued"} 0
thingid_oauth_tokens_total{grant="client_credentials",result="issued"} 0
thingid_oauth_tokens_total{grant="other",result="invalid_request"} 1
thingid_oauth_tokens_total{grant="other",result="unsupported_grant_type"} 4
thingid_oauth_tokens_total{grant="refresh_token",result="issued"} 0
thingid_oauth_tokens_total{grant="urn:example:odd",result="issued"} 0
thingid_oauth_tokens_total{grant="urn:example:odd",result="other"} 1
thingid_oauth_tokens_total{grant="urn:example:plain",result="issued"} 0
thingid_oauth_tokens_total{grant="urn:example:plain",result="other"} 1
thingid_oauth_tokens_total{grant="urn:ietf:params:oauth:grant-type:device_code",result="issued"} 0
thingid_oauth_tokens_total{grant="urn:ietf:params:oauth:grant-type:jwt-bearer",result="issued"} 0
`), "thingid_oauth_tokens_total")
	if err != nil {
		t.Fatal(err)
	}
}

// wireError is an extension's error body.
type wireError struct {
	Code string `json:"error"`
}

func (e wireError) ErrorCode() string { return e.Code }

// TestConsentMetrics: people allow and deny on the real consent pages of
// both flows; only decisions that took effect count.
func TestConsentMetrics(t *testing.T) {
	e, reg := metricsEnv(t)
	web := e.webClient(t)
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	auth := func(state, decision string) *url.URL {
		return e.authorize(t, b, e.oauthConfig(web, "speaker:play").AuthCodeURL(state, oauth2.S256ChallengeOption(oauth2.GenerateVerifier()),
			oauth2.SetAuthURLParam("prompt", "consent")), decision)
	}
	if back := auth("s1", "deny"); back.Query().Get("error") != "access_denied" {
		t.Fatalf("deny: %s", back)
	}
	if back := auth("s2", "allow"); back.Query().Get("code") == "" {
		t.Fatalf("allow: %s", back)
	}

	sp := e.speakerClient(t)
	e.approve(t, e.startDevice(t, sp.ID).UserCode, e.alice, alicePassword)
	denied := e.startDevice(t, sp.ID)
	if resp, page := e.decide(t, b, denied.UserCode, "deny"); resp.StatusCode != http.StatusOK {
		t.Fatalf("deny: %d %s", resp.StatusCode, page)
	}
	// Bob cannot take alice's speaker: his Allow did not take effect.
	bob := e.browser()
	e.signIn(t, bob, "bob", bobPassword)
	if resp, _ := e.decide(t, bob, e.startDevice(t, sp.ID).UserCode, "allow"); resp.StatusCode != http.StatusConflict {
		t.Fatalf("bob's allow: %d", resp.StatusCode)
	}

	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP thingid_consent_decisions_total Consent decisions people made, by flow (authorize, device) and decision (allow, deny).
# TYPE thingid_consent_decisions_total counter
thingid_consent_decisions_total{decision="allow",flow="authorize"} 1
thingid_consent_decisions_total{decision="allow",flow="device"} 1
thingid_consent_decisions_total{decision="deny",flow="authorize"} 1
thingid_consent_decisions_total{decision="deny",flow="device"} 1
`), "thingid_consent_decisions_total")
	if err != nil {
		t.Fatal(err)
	}
}

// TestIntrospectionMetrics: an operator tells probing (or a resource server
// missing from oauth.resourceServers after an upgrade) from tokens that are
// simply dead: withheld counts live tokens answered inactive to a caller
// that may not learn of them.
func TestIntrospectionMetrics(t *testing.T) {
	e, reg := metricsEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}})
	other, otherSecret := e.client(t, ClientSpec{Name: "another backend", GrantTypes: []string{GrantClientCredentials}})
	tok, err := (&clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.srv.URL + PathToken}).Token(e.ctx())
	if err != nil {
		t.Fatal(err)
	}
	e.introspected(t, tok.AccessToken, nil, basic(c.ID, secret)...)
	e.introspected(t, tok.AccessToken, nil, basic(other.ID, otherSecret)...)
	e.introspected(t, "not-a-token", nil, basic(other.ID, otherSecret)...)
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP thingid_oauth_introspections_total Answers of /oauth2/introspect by result: active, inactive, or withheld (a live token the caller may not learn of, answered inactive: probing, or a resource server missing from oauth.resourceServers).
# TYPE thingid_oauth_introspections_total counter
thingid_oauth_introspections_total{result="active"} 1
thingid_oauth_introspections_total{result="inactive"} 1
thingid_oauth_introspections_total{result="withheld"} 1
`), "thingid_oauth_introspections_total")
	if err != nil {
		t.Fatal(err)
	}
}
