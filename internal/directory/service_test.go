package directory

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/netlimit"
)

// serviceSecret is the secret of every OAuth client of this package's
// tests; the token endpoint's own check is tested with the platform in
// internal/server (TestDirectoryServiceAccount).
const serviceSecret = "s3rvice-secret-of-the-inventory"

// serviceSecrets checks secrets under sign-in's real throttling.
type serviceSecrets struct{ sessions *authn.Sessions }

func (s serviceSecrets) CheckClientSecret(ctx context.Context, client netip.Addr, clientID, secret string) (time.Duration, error) {
	return s.sessions.CheckSecret(ctx, client, "ldap", clientID, func() (bool, error) {
		return subtle.ConstantTimeCompare([]byte(secret), []byte(serviceSecret)) == 1, nil
	})
}

func withServiceAccounts(m map[string][]string) envOption {
	return func(o *Options, _ *netlimit.Policy, _ *authn.SessionOptions) { o.ServiceAccounts = m }
}

func serviceDN(id string) string { return "cn=" + id + ",ou=services," + base }

// A service account reads the ous its configuration grants and nothing
// else, writes nothing, and binds only with its client's secret.
func TestServiceAccount(t *testing.T) {
	e := newEnv(t, withServiceAccounts(map[string][]string{"inventory": {"devices", "groups"}, "nothing": nil}))
	c := e.bound(t, serviceDN("inventory"), serviceSecret)
	count := func(c *ldap.Conn, baseDN string) int {
		t.Helper()
		res, err := c.Search(ldap.NewSearchRequest(baseDN, ldap.ScopeWholeSubtree, 0, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil))
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			t.Fatalf("search of %s: %v", baseDN, err)
		}
		if res == nil {
			return 0
		}
		return len(res.Entries)
	}
	if n := count(c, "ou=devices,"+base); n != 3 { // the ou, the speaker, the thermostat
		t.Errorf("devices seen: %d, want 3", n)
	}
	if n := count(c, "ou=groups,"+base); n != 3 { // the ou, administrators, family
		t.Errorf("groups seen: %d, want 3", n)
	}
	if n := count(c, "ou=people,"+base); n != 1 { // the ou alone
		t.Errorf("entries of ou=people seen: %d, want the ou alone", n)
	}
	if n := count(c, aliceDN()); n != 0 {
		t.Errorf("alice seen by a service account without people")
	}
	who, err := c.WhoAmI(nil)
	if err != nil || who.AuthzID != "dn:"+serviceDN("inventory") {
		t.Errorf("who am I: %v %v", who, err)
	}
	m := ldap.NewModifyRequest(e.srv.thingDN(e.speaker.ID), nil)
	m.Replace("l", []string{"nowhere"})
	if err := c.Modify(m); !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		t.Errorf("a service account's Modify: %v, want insufficientAccessRights", err)
	}
	if err := c.Del(ldap.NewDelRequest(e.srv.thingDN(e.speaker.ID), nil)); !ldap.IsErrorWithCode(err, ldap.LDAPResultInsufficientAccessRights) {
		t.Errorf("a service account's Delete: %v, want insufficientAccessRights", err)
	}
	// A listed client with nothing to read sees nothing stored.
	if n := count(e.bound(t, serviceDN("nothing"), serviceSecret), base); n != 4 { // the base and the three ous
		t.Errorf("entries seen by a service account without ous: %d, want the four containers", n)
	}
	for _, tc := range []struct{ name, dn, secret string }{
		{"a wrong secret", serviceDN("inventory"), "guess"},
		{"a client not listed", serviceDN("stranger"), serviceSecret},
		{"a service account outside ou=services", "cn=inventory,ou=people," + base, serviceSecret},
	} {
		err := e.dialLDAPS(t).Bind(tc.dn, tc.secret)
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			t.Errorf("%s: %v, want invalidCredentials", tc.name, err)
		}
	}
	// Over ldapwhoami, as an application would bind.
	out, code := e.run(t, "ldapwhoami", "-x", "-H", "ldaps://"+e.ldaps, "-D", serviceDN("inventory"), "-w", serviceSecret)
	if code != 0 || strings.TrimSpace(out) != "dn:"+serviceDN("inventory") {
		t.Errorf("ldapwhoami: exit %d: %s", code, out)
	}
}

// Guessing a service account's secret is throttled like a user's password:
// past the address's attempts even the right secret is refused.
func TestServiceAccountThrottled(t *testing.T) {
	e := newEnv(t, withAddressBurst(3), withServiceAccounts(map[string][]string{"inventory": {"devices"}}))
	for range 3 {
		if err := e.dialLDAPS(t).Bind(serviceDN("inventory"), "guess"); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			t.Fatalf("a wrong secret: %v", err)
		}
	}
	err := e.dialLDAPS(t).Bind(serviceDN("inventory"), serviceSecret)
	var le *ldap.Error
	if !errors.As(err, &le) || le.ResultCode != ldap.LDAPResultUnwillingToPerform || !strings.Contains(le.Err.Error(), "too many attempts") {
		t.Fatalf("the right secret past the address's attempts: %v, want unwillingToPerform", err)
	}
}
