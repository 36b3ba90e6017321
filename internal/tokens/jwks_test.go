package tokens

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

func decodeSegment(t *testing.T, seg string, v any) {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

type jwkSet struct {
	Keys []map[string]any `json:"keys"`
}

func jwksKIDs(t *testing.T, k *Keys) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	k.JWKS().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jwks", nil))
	var set jwkSet
	if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, key := range set.Keys {
		kids = append(kids, key["kid"].(string))
	}
	slices.Sort(kids)
	return kids
}

func TestJWKS(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA, RS256} {
		t.Run(alg, func(t *testing.T) {
			e := newEnv(t, &memStore{}, masterKey(), nil, newClock(), alg)
			h := e.keys.JWKS()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/jwks", nil))
			if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/jwk-set+json" ||
				!strings.Contains(rec.Header().Get("Cache-Control"), "max-age=60") {
				t.Fatalf("%d %v", rec.Code, rec.Header())
			}
			var set jwkSet
			if err := json.Unmarshal(rec.Body.Bytes(), &set); err != nil {
				t.Fatal(err)
			}
			if len(set.Keys) != 1 {
				t.Fatalf("%d keys", len(set.Keys))
			}
			key := set.Keys[0]
			if key["kid"] != e.signingKID() || key["alg"] != alg || key["use"] != "sig" {
				t.Fatalf("key %v", key)
			}
			for _, private := range []string{"d", "p", "q", "dp", "dq", "qi"} {
				if _, ok := key[private]; ok {
					t.Fatalf("JWKS publishes %q", private)
				}
			}

			req := httptest.NewRequest(http.MethodGet, "/jwks", nil)
			req.Header.Set("If-None-Match", rec.Header().Get("ETag"))
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusNotModified {
				t.Fatalf("If-None-Match: %d", rec.Code)
			}
			rec = httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/jwks", nil))
			if rec.Code != http.StatusMethodNotAllowed {
				t.Fatalf("POST: %d", rec.Code)
			}
		})
	}
}

// A real relying party: go-oidc fetches our JWKS over HTTP and verifies our
// ID tokens, their at_hash, and refuses a tampered one.
func TestGoOIDCVerifiesIDToken(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA, RS256} {
		t.Run(alg, func(t *testing.T) {
			clk := newClock()
			e := newEnv(t, &memStore{}, masterKey(), nil, clk, alg)
			srv := httptest.NewServer(e.keys.JWKS())
			defer srv.Close()
			ctx := context.Background()
			rp := oidc.NewVerifier(testIssuer, oidc.NewRemoteKeySet(ctx, srv.URL), &oidc.Config{
				ClientID: "client-1", SupportedSigningAlgs: []string{alg}, Now: clk.Now,
			})
			issue := func() (idToken, accessToken string) {
				at := e.accessToken(t, accessClaims(clk.Now()))
				id, err := e.is.IDToken(IDClaims{
					Subject: "user-1", Audience: []string{"client-1"}, AuthorizedParty: "client-1",
					ExpiresAt: clk.Now().Add(5 * time.Minute), AuthTime: clk.Now(), Nonce: "n-0S6",
					AccessToken: at, Extra: map[string]any{"email": "ada@example.com"},
				})
				if err != nil {
					t.Fatal(err)
				}
				return id, at
			}
			id, at := issue()
			got, err := rp.Verify(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if got.Subject != "user-1" || got.Nonce != "n-0S6" {
				t.Fatalf("token %+v", got)
			}
			if err := got.VerifyAccessToken(at); err != nil {
				t.Fatalf("at_hash: %v", err)
			}
			var extra struct {
				Email string `json:"email"`
				Azp   string `json:"azp"`
			}
			if err := got.Claims(&extra); err != nil || extra.Email != "ada@example.com" || extra.Azp != "client-1" {
				t.Fatalf("claims %+v: %v", extra, err)
			}

			parts := strings.Split(id, ".")
			var claims map[string]any
			decodeSegment(t, parts[1], &claims)
			claims["sub"] = "admin"
			payload, _ := json.Marshal(claims)
			if _, err := rp.Verify(ctx, parts[0]+"."+b64(payload)+"."+parts[2]); err == nil {
				t.Fatal("go-oidc accepted a tampered ID token")
			}

			// After a rotation go-oidc refetches the JWKS for the new kid.
			if err := e.keys.Rotate(ctx); err != nil {
				t.Fatal(err)
			}
			id, _ = issue()
			// go-oidc wakes the waiters of a JWKS fetch before it clears the
			// fetch, so for a moment a new fetch can get the previous answer.
			eventually(t, "go-oidc verifies a token of the new key", func() bool {
				_, err := rp.Verify(ctx, id)
				return err == nil
			})
		})
	}
}
