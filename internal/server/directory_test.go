package server

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/config"
)

// thingid serve with ldap enabled: both listeners on the platform's server
// certificate, through the process's connection accounting.
func TestDirectoryServed(t *testing.T) {
	ldapsearch, err := exec.LookPath("ldapsearch")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("ldapsearch is required in CI: apt-get install ldap-utils")
		}
		t.Skip("ldapsearch not installed (apt-get install ldap-utils)")
	}
	r := serve(t, func(c *config.Config) {
		c.LDAP.Enabled = true
		c.LDAP.BaseDN = "dc=example,dc=org"
		c.LDAP.LDAPSAddress = "127.0.0.1:0"
		c.LDAP.StartTLSAddress = "127.0.0.1:0"
	})
	urls := map[string]string{}
	re := regexp.MustCompile(`serving on (ldaps?)://(\S+) \(base DN dc=example,dc=org\)`)
	for _, m := range re.FindAllStringSubmatch(r.out.String(), -1) {
		urls[m[1]] = m[1] + "://" + m[2]
	}
	if len(urls) != 2 {
		t.Fatalf("listeners announced: %v\n%s", urls, r.out.String())
	}
	ca := filepath.Join(r.p.Config.Home, "pki", "ca.crt")
	for _, args := range [][]string{{"-H", urls["ldaps"]}, {"-H", urls["ldap"], "-ZZ"}} {
		cmd := exec.Command(ldapsearch, append(args, "-x", "-LLL", "-o", "nettimeout=10", "-b", "", "-s", "base", "namingContexts")...)
		cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+ca, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), "namingContexts: dc=example,dc=org") {
			t.Errorf("ldapsearch %v: %v\n%s", args, err, out)
		}
	}
	_, metrics := r.get(t, "/metrics", nil)
	for _, l := range []string{`thingid_connections_open{listener="ldaps"}`, `thingid_connections_open{listener="ldap"}`} {
		if !strings.Contains(metrics, l) {
			t.Errorf("/metrics lacks %s", l)
		}
	}
	// Closing the platform ends the LDAP sessions too.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(ldapsearch, "-x", "-H", urls["ldaps"], "-o", "nettimeout=5", "-b", "", "-s", "base")
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+ca, "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("ldapsearch after shutdown: %s", out)
	}
}
