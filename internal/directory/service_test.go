package directory

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/netip"
	"slices"
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
	if n := count(e.bound(t, serviceDN("nothing"), serviceSecret), base); n != 6 { // the base, the four ous, itself
		t.Errorf("entries seen by a service account without ous: %d, want the base, the four ous and itself", n)
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

// The service accounts are entries under ou=services: administrators read
// them all, a service account itself, nobody else; they change only with
// the configuration, never over LDAP.
func TestServiceEntries(t *testing.T) {
	e := newEnv(t, withServiceAccounts(map[string][]string{"inventory": {"devices", "groups"}, "nothing": nil}))
	root := e.bound(t, rootDN, rootPassword)
	alice := e.bound(t, aliceDN(), alicePassword)
	inventory := e.bound(t, serviceDN("inventory"), serviceSecret)
	services := "ou=services," + base
	for _, tc := range []struct {
		name   string
		c      *ldap.Conn
		filter string
		want   []string
	}{
		{"an administrator", root, "(objectClass=*)", sorted(serviceDN("inventory"), serviceDN("nothing"))},
		{"an administrator, by cn", root, "(cn=INVENTORY)", sorted(serviceDN("inventory"))},
		{"an administrator, by what it reads", root, "(&(objectClass=applicationProcess)(ou=groups))", sorted(serviceDN("inventory"))},
		{"an administrator, not", root, "(!(cn=inventory))", sorted(serviceDN("nothing"))},
		{"a service account", inventory, "(objectClass=*)", sorted(serviceDN("inventory"))},
		{"a user", alice, "(objectClass=*)", sorted()},
	} {
		if got := orEmpty(dns(t, tc.c, services, ldap.ScopeSingleLevel, tc.filter)); !slices.Equal(got, tc.want) {
			t.Errorf("%s searches %s under ou=services: %v, want %v", tc.name, tc.filter, got, tc.want)
		}
	}
	own, err := readEntry(inventory, serviceDN("inventory"), "*")
	if err != nil || own == nil || !slices.Equal(own.GetAttributeValues("ou"), []string{"devices", "groups"}) ||
		!slices.Equal(own.GetAttributeValues("objectClass"), []string{"top", "applicationProcess"}) {
		t.Errorf("the service account's own entry: %v %v", own, err)
	}
	if ok, err := root.Compare(serviceDN("inventory"), "ou", "Devices"); err != nil || !ok {
		t.Errorf("an administrator compares what inventory reads: %v %v", ok, err)
	}
	// Another service account, or one that does not exist, is not there
	// for a service account or a user: the same answer.
	for _, c := range []*ldap.Conn{inventory, alice} {
		for _, dn := range []string{serviceDN("nothing"), serviceDN("stranger")} {
			if _, err := readEntry(c, dn); !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				t.Errorf("reading %s: %v, want noSuchObject", dn, err)
			}
			if _, err := c.Compare(dn, "cn", "x"); !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
				t.Errorf("comparing %s: %v, want noSuchObject", dn, err)
			}
		}
	}
	// An administrator changes none of them over LDAP.
	m := ldap.NewModifyRequest(serviceDN("inventory"), nil)
	m.Add("ou", []string{"people"})
	add := ldap.NewAddRequest(serviceDN("new"), nil)
	add.Attribute("objectClass", []string{"applicationProcess"})
	add.Attribute("cn", []string{"new"})
	member := ldap.NewModifyRequest(e.srv.groupDN("family"), nil)
	member.Add("member", []string{serviceDN("inventory")})
	for name, err := range map[string]error{
		"Modify":    root.Modify(m),
		"Add":       root.Add(add),
		"Delete":    root.Del(ldap.NewDelRequest(serviceDN("inventory"), nil)),
		"Modify DN": root.ModifyDN(ldap.NewModifyDNRequest(serviceDN("inventory"), "cn=renamed", true, "")),
		"as member": root.Modify(member),
	} {
		want := uint16(ldap.LDAPResultUnwillingToPerform)
		if name == "as member" {
			want = ldap.LDAPResultConstraintViolation
		}
		if !ldap.IsErrorWithCode(err, want) {
			t.Errorf("%s of a service account's entry: %v, want %d", name, err, want)
		}
	}
}
