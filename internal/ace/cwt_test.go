package ace

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/veraison/go-cose"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
)

const (
	testIssuer   = "https://id.example.com"
	testAudience = "https://coap.example.com"
)

// world is a Server on real signing keys in a real SQLite store, with the
// verifier's deny set following a real event bus.
type world struct {
	srv  *Server
	st   store.Store
	keys *tokens.Keys
	bus  *events.Bus
	now  time.Time
}

func newWorld(t testing.TB) *world {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	w := &world{bus: events.New(), now: time.Now().Truncate(time.Second), st: st}
	mk, err := secrets.LoadOrCreate(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	w.keys, err = tokens.NewKeys(context.Background(), st, tokens.KeysConfig{MasterKey: mk, Bus: w.bus, Now: func() time.Time { return w.now }, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.keys.Close)
	v, err := tokens.NewVerifier(w.keys, tokens.VerifierConfig{Issuer: testIssuer, Bus: w.bus, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	// AuthzInfo needs no authorization server.
	w.srv, err = New(Options{Issuer: testIssuer, Audience: testAudience, Keys: w.keys, Revocations: v, AS: noAS{}, Store: st, Bus: w.bus, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.srv.Close)
	return w
}

// noAS is no authorization server: the resource server's tests sign their
// tokens themselves.
type noAS struct{ AuthorizationServer }

// client is a thing's DTLS key.
func client(t testing.TB) (*ecdsa.PrivateKey, *cose.Key) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ck, err := cose.NewKeyFromPublic(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	return k, ck
}

func (w *world) claims() tokens.Claims {
	return tokens.Claims{Subject: "thing-1", Audience: []string{testAudience}, Scope: []string{"telemetry:write", "commands:read"},
		IssuedAt: w.now, ExpiresAt: w.now.Add(time.Hour), GrantID: "grant-1", ThingID: "thing-1"}
}

func (w *world) sign(t *testing.T, c tokens.Claims, cnf *confirmation) []byte {
	t.Helper()
	b, err := w.srv.sign(c, cnf)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantRefused asks AuthzInfo and wants the status it refuses with.
func wantRefused(t *testing.T, w *world, name string, tok []byte, peer Identity, status int) {
	t.Helper()
	a, err := w.srv.AuthzInfo(context.Background(), tok, peer)
	var e *Error
	if !errors.As(err, &e) || e.Status != status {
		t.Errorf("%s: got %+v, %v; want refused with %d", name, a, err, status)
	}
}

func TestAuthzInfoAcceptsATokenOfItsHolder(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	a, err := w.srv.AuthzInfo(context.Background(), w.sign(t, w.claims(), &confirmation{Key: ck}), Identity{PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	if a.Subject != "thing-1" || a.ThingID != "thing-1" || len(a.Scopes) != 2 || a.Scopes[0] != "telemetry:write" || len(a.ID) != 16 {
		t.Fatalf("access %+v", a)
	}
	psk := []byte("thing-1-psk")
	if _, err := w.srv.AuthzInfo(context.Background(), w.sign(t, w.claims(), &confirmation{Kid: psk}), Identity{PSK: psk}); err != nil {
		t.Fatalf("a PSK-bound token presented over its PSK: %v", err)
	}
}

// Each rule of /authz-info, broken (RFC 9200 §5.10.1, RFC 8747, RFC 9202).
func TestAttackAuthzInfo(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	holder := Identity{PublicKey: key.Public()}
	good := w.sign(t, w.claims(), &confirmation{Key: ck})

	// Signed by another key under the platform's kid.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kid, _, _ := w.keys.Signer()
	wantRefused(t, w, "another key", resign(t, good, func(m *cose.Sign1Message) {}, other, []byte(kid)), holder, http.StatusUnauthorized)
	wantRefused(t, w, "an unknown kid", resign(t, good, func(m *cose.Sign1Message) {}, other, []byte("nobody")), holder, http.StatusUnauthorized)

	// A changed payload under the original signature.
	var msg cose.Sign1Message
	if err := msg.UnmarshalCBOR(good); err != nil {
		t.Fatal(err)
	}
	c := w.claims()
	c.Scope = append(c.Scope, "admin")
	msg.Payload = claimsPayload(t, w, c, &confirmation{Key: ck})
	changed, _ := msg.MarshalCBOR()
	wantRefused(t, w, "a changed payload", changed, holder, http.StatusUnauthorized)

	// alg tricks: the header names another algorithm than the key's.
	var tricked cose.Sign1Message
	_ = tricked.UnmarshalCBOR(good)
	tricked.Headers.RawProtected = nil
	tricked.Headers.Protected.SetAlgorithm(cose.AlgorithmES384)
	tb, _ := tricked.MarshalCBOR()
	wantRefused(t, w, "alg ES384 on an ES256 key", tb, holder, http.StatusUnauthorized)

	c = w.claims()
	c.IssuedAt, c.ExpiresAt = w.now.Add(-2*time.Hour), w.now.Add(-time.Hour)
	wantRefused(t, w, "expired", w.sign(t, c, &confirmation{Key: ck}), holder, http.StatusUnauthorized)

	c = w.claims()
	c.Audience = []string{"https://other.example.com"}
	wantRefused(t, w, "wrong audience", w.sign(t, c, &confirmation{Key: ck}), holder, http.StatusForbidden)

	wantRefused(t, w, "no cnf", w.sign(t, w.claims(), nil), holder, http.StatusUnauthorized)

	// Presented by a session that proved another key, or no key, or a PSK.
	otherKey, _ := client(t)
	wantRefused(t, w, "another PoP key", good, Identity{PublicKey: otherKey.Public()}, http.StatusUnauthorized)
	wantRefused(t, w, "no PoP key", good, Identity{}, http.StatusUnauthorized)
	pskBound := w.sign(t, w.claims(), &confirmation{Kid: []byte("thing-1-psk")})
	wantRefused(t, w, "another PSK identity", pskBound, Identity{PSK: []byte("thing-2-psk")}, http.StatusUnauthorized)
	wantRefused(t, w, "a PSK token over a key", pskBound, holder, http.StatusUnauthorized)

	// Not a CWT at all: 4.00.
	wantRefused(t, w, "garbage", []byte{0xa1, 0x01}, holder, http.StatusBadRequest)
	wantRefused(t, w, "oversized", bytes.Repeat([]byte{0}, maxMessage+1), holder, http.StatusBadRequest)

	// Revoked: the grant's revocation event, as oauth publishes it.
	w.bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: "grant-1", Time: w.now,
		Details: map[string]string{"exp": strconv.FormatInt(w.now.Add(time.Hour).Unix(), 10)}})
	wantRefused(t, w, "revoked", good, holder, http.StatusUnauthorized)
}

// A token signed after a rotation verifies, and so does one of the retired key.
func TestAuthzInfoFollowsRotation(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	before := w.sign(t, w.claims(), &confirmation{Key: ck})
	if err := w.keys.Rotate(context.Background()); err != nil {
		t.Fatal(err)
	}
	after := w.sign(t, w.claims(), &confirmation{Key: ck})
	for name, tok := range map[string][]byte{"before": before, "after": after} {
		if _, err := w.srv.AuthzInfo(context.Background(), tok, Identity{PublicKey: key.Public()}); err != nil {
			t.Errorf("%s the rotation: %v", name, err)
		}
	}
}

// resign signs a token's message again with key under kid, after change.
func resign(t *testing.T, tok []byte, change func(*cose.Sign1Message), key crypto.Signer, kid []byte) []byte {
	t.Helper()
	var m cose.Sign1Message
	if err := m.UnmarshalCBOR(tok); err != nil {
		t.Fatal(err)
	}
	change(&m)
	m.Signature, m.Headers.RawProtected = nil, nil
	m.Headers.Protected[cose.HeaderLabelKeyID] = kid
	s, err := cose.NewSigner(cose.AlgorithmES256, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Sign(rand.Reader, nil, s); err != nil {
		t.Fatal(err)
	}
	b, err := m.MarshalCBOR()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// claimsPayload is the payload sign would write for c.
func claimsPayload(t *testing.T, w *world, c tokens.Claims, cnf *confirmation) []byte {
	t.Helper()
	var m cose.Sign1Message
	if err := m.UnmarshalCBOR(w.sign(t, c, cnf)); err != nil {
		t.Fatal(err)
	}
	return m.Payload
}

func FuzzCWT(f *testing.F) {
	w := newWorld(f)
	key, ck := client(f)
	good, _ := w.srv.sign(w.claims(), &confirmation{Key: ck})
	f.Add(good)
	f.Add([]byte{0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		// A short deadline: a made-up kid must not hold the fuzzer in the
		// keys' paced reload.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		a, err := w.srv.AuthzInfo(ctx, b, Identity{PublicKey: key.Public()})
		var e *Error
		if err != nil && (!errors.As(err, &e) || e.Status >= 500) && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("not a refusal: %v", err)
		}
		if err == nil && !bytes.Equal(b, good) && a.Subject != "thing-1" {
			t.Fatalf("accepted a token the platform did not sign: %x", b)
		}
	})
}
