package authn

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// Sessions of administrators and support staff end after the shorter staff
// timeouts; a normal user's session, used as seldom, goes on.
func TestStaffSessionsTimeOutSooner(t *testing.T) {
	e := newEnv(t, testOptions())
	ctx := context.Background()
	const pw = "support staff password"
	sam, err := e.ids.CreateUser(ctx, "test", &store.User{UserName: "sam"}, pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ids.CreateGroup(ctx, "test", &store.Group{DisplayName: SupportGroup,
		Members: []store.Ref{{Kind: store.KindUser, ID: sam.ID}}}); err != nil {
		t.Fatal(err)
	}
	alice, staff := e.client(), e.client()
	for _, c := range []struct {
		c        *http.Client
		name, pw string
	}{{alice, "alice", alicePassword}, {staff, "sam", pw}} {
		if resp, body := e.signinJSON(t, c.c, c.name, c.pw); resp.StatusCode != http.StatusOK {
			t.Fatalf("signing %s in: %d %s", c.name, resp.StatusCode, body)
		}
	}
	e.advance(9 * time.Minute)
	for name, c := range map[string]*http.Client{"alice": alice, "sam": staff} {
		if status, _ := e.listOwn(t, c); status != http.StatusOK {
			t.Fatalf("%s after 9 idle minutes: %d", name, status)
		}
	}
	e.advance(11 * time.Minute)
	if status, _ := e.listOwn(t, alice); status != http.StatusOK {
		t.Fatalf("alice after 11 idle minutes: %d, want still signed in", status)
	}
	if status, _ := e.listOwn(t, staff); status != http.StatusUnauthorized {
		t.Fatalf("support staff after 11 idle minutes: %d, want 401", status)
	}
	if sessions, _ := e.store.(SessionStore).ListSessions(ctx, sam.ID); len(sessions) != 0 {
		t.Fatalf("the timed-out staff session was kept: %d", len(sessions))
	}
	// Used every few minutes, a staff session still ends 4 h after sign-in.
	if resp, body := e.signinJSON(t, staff, "sam", pw); resp.StatusCode != http.StatusOK {
		t.Fatalf("signing in again: %d %s", resp.StatusCode, body)
	}
	for range 4 * 60 / 5 {
		if status, _ := e.listOwn(t, staff); status != http.StatusOK {
			t.Fatalf("used every 5 minutes: %d before 4 h", status)
		}
		e.advance(5 * time.Minute)
	}
	if status, _ := e.listOwn(t, staff); status != http.StatusUnauthorized {
		t.Fatalf("support staff 4 h after sign-in: %d, want 401", status)
	}
}
