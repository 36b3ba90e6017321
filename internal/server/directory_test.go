package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/store"
)

// ldapTool is the path of an OpenLDAP client; the test skips without it
// (and fails in CI).
func ldapTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: apt-get install ldap-utils", name)
		}
		t.Skipf("%s not installed (apt-get install ldap-utils)", name)
	}
	return p
}

// directoryPlatform is a running platform with the directory on; it
// returns the listeners' URLs by scheme and the CA file clients trust.
func directoryPlatform(t *testing.T) (*running, map[string]string, string) {
	t.Helper()
	return directoryPlatformWith(t, nil)
}

// directoryPlatformWith is directoryPlatform with before run on the opened
// platform before it serves.
func directoryPlatformWith(t *testing.T, before func(*Platform)) (*running, map[string]string, string) {
	t.Helper()
	r := serveWith(t, before, func(c *config.Config) {
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
	return r, urls, filepath.Join(r.p.Config.Home, "pki", "ca.crt")
}

// ldapCommand is an OpenLDAP client trusting the platform CA; extra adds
// environment variables (a client certificate).
func ldapCommand(t *testing.T, ca, name string, extra []string, args ...string) *exec.Cmd {
	cmd := exec.Command(ldapTool(t, name), args...)
	cmd.Env = append(append(os.Environ(), "LDAPTLS_CACERT="+ca, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null"), extra...)
	return cmd
}

func exitCode(err error) int {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// thingid serve with ldap enabled: both listeners on the platform's server
// certificate, through the process's connection accounting.
func TestDirectoryServed(t *testing.T) {
	r, urls, ca := directoryPlatform(t)
	for _, args := range [][]string{{"-H", urls["ldaps"]}, {"-H", urls["ldap"], "-ZZ"}} {
		out, err := ldapCommand(t, ca, "ldapsearch", nil, append(args, "-x", "-LLL", "-o", "nettimeout=10", "-b", "", "-s", "base", "namingContexts")...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "namingContexts: dc=example,dc=org") {
			t.Errorf("ldapsearch %v: %v\n%s", args, err, out)
		}
	}
	// The first administrator's one-time password does not bind (as it
	// signs in to nothing but the password change); its own password does.
	adminDN := "uid=admin,ou=people,dc=example,dc=org"
	out, err := ldapCommand(t, ca, "ldapwhoami", nil, "-x", "-H", urls["ldaps"], "-D", adminDN, "-w", oneTimePassword(t, r)).CombinedOutput()
	if code := exitCode(err); code != 49 || !strings.Contains(string(out), "one-time password") {
		t.Errorf("ldapwhoami with the one-time password: exit %d\n%s", code, out)
	}
	out, err = ldapCommand(t, ca, "ldapwhoami", nil, "-x", "-H", urls["ldaps"], "-D", adminDN, "-w", adminPassword(t, r)).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "dn:"+adminDN {
		t.Errorf("ldapwhoami as the administrator: %v\n%s", err, out)
	}
	_, metrics := r.get(t, "/metrics", nil)
	for _, l := range []string{`thingid_connections_open{listener="ldaps"}`, `thingid_connections_open{listener="ldap"}`,
		`thingid_ldap_operations_total{op="bind",result="invalidCredentials"} 1`, `thingid_ldap_operations_total{op="bind",result="success"} `,
		`thingid_ldap_operations_total{op="search",result="success"} 2`, `thingid_ldap_entries_returned_total 2`} {
		if !strings.Contains(metrics, l) {
			t.Errorf("/metrics lacks %s", l)
		}
	}
	// Closing the platform ends the LDAP sessions too.
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	if out, err := ldapCommand(t, ca, "ldapsearch", nil, "-x", "-H", urls["ldaps"], "-o", "nettimeout=5", "-b", "", "-s", "base").CombinedOutput(); err == nil {
		t.Errorf("ldapsearch after shutdown: %s", out)
	}
}

// deviceWithCertificate creates a thing with a device certificate from the
// platform's device CA and returns it with the files of the certificate
// chain and of its key (PKCS #8), PEM.
func deviceWithCertificate(t *testing.T, r *running, serial string) (th *store.Thing, certFile, keyFile string) {
	t.Helper()
	_, dca, err := r.p.PKI()
	if err != nil {
		t.Fatal(err)
	}
	th, err = r.p.Identity.CreateThing(t.Context(), "test", &store.Thing{Type: store.ThingDevice, SerialNumber: serial})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dca.IssueDevice(th.ID, serial, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(dc.Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, dc.ChainPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return th, certFile, keyFile
}

// A thing binds as itself with its device certificate (SASL EXTERNAL,
// through certauth): never as another thing, and not once disabled.
func TestDirectoryExternalBind(t *testing.T) {
	r, urls, ca := directoryPlatform(t)
	ctx := context.Background()
	mk := func(serial string) (*store.Thing, []string) {
		th, certFile, keyFile := deviceWithCertificate(t, r, serial)
		return th, []string{"LDAPTLS_CERT=" + certFile, "LDAPTLS_KEY=" + keyFile}
	}
	lamp, lampCert := mk("LAMP-1")
	other, _ := mk("LAMP-2")
	lampDN := "cn=" + lamp.ID + ",ou=devices,dc=example,dc=org"
	whoami := func(extra []string, args ...string) (string, error) {
		out, err := ldapCommand(t, ca, "ldapwhoami", extra, append([]string{"-Y", "EXTERNAL", "-H", urls["ldaps"]}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(out)), err
	}
	if out, err := whoami(lampCert); err != nil || !strings.HasSuffix(out, "dn:"+lampDN) {
		t.Fatalf("ldapwhoami -Y EXTERNAL with the lamp's certificate: %v\n%s", err, out)
	}
	// Over StartTLS too.
	if out, err := ldapCommand(t, ca, "ldapwhoami", lampCert, "-Y", "EXTERNAL", "-ZZ", "-H", urls["ldap"]).CombinedOutput(); err != nil || !strings.HasSuffix(strings.TrimSpace(string(out)), "dn:"+lampDN) {
		t.Fatalf("EXTERNAL after StartTLS: %v\n%s", err, out)
	}
	// Asking to be another thing with the lamp's certificate is refused.
	if out, err := whoami(lampCert, "-X", "dn:cn="+other.ID+",ou=devices,dc=example,dc=org"); err == nil || !strings.Contains(out, "not the certificate's thing") {
		t.Fatalf("the lamp's certificate bound as the other lamp: %s", out)
	}

	// The lamp reads itself, and no other thing.
	cert, err := tls.LoadX509KeyPair(lampCert[0][len("LDAPTLS_CERT="):], lampCert[1][len("LDAPTLS_KEY="):])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	caPEM, _ := os.ReadFile(ca)
	pool.AppendCertsFromPEM(caPEM)
	c, err := ldap.DialURL(urls["ldaps"], ldap.DialWithTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}}))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.ExternalBind(); err != nil {
		t.Fatal(err)
	}
	anon, err := ldap.DialURL(urls["ldaps"], ldap.DialWithTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}))
	if err != nil {
		t.Fatal(err)
	}
	defer anon.Close()
	if err := anon.ExternalBind(); !ldap.IsErrorWithCode(err, ldap.LDAPResultInappropriateAuthentication) {
		t.Fatalf("EXTERNAL without a certificate: %v", err)
	}
	search := func(dn string) (*ldap.SearchResult, error) {
		return c.Search(ldap.NewSearchRequest(dn, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 0, 0, false, "(objectClass=*)", []string{"serialNumber"}, nil))
	}
	if res, err := search(lampDN); err != nil || res.Entries[0].GetAttributeValue("serialNumber") != "LAMP-1" {
		t.Fatalf("the lamp reading itself: %v %v", res, err)
	}
	if _, err := search("cn=" + other.ID + ",ou=devices,dc=example,dc=org"); !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		t.Fatalf("the lamp reading the other lamp: %v", err)
	}

	// Disabled: the next bind fails at once.
	if _, err := r.p.Identity.UpdateThing(ctx, "test", lamp.ID, 0, func(th *store.Thing) error { th.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if out, err := whoami(lampCert); err == nil || !strings.Contains(out, "identifies no active thing") {
		t.Fatalf("a disabled thing bound: %s", out)
	}
}

// An administrator's ldapadd and ldapmodify are in SCIM at once: one
// store, nothing to synchronise.
func TestDirectoryWritesVisibleInSCIM(t *testing.T) {
	r, urls, ca := directoryPlatform(t)
	pw := adminPassword(t, r)
	admin := func(req *http.Request) { req.SetBasicAuth("admin", pw) }
	ldif := func(name, body string) {
		t.Helper()
		f := filepath.Join(t.TempDir(), "change.ldif")
		os.WriteFile(f, []byte(body), 0o600)
		out, err := ldapCommand(t, ca, name, nil, "-x", "-H", urls["ldaps"], "-D", "uid=admin,ou=people,dc=example,dc=org", "-w", pw, "-f", f).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	ldif("ldapadd", `dn: uid=dana,ou=people,dc=example,dc=org
objectClass: inetOrgPerson
cn: Dana Scully
sn: Scully
mail: dana@example.org
userPassword: the truth is out there somewhere
`)
	code, body := r.get(t, `/scim/v2/Users?filter=userName%20eq%20%22dana%22`, admin)
	if code != 200 || !strings.Contains(body, `"displayName":"Dana Scully"`) || !strings.Contains(body, `"familyName":"Scully"`) {
		t.Fatalf("dana in SCIM after ldapadd: %d %s", code, body)
	}
	ldif("ldapmodify", `dn: uid=dana,ou=people,dc=example,dc=org
changetype: modify
replace: telephoneNumber
telephoneNumber: +1 202 555 0142
`)
	if code, body := r.get(t, `/scim/v2/Users?filter=userName%20eq%20%22dana%22`, admin); code != 200 || !strings.Contains(body, `"value":"+1 202 555 0142"`) {
		t.Fatalf("dana in SCIM after ldapmodify: %d %s", code, body)
	}
}

// An application binds as its OAuth client (cn=<client_id>,ou=services)
// with the secret the token endpoint checks, and reads what
// ldap.serviceAccounts grants it.
func TestDirectoryServiceAccount(t *testing.T) {
	var id, secret, other string
	r, urls, ca := directoryPlatformWith(t, func(p *Platform) {
		ctx := context.Background()
		srv, cleanup, err := p.OAuthAdmin(ctx, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		spec := oauth.ClientSpec{Name: "inventory", GrantTypes: []string{"client_credentials"}}
		c, s, err := srv.CreateClient(ctx, "test", spec)
		if err != nil {
			t.Fatal(err)
		}
		id, secret = c.ID, s
		c2, _, err := srv.CreateClient(ctx, "test", oauth.ClientSpec{Name: "other", GrantTypes: []string{"client_credentials"}})
		if err != nil {
			t.Fatal(err)
		}
		other = c2.ID
		p.Config.LDAP.ServiceAccounts = map[string][]string{id: {"devices"}}
		if _, err := p.Identity.CreateThing(ctx, "test", &store.Thing{Type: store.ThingDevice, SerialNumber: "INV-1"}); err != nil {
			t.Fatal(err)
		}
	})
	search := func(dn, pw, base string) (string, error) {
		out, err := ldapCommand(t, ca, "ldapsearch", nil, "-x", "-LLL", "-H", urls["ldaps"], "-D", dn, "-w", pw, "-b", base, "(objectClass=*)", "serialNumber").CombinedOutput()
		return string(out), err
	}
	dn := "cn=" + id + ",ou=services,dc=example,dc=org"
	if out, err := search(dn, secret, "ou=devices,dc=example,dc=org"); err != nil || !strings.Contains(out, "serialNumber: INV-1") {
		t.Fatalf("the service account reading devices: %v\n%s", err, out)
	}
	if out, err := search(dn, secret, "ou=people,dc=example,dc=org"); err != nil || strings.Contains(out, "uid=admin") {
		t.Fatalf("the service account reading people: %v\n%s", err, out)
	}
	for _, tc := range []struct{ name, dn, pw string }{
		{"a wrong secret", dn, secret + "x"},
		{"a client not listed", "cn=" + other + ",ou=services,dc=example,dc=org", secret},
		{"the administrator's password for the client", dn, adminPassword(t, r)},
	} {
		if out, err := search(tc.dn, tc.pw, "dc=example,dc=org"); exitCode(err) != 49 {
			t.Errorf("%s: exit %d\n%s", tc.name, exitCode(err), out)
		}
	}
	// The client's secret still works at the token endpoint.
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", r.base+"/oauth2/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("the client at the token endpoint: %d", resp.StatusCode)
	}
}
