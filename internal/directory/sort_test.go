package directory

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// uidsOf lists the uid values of ldapsearch's LDIF, in order.
func uidsOf(out string) []string {
	var uids []string
	for _, m := range regexp.MustCompile(`(?m)^uid: (\S+)$`).FindAllStringSubmatch(out, -1) {
		uids = append(uids, m[1])
	}
	return uids
}

func TestServerSideSorting(t *testing.T) { onEachStore(t, testServerSideSorting) }

func testServerSideSorting(t *testing.T, e *testEnv) {
	search := func(extra ...string) (string, int) {
		args := append([]string{"-x", "-LLL", "-H", "ldaps://" + e.ldaps, "-D", "uid=root,ou=people," + base, "-w", rootPassword, "-b", "ou=people," + base, "-s", "one"}, extra...)
		return e.run(t, "ldapsearch", append(args, "(objectClass=*)", "uid")...)
	}
	out, code := search("-E", "!sss=-uid")
	if got := uidsOf(out); code != 0 || !slices.Equal(got, []string{"root", "olga", "bob", "alice"}) {
		t.Errorf("sorted by uid, reversed: exit %d, %v\n%s", code, got, out)
	}
	// Sorted and paged: the order holds across pages.
	out, code = search("-E", "!sss=uid", "-E", "pr=1/noprompt")
	if got := uidsOf(out); code != 0 || !slices.Equal(got, []string{"alice", "bob", "olga", "root"}) {
		t.Errorf("sorted by uid, one a page: exit %d, %v\n%s", code, got, out)
	}
	// What the store cannot sort: refused when critical...
	for _, key := range []string{"mail", "cn", "nosuchattribute", "uid:1.2.3.4"} {
		if out, code := search("-E", "!sss="+key); code != int(resultUnavailableCriticalExtension) {
			t.Errorf("critical sort by %s: exit %d\n%s", key, code, out)
		}
	}
	// ...answered unsorted when not.
	if out, code := search("-E", "sss=mail"); code != 0 || len(uidsOf(out)) != 4 {
		t.Errorf("non-critical sort by mail: exit %d\n%s", code, out)
	}
	// A subtree of several kinds is not sorted.
	out, code = e.run(t, "ldapsearch", "-x", "-LLL", "-H", "ldaps://"+e.ldaps, "-D", "uid=root,ou=people,"+base, "-w", rootPassword, "-b", base, "-E", "!sss=uid", "(uid=*)")
	if code != int(resultUnavailableCriticalExtension) || strings.Contains(out, "dn:") {
		t.Errorf("critical sort of a subtree: exit %d\n%s", code, out)
	}
}
