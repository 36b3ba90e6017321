package directory

import (
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// dns runs a search and returns the DNs found, sorted.
func dns(t *testing.T, c *ldap.Conn, baseDN string, scope int, filter string) []string {
	t.Helper()
	res, err := c.Search(ldap.NewSearchRequest(baseDN, scope, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"1.1"}, nil))
	if err != nil {
		t.Fatalf("search %s under %s: %v", filter, baseDN, err)
	}
	var out []string
	for _, e := range res.Entries {
		out = append(out, e.DN)
	}
	slices.Sort(out)
	return out
}

func sorted(vs ...string) []string {
	slices.Sort(vs)
	if vs == nil {
		return []string{}
	}
	return vs
}

func orEmpty(vs []string) []string {
	if vs == nil {
		return []string{}
	}
	return vs
}

// Every filter type, compiled to SQL on the store, as an administrator sees
// the whole tree.
func TestSearchFilters(t *testing.T) { onEachStore(t, testSearchFilters) }

func testSearchFilters(t *testing.T, e *testEnv) {
	c := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
	people, devices, groups, services := "ou=people,"+base, "ou=devices,"+base, "ou=groups,"+base, "ou=services,"+base
	alice, bob, root, olga := aliceDN(), "uid=bob,"+people, "uid=root,"+people, "uid=olga,"+people
	speaker, thermostat := "cn="+e.speaker.ID+","+devices, "cn="+e.thermostat.ID+","+devices
	family, admins := "cn=family,"+groups, "cn=administrators,"+groups
	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{"(uid=alice)", sorted(alice)},
		{"(uid=ALICE)", sorted(alice)},
		{"(uid~=Alice)", sorted(alice)},
		{"(uid:caseIgnoreMatch:=alice)", sorted(alice)},
		{"(uid:=alice)", sorted(alice)},
		{"(uid:1.2.3.4:=alice)", nil},
		{"(:dn:caseIgnoreMatch:=people)", nil},
		{"(mail=*@example.org)", sorted(alice, bob)},
		{"(mail=alice*)", sorted(alice)},
		{"(cn=Alice*)", sorted(alice)},
		{"(cn=bob)", sorted(bob)},
		{"(cn:caseIgnoreMatch:=BOB)", sorted(bob)}, // cn's rule is its supertype name's
		{"(sn=Liddell)", sorted(alice)},
		{"(sn=bob)", sorted(bob)},
		{"(givenName=*)", sorted(alice)},
		{"(telephoneNumber=+44*)", sorted(alice)},
		{"(preferredLanguage=en-GB)", sorted(alice)},
		{"(&(objectClass=device)(serialNumber=SPK*))", sorted(speaker)},
		{"(serialNumber=*-0001)", sorted(speaker, thermostat)},
		{"(serialNumber=S*K*1)", sorted(speaker)},
		{"(serialNumber=S*1*K)", nil},
		{"(|(uid=bob)(thingidMACAddress=AA:BB:CC:DD:EE:01))", sorted(bob, speaker)},
		{"(thingidModel=S1)", sorted(speaker)},
		{"(thingidModel=s1)", nil}, // caseExactMatch
		{"(l=kitchen)", sorted(speaker)},
		{"(l=KITCHEN)", sorted(speaker)},
		{"(l=KIT*)", sorted(speaker)},
		{"(preferredLanguage=EN-gb)", sorted(alice)},
		{"(serialNumber=spk-0001)", nil}, // exactly, on its index (docs/ldap.md)
		{"(description=in the hall, by the DOOR_1 at 50%)", sorted(thermostat)},
		{"(description~=IN THE HALL, BY THE DOOR_1 AT 50%)", sorted(thermostat)},
		{"(description:caseIgnoreMatch:=in the hall, by the door_1 at 50%)", sorted(thermostat)},
		{"(description=in the hall)", nil},
		{"(description=IN THE*)", sorted(thermostat)},
		{"(description=*hall*DOOR*)", sorted(thermostat)},
		{"(description=*door\\5f1*50\\25)", sorted(thermostat)},
		{"(description=*door?1*)", nil},
		{"(description=*%*)", sorted(thermostat)},
		{"(description=*_*)", sorted(thermostat)},
		{"(description=42)", nil}, // a number is no description
		{"(description=*)", sorted(thermostat)},
		{"(&(objectClass=device)(!(description=*)))", sorted(speaker)},
		{"(description>=in)", sorted(thermostat)},
		{"(thingidStatus=active)", sorted(speaker, thermostat)},
		{"(owner=" + alice + ")", sorted(speaker)},
		{"(owner=uid=nobody," + people + ")", nil},
		{"(memberOf=" + family + ")", sorted(alice, speaker)},
		{"(memberOf=" + admins + ")", sorted(root)},
		{"(member=" + alice + ")", sorted(family)},
		{"(member=" + speaker + ")", sorted(family)},
		{"(entryUUID=" + e.bob.ID + ")", sorted(bob)},
		{"(&(objectClass=inetOrgPerson)(createTimestamp>=20000101000000Z))", sorted(alice, bob, root, olga)},
		{"(&(objectClass=inetOrgPerson)(createTimestamp<=20000101000000Z))", nil},
		{"(&(objectClass=inetOrgPerson)(!(uid=alice))(!(uid=root)))", sorted(bob, olga)},
		{"(&(objectClass=groupOfNames)(cn=*))", sorted(family, admins)},
		{"(objectClass=organizationalUnit)", sorted(people, devices, groups, services)},
		{"(ou=people)", sorted(people)},
		{"(objectClass=domain)", sorted(base)},
		// Undefined stays undefined under not (RFC 4511 §4.5.1.7).
		{"(unknownAttribute=x)", nil},
		{"(!(unknownAttribute=x))", nil},
		{"(&)", nil},
		// Injection through values is a value.
		{"(uid=alice' OR '1'='1)", nil},
		{`(uid=*\27*)`, nil},
		{`(mail=*%*)`, nil},
		{`(mail=*_*)`, nil},
		{`(uid=\2a)`, nil},
	} {
		got := dns(t, c, base, ldap.ScopeWholeSubtree, tc.filter)
		if tc.filter == "(&)" { // the absolute true filter (RFC 4526): everything
			if len(got) != 13 {
				t.Errorf("(&) found %d entries, want all 13: %v", len(got), got)
			}
			continue
		}
		if !slices.Equal(orEmpty(got), orEmpty(tc.want)) {
			t.Errorf("%s:\n got %v\nwant %v", tc.filter, got, tc.want)
		}
	}
	// Scopes.
	if got := dns(t, c, people, ldap.ScopeSingleLevel, "(objectClass=*)"); !slices.Equal(got, sorted(alice, bob, root, olga)) {
		t.Errorf("one level under people: %v", got)
	}
	if got := dns(t, c, base, ldap.ScopeSingleLevel, "(objectClass=*)"); !slices.Equal(got, sorted(people, devices, groups, services)) {
		t.Errorf("one level under the base: %v", got)
	}
	if got := dns(t, c, alice, ldap.ScopeSingleLevel, "(objectClass=*)"); len(got) != 0 {
		t.Errorf("one level under alice: %v", got)
	}
	if got := dns(t, c, alice, ldap.ScopeBaseObject, "(uid=bob)"); len(got) != 0 {
		t.Errorf("alice's entry matching (uid=bob): %v", got)
	}
}

