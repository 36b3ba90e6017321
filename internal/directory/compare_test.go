package directory

import (
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// compareResult is what a Compare answered: compareTrue, compareFalse, or
// the error's code and message.
func compareResult(c *ldap.Conn, dn, attr, value string) (uint16, string) {
	ok, err := c.Compare(dn, attr, value)
	switch {
	case err == nil && ok:
		return ldap.LDAPResultCompareTrue, ""
	case err == nil:
		return ldap.LDAPResultCompareFalse, ""
	}
	var le *ldap.Error
	if !asLDAPError(err, &le) {
		return 0, err.Error()
	}
	return le.ResultCode, le.Err.Error()
}

func asLDAPError(err error, le **ldap.Error) bool {
	e, ok := err.(*ldap.Error)
	*le = e
	return ok
}

// Compare answers under Search's read rules, on both stores: a user
// compares values of its own entry and its things; another's entry, which
// a search would hide, answers exactly as a DN nobody has.
func TestCompare(t *testing.T) { onEachStore(t, testCompare) }

func testCompare(t *testing.T, e *testEnv) {
	alice := e.bound(t, aliceDN(), alicePassword)
	root := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
	anonymous := e.dialLDAPS(t)
	speaker, thermostat := e.srv.thingDN(e.speaker.ID), e.srv.thingDN(e.thermostat.ID)
	bobDN := "uid=bob,ou=people," + base
	for _, tc := range []struct {
		name            string
		c               *ldap.Conn
		dn, attr, value string
		code            uint16
		says            string
	}{
		{"own mail", alice, aliceDN(), "mail", "ALICE@example.org", ldap.LDAPResultCompareTrue, ""},
		{"own mail, another value", alice, aliceDN(), "mail", "alice@example.com", ldap.LDAPResultCompareFalse, ""},
		{"own cn by its other name", alice, aliceDN(), "commonName", "alice liddell", ldap.LDAPResultCompareTrue, ""},
		{"own class", alice, aliceDN(), "objectClass", "inetOrgPerson", ldap.LDAPResultCompareTrue, ""},
		{"own class, another", alice, aliceDN(), "objectClass", "device", ldap.LDAPResultCompareFalse, ""},
		{"own entryUUID", alice, aliceDN(), "entryUUID", e.alice.ID, ldap.LDAPResultCompareTrue, ""},
		{"own memberOf", alice, aliceDN(), "memberOf", e.srv.groupDN("family"), ldap.LDAPResultCompareTrue, ""},
		{"an attribute the entry lacks", alice, aliceDN(), "description", "x", ldap.LDAPResultNoSuchAttribute, "description: the entry has no such attribute"},
		{"an attribute no schema has", alice, aliceDN(), "favouriteColour", "red", ldap.LDAPResultUndefinedAttributeType, "favouritecolour"},
		{"a time that is not one", alice, aliceDN(), "createTimestamp", "yesterday", ldap.LDAPResultInvalidAttributeSyntax, "createtimestamp"},
		{"injection in the value", alice, aliceDN(), "uid", "alice' OR '1'='1", ldap.LDAPResultCompareFalse, ""},
		{"injection with LIKE wildcards", alice, aliceDN(), "uid", "%", ldap.LDAPResultCompareFalse, ""},
		{"own thing's serial", alice, speaker, "serialNumber", "SPK-0001", ldap.LDAPResultCompareTrue, ""},
		{"own thing's owner", alice, speaker, "owner", aliceDN(), ldap.LDAPResultCompareTrue, ""},
		{"own thing's owner, another", alice, speaker, "owner", bobDN, ldap.LDAPResultCompareFalse, ""},
		{"a description that is not text", root, speaker, "description", "42", ldap.LDAPResultNoSuchAttribute, "description"},
		{"a description, ignoring case", root, thermostat, "description", "IN THE HALL, BY THE DOOR_1 AT 50%", ldap.LDAPResultCompareTrue, ""},
		{"an administrator, another's mail", root, bobDN, "mail", "bob@example.org", ldap.LDAPResultCompareTrue, ""},
		{"a container", alice, "ou=devices," + base, "ou", "Devices", ldap.LDAPResultCompareTrue, ""},
		{"the root DSE, anonymously", anonymous, "", "vendorName", "thingid", ldap.LDAPResultCompareTrue, ""},
		{"a bad DN", alice, "uid=alice,,", "uid", "alice", ldap.LDAPResultInvalidDNSyntax, "entry: "},
		{"an attribute without equality", alice, "", "namingContexts", base, ldap.LDAPResultInappropriateMatching, "namingcontexts"},
		// Passwords are tried by binds, which are throttled: never by Compare.
		{"own password", alice, aliceDN(), "userPassword", alicePassword, ldap.LDAPResultInsufficientAccessRights, "userPassword"},
		{"another's password, as an administrator", root, bobDN, "userPassword", bobPassword, ldap.LDAPResultInsufficientAccessRights, "userPassword"},
		{"anonymous", anonymous, aliceDN(), "uid", "alice", ldap.LDAPResultInsufficientAccessRights, "bind first"},
	} {
		code, says := compareResult(tc.c, tc.dn, tc.attr, tc.value)
		if code != tc.code || !strings.Contains(says, tc.says) {
			t.Errorf("%s: %d %q, want %d saying %q", tc.name, code, says, tc.code, tc.says)
		}
	}
	// What a search would hide answers as a DN nobody has, whatever the
	// assertion: no way to learn whether bob, his thermostat or a group exist.
	nobody := []string{"uid=nobody,ou=people," + base, e.srv.thingDN("00000000-0000-0000-0000-000000000000"), e.srv.groupDN("nobody")}
	hidden := []string{bobDN, thermostat, e.srv.groupDN("family")}
	for i, dn := range hidden {
		for _, a := range [][2]string{{"objectClass", "top"}, {"cn", "x"}, {"entryUUID", "x"}, {"userPassword", "x"}, {"favouriteColour", "x"}} {
			if a[0] == "userPassword" || a[0] == "favouriteColour" {
				continue // refused before any entry is looked at, for everyone
			}
			code, says := compareResult(alice, dn, a[0], a[1])
			wantCode, wantSays := compareResult(alice, nobody[i], a[0], a[1])
			if code != ldap.LDAPResultNoSuchObject || code != wantCode || says != wantSays {
				t.Errorf("alice compares %s of %s: %d %q; of a DN nobody has: %d %q", a[0], dn, code, says, wantCode, wantSays)
			}
		}
	}
}

// ldapcompare (OpenLDAP) reads TRUE, FALSE and the refusals by their exit
// codes, which are the result codes.
func TestCompareWithLdapcompare(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		dn, assertion string
		code          int
		says          string
	}{
		{aliceDN(), "mail:alice@example.org", ldap.LDAPResultCompareTrue, "TRUE"},
		{aliceDN(), "mail:bob@example.org", ldap.LDAPResultCompareFalse, "FALSE"},
		{e.srv.thingDN(e.speaker.ID), "serialNumber:SPK-0001", ldap.LDAPResultCompareTrue, "TRUE"},
		{e.srv.thingDN(e.thermostat.ID), "serialNumber:THM-0001", ldap.LDAPResultNoSuchObject, "No such object"},
		{aliceDN(), "userPassword:" + alicePassword, ldap.LDAPResultInsufficientAccessRights, "Insufficient access"},
	} {
		out, code := e.run(t, "ldapcompare", "-x", "-H", "ldaps://"+e.ldaps, "-D", aliceDN(), "-w", alicePassword, tc.dn, tc.assertion)
		if code != tc.code || !strings.Contains(out, tc.says) {
			t.Errorf("ldapcompare %s %s: exit %d\n%s\nwant exit %d saying %q", tc.dn, tc.assertion, code, out, tc.code, tc.says)
		}
	}
}
