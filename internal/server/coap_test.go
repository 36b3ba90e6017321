package server

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/store"
)

// coapPlatform is a platform with coap.enabled, libcoap's DTLS client and a
// thing whose platform certificate and key are in files for it.
type coapPlatform struct {
	r                 *running
	tool, addr        string
	th                *store.Thing
	certFile, keyFile string
}

func newCoAPPlatform(t *testing.T, serial string, tweak ...func(*config.Config)) *coapPlatform {
	t.Helper()
	tool, err := exec.LookPath("coap-client-openssl")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("coap-client-openssl is required in CI: apt-get install libcoap3-bin")
		}
		t.Skip("coap-client-openssl not installed (apt-get install libcoap3-bin)")
	}
	r := serve(t, append([]func(*config.Config){func(c *config.Config) {
		c.CoAP.Enabled = true
		c.CoAP.DTLSAddress = "127.0.0.1:0"
		c.CoAP.UDPAddress = "127.0.0.1:0"
	}}, tweak...)...)
	m := regexp.MustCompile(`serving on coaps://(\S+)`).FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("no CoAP listener announced:\n%s", r.out.String())
	}
	ctx := context.Background()
	_, dca, err := r.p.PKI()
	must(t, "opening the device CA", err)
	th, err := r.p.Identity.CreateThing(ctx, "test", &store.Thing{Type: store.ThingDevice, SerialNumber: serial})
	must(t, "creating the thing", err)
	dc, err := dca.IssueDevice(th.ID, serial, time.Hour)
	must(t, "issuing the certificate", err)
	der, err := x509.MarshalPKCS8PrivateKey(dc.Key)
	must(t, "encoding the key", err)
	dir := t.TempDir()
	c := &coapPlatform{r: r, tool: tool, addr: m[1], th: th, certFile: filepath.Join(dir, "cert.pem"), keyFile: filepath.Join(dir, "key.pem")}
	must(t, "writing the certificate", os.WriteFile(c.certFile, dc.ChainPEM(), 0o600))
	must(t, "writing the key", os.WriteFile(c.keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600))
	return c
}

// client runs coap-client-openssl as the thing with args before the URI of
// path, and returns what it printed.
func (c *coapPlatform) client(path string, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args = append([]string{"-B", "5", "-c", c.certFile, "-j", c.keyFile}, args...)
	out, _ := exec.CommandContext(ctx, c.tool, append(args, "coaps://"+c.addr+path)...).CombinedOutput()
	return string(out)
}

// The platform with coap.enabled serves its things over DTLS with their
// platform certificates, as libcoap's client sees it, and stops serving a
// thing once it is disabled.
func TestCoAPGatewayCallHome(t *testing.T) {
	c := newCoAPPlatform(t, "COAP-1")
	if out := c.client("/self", "-m", "get"); !strings.Contains(out, `"id":"`+c.th.ID+`"`) {
		t.Fatalf("call home over DTLS:\n%s", out)
	}
	if _, err := c.r.p.Identity.UpdateThing(context.Background(), "test", c.th.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if out := c.client("/self", "-m", "get"); strings.Contains(out, c.th.ID) {
		t.Fatalf("a disabled thing was served over DTLS:\n%s", out)
	}
}

// ACE's token endpoint over CoAP (RFC 9200 §5.8 with the DTLS profile): a
// thing of the DTLS session gets a CWT bound to its certificate's key in
// CBOR, with 2.01 Created; a request naming another client is refused with
// 4.01 (invalid_client), and a request in another Content-Format with 4.15.
func TestACEOverCoAP(t *testing.T) {
	c := newCoAPPlatform(t, "COAP-ACE-1")
	dir := t.TempDir()
	post := func(name string, req any, format string) (map[any]any, string) {
		t.Helper()
		in, out := filepath.Join(dir, name+".cbor"), filepath.Join(dir, name+".out")
		must(t, "encoding the request", os.WriteFile(in, enc(t, req), 0o600))
		printed := c.client(ace.PathToken, "-m", "post", "-t", format, "-f", in, "-o", out)
		b, _ := os.ReadFile(out)
		var answer map[any]any
		if len(b) > 0 {
			must(t, "decoding the answer "+printed, cbor.Unmarshal(b, &answer))
		}
		return answer, printed
	}
	got, printed := post("ok", map[int]any{33: 2, 24: c.th.ID}, "19")
	tok, _ := got[uint64(1)].([]byte)
	if len(tok) == 0 || got[uint64(38)] != uint64(1) {
		t.Fatalf("token over CoAP: %v %s", got, printed)
	}
	verified, err := c.r.p.ace.Load().AuthzInfo(context.Background(), tok, ace.Identity{Chain: c.chain(t)})
	if err != nil || verified.ThingID != c.th.ID {
		t.Fatalf("the CWT is not the thing's, bound to its certificate: %+v %v", verified, err)
	}
	// libcoap prints an error's body (the CBOR error, RFC 9200 §5.8.3).
	if _, printed = post("other", map[int]any{33: 2, 24: "someone-else"}, "19"); !strings.Contains(printed, "4.01") || !strings.Contains(printed, "client authentication failed") {
		t.Fatalf("a token for another client than the session's thing: %s", printed)
	}
	if _, printed = post("json", map[int]any{33: 2, 24: c.th.ID}, "50"); !strings.Contains(printed, "4.15") {
		t.Fatalf("another Content-Format: %s", printed)
	}
}

// chain is the thing's certificate chain, as its file holds it.
func (c *coapPlatform) chain(t *testing.T) []*x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(c.certFile)
	must(t, "reading the certificate", err)
	var chain []*x509.Certificate
	for p, rest := pem.Decode(b); p != nil; p, rest = pem.Decode(rest) {
		cert, err := x509.ParseCertificate(p.Bytes)
		must(t, "parsing the certificate", err)
		chain = append(chain, cert)
	}
	return chain
}

