package tokens

import (
	"bytes"
	"cmp"
	"context"
	"crypto/x509"
	"database/sql"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/events"
)

func TestNewKeysAlgorithms(t *testing.T) {
	for _, alg := range []string{"", ES256, EdDSA, RS256} {
		t.Run(cmp.Or(alg, "default"), func(t *testing.T) {
			st := &memStore{}
			e := newEnv(t, st, masterKey(), nil, newClock(), alg)
			if want := cmp.Or(alg, ES256); st.keys[0].Alg != want || len(st.keys) != 1 {
				t.Fatalf("stored %d keys, alg %s; want one %s", len(st.keys), st.keys[0].Alg, want)
			}
			if _, err := e.v.Verify(context.Background(), bearerOf(e.accessToken(t, accessClaims(time.Now()))), VerifyOptions{Audience: testAudience}); err != nil {
				t.Fatal(err)
			}
		})
	}
	if _, err := NewKeys(context.Background(), &memStore{}, KeysConfig{Alg: "HS256"}); err == nil {
		t.Fatal("HS256 accepted as a signing algorithm")
	}
}

func TestKeysReuseStoredKey(t *testing.T) {
	st, mk, clk := &memStore{}, masterKey(), newClock()
	a := newEnv(t, st, mk, nil, clk, ES256)
	b := newEnv(t, st, mk, nil, clk, EdDSA) // a restart with another alg keeps the key
	if len(st.keys) != 1 || a.signingKID() != b.signingKID() {
		t.Fatalf("restart generated a new key: %d keys", len(st.keys))
	}
	if _, err := NewKeys(context.Background(), st, KeysConfig{MasterKey: masterKey()}); err == nil || !strings.Contains(err.Error(), "wrong master key") {
		t.Fatalf("wrong master key: %v", err)
	}
}

func TestRotation(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	ctx := context.Background()
	oldKID := e.signingKID()
	c := accessClaims(clk.Now())
	c.ExpiresAt = clk.Now().Add(time.Hour) // the longest lifetime there is
	oldTok := e.accessToken(t, c)

	if err := e.keys.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	newKID := e.signingKID()
	if newKID == oldKID {
		t.Fatal("rotation kept the signing key")
	}
	newTok := e.accessToken(t, accessClaims(clk.Now()))
	if kid := headerKID(t, newTok); kid != newKID {
		t.Fatalf("new token signed with %s, want %s", kid, newKID)
	}
	if kids := e.kids(); !slices.Contains(kids, oldKID) || !slices.Contains(kids, newKID) {
		t.Fatalf("published %v, want both", kids)
	}
	if got := jwksKIDs(t, e.keys); len(got) != 2 {
		t.Fatalf("JWKS lists %v, want both keys", got)
	}
	verify := func(tok string) error {
		_, err := e.v.Verify(ctx, bearerOf(tok), VerifyOptions{Audience: testAudience})
		return err
	}
	// The old key's last token expires in an hour; until then it verifies.
	clk.Add(59 * time.Minute)
	if err := e.keys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := verify(oldTok); err != nil {
		t.Fatalf("token of the retired key before its expiry: %v", err)
	}
	// After ExpiresAt the old key is gone from the JWKS and verifies nothing.
	clk.Add(e.keys.retention())
	if err := e.keys.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := jwksKIDs(t, e.keys); !slices.Equal(got, []string{newKID}) {
		t.Fatalf("JWKS lists %v after the old key expired, want only %s", got, newKID)
	}
	if err := verify(oldTok); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("token of an expired key: %v", err)
	}
}

func TestTokenLifetimeBoundedByKeyRetention(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	c := accessClaims(clk.Now())
	c.ExpiresAt = clk.Now().Add(e.keys.MaxTokenLifetime() + time.Second)
	if _, err := e.is.AccessToken(c); err == nil {
		t.Fatal("issued a token that outlives its key's publication")
	}
}

