package directory

import (
	"slices"
	"strings"
	"testing"

	"github.com/go-ldap/ldap/v3"
)

// pageOf searches ou=people one page of size at a time from cookie; it
// returns the uids of the page and the next cookie.
func pageOf(c *ldap.Conn, filter string, size uint32, cookie []byte) ([]string, []byte, error) {
	paging := ldap.NewControlPaging(size)
	paging.SetCookie(cookie)
	res, err := c.Search(ldap.NewSearchRequest("ou=people,"+base, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false, filter, []string{"uid"}, []ldap.Control{paging}))
	if err != nil {
		return nil, nil, err
	}
	var uids []string
	for _, e := range res.Entries {
		uids = append(uids, e.GetAttributeValue("uid"))
	}
	ctl, ok := ldap.FindControl(res.Controls, ldap.ControlTypePaging).(*ldap.ControlPaging)
	if !ok {
		return uids, nil, nil
	}
	return uids, ctl.Cookie, nil
}

func TestPagedResults(t *testing.T) { onEachStore(t, testPagedResults) }

func testPagedResults(t *testing.T, e *testEnv) {
	c := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
	want := []string{e.alice.ID, e.bob.ID, e.root.ID, e.olga.ID}
	slices.Sort(want) // entries come in id order
	var all []string
	cookie := []byte(nil)
	for pages := 0; ; pages++ {
		uids, next, err := pageOf(c, "(objectClass=inetOrgPerson)", 3, cookie)
		if err != nil || pages > 3 {
			t.Fatalf("page %d: %v", pages, err)
		}
		all = append(all, uids...)
		if len(next) == 0 {
			break
		}
		cookie = next
	}
	var ids []string
	for _, u := range all {
		ids = append(ids, map[string]string{"alice": e.alice.ID, "bob": e.bob.ID, "root": e.root.ID, "olga": e.olga.ID}[u])
	}
	if !slices.Equal(ids, want) {
		t.Fatalf("paged uids %v, want each person once in id order", all)
	}
	// go-ldap's own paging, one entry a page, over the whole tree.
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil), 1)
	if err != nil || len(res.Entries) != 13 {
		t.Fatalf("SearchWithPaging: %d entries, %v; want all 13", len(res.Entries), err)
	}
	// ldapsearch's.
	out, code := e.run(t, "ldapsearch", "-x", "-LLL", "-H", "ldaps://"+e.ldaps, "-D", "uid=root,ou=people,"+base, "-w", rootPassword,
		"-b", "ou=people,"+base, "-E", "pr=2/noprompt", "(objectClass=inetOrgPerson)", "uid")
	if code != 0 || strings.Count(out, "uid: ") != 4 {
		t.Errorf("ldapsearch -E pr=2: exit %d\n%s", code, out)
	}
}

// A paging cookie continues one search on one connection once: another
// connection, another search, a changed cookie and a used one are refused.
func TestPagingCookieAttacks(t *testing.T) {
	e := newEnv(t)
	a := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
	b := e.bound(t, "uid=root,ou=people,"+base, rootPassword)
	_, cookie, err := pageOf(a, "(objectClass=*)", 1, nil)
	if err != nil || len(cookie) == 0 {
		t.Fatalf("first page: %v, cookie %q", err, cookie)
	}
	refused := func(what string, c *ldap.Conn, filter string, ck []byte) {
		t.Helper()
		if _, _, err := pageOf(c, filter, 1, ck); !ldap.IsErrorWithCode(err, ldap.LDAPResultUnwillingToPerform) {
			t.Errorf("%s: %v, want unwillingToPerform", what, err)
		}
	}
	refused("the cookie on another connection", b, "(objectClass=*)", cookie)
	changed := slices.Clone(cookie)
	changed[0] ^= 1
	refused("a changed cookie", a, "(objectClass=*)", changed)
	refused("the cookie for another search", a, "(uid=*)", cookie)
	refused("a cookie never handed out", a, "(objectClass=*)", []byte("AAAAAAAAAAAAAAAAAAAAAAAAAA"))
	// None of those used it up; it still continues its own search, once.
	if _, _, err := pageOf(a, "(objectClass=*)", 1, cookie); err != nil {
		t.Fatalf("the cookie on its own connection: %v", err)
	}
	refused("the cookie used again", a, "(objectClass=*)", cookie)

	// Size 0 abandons a paged search: its cookie is forgotten.
	_, cookie, _ = pageOf(a, "(objectClass=*)", 1, nil)
	if uids, next, err := pageOf(a, "(objectClass=*)", 0, cookie); err != nil || len(uids) != 0 || len(next) != 0 {
		t.Fatalf("abandoning: %v %v %v", uids, next, err)
	}
	refused("the abandoned search's cookie", a, "(objectClass=*)", cookie)
}

// Paging never widens what a user sees.
func TestPagingKeepsVisibility(t *testing.T) { onEachStore(t, testPagingKeepsVisibility) }

func testPagingKeepsVisibility(t *testing.T, e *testEnv) {
	c := e.bound(t, aliceDN(), alicePassword)
	res, err := c.SearchWithPaging(ldap.NewSearchRequest(base, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"1.1"}, nil), 1)
	if err != nil || len(res.Entries) != 7 {
		t.Fatalf("alice's paged subtree: %d entries, %v; want the base, 4 containers, herself and her speaker", len(res.Entries), err)
	}
}
