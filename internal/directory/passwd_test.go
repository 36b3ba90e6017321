package directory

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/store"
)

// TestPasswordModifyWithLdappasswd: a user changes its own password with
// the old one through OpenLDAP's ldappasswd; the new one binds, the old
// one no longer does, and the policy of the web applies.
func TestPasswordModifyWithLdappasswd(t *testing.T) {
	e := newEnv(t)
	const next = "a brand new alice passphrase"
	// Alice is signed in on the web, perhaps by whoever knew the old password.
	ctx := context.Background()
	web := e.st.(authn.SessionStore)
	now := time.Now()
	if err := web.CreateSession(ctx, &store.Session{Hash: []byte("alice's web session hash 32 bytes"), UserID: e.alice.ID,
		Created: now, AuthTime: now, LastSeen: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	out, code := e.run(t, "ldappasswd", "-x", "-ZZ", "-H", "ldap://"+e.plain, "-D", aliceDN(), "-w", alicePassword,
		"-a", alicePassword, "-s", "short")
	if code == 0 || !strings.Contains(out, "Constraint violation") || !strings.Contains(out, "newPasswd") {
		t.Fatalf("a password against the policy: exit %d: %s", code, out)
	}
	out, code = e.run(t, "ldappasswd", "-x", "-ZZ", "-H", "ldap://"+e.plain, "-D", aliceDN(), "-w", alicePassword,
		"-a", alicePassword, "-s", next)
	if code != 0 {
		t.Fatalf("ldappasswd: exit %d: %s", code, out)
	}
	c := e.dialLDAPS(t)
	if err := c.Bind(aliceDN(), alicePassword); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("bind with the old password: %v", err)
	}
	if err := c.Bind(aliceDN(), next); err != nil {
		t.Fatalf("bind with the new password: %v", err)
	}
	if list, err := web.ListSessions(ctx, e.alice.ID); err != nil || len(list) != 0 {
		t.Fatalf("alice's web sessions after the change: %d, %v", len(list), err)
	}
}

// TestPasswordModifyRefusals tries to break each rule of Password Modify.
func TestPasswordModifyRefusals(t *testing.T) {
	e := newEnv(t)
	bobDN := "uid=bob,ou=people," + base
	const next = "a password nobody should get to set"
	as := func(dn, pw string) *ldap.Conn {
		c := e.dialLDAPS(t)
		if err := c.Bind(dn, pw); err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name string
		conn func() *ldap.Conn
		req  *ldap.PasswordModifyRequest
		code uint16
		says string
	}{
		{"anonymous over plain LDAP", func() *ldap.Conn { return e.dialPlain(t) },
			ldap.NewPasswordModifyRequest(aliceDN(), alicePassword, next), ldap.LDAPResultConfidentialityRequired, "TLS"},
		{"anonymous over TLS", func() *ldap.Conn { return e.dialLDAPS(t) },
			ldap.NewPasswordModifyRequest(aliceDN(), alicePassword, next), ldap.LDAPResultInsufficientAccessRights, "bound"},
		{"own password without the old one", func() *ldap.Conn { return as(aliceDN(), alicePassword) },
			ldap.NewPasswordModifyRequest("", "", next), ldap.LDAPResultInsufficientAccessRights, "oldPasswd"},
		{"own password with a wrong old one", func() *ldap.Conn { return as(aliceDN(), alicePassword) },
			ldap.NewPasswordModifyRequest("", "not alice's password at all", next), ldap.LDAPResultInvalidCredentials, "oldPasswd"},
		{"another user's password, knowing it", func() *ldap.Conn { return as(aliceDN(), alicePassword) },
			ldap.NewPasswordModifyRequest(bobDN, bobPassword, next), ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"no new password", func() *ldap.Conn { return as(aliceDN(), alicePassword) },
			ldap.NewPasswordModifyRequest("", alicePassword, ""), ldap.LDAPResultUnwillingToPerform, "newPasswd"},
		{"a user that does not exist", func() *ldap.Conn { return as("uid=root,ou=people,"+base, rootPassword) },
			ldap.NewPasswordModifyRequest("uid=nobody,ou=people,"+base, "", next), ldap.LDAPResultNoSuchObject, "userIdentity"},
		{"a device", func() *ldap.Conn { return as("uid=root,ou=people,"+base, rootPassword) },
			ldap.NewPasswordModifyRequest(e.srv.thingDN(e.speaker.ID), "", next), ldap.LDAPResultNoSuchObject, "userIdentity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.conn().PasswordModify(tc.req)
			var le *ldap.Error
			if !errors.As(err, &le) || le.ResultCode != tc.code || !strings.Contains(le.Err.Error(), tc.says) {
				t.Fatalf("got %v, want code %d saying %q", err, tc.code, tc.says)
			}
		})
	}
	// None of them changed a password.
	for dn, pw := range map[string]string{aliceDN(): alicePassword, bobDN: bobPassword} {
		if err := e.dialLDAPS(t).Bind(dn, pw); err != nil {
			t.Errorf("%s's password changed: %v", dn, err)
		}
	}
}

// TestPasswordModifyByAdministrator: an administrator gives another user a
// one-time password, as a reset on the web does; the user must change it
// on the web before binding over LDAP.
func TestPasswordModifyByAdministrator(t *testing.T) {
	e := newEnv(t)
	bobDN := "uid=bob,ou=people," + base
	const once = "a one time password for bob"
	out, code := e.run(t, "ldappasswd", "-x", "-H", "ldaps://"+e.ldaps, "-D", "uid=root,ou=people,"+base, "-w", rootPassword, "-s", once, bobDN)
	if code != 0 {
		t.Fatalf("ldappasswd by root: exit %d: %s", code, out)
	}
	bob, err := e.ids.GetUser(context.Background(), e.bob.ID)
	if err != nil || !bob.MustChangePassword {
		t.Fatalf("bob after the reset: %+v, %v", bob, err)
	}
	if err := e.dialLDAPS(t).Bind(bobDN, once); !ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		t.Fatalf("bind with the one-time password: %v", err)
	}
}
