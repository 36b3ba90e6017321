package directory

import (
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// bound is a StartTLS connection bound as dn.
func (e *testEnv) bound(t *testing.T, dn, pw string) *ldap.Conn {
	t.Helper()
	c := e.dialStartTLS(t)
	if err := c.Bind(dn, pw); err != nil {
		t.Fatalf("bind as %s: %v", dn, err)
	}
	return c
}

// readEntry reads the entry at dn (base scope) with attrs.
func readEntry(c *ldap.Conn, dn string, attrs ...string) (*ldap.Entry, error) {
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", attrs, nil))
	if err != nil {
		return nil, err
	}
	if len(res.Entries) != 1 {
		return nil, nil
	}
	return res.Entries[0], nil
}

func TestSubschemaWithLdapsearch(t *testing.T) {
	e := newEnv(t)
	out, code := e.run(t, "ldapsearch", "-x", "-LLL", "-H", "ldaps://"+e.ldaps, "-D", aliceDN(), "-w", alicePassword, "-b", "cn=subschema", "-s", "base", "+")
	if code != 0 {
		t.Fatalf("ldapsearch: exit %d\n%s", code, out)
	}
	// ldapsearch folds long lines: unfold before looking.
	out = strings.ReplaceAll(out, "\n ", "")
	for _, want := range []string{
		"objectClasses: ( 2.5.6.14 NAME 'device' SUP top STRUCTURAL MUST cn MAY ( serialNumber $ owner $ ou $ o $ l $ description ) )",
		"objectClasses: ( 2.16.840.1.113730.3.2.2 NAME 'inetOrgPerson' SUP organizationalPerson STRUCTURAL",
		"objectClasses: ( 1.3.6.1.4.1.32473.1.2.1 NAME 'thingidDevice'",
		"objectClasses: ( 2.5.6.9 NAME 'groupOfNames'",
		"attributeTypes: ( 1.3.6.1.4.1.32473.1.1.1 NAME 'thingidMACAddress'",
		"attributeTypes: ( 1.3.6.1.1.16.4 NAME 'entryUUID'",
		"ldapSyntaxes: ( 1.3.6.1.1.16.1 DESC 'UUID' )",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("subschema lacks %q", want)
		}
	}
	// Anonymous sessions read the root DSE only, not the schema.
	out, code = e.run(t, "ldapsearch", "-x", "-LLL", "-H", "ldaps://"+e.ldaps, "-b", "cn=subschema", "-s", "base", "+")
	if code != int(resultInsufficientAccessRights) {
		t.Errorf("anonymous read of the subschema: exit %d\n%s", code, out)
	}
	// The root DSE names it.
	out, _ = e.run(t, "ldapsearch", "-x", "-LLL", "-H", "ldaps://"+e.ldaps, "-b", "", "-s", "base", "+")
	if !strings.Contains(out, "subschemaSubentry: cn=Subschema") || !strings.Contains(out, "supportedSASLMechanisms: EXTERNAL") {
		t.Errorf("root DSE:\n%s", out)
	}
}

func TestUserReadsOwnEntry(t *testing.T) { onEachStore(t, testUserReadsOwnEntry) }