// Two nodes on one SQLite database: one rotates, the other follows through
// the bus (LISTEN/NOTIFY in production) and, without the bus, on the first
// token with an unknown kid.
func TestTwoNodesAgree(t *testing.T) {
	ctx := context.Background()
	_, path := sqliteStore(t)
	mk, clk, bus := masterKey(), newClock(), events.New()
	open := func(bus *events.Bus) *env {
		st, err := sqliteOpen(t, path)
		if err != nil {
			t.Fatal(err)
		}
		return newEnv(t, st, mk, bus, clk, ES256)
	}
	a, b, deaf := open(bus), open(bus), open(nil)
	if a.signingKID() != b.signingKID() || a.signingKID() != deaf.signingKID() {
		t.Fatal("nodes sign with different keys")
	}
	if err := a.keys.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b follows the rotation", func() bool { return b.signingKID() == a.signingKID() })
	if !slices.Equal(a.kids(), b.kids()) || !bytes.Equal(a.keys.current().jwks, b.keys.current().jwks) {
		t.Fatalf("published %v and %v", a.kids(), b.kids())
	}
	tok := a.accessToken(t, accessClaims(clk.Now()))
	for name, n := range map[string]*env{"b": b, "deaf": deaf} {
		if _, err := n.v.Verify(ctx, bearerOf(tok), VerifyOptions{Audience: testAudience}); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if deaf.signingKID() != a.signingKID() {
		t.Fatal("the node without the bus did not pick up the new key on an unknown kid")
	}
}

// Two nodes that find no key at the same moment both generate one; they end
// up signing with the same one, and the other stays published.
func TestConcurrentFirstKey(t *testing.T) {
	ctx := context.Background()
	gate := &sync.WaitGroup{}
	gate.Add(2)
	st, mk, clk := &memStore{gate: gate}, masterKey(), newClock()
	nodes := make([]*env, 2)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Go(func() { nodes[i] = newEnv(t, st, mk, nil, clk, ES256) })
	}
	wg.Wait()
	if len(st.keys) != 2 {
		t.Fatalf("%d keys stored, want the two generated at once", len(st.keys))
	}
	var early []string // tokens each node signed before it noticed the other
	for _, n := range nodes {
		early = append(early, n.accessToken(t, accessClaims(clk.Now())))
	}
	for _, n := range nodes {
		if err := n.keys.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if nodes[0].signingKID() != nodes[1].signingKID() {
		t.Fatal("nodes sign with different keys after reloading")
	}
	if len(activeKeys(st.keys)) != 1 {
		t.Fatal("both keys still active")
	}
	for _, n := range nodes {
		if len(n.kids()) != 2 {
			t.Fatalf("published %v, want both keys", n.kids())
		}
		for _, tok := range early {
			if _, err := n.v.Verify(ctx, bearerOf(tok), VerifyOptions{Audience: testAudience}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// Keys at rest: the row holds no PKCS#8 in clear, and the sealed blob opens
// only under its own kid's label.
func TestKeysSealedAtRest(t *testing.T) {
	st, path := sqliteStore(t)
	mk := masterKey()
	e := newEnv(t, st, mk, nil, newClock(), ES256)

	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var kid string
	var sealed []byte
	var public string
	if err := db.QueryRow("SELECT kid, sealed, public_jwk FROM oauth_signing_keys").Scan(&kid, &sealed, &public); err != nil {
		t.Fatal(err)
	}
	if kid != e.signingKID() {
		t.Fatalf("row kid %s, signing kid %s", kid, e.signingKID())
	}
	der, err := mk.Open(sealed, sealLabel(kid))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := x509.ParsePKCS8PrivateKey(der); err != nil {
		t.Fatalf("sealed content is not PKCS#8: %v", err)
	}
	if bytes.Contains(sealed, der) || bytes.Contains(sealed, der[len(der)-32:]) {
		t.Fatal("private key in clear in the row")
	}
	if _, err := x509.ParsePKCS8PrivateKey(sealed); err == nil {
		t.Fatal("the row parses as PKCS#8")
	}
	if _, err := mk.Open(sealed, sealLabel("other")); err == nil {
		t.Fatal("sealed key opens under another kid's label")
	}
	if strings.Contains(public, `"d"`) {
		t.Fatalf("public JWK has private members: %s", public)
	}
}

// A retired key whose row was damaged is left out; the node keeps working.
func TestDamagedRetiredKeySkipped(t *testing.T) {
	e, _, _ := newTestEnv(t)
	st := e.keys.st.(*memStore)
	oldKID := e.signingKID()
	if err := e.keys.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	for _, k := range st.keys {
		if k.KID == oldKID {
			k.Public = []byte(`{"kty":"EC","crv":"P-256","x":"AAAA","y":"AAAA"}`)
		}
	}
	st.mu.Unlock()
	if err := e.keys.Reload(context.Background()); err != nil {
		t.Fatal(err)
	}
	if kids := e.kids(); len(kids) != 1 || kids[0] != e.signingKID() {
		t.Fatalf("published %v", kids)
	}
}

func headerKID(t *testing.T, tok string) string {
	t.Helper()
	var h struct{ Kid string }
	decodeSegment(t, strings.Split(tok, ".")[0], &h)
	return h.Kid
}
