package authn

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// A client's secret (a directory service account) backs off like a
// password, counted apart from a user of the same name, and every failure
// is audited against the client.
func TestCheckSecretBacksOff(t *testing.T) {
	e := newEnv(t, testOptions())
	ctx := context.Background()
	addr := netip.MustParseAddr("192.0.2.7")
	check := func(right bool) (bool, error) {
		_, err := e.s.CheckSecret(ctx, addr, "ldap", "alice", func() (bool, error) { return right, nil })
		return err == nil, err
	}
	for i := 1; i <= 5; i++ {
		if ok, err := check(false); ok || !errors.Is(err, ErrSignInFailed) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	// Waiting: even the right secret is refused, without being checked.
	checked := false
	if _, err := e.s.CheckSecret(ctx, addr, "ldap", "alice", func() (bool, error) { checked = true; return true, nil }); !errors.Is(err, ErrSignInFailed) || checked {
		t.Fatalf("the right secret while waiting: %v (checked: %v)", err, checked)
	}
	// The user alice is another account: her password still works.
	if _, _, err := e.s.CheckPassword(ctx, addr, "ldap", "alice", alicePassword); err != nil {
		t.Fatalf("the user alice after her namesake client's failures: %v", err)
	}
	e.advance(time.Second) // 2^(5-5) s
	if ok, err := check(true); !ok {
		t.Fatalf("the right secret after the wait: %v", err)
	}
	recs, err := e.store.ListAudit(ctx, store.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		if r.Action == "session.signin-failed" && r.Target == (store.Ref{Kind: "client", ID: "alice"}) {
			n++
		}
	}
	if n != 5 {
		t.Errorf("audit records of the client's failures: %d, want 5", n)
	}
}
