package directory

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

const rootDN = "uid=root,ou=people," + base

// runLDIF runs an OpenLDAP client with ldif as its input file.
func (e *testEnv) runLDIF(t *testing.T, name, ldif string, args ...string) (string, int) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "change.ldif")
	if err := os.WriteFile(f, []byte(ldif), 0o600); err != nil {
		t.Fatal(err)
	}
	return e.run(t, name, append(args, "-f", f)...)
}

// An administrator adds a person and a group with ldapadd, changes them
// with ldapmodify and renames them with ldapmodrdn: each change is in the
// store at once, through identity (what SCIM reads), and the new person
// binds with the password it was given.
func TestWritesWithOpenLDAPTools(t *testing.T) {
	e := newEnv(t)
	admin := []string{"-x", "-H", "ldaps://" + e.ldaps, "-D", rootDN, "-w", rootPassword}
	out, code := e.runLDIF(t, "ldapadd", `dn: uid=carol,ou=people,`+base+`
objectClass: inetOrgPerson
uid: carol
cn: Carol Danvers
sn: Danvers
givenName: Carol
mail: carol@example.org
telephoneNumber: +1 555 0100
preferredLanguage: en-US
userPassword: higher further faster baby

dn: cn=pilots,ou=groups,`+base+`
objectClass: groupOfNames
cn: pilots
member: uid=carol,ou=people,`+base+`
member: `+e.srv.thingDN(e.speaker.ID)+`
`, admin...)
	if code != 0 {
		t.Fatalf("ldapadd: exit %d: %s", code, out)
	}
	ctx := context.Background()
	carol, err := e.ids.GetUserByName(ctx, "carol")
	if err != nil {
		t.Fatalf("carol after ldapadd: %v", err)
	}
	if carol.DisplayName != "Carol Danvers" || carol.Name.FamilyName != "Danvers" || carol.Name.GivenName != "Carol" ||
		carol.PrimaryEmail() != "carol@example.org" || carol.Locale != "en-US" || len(carol.PhoneNumbers) != 1 {
		t.Errorf("carol as stored: %+v", carol)
	}
	e.bound(t, "uid=carol,ou=people,"+base, "higher further faster baby")

	out, code = e.runLDIF(t, "ldapmodify", `dn: uid=carol,ou=people,`+base+`
changetype: modify
replace: telephoneNumber
telephoneNumber: +1 555 0199
-
add: mail
mail: captain@example.org
-
delete: givenName

dn: cn=pilots,ou=groups,`+base+`
changetype: modify
add: member
member: uid=bob,ou=people,`+base+`
-
delete: member
member: `+e.srv.thingDN(e.speaker.ID)+`
`, admin...)
	if code != 0 {
		t.Fatalf("ldapmodify: exit %d: %s", code, out)
	}
	carol, _ = e.ids.GetUser(ctx, carol.ID)
	if carol.PhoneNumbers[0].Value != "+1 555 0199" || len(carol.Emails) != 2 || carol.Name.GivenName != "" {
		t.Errorf("carol after ldapmodify: %+v", carol)
	}
	pilots, err := e.srv.groupByName(ctx, "pilots")
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Ref{{Kind: store.KindUser, ID: carol.ID}, {Kind: store.KindUser, ID: e.bob.ID}}
	if !sameRefs(pilots.Members, want) {
		t.Errorf("pilots' members: %v, want %v", pilots.Members, want)
	}

	out, code = e.run(t, "ldapmodrdn", append(admin, "-r", "uid=carol,ou=people,"+base, "uid=captain")...)
	if code != 0 {
		t.Fatalf("ldapmodrdn: exit %d: %s", code, out)
	}
	out, code = e.run(t, "ldapmodrdn", append(admin, "-r", "cn=pilots,ou=groups,"+base, "cn=aviators")...)
	if code != 0 {
		t.Fatalf("ldapmodrdn of the group: exit %d: %s", code, out)
	}
	if u, err := e.ids.GetUser(ctx, carol.ID); err != nil || u.UserName != "captain" {
		t.Errorf("carol after the rename: %v %v", u, err)
	}
	if g, err := e.ids.GetGroup(ctx, pilots.ID); err != nil || g.DisplayName != "aviators" {
		t.Errorf("pilots after the rename: %v %v", g, err)
	}
	// The audit log says who did it, as for SCIM.
	recs, err := e.st.ListAudit(ctx, store.AuditQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(recs, func(r store.AuditRecord) bool {
		return r.Action == "user.create" && r.Actor == "admin:"+e.root.ID && r.Target.ID == carol.ID
	}) {
		t.Errorf("no audit record of carol's creation by root: %+v", recs)
	}
}

func sameRefs(a, b []store.Ref) bool {
	if len(a) != len(b) {
		return false
	}
	for _, r := range b {
		if !slices.Contains(a, r) {
			return false
		}
	}
	return true
}

// A user changes its own self-service attributes, and sees the change at
// once in its own entry.
func TestSelfServiceModify(t *testing.T) {
	e := newEnv(t)
	c := e.bound(t, aliceDN(), alicePassword)
	m := ldap.NewModifyRequest(aliceDN(), nil)
	m.Replace("telephoneNumber", []string{"+44 20 7946 0000"})
	m.Replace("cn", []string{"Alice Pleasance Liddell"})
	m.Add("givenName", []string{"Ally"})
	if err := c.Modify(m); !ldap.IsErrorWithCode(err, ldap.LDAPResultConstraintViolation) || !strings.Contains(err.Error(), "givenName: single-valued") {
		t.Fatalf("adding a second givenName: %v, want constraintViolation", err)
	}
	m = ldap.NewModifyRequest(aliceDN(), nil)
	m.Replace("telephoneNumber", []string{"+44 20 7946 0000"})
	m.Replace("cn", []string{"Alice Pleasance Liddell"})
	m.Replace("preferredLanguage", []string{"en-US"})
	if err := c.Modify(m); err != nil {
		t.Fatal(err)
	}
	res, err := c.Search(ldap.NewSearchRequest(aliceDN(), ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=*)", []string{"cn", "telephoneNumber", "preferredLanguage"}, nil))
	if err != nil || len(res.Entries) != 1 {
		t.Fatalf("reading alice back: %v", err)
	}
	got := res.Entries[0]
	if got.GetAttributeValue("cn") != "Alice Pleasance Liddell" || got.GetAttributeValue("telephoneNumber") != "+44 20 7946 0000" || got.GetAttributeValue("preferredLanguage") != "en-US" {
		t.Errorf("alice after her change: %v", got.Attributes)
	}
	// identity's validation answers, naming the attribute.
	m = ldap.NewModifyRequest(aliceDN(), nil)
	m.Replace("preferredLanguage", []string{"not a language"})
	if err := c.Modify(m); !ldap.IsErrorWithCode(err, ldap.LDAPResultConstraintViolation) || !strings.Contains(err.Error(), "preferredLanguage") {
		t.Errorf("a bad language: %v, want constraintViolation naming preferredLanguage", err)
	}
}

// An administrator changes a device's location, description and owners;
// an owner is a person, as identity requires.
func TestModifyDevice(t *testing.T) {
	e := newEnv(t)
	c := e.bound(t, rootDN, rootPassword)
	dn := e.srv.thingDN(e.speaker.ID)
	m := ldap.NewModifyRequest(dn, nil)
	m.Replace("l", []string{"living room"})
	m.Add("description", []string{"the one by the window"})
	m.Add("owner", []string{"uid=bob,ou=people," + base})
	m.Delete("owner", []string{aliceDN()})
	if err := c.Modify(m); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	th, _ := e.ids.GetThing(ctx, e.speaker.ID)
	if th.Location != "living room" || th.Attributes["description"] != "the one by the window" {
		t.Errorf("the speaker: %+v", th)
	}
	rels, _ := e.ids.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: e.speaker.ID}})
	if len(rels) != 1 || rels[0].From.ID != e.bob.ID {
		t.Errorf("the speaker's owners: %+v", rels)
	}
	res, err := c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, 0, 0, 0, false, "(objectClass=device)", []string{"description", "owner"}, nil))
	if err != nil || len(res.Entries) != 1 || res.Entries[0].GetAttributeValue("owner") != "uid=bob,ou=people,"+base ||
		res.Entries[0].GetAttributeValue("description") != "the one by the window" {
		t.Errorf("the speaker over LDAP: %v %v", res, err)
	}
	for _, tc := range []struct {
		attr, value string
		code        uint16
		says        string
	}{
		{"owner", e.srv.groupDN("family"), ldap.LDAPResultConstraintViolation, "owner: cn=family"},
		{"owner", "uid=nobody,ou=people," + base, ldap.LDAPResultConstraintViolation, "does not exist"},
		{"serialNumber", "X-1", ldap.LDAPResultObjectClassViolation, "serialNumber"},
		{"cn", "x", ldap.LDAPResultNotAllowedOnRDN, "cn"},
		{"l", strings.Repeat("x", 300), ldap.LDAPResultConstraintViolation, "l: "},
	} {
		m := ldap.NewModifyRequest(dn, nil)
		m.Add(tc.attr, []string{tc.value})
		if err := c.Modify(m); !ldap.IsErrorWithCode(err, tc.code) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("add %s %q: %v, want code %d saying %q", tc.attr, tc.value, err, tc.code, tc.says)
		}
	}
}

