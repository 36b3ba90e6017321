package tokens

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jws"

	"github.com/thingid/thingid/internal/events"
)

var b64 = base64.RawURLEncoding.EncodeToString

// signed signs claims under exactly header with (alg, key), as an attacker
// holding key would.
func signed(t testing.TB, alg jwa.SignatureAlgorithm, key any, header, claims map[string]any) string {
	t.Helper()
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	return signedRaw(t, alg, key, header, payload)
}

func signedRaw(t testing.TB, alg jwa.SignatureAlgorithm, key any, header map[string]any, payload []byte) string {
	t.Helper()
	h := jws.NewHeaders()
	for name, v := range header {
		if err := h.Set(name, v); err != nil {
			t.Fatal(err)
		}
	}
	out, err := jws.Sign(payload, jws.WithKey(alg, key, jws.WithProtectedHeaders(h)))
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// forged builds a compact JWS by hand; sign (nil for none) gets the signing input.
func forged(t testing.TB, header, claims map[string]any, sign func(input []byte) []byte) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	p, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	input := b64(h) + "." + b64(p)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + b64(sig)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func hs256(secret []byte) func([]byte) []byte {
	return func(input []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(input)
		return m.Sum(nil)
	}
}

func wireClaims(now time.Time) map[string]any {
	return map[string]any{
		"iss": testIssuer, "sub": "user-1", "aud": testAudience, "client_id": "client-1",
		"scope": "openid playlist:read", "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"jti": "jti-1", "gid": "grant-1",
	}
}

func with(m map[string]any, kv ...any) map[string]any {
	m = maps.Clone(m)
	for i := 0; i < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(m, kv[i].(string))
		} else {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	return m
}

// publicKeyEncodings are the byte strings an attacker might hope a verifier
// uses as an HMAC secret when it takes the algorithm from the header.
func publicKeyEncodings(t testing.TB, pub crypto.PublicKey, jwkJSON []byte) map[string][]byte {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return map[string][]byte{
		"PEM": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}),
		"DER": der,
		"JWK": jwkJSON,
	}
}

