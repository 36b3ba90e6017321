package directory

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/store"
)

// TestDeleteWithLdapdelete: an administrator deletes a device and a person
// with OpenLDAP's ldapdelete, through identity: they are gone for SCIM too.
func TestDeleteWithLdapdelete(t *testing.T) {
	e := newEnv(t)
	out, code := e.run(t, "ldapdelete", "-x", "-H", "ldaps://"+e.ldaps, "-D", "uid=root,ou=people,"+base, "-w", rootPassword,
		e.srv.thingDN(e.thermostat.ID), "uid=bob,ou=people,"+base)
	if code != 0 {
		t.Fatalf("ldapdelete: exit %d: %s", code, out)
	}
	ctx := context.Background()
	if _, err := e.ids.GetThing(ctx, e.thermostat.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the thermostat after its deletion: %v", err)
	}
	if _, err := e.ids.GetUser(ctx, e.bob.ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("bob after his deletion: %v", err)
	}
}

// TestDeleteRefusals tries to break each rule of deletion.
func TestDeleteRefusals(t *testing.T) {
	e := newEnv(t)
	rootDN := "uid=root,ou=people," + base
	as := func(dn, pw string) func() *ldap.Conn {
		return func() *ldap.Conn {
			c := e.dialLDAPS(t)
			if err := c.Bind(dn, pw); err != nil {
				t.Fatal(err)
			}
			return c
		}
	}
	anonymous := func() *ldap.Conn { return e.dialPlain(t) }
	for _, tc := range []struct {
		name string
		conn func() *ldap.Conn
		dn   string
		code uint16
		says string
	}{
		{"anonymous", anonymous, aliceDN(), ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"a user deleting another", as(aliceDN(), alicePassword), "uid=bob,ou=people," + base, ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"a user deleting its own device", as(aliceDN(), alicePassword), e.srv.thingDN(e.speaker.ID), ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"a user deleting the administrators", as(aliceDN(), alicePassword), e.srv.groupDN("administrators"), ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"an ou", as(rootDN, rootPassword), "ou=people," + base, ldap.LDAPResultNotAllowedOnNonLeaf, "ou=people"},
		{"the base", as(rootDN, rootPassword), base, ldap.LDAPResultNotAllowedOnNonLeaf, base},
		{"nobody", as(rootDN, rootPassword), "uid=nobody,ou=people," + base, ldap.LDAPResultNoSuchObject, "uid=nobody"},
		{"outside the tree", as(rootDN, rootPassword), "cn=x,dc=elsewhere", ldap.LDAPResultNoSuchObject, "dc=elsewhere"},
		{"a malformed DN", as(rootDN, rootPassword), "uid=alice,,", ldap.LDAPResultInvalidDNSyntax, "entry"},
		{"an injection", as(rootDN, rootPassword), "uid=x' OR 1\\=1 --,ou=people," + base, ldap.LDAPResultNoSuchObject, "does not exist"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.conn().Del(ldap.NewDelRequest(tc.dn, nil))
			var le *ldap.Error
			if !errors.As(err, &le) || le.ResultCode != tc.code || !strings.Contains(le.Err.Error(), tc.says) {
				t.Fatalf("got %v, want code %d saying %q", err, tc.code, tc.says)
			}
		})
	}
	ctx := context.Background()
	for _, id := range []string{e.alice.ID, e.bob.ID} {
		if _, err := e.ids.GetUser(ctx, id); err != nil {
			t.Errorf("user %s after the refusals: %v", id, err)
		}
	}
	if _, err := e.ids.GetThing(ctx, e.speaker.ID); err != nil {
		t.Errorf("the speaker after the refusals: %v", err)
	}
}
