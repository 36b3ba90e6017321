package directory

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/store"
)

func TestPasswordBind(t *testing.T) { onEachStore(t, testPasswordBind) }

func testPasswordBind(t *testing.T, e *testEnv) {
	out, code := e.run(t, "ldapwhoami", "-x", "-ZZ", "-H", "ldap://"+e.plain, "-D", aliceDN(), "-w", alicePassword)
	if code != 0 || strings.TrimSpace(out) != "dn:"+aliceDN() {
		t.Fatalf("ldapwhoami as alice: exit %d: %s", code, out)
	}
	out, code = e.run(t, "ldapwhoami", "-x", "-H", "ldaps://"+e.ldaps, "-D", aliceDN(), "-w", "wrong password")
	if code != int(resultInvalidCredentials) {
		t.Fatalf("wrong password: exit %d: %s", code, out)
	}
	// The DN's case and spacing do not matter; the user name is looked up
	// as /signin looks it up.
	c := e.bound(t, "UID=Alice, OU=People, DC=ThingID, DC=test", alicePassword)
	who, err := c.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+aliceDN() {
		t.Fatalf("who am I = %+v, %v", who, err)
	}
	// A failed bind leaves the session anonymous, not bound as before.
	if err := c.Bind(aliceDN(), "wrong password"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("wrong password: %v", err)
	}
	if who, _ := c.WhoAmI(nil); who.AuthzID != "" {
		t.Fatalf("after a failed bind, who am I = %q", who.AuthzID)
	}
}

// The same one-time-password rule as /signin: a right one-time password
// is good for nothing but changing it.
func TestOneTimePasswordDoesNotBind(t *testing.T) {
	e := newEnv(t)
	c := e.dialLDAPS(t)
	err := c.Bind("uid=olga,ou=people,"+base, olgaPassword)
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) || !strings.Contains(err.Error(), "one-time password") {
		t.Fatalf("bind with a one-time password: %v", err)
	}
	if who, _ := c.WhoAmI(nil); who.AuthzID != "" {
		t.Fatalf("who am I = %q", who.AuthzID)
	}
}

// Only people have passwords: binding with any other DN, or one outside the
// tree, fails as a wrong password does, even with a user's password.
func TestBindAsNonPersonFails(t *testing.T) {
	e := newEnv(t)
	c := e.dialLDAPS(t)
	for _, dn := range []string{
		"cn=" + e.speaker.ID + ",ou=devices," + base,
		"cn=family,ou=groups," + base,
		"ou=people," + base,
		base,
		"uid=alice,ou=people,dc=other",
		"cn=alice",
		`uid=alice' OR '1'\3d'1,ou=people,` + base,
	} {
		if err := c.Bind(dn, alicePassword); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			t.Errorf("bind as %s: %v, want invalidCredentials", dn, err)
		}
	}
	if err := c.Bind("uid=alice,,", alicePassword); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidDNSyntax) {
		t.Errorf("bind with a broken DN: %v, want invalidDNSyntax", err)
	}
}

// Binds are sign-in attempts: a failure is audited as the web sign-in's
// (with the door), and the attempts of one address are throttled by the
// same counters, whose refusal says how long to wait.
func TestBindIsThrottledAsSignIn(t *testing.T) {
	e := newEnv(t, withAddressBurst(3))
	c := e.dialLDAPS(t)
	for i := range 3 {
		if err := c.Bind(aliceDN(), "wrong password"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	err := c.Bind(aliceDN(), alicePassword)
	if !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) || !strings.Contains(err.Error(), "too many attempts from this network; retry in") {
		t.Fatalf("the right password past the address's attempts: %v, want unwillingToPerform", err)
	}
	// The web sign-in's check refuses that address too: one set of counters.
	if _, wait, err := e.sessions.CheckPassword(t.Context(), peer(mustDial(t, e.plain)), "", "alice", alicePassword); !errors.Is(err, authn.ErrThrottled) || wait <= 0 {
		t.Fatalf("sign-in's check after the LDAP attempts: %v (wait %s), want ErrThrottled", err, wait)
	}
	recs, err := e.st.ListAudit(t.Context(), store.AuditQuery{Target: &store.Ref{Kind: store.KindUser, ID: e.alice.ID}, Action: store.TextMatch{Value: "session.signin-failed"}})
	if err != nil || len(recs) != 3 || !strings.Contains(string(recs[0].Detail), `"door":"ldap"`) {
		t.Fatalf("audit of the failures: %v, %v", recs, err)
	}
}

func mustDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