// ownerGone is the real identity service, but bob is deleted as a Modify's
// transaction begins: the owner part of the change fails in the store, as
// it would when an administrator deletes the owner at that moment.
type ownerGone struct {
	Writer
	gone func() error
}

func (w ownerGone) WithTx(ctx context.Context, actor string, fn func(tx *identity.Tx) error) error {
	if err := w.gone(); err != nil {
		return err
	}
	return w.Writer.WithTx(ctx, actor, fn)
}

// A device's Modify is one transaction: when its owner part fails, its
// attribute changes are not made either, and nothing is audited.
func TestModifyDeviceIsAtomic(t *testing.T) {
	onEachStore(t, func(t *testing.T, e *testEnv) {
		ctx := context.Background()
		e.srv.opts.Writer = ownerGone{Writer: e.ids, gone: func() error { return e.ids.DeleteUser(ctx, "test", e.bob.ID, 0) }}
		c := e.bound(t, rootDN, rootPassword)
		before, err := e.ids.GetThing(ctx, e.speaker.ID)
		if err != nil {
			t.Fatal(err)
		}
		speaker := store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: e.speaker.ID}}
		audited, err := e.st.ListAudit(ctx, speaker)
		if err != nil {
			t.Fatal(err)
		}
		m := ldap.NewModifyRequest(e.srv.thingDN(e.speaker.ID), nil)
		m.Replace("l", []string{"the attic"})
		m.Add("description", []string{"moved"})
		m.Add("owner", []string{"uid=bob,ou=people," + base})
		if err := c.Modify(m); !ldap.IsErrorWithCode(err, ldap.LDAPResultConstraintViolation) || !strings.Contains(err.Error(), "owner: ") {
			t.Fatalf("a Modify whose owner was deleted meanwhile: %v, want constraintViolation naming owner", err)
		}
		after, err := e.ids.GetThing(ctx, e.speaker.ID)
		if err != nil {
			t.Fatal(err)
		}
		if after.Location != before.Location || after.Attributes["description"] != before.Attributes["description"] || after.Meta.Revision != before.Meta.Revision {
			t.Errorf("the speaker changed although its owner could not: %+v, was %+v", after, before)
		}
		rels, _ := e.ids.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: e.speaker.ID}})
		if len(rels) != 1 || rels[0].From.ID != e.alice.ID {
			t.Errorf("the speaker's owners: %+v, want alice alone", rels)
		}
		if now, _ := e.st.ListAudit(ctx, speaker); len(now) != len(audited) {
			t.Errorf("%d audit records of the speaker, %d before: audited although nothing changed", len(now), len(audited))
		}
	})
}