func TestVerifyRefuses(t *testing.T) {
	clk, bus := newClock(), events.New()
	es := newEnv(t, &memStore{}, masterKey(), bus, clk, ES256)
	rs := newEnv(t, &memStore{}, masterKey(), bus, clk, RS256)
	now := clk.Now()
	good := wireClaims(now)

	type node struct {
		e    *env
		kid  string
		alg  jwa.SignatureAlgorithm
		priv crypto.Signer
	}
	nodeOf := func(e *env) node {
		sk := e.keys.current().signing
		return node{e, sk.kid, sk.alg, sk.priv}
	}
	esN, rsN := nodeOf(es), nodeOf(rs)
	hdr := func(n node, kv ...any) map[string]any {
		return with(map[string]any{"alg": n.alg.String(), "kid": n.kid, "typ": "at+jwt"}, kv...)
	}
	attacker, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	type tc struct {
		name  string
		n     node
		token string
		want  error // nil: accepted
	}
	cases := []tc{
		{"valid", esN, signed(t, esN.alg, esN.priv, hdr(esN), good), nil},
		{"valid RS256", rsN, signed(t, rsN.alg, rsN.priv, hdr(rsN), good), nil},
		{"typ application/at+jwt", esN, signed(t, esN.alg, esN.priv, hdr(esN, "typ", "application/at+jwt"), good), nil},
		{"typ AT+JWT", esN, signed(t, esN.alg, esN.priv, hdr(esN, "typ", "AT+JWT"), good), nil},
		{"aud array containing ours", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "aud", []string{"x", testAudience})), nil},
		{"expired within leeway", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "exp", now.Add(-10*time.Second).Unix())), nil},

		{"unknown key", esN, signed(t, jwa.ES256(), attacker, hdr(esN, "kid", "attacker"), good), ErrUnknownKey},
		{"attacker key under our kid", esN, signed(t, jwa.ES256(), attacker, hdr(esN), good), ErrSignature},
		{"no kid", esN, signed(t, esN.alg, esN.priv, hdr(esN, "kid", nil), good), ErrUnknownKey},
		{"kid of another published key", esN, signed(t, esN.alg, esN.priv, hdr(esN, "kid", rsN.kid), good), ErrUnknownKey},
		{"alg none", esN, forged(t, hdr(esN, "alg", "none"), good, nil), ErrAlgorithm},
		{"alg none, no kid", esN, forged(t, hdr(esN, "alg", "none", "kid", nil), good, nil), ErrUnknownKey},
		{"alg RS256 on an ES256 key", esN, forged(t, hdr(esN, "alg", "RS256"), good, hs256([]byte("x"))), ErrAlgorithm},
		{"typ JWT", esN, signed(t, esN.alg, esN.priv, hdr(esN, "typ", "JWT"), good), ErrType},
		{"no typ", esN, signed(t, esN.alg, esN.priv, hdr(esN, "typ", nil), good), ErrType},
		{"jku header", esN, signed(t, esN.alg, esN.priv, hdr(esN, "jku", "https://evil.example/jwks"), good), ErrHeader},
		{"jwk header", esN, forged(t, hdr(esN, "jwk", map[string]any{"kty": "oct", "k": "AA"}), good, hs256([]byte{0})), ErrHeader},
		{"crit header", esN, forged(t, hdr(esN, "crit", []string{"exp"}, "exp", 1), good, hs256([]byte{0})), ErrHeader},
		{"expired", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "exp", now.Add(-2*time.Minute).Unix())), ErrExpired},
		{"not yet valid", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "nbf", now.Add(2*time.Minute).Unix())), ErrNotYetValid},
		{"issued in the future", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "iat", now.Add(2*time.Minute).Unix())), ErrIssuedAt},
		{"wrong issuer", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "iss", "https://evil.example.com")), ErrIssuer},
		{"issuer with a trailing slash", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "iss", testIssuer+"/")), ErrIssuer},
		{"wrong audience", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "aud", "https://other.example.com")), ErrAudience},
		{"empty client_id", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "client_id", "")), ErrMalformed},
		{"numeric gid", esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, "gid", 7)), ErrMalformed},
		{"payload not JSON", esN, signedRaw(t, esN.alg, esN.priv, hdr(esN), []byte("not json")), ErrMalformed},
		{"garbage", esN, "not a token", ErrMalformed},
		{"unsigned JSON claims", esN, string(must(json.Marshal(good))), ErrMalformed},
		{"JWS JSON serialization", esN, `{"payload":"e30","signatures":[{"protected":"e30","signature":""}]}`, ErrMalformed},
		{"JWE", esN, "eyJhbGciOiJkaXIiLCJlbmMiOiJBMTI4R0NNIn0..AAAA.AAAA.AAAA", ErrMalformed},
		{"too long", esN, strings.Repeat("a", maxTokenSize+1), ErrMalformed},
	}
	for _, claim := range accessTokenClaims {
		want := map[string]error{"iss": ErrIssuer, "aud": ErrAudience}[claim]
		cases = append(cases, tc{"without " + claim, esN, signed(t, esN.alg, esN.priv, hdr(esN), with(good, claim, nil)), cmp.Or(want, error(ErrMissing))})
	}
	// The token is sound but its payload changed after signing.
	parts := strings.Split(signed(t, esN.alg, esN.priv, hdr(esN), good), ".")
	tampered, _ := json.Marshal(with(good, "sub", "admin"))
	cases = append(cases, tc{"payload changed", esN, parts[0] + "." + b64(tampered) + "." + parts[2], ErrSignature})
	// RFC 8725 §2.1: the HS256 key confusion, with every encoding of the public key.
	for _, n := range []node{esN, rsN} {
		jwkJSON := n.e.keys.current().jwks
		for enc, secret := range publicKeyEncodings(t, n.priv.Public(), jwkJSON) {
			cases = append(cases, tc{"HS256 with the " + n.alg.String() + " public key as " + enc, n, forged(t, hdr(n, "alg", "HS256"), good, hs256(secret)), ErrAlgorithm})
		}
	}
	// What jwx accepted and the lean path refuses (compact.go): a member
	// twice, whichever value a reader would take; data after the claims; a
	// null sub; another encoding of the same signature; and a token the
	// size of a denial of service.
	goodJSON := string(must(json.Marshal(good)))
	hdrJSON := string(must(json.Marshal(hdr(esN))))
	for name, tok := range map[string]string{
		"iss twice":               platformSigned(t, es, []byte(hdrJSON), []byte(goodJSON[:len(goodJSON)-1]+`,"iss":"https://evil.example.com"}`)),
		"sub twice":               platformSigned(t, es, []byte(hdrJSON), []byte(`{"sub":"admin",`+goodJSON[1:])),
		"typ twice":               platformSigned(t, es, []byte(`{"typ":"JWT",`+hdrJSON[1:]), []byte(goodJSON)),
		"data after the claims":   platformSigned(t, es, []byte(hdrJSON), []byte(goodJSON+`{"sub":"admin"}`)),
		"null sub":                platformSigned(t, es, []byte(hdrJSON), must(json.Marshal(with(good, "sub", json.RawMessage("null"))))),
		"exp as a string":         platformSigned(t, es, []byte(hdrJSON), must(json.Marshal(with(good, "exp", strconv.FormatInt(now.Add(time.Hour).Unix(), 10))))),
		"non-canonical signature": nonCanonical(signed(t, esN.alg, esN.priv, hdr(esN), good)),
	} {
		cases = append(cases, tc{name, esN, tok, ErrMalformed})
	}
	valid := signed(t, esN.alg, esN.priv, hdr(esN), good)
	cases = append(cases,
		tc{"padded signature", esN, valid + "==", ErrMalformed},
		tc{"huge token", esN, valid[:strings.LastIndexByte(valid, '.')] + strings.Repeat("A", 1<<20), ErrMalformed},
		tc{"x5u header", esN, signed(t, esN.alg, esN.priv, hdr(esN, "x5u", "https://evil.example/cert"), good), ErrHeader},
		tc{"x5c header", esN, forged(t, hdr(esN, "x5c", []string{"AA"}), good, nil), ErrHeader},
	)
	// An ID token is not an access token (RFC 9068 §4 step 1, RFC 8725 §3.11).
	id, err := es.is.IDToken(IDClaims{Subject: "user-1", Audience: []string{testAudience}, ExpiresAt: now.Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	cases = append(cases, tc{"ID token", esN, id, ErrType})

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.n.e.v.Verify(context.Background(), bearerOf(c.token), VerifyOptions{Audience: testAudience})
			switch {
			case c.want == nil && err != nil:
				t.Fatalf("refused: %v", err)
			case c.want == nil:
				if got.Subject != "user-1" || got.GrantID != "grant-1" {
					t.Fatalf("claims %+v", got)
				}
			case !errors.Is(err, c.want):
				t.Fatalf("got %v, want %v", err, c.want)
			}
			var te *Error
			if err != nil && (!errors.As(err, &te) || te.Code() != "invalid_token") {
				t.Fatalf("%v is not an invalid_token *Error", err)
			}
		})
	}
}

