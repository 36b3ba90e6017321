package oauth

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

func (e *env) ctx() context.Context {
	return context.WithValue(context.Background(), oauth2.HTTPClient, e.srv.Client())
}

func TestClientCredentialsWithRealClient(t *testing.T) {
	e := newEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"speaker:play", "telemetry:write"}})
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleAutoDetect} {
		cfg := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.srv.URL + "/oauth2/token",
			Scopes: []string{"telemetry:write"}, AuthStyle: style}
		tok, err := cfg.Token(e.ctx())
		if err != nil {
			t.Fatalf("token: %v", err)
		}
		if tok.RefreshToken != "" || tok.TokenType != "Bearer" {
			t.Fatalf("token %+v: client_credentials gets no refresh token (RFC 6749 §4.4.3)", tok)
		}
		claims, err := e.verifier.Inspect(context.Background(), tok.AccessToken, tokens.VerifyOptions{Audience: e.srv.URL})
		if err != nil {
			t.Fatalf("verify: %v", err)
		}
		if claims.Subject != c.ID || claims.ClientID != c.ID || !slices.Equal(claims.Scope, []string{"telemetry:write"}) || claims.GrantID == "" {
			t.Fatalf("claims %+v", claims)
		}
	}
	// One own grant per client, reused.
	gs, _ := e.st.ListGrants(context.Background(), store.GrantFilter{ClientID: c.ID})
	if len(gs) != 1 || gs[0].UserID != "" {
		t.Fatalf("grants %+v, want one client-own grant", gs)
	}
	// Scopes beyond the client's are refused.
	cfg := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: e.srv.URL + "/oauth2/token", Scopes: []string{"speaker:admin"}, AuthStyle: oauth2.AuthStyleInHeader}
	var re *oauth2.RetrieveError
	if _, err := cfg.Token(e.ctx()); !errors.As(err, &re) || re.ErrorCode != "invalid_scope" {
		t.Fatalf("wider scope: %v", err)
	}
	// No scope parameter: all of the client's scopes.
	cfg.Scopes = nil
	tok, err := cfg.Token(e.ctx())
	if err != nil || tok.Extra("scope") != "speaker:play telemetry:write" {
		t.Fatalf("default scopes: %v %v", err, tok)
	}
}

func TestClientCredentialsRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	device, secret := e.client(t, ClientSpec{Name: "speaker", GrantTypes: []string{GrantClientCredentials}, ThingID: e.speaker.ID})
	cc := url.Values{"grant_type": {GrantClientCredentials}}
	resp, body := e.tokenRequest(t, cc, basic(device.ID, secret)...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("device client: %d %s", resp.StatusCode, body)
	}
	// A disabled thing gets no token through its client.
	if _, err := e.ids.UpdateThing(ctx, "test", e.speaker.ID, 0, func(th *store.Thing) error { th.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if resp, body := e.tokenRequest(t, cc, basic(device.ID, secret)...); resp.StatusCode == http.StatusOK {
		t.Fatalf("disabled thing got a token: %s", body)
	}
	// A client without the grant type.
	dc, dsecret := e.client(t, ClientSpec{Name: "dev", GrantTypes: []string{GrantDeviceCode}})
	if resp, body := e.tokenRequest(t, cc, basic(dc.ID, dsecret)...); resp.StatusCode != 400 || oauthError(t, body) != "unauthorized_client" {
		t.Fatalf("grant type not registered: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.tokenRequest(t, url.Values{"grant_type": {"password"}}, basic(dc.ID, dsecret)...); oauthError(t, body) != "unsupported_grant_type" {
		t.Fatalf("password grant: %d %s", resp.StatusCode, body)
	}
}

func TestTokenRequestParsing(t *testing.T) {
	e := newEnv(t)
	c, secret := e.client(t, ClientSpec{Name: "backend", GrantTypes: []string{GrantClientCredentials}})
	h := basic(c.ID, secret)
	hc := e.srv.Client()
	cases := []struct {
		name, method, path, ctype, body string
		status                          int
	}{
		{"duplicate grant_type", "POST", "/oauth2/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&grant_type=client_credentials", 400},
		{"duplicate scope", "POST", "/oauth2/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=a&scope=b", 400},
		{"duplicate empty", "POST", "/oauth2/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=&scope=", 400},
		{"oversize", "POST", "/oauth2/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&x=" + strings.Repeat("a", maxFormBody), 400},
		{"json body", "POST", "/oauth2/token", "application/json", `{"grant_type":"client_credentials"}`, 400},
		{"query parameters", "POST", "/oauth2/token?grant_type=client_credentials", "application/x-www-form-urlencoded", "", 400},
		{"GET", "GET", "/oauth2/token?grant_type=client_credentials", "", "", 405},
		{"semicolon", "POST", "/oauth2/token", "application/x-www-form-urlencoded", "grant_type=client_credentials;scope=x", 400},
		{"no grant type", "POST", "/oauth2/token", "application/x-www-form-urlencoded", "scope=x", 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.do(t, hc, tc.method, tc.path, tc.ctype, tc.body, h...)
			if resp.StatusCode != tc.status || oauthError(t, body) != "invalid_request" {
				t.Fatalf("%d %s, want %d invalid_request", resp.StatusCode, body, tc.status)
			}
			if resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("headers %v", resp.Header)
			}
		})
	}
	// An empty parameter counts as omitted (RFC 6749 §3.1).
	if resp, body := e.do(t, hc, "POST", "/oauth2/token", "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=", h...); resp.StatusCode != 200 {
		t.Fatalf("empty scope: %d %s", resp.StatusCode, body)
	}
}

func TestDisabledUserGetsNoToken(t *testing.T) {
	e := newEnv(t)
	tv, _ := e.client(t, ClientSpec{Name: "tv", Type: store.ClientPublic, GrantTypes: []string{GrantDeviceCode, GrantRefreshToken}, Scopes: []string{"speaker:play"}})
	code := e.startDevice(t, tv.ID)
	e.approve(t, code.UserCode, e.alice, alicePassword)
	disable(t, e.ids, e.alice.ID)
	resp, body := e.pollDevice(t, tv.ID, code.DeviceCode)
	if resp.StatusCode != 400 || oauthError(t, body) != "invalid_grant" {
		t.Fatalf("disabled user: %d %s", resp.StatusCode, body)
	}
}

func disable(t testing.TB, ids *identity.Service, userID string) {
	t.Helper()
	if _, err := ids.UpdateUser(context.Background(), "test", userID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
}

func FuzzParseTokenRequest(f *testing.F) {
	for _, s := range []string{"grant_type=client_credentials", "a=1&a=2", "a=%zz", "a=1;b=2", "=&=", "scope=a+b&x=", strings.Repeat("a=b&", 100)} {
		f.Add("application/x-www-form-urlencoded", s)
	}
	f.Add("application/x-www-form-urlencoded; charset=utf-8", "a=b")
	f.Add("text/plain", "a=b")
	f.Fuzz(func(t *testing.T, ctype, body string) {
		form, err := parseForm(ctype, strings.NewReader(body))
		if err != nil {
			if form != nil || err.Code != "invalid_request" || err.Status != 400 {
				t.Fatalf("error %v with form %v", err, form)
			}
			return
		}
		if len(body) > maxFormBody {
			t.Fatal("oversize body accepted")
		}
		for k, v := range form {
			if len(v) != 1 || v[0] == "" {
				t.Fatalf("parameter %q = %q: want exactly one non-empty value", k, v)
			}
		}
	})
}