// TestWriteAttacks tries to break each rule of who may write what; each
// case succeeds when its rule is removed.
func TestWriteAttacks(t *testing.T) {
	e := newEnv(t)
	alice := e.bound(t, aliceDN(), alicePassword)
	root := e.bound(t, rootDN, rootPassword)
	bobDN := "uid=bob,ou=people," + base
	admins := e.srv.groupDN(authn.AdminGroup)
	modify := func(dn string, f func(*ldap.ModifyRequest)) func(*ldap.Conn) error {
		return func(c *ldap.Conn) error {
			m := ldap.NewModifyRequest(dn, nil)
			f(m)
			return c.Modify(m)
		}
	}
	add := func(dn string, attrs map[string][]string) func(*ldap.Conn) error {
		return func(c *ldap.Conn) error {
			a := ldap.NewAddRequest(dn, nil)
			for _, k := range slices.Sorted(func(yield func(string) bool) {
				for k := range attrs {
					if !yield(k) {
						return
					}
				}
			}) {
				a.Attribute(k, attrs[k])
			}
			return c.Add(a)
		}
	}
	rename := func(dn, rdn, sup string) func(*ldap.Conn) error {
		return func(c *ldap.Conn) error { return c.ModifyDN(ldap.NewModifyDNRequest(dn, rdn, true, sup)) }
	}
	person := func(uid string) map[string][]string {
		return map[string][]string{"objectClass": {"inetOrgPerson"}, "uid": {uid}, "cn": {"X"}, "sn": {"Y"}}
	}
	for _, tc := range []struct {
		name string
		conn *ldap.Conn
		op   func(*ldap.Conn) error
		code uint16
		says string
	}{
		{"a user adding itself to the administrators", alice, modify(admins, func(m *ldap.ModifyRequest) { m.Add("member", []string{aliceDN()}) }),
			ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"a user adding the administrators to its memberOf", alice, modify(aliceDN(), func(m *ldap.ModifyRequest) { m.Add("memberOf", []string{admins}) }),
			ldap.LDAPResultConstraintViolation, "memberOf"},
		{"a user modifying another user", alice, modify(bobDN, func(m *ldap.ModifyRequest) { m.Replace("telephoneNumber", []string{"+1 555 0123"}) }),
			ldap.LDAPResultInsufficientAccessRights, "only its own entry"},
		{"a user modifying a user that does not exist", alice, modify("uid=ghost,ou=people,"+base, func(m *ldap.ModifyRequest) { m.Replace("cn", []string{"x"}) }),
			ldap.LDAPResultInsufficientAccessRights, "only its own entry"},
		{"a user changing its own mail", alice, modify(aliceDN(), func(m *ldap.ModifyRequest) { m.Replace("mail", []string{"root@example.org"}) }),
			ldap.LDAPResultInsufficientAccessRights, "mail"},
		{"a user changing its own uid", alice, modify(aliceDN(), func(m *ldap.ModifyRequest) { m.Replace("uid", []string{"root"}) }),
			ldap.LDAPResultNotAllowedOnRDN, "uid"},
		{"a user renaming itself", alice, rename(aliceDN(), "uid=alicia", ""), ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"a user changing its own device", alice, modify(e.srv.thingDN(e.speaker.ID), func(m *ldap.ModifyRequest) { m.Replace("l", []string{"x"}) }),
			ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"a user adding a person", alice, add("uid=mallory,ou=people,"+base, person("mallory")), ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"a user adding a group of administrators", alice, add("cn=admins2,ou=groups,"+base, map[string][]string{"objectClass": {"groupOfNames"}, "member": {aliceDN()}}),
			ldap.LDAPResultInsufficientAccessRights, "administrator"},
		{"a rename onto an existing DN", root, rename(bobDN, "uid=alice", ""), ldap.LDAPResultEntryAlreadyExists, "uid=alice"},
		{"a rename onto an existing group", root, rename(e.srv.groupDN("family"), "cn=Administrators", ""), ldap.LDAPResultEntryAlreadyExists, "exists already"},
		{"a rename escaping its ou", root, rename(bobDN, "uid=bob", "ou=groups,"+base), ldap.LDAPResultUnwillingToPerform, "newSuperior"},
		{"a rename escaping the tree", root, rename(bobDN, "uid=bob", "dc=elsewhere"), ldap.LDAPResultUnwillingToPerform, "newSuperior"},
		{"a rename to another naming attribute", root, rename(bobDN, "cn=bob", ""), ldap.LDAPResultNamingViolation, "uid"},
		{"an Add whose RDN disagrees with its uid", root, add("uid=carol,ou=people,"+base, person("root")), ldap.LDAPResultNamingViolation, "uid"},
		{"an Add of an existing person", root, add(bobDN, person("bob")), ldap.LDAPResultEntryAlreadyExists, "exists already"},
		{"an Add of a hashed password", root, add("uid=carol,ou=people,"+base, map[string][]string{"objectClass": {"inetOrgPerson"}, "cn": {"C"}, "sn": {"D"}, "userPassword": {"{SSHA}aGFzaGVk"}}),
			ldap.LDAPResultConstraintViolation, "userPassword"},
		{"an Add with a weak password", root, add("uid=carol,ou=people,"+base, map[string][]string{"objectClass": {"inetOrgPerson"}, "cn": {"C"}, "sn": {"D"}, "userPassword": {"carol"}}),
			ldap.LDAPResultConstraintViolation, "userPassword"},
		{"an Add without sn", root, add("uid=carol,ou=people,"+base, map[string][]string{"objectClass": {"inetOrgPerson"}, "cn": {"C"}}),
			ldap.LDAPResultObjectClassViolation, "sn"},
		{"an Add of another class", root, add("uid=carol,ou=people,"+base, map[string][]string{"objectClass": {"groupOfNames"}, "cn": {"C"}}),
			ldap.LDAPResultObjectClassViolation, "objectClass"},
		{"an Add of a device", root, add(e.srv.thingDN("new"), map[string][]string{"objectClass": {"device"}, "cn": {"new"}}),
			ldap.LDAPResultUnwillingToPerform, "device"},
		{"an Add of an unknown attribute", root, add("uid=carol,ou=people,"+base, map[string][]string{"objectClass": {"inetOrgPerson"}, "cn": {"C"}, "sn": {"D"}, "shoeSize": {"42"}}),
			ldap.LDAPResultUndefinedAttributeType, "shoeSize"},
		{"an Add setting entryUUID", root, add("uid=carol,ou=people,"+base, map[string][]string{"objectClass": {"inetOrgPerson"}, "cn": {"C"}, "sn": {"D"}, "entryUUID": {e.alice.ID}}),
			ldap.LDAPResultConstraintViolation, "entryUUID"},
		{"SQL through a member value", root, modify(admins, func(m *ldap.ModifyRequest) {
			m.Add("member", []string{`uid=x' OR '1'\3d'1,ou=people,` + base})
		}), ldap.LDAPResultConstraintViolation, "does not exist"},
		{"a filter through a mail value", root, modify(bobDN, func(m *ldap.ModifyRequest) { m.Add("mail", []string{"*)(uid=*"}) }),
			ldap.LDAPResultConstraintViolation, "mail"},
		{"a group member outside the tree", root, modify(admins, func(m *ldap.ModifyRequest) { m.Add("member", []string{"cn=admin,dc=elsewhere"}) }),
			ldap.LDAPResultConstraintViolation, "member"},
		{"a container", root, modify("ou=people,"+base, func(m *ldap.ModifyRequest) { m.Add("description", []string{"x"}) }),
			ldap.LDAPResultUnwillingToPerform, "containers"},
		{"a password by Modify", root, modify(bobDN, func(m *ldap.ModifyRequest) { m.Replace("userPassword", []string{"a new password for bob!"}) }),
			ldap.LDAPResultUnwillingToPerform, "Password Modify"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.op(tc.conn)
			var le *ldap.Error
			if !errors.As(err, &le) || le.ResultCode != tc.code || !strings.Contains(le.Err.Error(), tc.says) {
				t.Fatalf("got %v, want code %d saying %q", err, tc.code, tc.says)
			}
		})
	}
	ctx := context.Background()
	g, err := e.srv.groupByName(ctx, authn.AdminGroup)
	if err != nil || len(g.Members) != 1 || g.Members[0].ID != e.root.ID {
		t.Errorf("the administrators after the attacks: %+v %v", g, err)
	}
	if b, _ := e.ids.GetUser(ctx, e.bob.ID); b.UserName != "bob" || len(b.PhoneNumbers) != 0 || len(b.Emails) != 1 {
		t.Errorf("bob after the attacks: %+v", b)
	}
	if _, err := e.ids.GetUserByName(ctx, "carol"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("carol was added: %v", err)
	}
	if a, _ := e.ids.GetUser(ctx, e.alice.ID); a.UserName != "alice" || a.PrimaryEmail() != "alice@example.org" {
		t.Errorf("alice after the attacks: %+v", a)
	}
}

// A value that looks like SQL is a value: stored and read back as sent.
func TestInjectionThroughValuesIsStoredAsText(t *testing.T) {
	e := newEnv(t)
	c := e.bound(t, rootDN, rootPassword)
	evil := `x'); DROP TABLE users; --`
	a := ldap.NewAddRequest("uid=robert,ou=people,"+base, nil)
	a.Attribute("objectClass", []string{"inetOrgPerson"})
	a.Attribute("cn", []string{evil})
	a.Attribute("sn", []string{`" OR 1=1 --`})
	if err := c.Add(a); err != nil {
		t.Fatal(err)
	}
	u, err := e.ids.GetUserByName(context.Background(), "robert")
	if err != nil || u.DisplayName != evil || u.Name.FamilyName != `" OR 1=1 --` {
		t.Fatalf("robert: %+v %v", u, err)
	}
	if _, _, err := e.st.ListUsers(context.Background(), store.Query{Limit: 10}); err != nil {
		t.Fatalf("the users table after robert: %v", err)
	}
}