// nonCanonical sets the unused low bits of a token's last base64url
// character: the same signature bytes, another encoding (RFC 4648 §3.5).
func nonCanonical(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	return tok[:len(tok)-1] + string(alphabet[last^1])
}

func TestVerifyRoundTrip(t *testing.T) {
	e, clk, _ := newTestEnv(t)
	in := accessClaims(clk.Now())
	in.Confirmation = &Confirmation{JKT: "jkt-1"}
	got, err := e.v.Inspect(context.Background(), e.accessToken(t, in), VerifyOptions{Audience: testAudience})
	if err != nil {
		t.Fatal(err)
	}
	if got.Issuer != testIssuer || got.Subject != in.Subject || got.ClientID != in.ClientID ||
		got.GrantID != in.GrantID || got.ThingID != in.ThingID || got.ID == "" ||
		strings.Join(got.Scope, " ") != "openid playlist:read" || len(got.Audience) != 1 ||
		!got.IssuedAt.Equal(clk.Now()) || !got.ExpiresAt.Equal(in.ExpiresAt) ||
		!got.AuthTime.Equal(in.AuthTime) || got.Confirmation == nil || got.Confirmation.JKT != "jkt-1" {
		t.Fatalf("claims %+v", got)
	}
	if _, err := e.v.Verify(context.Background(), bearerOf("x"), VerifyOptions{}); err == nil || errors.As(err, new(*Error)) {
		t.Fatalf("no audience: %v, want a caller error", err)
	}
}