func testUserReadsOwnEntry(t *testing.T, e *testEnv) {
	c := e.bound(t, aliceDN(), alicePassword)
	got, err := readEntry(c, aliceDN(), "*", "+")
	if err != nil || got == nil {
		t.Fatalf("own entry: %v, %v", got, err)
	}
	for attr, want := range map[string]string{
		"uid": "alice", "cn": "Alice Liddell", "sn": "Liddell", "givenName": "Alice", "mail": "alice@example.org",
		"telephoneNumber": "+44 1865 000000", "preferredLanguage": "en-GB", "entryUUID": e.alice.ID,
		"memberOf": "cn=family,ou=groups," + base, "subschemaSubentry": "cn=Subschema",
	} {
		if v := got.GetAttributeValue(attr); v != want {
			t.Errorf("%s = %q, want %q", attr, v, want)
		}
	}
	if oc := got.GetAttributeValues("objectClass"); !slices.Contains(oc, "inetOrgPerson") {
		t.Errorf("objectClass = %v", oc)
	}
	// Without "+" the operational attributes stay out; "1.1" asks for none.
	if got, _ := readEntry(c, aliceDN()); got.GetAttributeValue("entryUUID") != "" || got.GetAttributeValue("uid") != "alice" {
		t.Errorf("user attributes only: %v", got.Attributes)
	}
	if got, _ := readEntry(c, aliceDN(), "1.1"); len(got.Attributes) != 0 {
		t.Errorf(`"1.1": %v`, got.Attributes)
	}
	// Her own thing, with its owner and thingid's attributes.
	speaker, err := readEntry(c, "cn="+e.speaker.ID+",ou=devices,"+base, "*", "+")
	if err != nil || speaker == nil {
		t.Fatalf("her speaker: %v", err)
	}
	for attr, want := range map[string]string{
		"serialNumber": "SPK-0001", "owner": aliceDN(), "l": "kitchen", "thingidMACAddress": "aa:bb:cc:dd:ee:01",
		"thingidModel": "S1", "thingidManufacturer": "Acme", "thingidFirmwareVersion": "1.2.3", "thingidStatus": "active",
		"entryUUID": e.speaker.ID, "displayName": "Kitchen speaker",
	} {
		if v := speaker.GetAttributeValue(attr); v != want {
			t.Errorf("speaker %s = %q, want %q", attr, v, want)
		}
	}
	// The containers and the base are readable by anyone bound.
	for _, dn := range []string{base, "ou=people," + base, "ou=devices," + base, "ou=groups," + base} {
		if got, err := readEntry(c, dn); err != nil || got == nil {
			t.Errorf("%s: %v", dn, err)
		}
	}
}

// A user sees itself and its own things: another user's entry, another
// user's thing and the groups do not exist for it.
func TestUserCannotReadOthers(t *testing.T) { onEachStore(t, testUserCannotReadOthers) }

func testUserCannotReadOthers(t *testing.T, e *testEnv) {
	c := e.bound(t, aliceDN(), alicePassword)
	for _, dn := range []string{
		"uid=bob,ou=people," + base,
		"uid=BOB,ou=People," + strings.ToUpper(base),
		"cn=" + e.thermostat.ID + ",ou=devices," + base,
		"cn=family,ou=groups," + base,
		"uid=root,ou=people," + base,
		"uid=nobody,ou=people," + base,
		"uid=alice,ou=devices," + base,
		"cn=x,uid=alice,ou=people," + base,
		`uid=alice' OR '1'\3d'1,ou=people,` + base,
		`uid=alice\2c ou\3dpeople,ou=people,` + base,
	} {
		_, err := readEntry(c, dn)
		if !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			t.Errorf("alice reading %s: %v, want noSuchObject", dn, err)
		}
	}
}

func TestAdministratorReadsEverything(t *testing.T) { onEachStore(t, testAdministratorReadsEverything) }

func testAdministratorReadsEverything(t *testing.T, e *testEnv) {
	c := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
	bob, err := readEntry(c, "uid=bob,ou=people,"+base)
	if err != nil || bob.GetAttributeValue("mail") != "bob@example.org" || bob.GetAttributeValue("sn") != "bob" {
		t.Fatalf("bob: %v %v", bob, err)
	}
	thermostat, err := readEntry(c, "cn="+e.thermostat.ID+",ou=devices,"+base)
	if err != nil || thermostat.GetAttributeValue("owner") != "uid=bob,ou=people,"+base {
		t.Fatalf("thermostat: %v %v", thermostat, err)
	}
	family, err := readEntry(c, "cn=Family,ou=groups,"+base, "member", "entryUUID")
	if err != nil || family == nil {
		t.Fatalf("family: %v", err)
	}
	members := family.GetAttributeValues("member")
	slices.Sort(members)
	want := []string{"cn=" + e.speaker.ID + ",ou=devices," + base, aliceDN()}
	slices.Sort(want)
	if !slices.Equal(members, want) || family.GetAttributeValue("entryUUID") != e.family.ID {
		t.Errorf("family members %v, want %v", members, want)
	}
}
