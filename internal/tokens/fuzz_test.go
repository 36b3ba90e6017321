package tokens

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// go test -run '^$' -fuzz FuzzVerify ./internal/tokens/
func FuzzVerify(f *testing.F) {
	clk := newClock()
	e := newEnv(f, &memStore{}, masterKey(), nil, clk, ES256)
	good := e.accessToken(f, accessClaims(clk.Now()))
	parts := strings.Split(good, ".")
	for _, seed := range []string{
		good, "", ".", "..", "...", "a.b.c", parts[0] + ".." + parts[2], parts[0] + "." + parts[1] + ".",
		`{"payload":"e30","signatures":[]}`, "eyJhbGciOiJub25lIn0.e30.", strings.Repeat("a.", 100),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		// A short deadline: a made-up kid must not hold the fuzzer in the
		// paced reload.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		c, err := e.v.Verify(ctx, bearerOf(raw), VerifyOptions{Audience: testAudience})
		switch {
		case err == nil && raw != good:
			// Only our own signature verifies; anything else accepted must
			// carry exactly what we signed.
			if c.Subject != "user-1" || c.GrantID != "grant-1" {
				t.Fatalf("accepted %q as %+v", raw, c)
			}
		case err != nil && !errors.As(err, new(*Error)) && !errors.Is(err, context.DeadlineExceeded):
			t.Fatalf("%q: %v is neither a refusal nor a deadline", raw, err)
		}
	})
}

// go test -run '^$' -fuzz FuzzParsePermissions ./internal/tokens/
func FuzzParsePermissions(f *testing.F) {
	for _, seed := range []string{
		`[{"resource_id":"r","resource_scopes":["play"],"exp":1767225600}]`, `[]`, `[{}]`, `{}`, `null`, ``,
		`[{"resource_id":1}]`, `[{"resource_id":"r","resource_scopes":"play"}]`, `[{"resource_id":"r","exp":1e30}]`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		ps, err := ParsePermissions([]byte(raw))
		if err != nil {
			if !errors.Is(err, ErrNotRPT) {
				t.Fatalf("%q: %v", raw, err)
			}
			return
		}
		for _, p := range ps {
			if p.ResourceID == "" {
				t.Fatalf("%q: accepted a permission without resource_id", raw)
			}
		}
	})
}

// go test -run '^$' -fuzz FuzzLeanMatchesJWX ./internal/tokens/
//
// Claims signed by the platform's key, so that the fuzzer reaches the
// claims' parsing: the lean path never accepts what jwx refuses, accepts
// with jwx's claims, and where it refuses what jwx accepted, it is for the
// claims' form (ErrMalformed), never another rule.
func FuzzLeanMatchesJWX(f *testing.F) {
	clk := newClock()
	e := newEnv(f, &memStore{}, masterKey(), nil, clk, ES256)
	now := clk.Now()
	sk := e.keys.current().signing
	header := jsonOf(f, map[string]any{"alg": sk.alg.String(), "kid": sk.kid, "typ": "at+jwt"})
	good := jsonOf(f, with(wireClaims(now), "thing", "thing-1", "cnf", map[string]any{"jkt": "k"}))
	for _, seed := range []string{
		string(good), `{}`, `[]`, `null`, string(good) + `{}`, `{"iss":1}`, `{"exp":1.5}`, `{"aud":["a",null]}`,
		`{"sub":"a","sub":"b"}`, `{"permissions":[{"resource_id":"r"}]}`, `{"cnf":null}`, `{"\u0069ss":"x"}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, payload string) {
		tok := platformSigned(t, e, header, []byte(payload))
		lean, ref := compare(context.Background(), e.v, tok)
		switch {
		case lean.err == nil && !lean.sameAs(ref):
			t.Fatalf("%q:\n lean %s\n jwx  %s", payload, lean, ref)
		case lean.err != nil && !errors.As(lean.err, new(*Error)):
			t.Fatalf("%q: %v is not a refusal", payload, lean.err)
		case lean.err != nil && ref.err == nil && !errors.Is(lean.err, ErrMalformed):
			t.Fatalf("%q: jwx accepted, lean refused for %v", payload, lean.err)
		case lean.err != nil && ref.err != nil && !errors.Is(lean.err, ErrMalformed) && !lean.sameAs(ref):
			t.Fatalf("%q: refused for another reason:\n lean %s\n jwx  %s", payload, lean, ref)
		}
	})
}