// A user searching the whole tree finds the containers, itself and its own
// things: never another user, another user's thing or a group.
func TestUserSearchSeesOwnOnly(t *testing.T) { onEachStore(t, testUserSearchSeesOwnOnly) }

func testUserSearchSeesOwnOnly(t *testing.T, e *testEnv) {
	c := e.bound(t, aliceDN(), alicePassword)
	want := sorted(base, "ou=people,"+base, "ou=devices,"+base, "ou=groups,"+base, "ou=services,"+base, aliceDN(), "cn="+e.speaker.ID+",ou=devices,"+base)
	if got := dns(t, c, base, ldap.ScopeWholeSubtree, "(objectClass=*)"); !slices.Equal(got, want) {
		t.Errorf("alice's subtree search:\n got %v\nwant %v", got, want)
	}
	for _, f := range []string{"(uid=bob)", "(uid=*)", "(|(uid=bob)(uid=alice))", "(serialNumber=THM*)", "(cn=family)", "(!(uid=alice))"} {
		for _, got := range dns(t, c, base, ldap.ScopeWholeSubtree, f) {
			if strings.Contains(got, "bob") || strings.Contains(got, e.thermostat.ID) || strings.Contains(got, "cn=family") || strings.Contains(got, "root") {
				t.Errorf("alice's search %s found %s", f, got)
			}
		}
	}
	if _, err := c.Search(ldap.NewSearchRequest("uid=bob,ou=people,"+base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", nil, nil)); !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		t.Errorf("alice searching under bob: %v, want noSuchObject", err)
	}
}

func TestSearchSizeLimitWithLdapsearch(t *testing.T) {
	e := newEnv(t)
	out, code := e.run(t, "ldapsearch", "-x", "-LLL", "-H", "ldaps://"+e.ldaps, "-D", "uid=root,ou=people,"+base, "-w", rootPassword,
		"-b", "ou=people,"+base, "-z", "2", "(objectClass=inetOrgPerson)", "uid")
	if code != int(resultSizeLimitExceeded) || strings.Count(out, "uid: ") != 2 {
		t.Errorf("ldapsearch -z 2: exit %d\n%s", code, out)
	}
	// Types only.
	out, code = e.run(t, "ldapsearch", "-x", "-LLL", "-A", "-H", "ldaps://"+e.ldaps, "-D", aliceDN(), "-w", alicePassword, "-b", aliceDN(), "-s", "base", "(objectClass=*)", "mail")
	if code != 0 || !strings.Contains(out, "mail:") || strings.Contains(out, "alice@example.org") {
		t.Errorf("ldapsearch -A: exit %d\n%s", code, out)
	}
}
