package server

import (
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// ldap3Python is a python3 that imports ldap3: the one on PATH, or
// Debian's (python3-ldap3 installs into /usr/bin/python3's packages). The
// test skips without one (and fails in CI).
func ldap3Python(t *testing.T) string {
	t.Helper()
	var candidates []string
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, p := range append(candidates, "/usr/bin/python3") {
		if exec.Command(p, "-c", "import ldap3").Run() == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("a python3 with ldap3 is required in CI: apt-get install python3-ldap3")
	}
	t.Skip("no python3 with ldap3 (apt-get install python3-ldap3)")
	return ""
}

// Python's ldap3, as applications use it: a simple bind over LDAPS, a
// paged search, a simple bind in clear text refused, and a thing's SASL
// EXTERNAL bind with its device certificate.
func TestDirectoryWithPythonLDAP3(t *testing.T) {
	python := ldap3Python(t)
	r, urls, ca := directoryPlatform(t)
	ctx := t.Context()
	want := []string{"admin"}
	for _, name := range []string{"ada", "grace", "linus"} {
		if _, err := r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: name}, ""); err != nil {
			t.Fatal(err)
		}
		want = append(want, name)
	}
	lamp, certFile, keyFile := deviceWithCertificate(t, r, "LAMP-PY")
	const suffix = "dc=example,dc=org"
	adminDN, lampDN := "uid=admin,ou=people,"+suffix, "cn="+lamp.ID+",ou=devices,"+suffix

	cmd := exec.Command(python, "testdata/ldap3_client.py")
	cmd.Env = append(os.Environ(), "LDAP_CA="+ca, "LDAPS_URL="+urls["ldaps"], "LDAP_URL="+urls["ldap"],
		"BIND_DN="+adminDN, "BIND_PASSWORD="+adminPassword(t, r), "PEOPLE=ou=people,"+suffix,
		"THING_CERT="+certFile, "THING_KEY="+keyFile, "THING_DN="+lampDN)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ldap3 client: %v\n%s", err, stderr.String())
	}
	var got struct {
		Bind            bool     `json:"bind"`
		BindResult      string   `json:"bindResult"`
		Whoami          string   `json:"whoami"`
		Pages           int      `json:"pages"`
		UIDs            []string `json:"uids"`
		ClearTextBind   bool     `json:"clearTextBind"`
		ClearTextResult string   `json:"clearTextResult"`
		ExternalBind    bool     `json:"externalBind"`
		ExternalWhoami  string   `json:"externalWhoami"`
		ThingSerial     []string `json:"thingSerial"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("ldap3 client said %q: %v", out, err)
	}
	if !got.Bind || got.Whoami != "dn:"+adminDN {
		t.Errorf("simple bind over LDAPS: %v (%s), who am I: %q", got.Bind, got.BindResult, got.Whoami)
	}
	slices.Sort(got.UIDs)
	slices.Sort(want)
	if !slices.Equal(got.UIDs, want) || got.Pages < len(want) {
		t.Errorf("paged search: %d pages of %v, want one page for each of %v", got.Pages, got.UIDs, want)
	}
	if got.ClearTextBind || got.ClearTextResult != "confidentialityRequired" {
		t.Errorf("simple bind in clear text: %v (%s), want confidentialityRequired", got.ClearTextBind, got.ClearTextResult)
	}
	if !got.ExternalBind || got.ExternalWhoami != "dn:"+lampDN || !slices.Equal(got.ThingSerial, []string{"LAMP-PY"}) {
		t.Errorf("SASL EXTERNAL: bound %v as %q, read %v", got.ExternalBind, got.ExternalWhoami, got.ThingSerial)
	}
}
