package est

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/pki"
)

// Real EST clients: Debian's curl and openssl, as docs/est.md shows them.

// run runs a tool and returns its output, failing the test when it fails.
func run(t *testing.T, dir string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// curlStatus runs curl and returns the HTTP status it got, the body being in out.
func curlStatus(t *testing.T, dir string, args ...string) string {
	t.Helper()
	return run(t, dir, "curl", append([]string{"-sS", "-o", "out", "-w", "%{http_code}"}, args...)...)
}

// printCerts decodes a base64 certs-only answer with openssl and returns the
// certificates openssl found in it.
func printCerts(t *testing.T, dir, b64File string) []*x509.Certificate {
	t.Helper()
	run(t, dir, "openssl", "base64", "-d", "-in", b64File, "-out", b64File+".der")
	out := run(t, dir, "openssl", "pkcs7", "-inform", "DER", "-in", b64File+".der", "-print_certs")
	var certs []*x509.Certificate
	for rest := []byte(out); ; {
		var b *pem.Block
		if b, rest = pem.Decode(rest); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	return certs
}

func TestCACertsAndCSRAttrsWithOpenSSL(t *testing.T) {
	need(t, "curl")
	need(t, "openssl")
	e := newEnv(t)
	dir := t.TempDir()
	ca := e.serverCAFile(t)
	if code := curlStatus(t, dir, "--cacert", ca, e.srv.URL+Prefix+"cacerts"); code != "200" {
		t.Fatalf("cacerts: %s", code)
	}
	certs := printCerts(t, dir, "out")
	if len(certs) != 2 || !certs[0].Equal(e.ca.Cert) || !certs[1].Equal(e.ca.Root) {
		t.Fatalf("openssl pkcs7 -print_certs found %d certificates, want the issuing CA and the root", len(certs))
	}

	if code := curlStatus(t, dir, "--cacert", ca, e.srv.URL+Prefix+"csrattrs"); code != "200" {
		t.Fatalf("csrattrs: %s", code)
	}
	run(t, dir, "openssl", "base64", "-d", "-in", "out", "-out", "attrs.der")
	out := run(t, dir, "openssl", "asn1parse", "-inform", "DER", "-in", "attrs.der")
	for _, want := range []string{"ecdsa-with-SHA256", "id-ecPublicKey", "prime256v1", "SET"} {
		if !strings.Contains(out, want) {
			t.Errorf("csrattrs lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "challengePassword") {
		t.Errorf("csrattrs asks for a challengePassword:\n%s", out)
	}
}

// A device's shell script: a key and a CSR from openssl, enrollment with a
// token and renewal with the certificate through curl.
func TestEnrollAndReenrollWithCurl(t *testing.T) {
	need(t, "curl")
	need(t, "openssl")
	e := newEnv(t)
	dir := t.TempDir()
	ca := e.serverCAFile(t)
	tok := e.token(t, e.thing)
	url := e.srv.URL + Prefix

	run(t, dir, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "device.key", "-subj", "/CN=factory-default", "-outform", "DER", "-out", "csr.der")
	run(t, dir, "openssl", "base64", "-in", "csr.der", "-out", "csr.b64")
	enroll := []string{"--cacert", ca, "-H", "Content-Type: application/pkcs10", "--data-binary", "@csr.b64"}
	if code := curlStatus(t, dir, append(enroll, "-u", e.thing.ID+":"+tok, url+"simpleenroll")...); code != "200" {
		b, _ := os.ReadFile(filepath.Join(dir, "out"))
		t.Fatalf("simpleenroll: %s %s", code, b)
	}
	certs := printCerts(t, dir, "out")
	os.WriteFile(filepath.Join(dir, "device.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: certs[0].Raw}), 0o644)
	os.WriteFile(filepath.Join(dir, "issuing.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: e.ca.Cert.Raw}), 0o644)
	out := run(t, dir, "openssl", "verify", "-CAfile", filepath.Join(e.caDir, "ca.crt"), "-untrusted", "issuing.pem", "-purpose", "sslclient", "device.pem")
	if !strings.Contains(out, "device.pem: OK") {
		t.Fatalf("openssl verify: %s", out)
	}
	out = run(t, dir, "openssl", "x509", "-in", "device.pem", "-noout", "-subject", "-ext", "subjectAltName", "-nameopt", "compat")
	if !strings.Contains(out, "URI:"+pki.ThingURIPrefix+e.thing.ID) || !strings.Contains(out, "serialNumber=SN-0001") {
		t.Fatalf("issued certificate names:\n%s", out)
	}
	// The token is spent.
	if code := curlStatus(t, dir, append(enroll, "-u", e.thing.ID+":"+tok, url+"simpleenroll")...); code != "401" {
		t.Fatalf("second use of the token: %s", code)
	}

	// Renewal: the subject of the current certificate, a new key, the
	// current certificate as the TLS client certificate.
	subject := strings.TrimSpace(strings.TrimPrefix(regexp.MustCompile(`subject=\S+`).FindString(out), "subject="))
	run(t, dir, "openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
		"-keyout", "new.key", "-subj", subject, "-outform", "DER", "-out", "renew.der")
	run(t, dir, "openssl", "base64", "-in", "renew.der", "-out", "renew.b64")
	renew := []string{"--cacert", ca, "--cert", "device.pem", "--key", "device.key", "-H", "Content-Type: application/pkcs10"}
	if code := curlStatus(t, dir, append(renew, "--data-binary", "@renew.b64", url+"simplereenroll")...); code != "200" {
		b, _ := os.ReadFile(filepath.Join(dir, "out"))
		t.Fatalf("simplereenroll with %q: %s %s", subject, code, b)
	}
	renewed := printCerts(t, dir, "out")[0]
	if renewed.Equal(certs[0]) || renewed.Subject.String() != certs[0].Subject.String() || !strings.HasSuffix(renewed.URIs[0].String(), e.thing.ID) {
		t.Fatalf("renewed certificate %s %v", renewed.Subject, renewed.URIs)
	}
	th, _ := e.st.GetThing(context.Background(), e.thing.ID)
	if len(th.Certificates) != 2 {
		t.Errorf("the thing should record both certificates: %+v", th.Certificates)
	}

	// Another subject is refused, and so is a renewal without a certificate.
	run(t, dir, "openssl", "req", "-new", "-key", "new.key", "-subj", "/CN=SN-0001/serialNumber=SN-0002", "-outform", "DER", "-out", "other.der")
	run(t, dir, "openssl", "base64", "-in", "other.der", "-out", "other.b64")
	if code := curlStatus(t, dir, append(renew, "--data-binary", "@other.b64", url+"simplereenroll")...); code != "400" {
		t.Errorf("another subject: %s", code)
	}
	if code := curlStatus(t, dir, "--cacert", ca, "-H", "Content-Type: application/pkcs10", "--data-binary", "@renew.b64", url+"simplereenroll"); code != "401" {
		t.Errorf("no client certificate: %s", code)
	}
}
