package server

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// When a thing leaves the household, or its owner or the member it acts
// for leaves, the grants a member obtained for it through the household
// (the thing acting for them) are revoked at once through the grant
// revocation path: audited grant.revoke, and the grant.revoke event, so
// that a verifier following the bus refuses the access token already
// issued, not only the next refresh. The owner's own grants stay.
func TestHouseholdReleaseRevokesGrants(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		leave func(t *testing.T, w *homeWorld, hh string)
		kept  bool // the household still holds the thing for emma
	}{
		{"the thing is taken out", func(t *testing.T, w *homeWorld, hh string) {
			w.must(t, w.mumC, 204, "DELETE", "/api/v1/households/"+hh+"/things/"+w.speaker.ID, "")
		}, false},
		{"its room is deleted", func(t *testing.T, w *homeWorld, hh string) {
			room := w.must(t, w.mumC, 200, "GET", "/api/v1/households/"+hh, "")["rooms"].([]any)[0].(map[string]any)["id"].(string)
			w.must(t, w.mumC, 204, "DELETE", "/api/v1/households/"+hh+"/rooms/"+room, "")
		}, false},
		{"its owner leaves", func(t *testing.T, w *homeWorld, hh string) {
			w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/members/"+w.gran.ID, `{"role":"guardian"}`)
			w.must(t, w.mumC, 204, "DELETE", "/api/v1/households/"+hh+"/members/"+w.mum.ID, "")
		}, false},
		{"the member leaves", func(t *testing.T, w *homeWorld, hh string) {
			w.must(t, w.emmaC, 204, "DELETE", "/api/v1/households/"+hh+"/members/"+w.emma.ID, "")
		}, false},
		{"the thing moves to another room (kept)", func(t *testing.T, w *homeWorld, hh string) {
			room := w.must(t, w.mumC, 201, "POST", "/api/v1/households/"+hh+"/rooms", `{"name":"Living room"}`)["id"].(string)
			w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/things/"+w.speaker.ID, `{"roomId":"`+room+`"}`)
		}, true},
		{"another member leaves (kept)", func(t *testing.T, w *homeWorld, hh string) {
			w.must(t, w.gC, 204, "DELETE", "/api/v1/households/"+hh+"/members/"+w.gran.ID, "")
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newHomeWorld(t)
			hh, room := w.family(t)
			w.must(t, w.mumC, 200, "PUT", "/api/v1/households/"+hh+"/rules", `{"rules":[{"id":"emma","effect":"allow","who":{"kind":"member","member":"`+w.emma.ID+
				`"},"things":{"kind":"room","id":"`+room+`"},"actions":["pair","use"]}]}`)
			_, mumGrant := w.pairFor(t, "mum")
			emmaAT, emmaGrant := w.pairFor(t, "emma")
			verifier := w.verifier(t)
			aud := payload(t, emmaAT)["aud"]
			if list, ok := aud.([]any); ok {
				aud = list[0]
			}
			verify := tokens.VerifyOptions{Audience: aud.(string)}
			if _, err := verifier.Verify(ctx, tokens.FromProven(emmaAT, nil), verify); err != nil {
				t.Fatalf("emma's speaker token before: %v", err)
			}

			tc.leave(t, w, hh)
			if tc.kept {
				if _, err := verifier.Verify(ctx, tokens.FromProven(emmaAT, nil), verify); err != nil {
					t.Fatalf("emma's speaker token after: %v", err)
				}
				if g, err := w.r.p.Store.GetGrant(ctx, emmaGrant); err != nil || !g.RevokedAt.IsZero() {
					t.Fatalf("emma's grant: %+v %v", g, err)
				}
				return
			}

			if _, err := verifier.Verify(ctx, tokens.FromProven(emmaAT, nil), verify); err == nil || !strings.Contains(err.Error(), "revoked") {
				t.Fatalf("emma's speaker token after: %v, want revoked", err)
			}
			g, err := w.r.p.Store.GetGrant(ctx, emmaGrant)
			if err != nil || g.RevokedAt.IsZero() {
				t.Fatalf("emma's grant: %+v %v", g, err)
			}
			recs, _ := w.r.p.Store.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: "grant", ID: emmaGrant}, Limit: 10})
			revoked := ""
			for _, r := range recs {
				if r.Action == "grant.revoke" {
					revoked = string(r.Detail)
				}
			}
			if !strings.Contains(revoked, "the household no longer holds the device for this user") {
				t.Fatalf("audit of the revocation: %q", revoked)
			}
			// The owner's own grant for her speaker stands.
			if g, err := w.r.p.Store.GetGrant(ctx, mumGrant); err != nil || !g.RevokedAt.IsZero() {
				t.Fatalf("mum's grant: %+v %v", g, err)
			}
		})
	}
}

// pairFor pairs mum's speaker for user through the device flow and returns
// the speaker's access token for them and its grant.
func (w *homeWorld) pairFor(t *testing.T, user string) (accessToken, grant string) {
	t.Helper()
	deviceCode, userCode := w.deviceStart(t, w.speakerApp)
	if r := w.allow(t, user, userCode); r.status != 200 {
		t.Fatalf("%s pairs the speaker: %d %.600s", user, r.status, r.body)
	}
	code, out := w.tokenForm(t, "/oauth2/token", url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:device_code"}, "client_id": {w.speakerApp}, "device_code": {deviceCode}})
	if code != 200 {
		t.Fatalf("exchange: %d %v", code, out)
	}
	at := out["access_token"].(string)
	return at, payload(t, at)["gid"].(string)
}

// verifier is a token verifier like a resource server's, following
// revocations on the bus.
func (w *homeWorld) verifier(t *testing.T) *tokens.Verifier {
	t.Helper()
	keys, err := tokens.NewKeys(context.Background(), w.r.p.Store, tokens.KeysConfig{MasterKey: w.r.p.Key, Alg: tokens.ES256, MaxTokenLifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	v, err := tokens.NewVerifier(keys, tokens.VerifierConfig{Issuer: w.r.p.Config.HTTP.PublicURL, Bus: w.r.p.Bus})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	return v
}
