package tokens

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestMemoKeepsEveryCheck verifies a token once, so that it is remembered,
// and then tries each way a remembered token could be accepted when the
// full verification refuses it.
func TestMemoKeepsEveryCheck(t *testing.T) {
	ctx := context.Background()
	st := &memStore{}
	clk := newClock()
	e := newEnv(t, st, masterKey(), nil, clk, "")
	c := accessClaims(clk.Now())
	c.Confirmation = &Confirmation{X5TS256: "cert-1"}
	tok := e.accessToken(t, c)
	verify := func(p *Presentation, aud string) (*Claims, error) {
		return e.v.Verify(ctx, p, VerifyOptions{Audience: aud})
	}
	bound := &Presentation{token: tok, x5t: "cert-1"}
	first, err := verify(bound, testAudience)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.v.memo.entries) != 1 {
		t.Fatalf("%d tokens remembered, want 1", len(e.v.memo.entries))
	}
	first.Scope[0], first.Confirmation.X5TS256 = "admin", "cert-2" // the caller's copy only
	again, err := verify(bound, testAudience)
	if err != nil || again.Scope[0] != "openid" || again.Confirmation.X5TS256 != "cert-1" {
		t.Fatalf("remembered: %+v, %v", again, err)
	}
	for _, tc := range []struct {
		name string
		p    *Presentation
		aud  string
		want error
	}{
		{"other certificate", &Presentation{token: tok, x5t: "cert-2"}, testAudience, ErrBinding},
		{"no certificate", bearerOf(tok), testAudience, ErrBinding},
		{"other audience", bound, "https://other.example.com", ErrAudience},
	} {
		if _, err := verify(tc.p, tc.aud); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}

	// The clock set back before the verification: iat is checked again.
	clk.Add(-time.Hour)
	if _, err := verify(bound, testAudience); !errors.Is(err, ErrIssuedAt) {
		t.Errorf("clock set back: %v, want %v", err, ErrIssuedAt)
	}
	clk.Add(time.Hour)

	// Its key no longer published (retired and expired).
	if err := st.RetireSigningKey(ctx, e.signingKID(), clk.Now(), clk.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := e.keys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	clk.Add(2 * time.Minute)
	if _, err := verify(bound, testAudience); !errors.Is(err, ErrUnknownKey) {
		t.Errorf("key expired: %v, want %v", err, ErrUnknownKey)
	}
}

// TestMemoForgetsExpired: a remembered token is refused once expired, and
// a full memo forgets expired tokens first.
func TestMemoForgetsExpired(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	c := accessClaims(clk.Now())
	tok := e.accessToken(t, c)
	if _, err := e.v.Verify(context.Background(), bearerOf(tok), VerifyOptions{Audience: testAudience}); err != nil {
		t.Fatal(err)
	}
	clk.Add(c.ExpiresAt.Sub(clk.Now()) + defaultLeeway + time.Second)
	if _, err := e.v.Verify(context.Background(), bearerOf(tok), VerifyOptions{Audience: testAudience}); !errors.Is(err, ErrExpired) {
		t.Fatalf("after exp: %v", err)
	}

	var m memo
	now := time.Now()
	key := func(raw, aud string) memoKey {
		k, _ := keyOf(raw, aud)
		return k
	}
	short, long := &Claims{ExpiresAt: now.Add(time.Minute)}, &Claims{ExpiresAt: now.Add(time.Hour)}
	for i := range memoSize {
		m.put(key(string(rune(i)), "a"), "kid", short, now)
	}
	m.put(key("last", "a"), "kid", long, now.Add(2*time.Minute))
	if len(m.entries) != 1 {
		t.Fatalf("%d entries after the expired were forgotten, want 1", len(m.entries))
	}
	for i := range 2 * memoSize {
		m.put(key(string(rune(i)), "b"), "kid", long, now)
	}
	if len(m.entries) > memoSize {
		t.Fatalf("%d entries, bound %d", len(m.entries), memoSize)
	}
	if k, in := keyOf(string(make([]byte, maxTokenSize+1)), "a"); k != (memoKey{}) || in != nil {
		t.Fatal("a token longer than any issued is hashed")
	}
}

// TestMemoOneByteOff: a token remembered as valid does not vouch for one
// that differs from it in a single byte anywhere (header, claims or
// signature): each takes the full path and is refused.
func TestMemoOneByteOff(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	tok := e.accessToken(t, accessClaims(clk.Now()))
	verify := func(raw string) error {
		_, err := e.v.Verify(context.Background(), bearerOf(raw), VerifyOptions{Audience: testAudience})
		return err
	}
	if err := verify(tok); err != nil {
		t.Fatal(err)
	}
	first, second := strings.IndexByte(tok, '.'), strings.LastIndexByte(tok, '.')
	for _, i := range []int{0, first / 2, first - 1, first + 1, (first + second) / 2, second - 1, second + 1, len(tok) - 2} {
		b := []byte(tok)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if err := verify(string(b)); err == nil {
			t.Errorf("byte %d changed (%q): accepted", i, b[i])
		}
	}
	if err := verify(tok); err != nil {
		t.Errorf("the token itself after the others: %v", err)
	}
}
