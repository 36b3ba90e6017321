package coapgw

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// coapClient is libcoap's coap-client-openssl, or a skip (a failure when
// CI=true) when it is not installed.
func coapClient(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("coap-client-openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("coap-client-openssl is not installed (Debian libcoap3-bin) and CI=true")
		}
		t.Skip("coap-client-openssl is not installed (Debian libcoap3-bin)")
	}
	return p
}

// pemFiles writes cert's chain and key as coap-client's -c and -j read them.
func pemFiles(t *testing.T, cert tls.Certificate) (certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	var chain []byte
	for _, der := range cert.Certificate {
		chain = append(chain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	p8, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "thing.pem"), filepath.Join(dir, "thing.key")
	if err := os.WriteFile(certFile, chain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// runCoAPClient runs coap-client-openssl with args and returns what it
// printed; -B bounds how long it waits for an answer.
func runCoAPClient(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, coapClient(t), append([]string{"-B", "5"}, args...)...).CombinedOutput()
	return string(out), err
}

func TestCoAPClientCertificate(t *testing.T) {
	coapClient(t)
	e := newEnv(t, nil)
	th, cert := e.thing("LIBCOAP-1")
	certFile, keyFile := pemFiles(t, cert)
	url := "coaps://" + e.gw.DTLSAddr().String() + PathSelf
	out, err := runCoAPClient(t, "-c", certFile, "-j", keyFile, "-m", "get", url)
	if err != nil || !strings.Contains(out, `"id":"`+th.ID+`"`) {
		t.Fatalf("coap-client GET %s: %v\n%s", url, err, out)
	}

	// A certificate of another CA gets no answer.
	forgedCert, forgedKey := pemFiles(t, selfSigned(t, "forged"))
	out, _ = runCoAPClient(t, "-c", forgedCert, "-j", forgedKey, "-m", "get", url)
	if strings.Contains(out, `"id"`) {
		t.Fatalf("a certificate of an unknown CA was answered:\n%s", out)
	}
}

func TestCoAPClientPlainUDPUnauthorized(t *testing.T) {
	coapClient(t)
	e := newEnv(t, nil)
	out, _ := runCoAPClient(t, "-m", "get", "coap://"+e.gw.UDPAddr().String()+PathSelf)
	if !strings.Contains(out, "4.01") {
		t.Fatalf("coap-client over plain UDP: want 4.01, got:\n%s", out)
	}
}