func TestRevocation(t *testing.T) {
	e, clk, bus := newTestEnv(t)
	c := accessClaims(clk.Now())
	tok := e.accessToken(t, c)
	other := c
	other.GrantID = "grant-2"
	otherTok := e.accessToken(t, other)
	verify := func(tok string) error {
		_, err := e.v.Verify(context.Background(), bearerOf(tok), VerifyOptions{Audience: testAudience})
		return err
	}
	if err := verify(tok); err != nil {
		t.Fatal(err)
	}
	bus.Publish(events.Event{Type: EventGrantRevoke, Kind: "grant", ID: "grant-1",
		Details: map[string]string{"exp": strconv.FormatInt(c.ExpiresAt.Unix(), 10)}})
	if err := verify(tok); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked grant: %v", err)
	}
	if err := verify(otherTok); err != nil {
		t.Fatalf("another grant: %v", err)
	}
	// A new token of the revoked grant (a race with the revocation) is refused too.
	if err := verify(e.accessToken(t, c)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("new token of a revoked grant: %v", err)
	}
	// Once its tokens are expired (leeway included) the set forgets the grant.
	clk.Add(c.ExpiresAt.Sub(clk.Now()) + defaultLeeway + time.Second)
	if e.v.deny.denied("grant-1", clk.Now()) || e.v.deny.size() != 0 {
		t.Fatalf("deny set still holds %d grants", e.v.deny.size())
	}
	if err := verify(tok); !errors.Is(err, ErrExpired) {
		t.Fatalf("after exp: %v", err)
	}
}

func TestRevocationWithoutExp(t *testing.T) {
	e, clk, bus := newTestEnv(t)
	tok := e.accessToken(t, accessClaims(clk.Now()))
	bus.Publish(events.Event{Type: EventGrantRevoke, ID: "grant-1", Time: clk.Now(), Details: map[string]string{"exp": "soon"}})
	clk.Add(9 * time.Minute)
	if _, err := e.v.Verify(context.Background(), bearerOf(tok), VerifyOptions{Audience: testAudience}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("got %v, want revoked for the longest token lifetime", err)
	}
	clk.Add(time.Hour)
	if e.v.deny.denied("grant-1", clk.Now()) {
		t.Fatal("denied after the longest token lifetime")
	}
}

func TestDenySetExtends(t *testing.T) {
	var d denySet
	now := time.Now()
	d.add("g", now.Add(time.Minute), now)
	d.add("g", now.Add(time.Hour), now)
	d.add("g", now.Add(time.Second), now) // an earlier exp does not shorten it
	if !d.denied("g", now.Add(30*time.Minute)) {
		t.Fatal("a later revocation did not extend the first")
	}
	if d.denied("g", now.Add(time.Hour)) || d.size() != 0 {
		t.Fatalf("not forgotten: %d", d.size())
	}
}

