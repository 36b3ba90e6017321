package server

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// TestUMAGrantAttacks tries what TestUMAAttacks does not: more claim token
// tricks (ID tokens, an unknown key, a revoked grant, an RPT), other
// clients' pcts and RPTs, a forged ticket naming another resource server's
// resource, and malformed permission requests and resource updates.
func TestUMAGrantAttacks(t *testing.T) {
	w := newUMAWorld(t)
	ctx := context.Background()
	music := w.pat(t, w.music)
	_, out := w.register(t, music, `{"name":"A","resource_scopes":["read","write"],"owner":"alice"}`)
	resA := out["_id"].(string)
	ticketA := func() string {
		return w.ticket(t, music, `{"resource_id":`+jsonQuote(resA)+`,"resource_scopes":["read"]}`)
	}
	push := func(c clientCreds, tok, format string) (int, map[string]any) {
		return w.token(t, c, url.Values{"ticket": {ticketA()}, "claim_token": {tok}, "claim_token_format": {format}})
	}

	t.Run("claim tokens", func(t *testing.T) {
		idToken := func(client string, user *store.User, mutate func(*tokens.IDClaims)) string {
			g := &store.Grant{ClientID: client, UserID: user.ID, Scopes: []string{"openid"}, Created: time.Now()}
			if err := w.r.p.Store.CreateGrant(ctx, g); err != nil {
				t.Fatal(err)
			}
			c := tokens.IDClaims{Subject: user.ID, Audience: []string{client}, AuthorizedParty: client, ExpiresAt: time.Now().Add(5 * time.Minute), Extra: map[string]any{"gid": g.ID}}
			if mutate != nil {
				mutate(&c)
			}
			tok, err := w.iss.IDToken(c)
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		// A good ID token names bob: the owner is asked.
		if code, out := push(w.app, idToken(w.app.id, w.bob, nil), uma.FormatIDToken); code != 403 || out["error"] != "request_submitted" {
			t.Fatalf("bob's ID token: %d %v", code, out)
		}
		unknownKey, err := tokens.NewIssuer(w.iss2Keys(t), w.r.p.Config.HTTP.PublicURL)
		if err != nil {
			t.Fatal(err)
		}
		g := &store.Grant{ClientID: w.app.id, UserID: w.bob.ID, Created: time.Now()}
		if err := w.r.p.Store.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		signedElsewhere, err := unknownKey.AccessToken(tokens.Claims{Subject: w.bob.ID, ClientID: w.app.id, Audience: []string{w.r.p.Config.HTTP.PublicURL},
			ExpiresAt: time.Now().Add(time.Minute), GrantID: g.ID})
		if err != nil {
			t.Fatal(err)
		}
		revoked := w.userToken(t, w.app.id, w.bob, func(c *tokens.Claims) {
			if err := w.r.p.Store.RevokeGrant(ctx, c.GrantID, time.Now()); err != nil {
				t.Fatal(err)
			}
		})
		// Alice's own RPT, pushed as if it were a claim token.
		code, out := push(w.app, w.userToken(t, w.app.id, w.alice, nil), uma.FormatAccessToken)
		if code != 200 {
			t.Fatalf("alice's RPT: %d %v", code, out)
		}
		rpt := out["access_token"].(string)
		goodID := idToken(w.app.id, w.bob, nil)
		parts := strings.Split(goodID, ".")
		for name, tc := range map[string]struct{ tok, format string }{
			"an access token of an unknown key":       {signedElsewhere, uma.FormatAccessToken},
			"an access token whose grant was revoked": {revoked, uma.FormatAccessToken},
			"an RPT":                         {rpt, uma.FormatAccessToken},
			"an ID token as an access token": {goodID, uma.FormatAccessToken},
			"another client's ID token":      {idToken(w.app2.id, w.bob, nil), uma.FormatIDToken},
			"an expired ID token": {idToken(w.app.id, w.bob, func(c *tokens.IDClaims) {
				c.IssuedAt, c.ExpiresAt = time.Now().Add(-15*time.Minute), time.Now().Add(-10*time.Minute)
			}), uma.FormatIDToken},
			"an ID token of an unknown key": {func() string {
				tok, err := unknownKey.IDToken(tokens.IDClaims{Subject: w.bob.ID, Audience: []string{w.app.id}, ExpiresAt: time.Now().Add(time.Minute), Extra: map[string]any{"gid": g.ID}})
				if err != nil {
					t.Fatal(err)
				}
				return tok
			}(), uma.FormatIDToken},
			"an ID token with alg none": {b64url(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + ".", uma.FormatIDToken},
			"an unknown format":         {goodID, "urn:example:saml"},
			"not a JWT":                 {"a.b", uma.FormatIDToken},
		} {
			code, out := push(w.app, tc.tok, tc.format)
			if code != 400 || (out["error"] != "invalid_grant" && out["error"] != "invalid_request") {
				t.Errorf("%s: %d %v", name, code, out)
			}
		}
	})

	t.Run("pcts and RPTs of other clients and parties", func(t *testing.T) {
		// Alice, the owner, through app2: an RPT and a pct of app2.
		code, out := push(w.app2, w.userToken(t, w.app2.id, w.alice, nil), uma.FormatAccessToken)
		if code != 200 {
			t.Fatalf("alice at app2: %d %v", code, out)
		}
		rpt2, pct2 := out["access_token"].(string), out["pct"].(string)
		if code, out := w.token(t, w.app, url.Values{"ticket": {ticketA()}, "pct": {pct2}}); code != 400 || out["error"] != "invalid_grant" {
			t.Errorf("app2's pct at app: %d %v", code, out)
		}
		bob := w.userToken(t, w.app.id, w.bob, nil)
		if code, out := w.token(t, w.app, url.Values{"ticket": {ticketA()}, "claim_token": {bob}, "claim_token_format": {uma.FormatAccessToken}, "rpt": {rpt2}}); code != 400 || out["error"] != "invalid_grant" {
			t.Errorf("app upgrading app2's RPT: %d %v", code, out)
		}
		// Alice's RPT at app, upgraded with bob's claims.
		code, out = push(w.app, w.userToken(t, w.app.id, w.alice, nil), uma.FormatAccessToken)
		if code != 200 {
			t.Fatalf("alice at app: %d %v", code, out)
		}
		if code, out := w.token(t, w.app, url.Values{"ticket": {ticketA()}, "claim_token": {bob}, "claim_token_format": {uma.FormatAccessToken}, "rpt": {out["access_token"].(string)}}); code != 400 || out["error"] != "invalid_grant" {
			t.Errorf("bob upgrading alice's RPT: %d %v", code, out)
		}
	})

	t.Run("a ticket naming another resource server's resource", func(t *testing.T) {
		// A ticket the permission endpoint would never make (photos asking
		// for music's resource), forged into the store: it grants nothing.
		v := "umt_DDDDDDDDDDDDDDDDDDDDDDDDDD"
		key := hmacSum(w.r.p.derivedKey("thingid uma v1"), "thingid uma ticket v1")
		if err := w.r.p.Store.CreateUMATicket(ctx, &store.UMATicket{Hash: hmacSum(key, v), ClientID: w.photos.id,
			Permissions: []store.UMAPermission{{ResourceID: resA, Scopes: []string{"read"}}}, ExpiresAt: time.Now().Add(time.Minute)}); err != nil {
			t.Fatal(err)
		}
		code, out := w.token(t, w.app, url.Values{"ticket": {v}, "claim_token": {w.userToken(t, w.app.id, w.alice, nil)}, "claim_token_format": {uma.FormatAccessToken}})
		if code != 400 || out["error"] != "invalid_grant" {
			t.Fatalf("%d %v", code, out)
		}
	})

	t.Run("bad permission requests", func(t *testing.T) {
		deep := strings.Repeat("[", 100) + strings.Repeat("]", 100)
		many := "[" + strings.TrimSuffix(strings.Repeat(`{"resource_id":"r","resource_scopes":["a"]},`, 33), ",") + "]"
		for _, tc := range []struct{ body, code, field string }{
			{`[]`, "invalid_request", "body"},
			{many, "invalid_request", "body"},
			{deep, "invalid_request", "body"},
			{`not json`, "invalid_request", "body"},
			{`{"resource_id":"` + strings.Repeat("r", 70<<10) + `"}`, "invalid_request", "body"},
			{`[{}]`, "invalid_request", "[0].resource_id"},
			{`{"resource_scopes":["read"]}`, "invalid_request", "[0].resource_id"},
			{`{"resource_id":` + jsonQuote(resA) + `}`, "invalid_request", "[0].resource_scopes"},
			{`{"resource_id":` + jsonQuote(resA) + `,"resource_scopes":"read"}`, "invalid_request", "resource_scopes"},
			{`{"resource_id":` + jsonQuote(resA) + `,"resource_scopes":["re ad"]}`, "invalid_request", "[0].resource_scopes[0]"},
			{`{"resource_id":"nope","resource_scopes":["read"]}`, "invalid_resource_id", ""},
			{`{"resource_id":` + jsonQuote(resA) + `,"resource_scopes":["fly"]}`, "invalid_scope", ""},
		} {
			code, out := w.call(t, nil, "POST", "/uma/permission", jsonHdr(music), tc.body)
			desc, _ := out["error_description"].(string)
			if code != 400 || out["error"] != tc.code || !strings.HasPrefix(desc, tc.field) {
				t.Errorf("permission body %.60q: %d %v, want 400 %s naming %q", tc.body, code, out, tc.code, tc.field)
			}
		}
	})

	t.Run("bad resource updates", func(t *testing.T) {
		for _, tc := range []struct{ body, field string }{
			{`{"name":"A","resource_scopes":[]}`, "resource_scopes"},
			{`{"name":"A","resource_scopes":["read"],"icon_uri":"ftp://x/y"}`, "icon_uri"},
			{`{"name":"A","resource_scopes":["read"],"description":"` + strings.Repeat("d", 3000) + `"}`, "description"},
			{`{"name":"A","resource_scopes":["read"],"type":7}`, "type"},
		} {
			code, out := w.call(t, nil, "PUT", "/uma/resource_set/"+resA, jsonHdr(music), tc.body)
			desc, _ := out["error_description"].(string)
			if code != 400 || out["error"] != "invalid_request" || !strings.HasPrefix(desc, tc.field+":") {
				t.Errorf("update %.60q: %d %v, want 400 naming %s", tc.body, code, out, tc.field)
			}
		}
		// Another resource server cannot update (nor learn of) music's resource.
		carolPAT := w.userToken(t, w.photos.id, w.carol, func(c *tokens.Claims) { c.Scope = []string{uma.ScopeProtection} })
		if code, _ := w.call(t, nil, "PUT", "/uma/resource_set/"+resA, jsonHdr(carolPAT), `{"name":"Mine","resource_scopes":["read"]}`); code != http.StatusNotFound {
			t.Errorf("photos updated music's resource: %d", code)
		}
	})
}
