package certauth

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
)

// TestRevocationAcrossNodes: two nodes with their own buses, joined as in
// production by the PostgreSQL relay. A revocation on one is refused by the
// other without waiting for its reload (an hour away), and so is a deleted
// manufacturer CA.
func TestRevocationAcrossNodes(t *testing.T) {
	dsn := os.Getenv("THINGID_TEST_POSTGRES_DSN")
	if dsn == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("THINGID_TEST_POSTGRES_DSN is not set; CI must run the PostgreSQL tests (scripts/start-postgres.sh)")
		}
		t.Skip("THINGID_TEST_POSTGRES_DSN not set: run export THINGID_TEST_POSTGRES_DSN=$(scripts/start-postgres.sh) to test the relay")
	}
	e := newEnv(t)
	ctx := t.Context()
	relayA, err := events.StartRelay(ctx, e.bus, dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer relayA.Close()
	nodeB := &env{t: t, st: e.st, bus: events.New(), dca: e.dca}
	nodeB.ids = identity.New(nodeB.st, nodeB.bus, password.Policy{})
	relayB, err := events.StartRelay(ctx, nodeB.bus, dsn, quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer relayB.Close()
	b := nodeB.checker()

	_, dc := e.thing("SPK-RELAY")
	ca, caCert, caKey := e.manufacturer("Relay", acme)
	leaf, _ := issue(t, leafTmpl("ACME-RELAY"), caCert, caKey)
	if err := verifyErr(b, t, dc); err != nil {
		t.Fatal(err)
	}
	// A new CA reaches node B through the event too, which makes B reload.
	waitFor(t, "the new CA on node B", func() bool {
		_, err := b.Verify(ctx, chainOf(leaf))
		return err == nil
	})
	if _, err := e.c.Revoke(ctx, "test", Revocation{Certificate: dc.Leaf}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.DeleteCA(ctx, "test", ca.ID); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the revocation on node B", func() bool { return errors.Is(verifyErr(b, t, dc), ErrRevoked) })
	waitFor(t, "the CA deletion on node B", func() bool {
		_, err := b.Verify(ctx, chainOf(leaf))
		return errors.Is(err, ErrUnknownCA)
	})
}

// waitFor polls cond; NOTIFY delivers within milliseconds, the deadline only
// keeps a broken relay from hanging the test.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("%s never arrived", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}