func TestCheckBinding(t *testing.T) {
	const cert, jkt = "cert-thumbprint", "dpop-thumbprint"
	cases := []struct {
		name       string
		cnf        *Confirmation
		cert, dpop string
		ok         bool
	}{
		{"bearer", nil, "", "", true},
		{"bearer over mutual TLS", nil, cert, "", true},
		{"mTLS bound, same certificate", &Confirmation{X5TS256: cert}, cert, "", true},
		{"mTLS bound, other certificate", &Confirmation{X5TS256: cert}, "other", "", false},
		{"mTLS bound, no certificate", &Confirmation{X5TS256: cert}, "", "", false},
		{"mTLS bound, DPoP instead", &Confirmation{X5TS256: cert}, "", cert, false},
		{"DPoP bound, same key", &Confirmation{JKT: jkt}, "", jkt, true},
		{"DPoP bound, other key", &Confirmation{JKT: jkt}, "", "other", false},
		{"DPoP bound, no proof", &Confirmation{JKT: jkt}, "", "", false},
		{"DPoP bound, certificate instead", &Confirmation{JKT: jkt}, jkt, "", false},
		{"both bound, both match", &Confirmation{X5TS256: cert, JKT: jkt}, cert, jkt, true},
		{"both bound, one missing", &Confirmation{X5TS256: cert, JKT: jkt}, cert, "", false},
		{"unknown confirmation method", &Confirmation{}, cert, jkt, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkBinding(&Claims{Confirmation: c.cnf}, c.cert, c.dpop)
			if c.ok != (err == nil) || (err != nil && !errors.Is(err, ErrBinding)) {
				t.Fatalf("got %v", err)
			}
		})
	}
}

func TestErrorDescription(t *testing.T) {
	err := ErrType.with("typ \"JWT\\x\"\n")
	if d := err.Description(); strings.ContainsAny(d, "\"\\\n") {
		t.Fatalf("description %q is not a valid RFC 6750 error_description", d)
	}
}

func TestCertThumbprint(t *testing.T) {
	// RFC 8705 §3.1: base64url(SHA-256(DER)), no padding.
	sum := sha256.Sum256([]byte("der"))
	if got := CertThumbprint(&x509.Certificate{Raw: []byte("der")}); got != b64(sum[:]) || strings.Contains(got, "=") {
		t.Fatalf("thumbprint %q", got)
	}
}

// revokedAt is a store of revoked grants (store.Grants' RevokedGrantsSince).
type revokedAt map[string]time.Time

func (r revokedAt) RevokedGrantsSince(_ context.Context, since time.Time) (map[string]time.Time, error) {
	out := map[string]time.Time{}
	for gid, at := range r {
		if !at.Before(since) {
			out[gid] = at
		}
	}
	return out, nil
}

// A revocation whose event this node missed (its relay reconnected) is
// refused once the bus says events were missed, and replayed on this node
// alone for the other doors; one it heard of is not replayed.
func TestResyncReplaysMissedRevocations(t *testing.T) {
	e, clk, bus := newTestEnv(t)
	src := revokedAt{"grant-heard": clk.Now()}
	if err := e.v.LoadRevoked(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	c := accessClaims(clk.Now())
	tok := e.accessToken(t, c)
	verify := func() error {
		_, err := e.v.Verify(context.Background(), bearerOf(tok), VerifyOptions{Audience: testAudience})
		return err
	}
	src["grant-1"] = clk.Now() // revoked on another node; its event never came
	if err := verify(); err != nil {
		t.Fatalf("before the resync: %v", err)
	}

	replayed := make(chan events.Event, 10)
	bus.Subscribe(func(ev events.Event) {
		if ev.Type == EventGrantRevoke {
			replayed <- ev
		}
	})
	bus.Publish(events.Event{Type: events.Resync, Local: true})
	select {
	case ev := <-replayed:
		if ev.ID != "grant-1" || !ev.Local || ev.Details["exp"] != strconv.FormatInt(clk.Now().Add(time.Hour).Unix(), 10) {
			t.Errorf("replayed %+v: want grant-1, local, exp an hour on", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no revocation replayed after the resync")
	}
	if err := verify(); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after the resync: %v, want revoked", err)
	}
	select {
	case ev := <-replayed:
		t.Errorf("replayed %s too, which this node had heard of", ev.ID)
	case <-time.After(100 * time.Millisecond):
	}
}
