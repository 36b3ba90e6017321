package ace

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/store"
)

func revocation(t *testing.T, tok []byte) []byte {
	t.Helper()
	b, err := cbor.Marshal(map[int]any{paramToken: tok})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A CWT revoked by its holder is refused from then on, by cti: another
// token of the same grant is not, and the revocation outlives a restart.
func TestRevokeByCTI(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	holder := Identity{PublicKey: key.Public()}
	tok, sibling := w.sign(t, w.claims(), &confirmation{Key: ck}), w.sign(t, w.claims(), &confirmation{Key: ck})
	var seen []events.Event
	w.bus.Subscribe(func(e events.Event) {
		if e.Type == EventRevoke {
			seen = append(seen, e)
		}
	})

	if body, status := w.srv.Revoke(context.Background(), revocation(t, tok), holder); status != http.StatusOK {
		t.Fatalf("revoke: %d %x", status, body)
	}
	wantRefused(t, w, "a revoked cti", tok, holder, http.StatusUnauthorized)
	if _, err := w.srv.AuthzInfo(context.Background(), sibling, holder); err != nil {
		t.Fatalf("another token of the grant: %v", err)
	}
	if len(seen) != 1 || seen[0].Local || seen[0].Details["exp"] == "" {
		t.Fatalf("revocation events: %+v", seen)
	}
	if cti, err := hex.DecodeString(seen[0].ID); err != nil || len(cti) != 16 {
		t.Fatalf("the event's cti: %q", seen[0].ID)
	}

	// A new server on the same store (a restart, another node) refuses it.
	again, err := New(Options{Issuer: testIssuer, Audience: testAudience, Keys: w.keys, Revocations: w.srv.revocations,
		AS: noAS{}, Store: w.st, Bus: events.New(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if _, err := again.AuthzInfo(context.Background(), tok, holder); err == nil {
		t.Fatal("a restarted server accepted a revoked token")
	}
}

// A node that missed events (events.Resync) reads the revocations again
// and publishes the ones it missed for the doors that hold tokens.
func TestRevokedAfterResync(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	tok := w.sign(t, w.claims(), &confirmation{Key: ck})
	a, err := w.srv.AuthzInfo(context.Background(), tok, Identity{PublicKey: key.Public()})
	if err != nil {
		t.Fatal(err)
	}
	// Another node stored it; its event never came.
	if err := w.st.RevokeCWT(context.Background(), &store.RevokedCWT{CTI: a.ID, ExpiresAt: a.ExpiresAt}); err != nil {
		t.Fatal(err)
	}
	published := make(chan events.Event, 1)
	w.bus.Subscribe(func(e events.Event) {
		if e.Type == EventRevoke {
			published <- e
		}
	})
	w.bus.Publish(events.Event{Type: events.Resync, Local: true})
	select {
	case e := <-published:
		if !e.Local || e.ID != hex.EncodeToString(a.ID) {
			t.Fatalf("replayed event %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the missed revocation was not published")
	}
	wantRefused(t, w, "revoked on another node", tok, Identity{PublicKey: key.Public()}, http.StatusUnauthorized)
}

// Revocations refused: by a client not holding the token's key, of a token
// the platform did not sign, of what is no request.
func TestAttackRevoke(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	tok := w.sign(t, w.claims(), &confirmation{Key: ck})
	thief, _ := client(t)
	for _, c := range []struct {
		name   string
		body   []byte
		id     Identity
		status int
		field  string
	}{
		{"a client not holding its key", revocation(t, tok), Identity{PublicKey: thief.Public()}, http.StatusUnauthorized, "cnf"},
		{"a PSK session", revocation(t, tok), Identity{PSK: []byte("thing-1.0011223344556677")}, http.StatusUnauthorized, "cnf"},
		{"a forged token", revocation(t, append(bytes.Clone(tok[:len(tok)-1]), tok[len(tok)-1]^1)), Identity{PublicKey: key.Public()}, http.StatusUnauthorized, "signature"},
		{"no token", []byte{0xa0}, Identity{PublicKey: key.Public()}, http.StatusBadRequest, "token (11)"},
		{"the token as text", func() []byte { b, _ := cbor.Marshal(map[int]any{11: "x"}); return b }(), Identity{PublicKey: key.Public()}, http.StatusBadRequest, "token (11)"},
		{"not a map", []byte{0x01}, Identity{PublicKey: key.Public()}, http.StatusBadRequest, "CBOR map"},
	} {
		body, status := w.srv.Revoke(context.Background(), c.body, c.id)
		var out map[int]any
		_ = cbor.Unmarshal(body, &out)
		if desc, _ := out[paramErrorDesc].(string); status != c.status || !bytes.Contains([]byte(desc), []byte(c.field)) {
			t.Errorf("%s: %d %v; want %d naming %q", c.name, status, out, c.status, c.field)
		}
	}
	if _, err := w.srv.AuthzInfo(context.Background(), tok, Identity{PublicKey: key.Public()}); err != nil {
		t.Fatalf("a refused revocation revoked the token: %v", err)
	}
}

func FuzzRevocationRequest(f *testing.F) {
	f.Add([]byte{0xa1, 0x0b, 0x43, 0xd2, 0x84, 0x40})
	f.Add([]byte{0xa1, 0x0b, 0x61, 0x78})
	f.Add([]byte{0xa2, 0x0b, 0x40, 0x0b, 0x40})
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, _, err := parseTokenParam(b)
		if err != nil {
			if err.Status != http.StatusBadRequest || err.Description == "" {
				t.Fatalf("refusal %+v", err)
			}
			return
		}
		if len(tok) == 0 {
			t.Fatal("an empty token accepted")
		}
	})
}

func FuzzAuthzInfoPayload(f *testing.F) {
	f.Add([]byte{0x43, 0xd2, 0x84, 0x40})
	f.Add([]byte{0x5b, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xd2, 0x84})
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := unwrapToken(b)
		var e *Error
		if err != nil && (!errors.As(err, &e) || e.Status != http.StatusBadRequest) {
			t.Fatalf("refusal %v", err)
		}
		if err == nil && len(tok) > len(b) {
			t.Fatalf("a token longer than its payload")
		}
	})
}

// Introspection answers the claims to the token's holder only, and active
// false for a token refused or not held, revoked ones included.
func TestIntrospect(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	holder := Identity{PublicKey: key.Public()}
	tok := w.sign(t, w.claims(), &confirmation{Key: ck})
	ask := func(body []byte, id Identity) (map[any]any, int) {
		t.Helper()
		b, status := w.srv.Introspect(context.Background(), body, id)
		var out map[any]any
		if err := cbor.Unmarshal(b, &out); err != nil {
			t.Fatalf("answer %x: %v", b, err)
		}
		return out, status
	}
	out, status := ask(revocation(t, tok), holder)
	if status != http.StatusOK || out[uint64(paramActive)] != true || out[uint64(paramScope)] != "telemetry:write commands:read" ||
		out[uint64(claimSub)] != "thing-1" || len(out[uint64(claimCti)].([]byte)) != 16 || out[uint64(claimCnf)] == nil {
		t.Fatalf("introspection by the holder: %d %v", status, out)
	}
	thief, _ := client(t)
	if out, _ := ask(revocation(t, tok), Identity{PublicKey: thief.Public()}); len(out) != 1 || out[uint64(paramActive)] != false {
		t.Errorf("introspection by a client not holding the key: %v", out)
	}
	if _, status := w.srv.Revoke(context.Background(), revocation(t, tok), holder); status != http.StatusOK {
		t.Fatal("revoke")
	}
	if out, _ := ask(revocation(t, tok), holder); len(out) != 1 || out[uint64(paramActive)] != false {
		t.Errorf("introspection of a revoked token: %v", out)
	}
	if out, status := ask([]byte{0xa0}, holder); status != http.StatusBadRequest || !bytes.Contains([]byte(out[uint64(paramErrorDesc)].(string)), []byte("token (11)")) {
		t.Errorf("no token: %d %v", status, out)
	}
}