// A thing's telemetry posted over CoAP reaches a cloud service subscribed
// over MQTT (mosquitto_sub), under the broker's topic rules for the thing:
// a topic of another thing is refused with 4.03 and reaches nobody, a path
// that is no topic name with 4.00.
func TestCoAPTelemetryReachesMQTT(t *testing.T) {
	sub, err := exec.LookPath("mosquitto_sub")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto_sub is required in CI: apt-get install mosquitto-clients")
		}
		t.Skip("mosquitto_sub not installed (apt-get install mosquitto-clients)")
	}
	c := newCoAPPlatform(t, "COAP-TEL-1")
	m := regexp.MustCompile(`MQTT broker \(tls\) on mqtts://127\.0\.0\.1:(\d+)`).FindStringSubmatch(c.r.out.String())
	if m == nil {
		t.Fatalf("no MQTT listener announced:\n%s", c.r.out.String())
	}
	_, service, err := c.r.p.BenchTokens(context.Background(), 0, slog.New(slog.DiscardHandler))
	must(t, "minting the service's token", err)
	other, err := c.r.p.Identity.CreateThing(context.Background(), "test", &store.Thing{Type: store.ThingDevice, SerialNumber: "COAP-TEL-2"})
	must(t, "creating another thing", err)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, sub, "-h", "localhost", "-p", m[1], "--cafile", filepath.Join(c.r.p.Config.Home, "pki", "ca.crt"),
		"-V", "mqttv5", "-i", service.ClientID, "-u", "svc", "-P", service.Token, "-q", "1", "-t", "things/+/telemetry", "-C", "1", "-F", "%t %p")
	var got bytes.Buffer
	cmd.Stdout, cmd.Stderr = &got, &got
	must(t, "starting mosquitto_sub", cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()

	// What another thing's topic gets: 4.03, and nothing for the service.
	if out := c.client("/mqtt/things/"+other.ID+"/telemetry", "-m", "post", "-e", "forged"); !strings.Contains(out, "4.03") {
		t.Fatalf("posting on another thing's topic: %s", out)
	}
	if out := c.client("/mqtt/things/+/telemetry", "-m", "post", "-e", "x"); !strings.Contains(out, "4.00") {
		t.Fatalf("posting on a wildcard: %s", out)
	}
	// mosquitto_sub subscribes in its own time: post until it has a message.
	topic := "things/" + c.th.ID + "/telemetry"
	for i := 0; ; i++ {
		if out := c.client("/mqtt/"+topic, "-m", "post", "-t", "50", "-e", `{"celsius":21.5}`); out != "" {
			t.Fatalf("posting telemetry: %s", out)
		}
		select {
		case err := <-done:
			if err != nil || strings.TrimSpace(got.String()) != topic+` {"celsius":21.5}` {
				t.Fatalf("mosquitto_sub: %v %q", err, got.String())
			}
			return
		case <-time.After(300 * time.Millisecond):
		}
		if i == 100 {
			t.Fatalf("no telemetry reached mosquitto_sub: %q", got.String())
		}
	}
}
