package directory

import (
	"strings"
	"testing"
)

func TestParseDN(t *testing.T) {
	for _, c := range []struct{ in, want, err string }{
		{in: "uid=alice,ou=people,dc=thingid,dc=test", want: "uid=alice,ou=people,dc=thingid,dc=test"},
		{in: "UID=Alice, OU=People ,dc=x", want: "uid=Alice,ou=People,dc=x"},
		{in: `cn=Smith\, John,dc=x`, want: `cn=Smith\, John,dc=x`},
		{in: `cn=\23hash\20,dc=x`, want: `cn=\#hash\ ,dc=x`},
		{in: `cn=a+sn=b,dc=x`, want: `cn=a+sn=b,dc=x`},
		{in: `cn=#04036162 63,dc=x`, err: "hex"},
		{in: `cn=#0403616263,dc=x`, want: `cn=abc,dc=x`},
		{in: `cn=\c3\a9,dc=x`, want: "cn=é,dc=x"},
		{in: "2.5.4.3=x", want: "2.5.4.3=x"},
		{in: "", want: ""},
		{in: "cn", err: "'='"},
		{in: "cn=a,", err: "empty attribute type"},
		{in: "=a", err: "empty attribute type"},
		{in: "1cn=a", err: "neither"},
		{in: "01.2=a", err: "neither"},
		{in: `cn=a"b`, err: "escaped"},
		{in: `cn=a\`, err: "escape at the end"},
		{in: `cn=a\4`, err: "one hex digit"},
		{in: `cn=a\ff`, err: "UTF-8"},
		{in: "cn=x') OR 1=1 --", err: "escaped"},
	} {
		dn, err := ParseDN(c.in)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("ParseDN(%q) = %v, %v; want an error with %q", c.in, dn, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("ParseDN(%q): %v", c.in, err)
		case c.err == "" && dn.String() != c.want:
			t.Errorf("ParseDN(%q) = %q, want %q", c.in, dn.String(), c.want)
		}
	}
}

func TestDNUnder(t *testing.T) {
	base, _ := ParseDN("dc=thingid,dc=test")
	dn, _ := ParseDN("uid=alice,ou=People,DC=ThingID,dc=test")
	rel, ok := dn.Under(base)
	if !ok || rel.String() != "uid=alice,ou=People" {
		t.Fatalf("Under = %v, %v", rel, ok)
	}
	other, _ := ParseDN("dc=other,dc=test")
	if _, ok := other.Under(base); ok {
		t.Fatal("dc=other,dc=test under dc=thingid,dc=test")
	}
}
