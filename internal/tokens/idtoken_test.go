package tokens

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"

	"github.com/thingid/thingid/internal/events"
)

// idWire are the claims of a valid ID token of client-1 for user-1.
func idWire(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "user-1", "aud": "client-1", "azp": "client-1",
		"iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(), "gid": "grant-1",
	}
}

var idOpts = IDTokenOptions{Clients: []string{"client-1", "client-2"}}

func TestVerifyIDTokenRefuses(t *testing.T) {
	clk, bus := newClock(), events.New()
	e := newEnv(t, &memStore{}, masterKey(), bus, clk, ES256)
	now := clk.Now()
	sk := e.keys.current().signing
	hdr := func(kv ...any) map[string]any {
		return with(map[string]any{"alg": sk.alg.String(), "kid": sk.kid, "typ": "JWT"}, kv...)
	}
	sign := func(h, c map[string]any) string { return signed(t, sk.alg, sk.priv, h, c) }
	good := idWire(now)
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	issued, err := e.is.IDToken(IDClaims{Subject: "user-1", Audience: []string{"client-1"}, AuthorizedParty: "client-1",
		ExpiresAt: now.Add(time.Minute), Extra: map[string]any{"gid": "grant-1", "scope": "mqtt:pub:#", "client_id": "client-2", "thing": "thing-1"}})
	if err != nil {
		t.Fatal(err)
	}
	access := e.accessToken(t, Claims{Subject: "user-1", Audience: []string{"client-1"}, ClientID: "client-1", GrantID: "grant-1", ExpiresAt: now.Add(time.Minute)})
	parts := strings.Split(issued, ".")

	cases := []struct {
		name  string
		token string
		want  error // nil: accepted
	}{
		{"issued by the platform", issued, nil},
		{"no azp, one audience", sign(hdr(), with(good, "azp", nil)), nil},
		{"typ application/jwt", sign(hdr("typ", "application/jwt"), good), nil},
		{"several audiences with azp", sign(hdr(), with(good, "aud", []string{"client-1", "urn:other"})), nil},

		{"an access token (typ at+jwt)", access, ErrType},
		{"access-token claims under typ at+jwt", sign(hdr("typ", "at+jwt"), good), ErrType},
		{"no typ", sign(hdr("typ", nil), good), ErrType},
		{"client not accepted", sign(hdr(), with(good, "aud", "client-3", "azp", "client-3")), ErrAudience},
		{"aud names two accepted clients", sign(hdr(), with(good, "aud", []string{"client-1", "client-2"})), ErrAudience},
		{"azp of another client", sign(hdr(), with(good, "azp", "client-3")), ErrAudience},
		{"several audiences, no azp", sign(hdr(), with(good, "aud", []string{"client-1", "urn:other"}, "azp", nil)), ErrMissing},
		{"no gid", sign(hdr(), with(good, "gid", nil)), ErrMissing},
		{"empty gid", sign(hdr(), with(good, "gid", "")), ErrMalformed},
		{"numeric gid", sign(hdr(), with(good, "gid", 7)), ErrMalformed},
		{"no sub", sign(hdr(), with(good, "sub", nil)), ErrMissing},
		{"cnf", sign(hdr(), with(good, "cnf", map[string]any{"jkt": "x"})), ErrBinding},
		{"expired", sign(hdr(), with(good, "exp", now.Add(-2*time.Minute).Unix())), ErrExpired},
		{"not yet valid", sign(hdr(), with(good, "nbf", now.Add(2*time.Minute).Unix())), ErrNotYetValid},
		{"wrong issuer", sign(hdr(), with(good, "iss", "https://evil.example.com")), ErrIssuer},
		{"attacker key under our kid", signed(t, jwa.ES256(), attacker, hdr(), good), ErrSignature},
		{"unknown kid", signed(t, jwa.ES256(), attacker, hdr("kid", "attacker"), good), ErrUnknownKey},
		{"alg none", forged(t, hdr("alg", "none"), good, nil), ErrAlgorithm},
		{"HS256", forged(t, hdr("alg", "HS256"), good, hs256([]byte("x"))), ErrAlgorithm},
		{"jku header", sign(hdr("jku", "https://evil.example/jwks"), good), ErrHeader},
		{"payload changed", parts[0] + "." + b64([]byte(`{"sub":"admin"}`)) + "." + parts[2], ErrSignature},
		{"garbage", "not a token", ErrMalformed},
		{"too long", strings.Repeat("a", maxTokenSize+1), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := e.v.VerifyIDToken(context.Background(), c.token, idOpts)
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == nil:
				if got.Subject != "user-1" || got.GrantID != "grant-1" || got.ClientID != "client-1" ||
					got.Scope != nil || got.ThingID != "" || got.Confirmation != nil {
					t.Fatalf("claims %+v", got)
				}
			case !errors.Is(err, c.want):
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if err != nil && !errors.As(err, new(*Error)) {
				t.Fatalf("%v is not a refusal", err)
			}
		})
	}
	// Neither kind passes for the other.
	if _, err := e.v.Verify(context.Background(), bearerOf(issued), VerifyOptions{Audience: "client-1"}); !errors.Is(err, ErrType) {
		t.Errorf("ID token through Verify: %v", err)
	}
	if _, err := e.v.VerifyIDToken(context.Background(), issued, IDTokenOptions{}); err == nil || errors.As(err, new(*Error)) {
		t.Errorf("no clients: %v, want a caller error", err)
	}
}

