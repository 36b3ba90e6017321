package server

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
	"time"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/store"
)

// The platform with coap.enabled serves its things over DTLS with their
// platform certificates, as libcoap's client sees it, and stops serving a
// thing once it is disabled.
func TestCoAPGatewayCallHome(t *testing.T) {
	tool, err := exec.LookPath("coap-client-openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("coap-client-openssl is required in CI: apt-get install libcoap3-bin")
		}
		t.Skip("coap-client-openssl not installed (apt-get install libcoap3-bin)")
	}
	r := serve(t, func(c *config.Config) {
		c.CoAP.Enabled = true
		c.CoAP.DTLSAddress = "127.0.0.1:0"
		c.CoAP.UDPAddress = "127.0.0.1:0"
	})
	m := regexp.MustCompile(`serving on coaps://(\S+)`).FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("no CoAP listener announced:\n%s", r.out.String())
	}
	ctx := context.Background()
	_, dca, err := r.p.PKI()
	if err != nil {
		t.Fatal(err)
	}
	th, err := r.p.Identity.CreateThing(ctx, "test", &store.Thing{Type: store.ThingDevice, SerialNumber: "COAP-1"})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := dca.IssueDevice(th.ID, "COAP-1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(dc.Key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, dc.ChainPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	get := func() string {
		c, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, _ := exec.CommandContext(c, tool, "-B", "5", "-c", certFile, "-j", keyFile, "-m", "get", "coaps://"+m[1]+"/self").CombinedOutput()
		return string(out)
	}
	if out := get(); !strings.Contains(out, `"id":"`+th.ID+`"`) {
		t.Fatalf("call home over DTLS:\n%s", out)
	}
	if _, err := r.p.Identity.UpdateThing(ctx, "test", th.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if out := get(); strings.Contains(out, th.ID) {
		t.Fatalf("a disabled thing was served over DTLS:\n%s", out)
	}
}