func TestVerifyIDTokenRevocation(t *testing.T) {
	e, clk, bus := newTestEnv(t)
	tok := must(e.is.IDToken(IDClaims{Subject: "user-1", Audience: []string{"client-1"}, ExpiresAt: clk.Now().Add(time.Minute), Extra: map[string]any{"gid": "grant-1"}}))
	if _, err := e.v.VerifyIDToken(context.Background(), tok, idOpts); err != nil {
		t.Fatal(err)
	}
	bus.Publish(events.Event{Type: EventGrantRevoke, ID: "grant-1", Time: clk.Now(), Details: map[string]string{"exp": strconv.FormatInt(clk.Now().Add(time.Hour).Unix(), 10)}})
	if _, err := e.v.VerifyIDToken(context.Background(), tok, idOpts); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after revocation: %v", err)
	}
}

// go test -run '^$' -fuzz FuzzVerifyIDToken ./internal/tokens/
func FuzzVerifyIDToken(f *testing.F) {
	clk := newClock()
	e := newEnv(f, &memStore{}, masterKey(), nil, clk, ES256)
	good := must(e.is.IDToken(IDClaims{Subject: "user-1", Audience: []string{"client-1"}, ExpiresAt: clk.Now().Add(time.Minute), Extra: map[string]any{"gid": "grant-1"}}))
	access := e.accessToken(f, accessClaims(clk.Now()))
	parts := strings.Split(good, ".")
	for _, seed := range []string{
		good, access, "", ".", "..", "a.b.c", parts[0] + ".." + parts[2], parts[0] + "." + parts[1] + ".",
		strings.Split(access, ".")[0] + "." + parts[1] + "." + parts[2], "eyJhbGciOiJub25lIn0.e30.",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		c, err := e.v.VerifyIDToken(ctx, raw, idOpts)
		switch {
		case err == nil && raw != good:
			if c.Subject != "user-1" || c.GrantID != "grant-1" || c.ClientID != "client-1" {
				t.Fatalf("accepted %q as %+v", raw, c)
			}
		case err == nil && c.Scope != nil:
			t.Fatalf("an ID token gave scopes %v", c.Scope)
		case err != nil && !errors.As(err, new(*Error)) && !errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("%q: %v is neither a refusal nor a deadline", raw, err)
		}
	})
}
