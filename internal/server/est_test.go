package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/sdk"
)

// EST is served by `thingid serve`: token API for administrators only,
// enrollment with the token, renewal with the issued certificate through the
// platform's certificate checker.
func TestESTIsServed(t *testing.T) {
	r := serve(t)
	th, err := r.p.Identity.CreateThing(context.Background(), "test", &store.Thing{Model: "Speaker", SerialNumber: "SN-EST-1"})
	if err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/things/" + th.ID + "/enrollment-tokens"
	code, body := r.post(t, path, "")
	if code != http.StatusUnauthorized || !strings.Contains(body, `"status":401`) {
		t.Fatalf("token API without credentials: %d %s", code, body)
	}
	pw := adminPassword(t, r)
	req, _ := http.NewRequest(http.MethodPost, r.base+path, nil)
	req.SetBasicAuth("admin", pw)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct{ Token string }
	json.NewDecoder(resp.Body).Decode(&tok)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || tok.Token == "" {
		t.Fatalf("token API as administrator: %d", resp.StatusCode)
	}
	if code, body := r.get(t, "/.well-known/est/cacerts", nil); code != 200 || body == "" {
		t.Fatalf("cacerts: %d %s", code, body)
	}

	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := r.estEnroll(t, r.client, "simpleenroll", key, pkix.Name{}, func(req *http.Request) { req.SetBasicAuth(th.ID, tok.Token) })
	if sdk.ThingID(leaf) != th.ID {
		t.Fatalf("enrolled certificate names %q", sdk.ThingID(leaf))
	}
	mtls := *r.client
	tr := r.client.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{{Certificate: [][]byte{leaf.Raw}, PrivateKey: key}}
	mtls.Transport = tr
	key2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	renewed := r.estEnroll(t, &mtls, "simplereenroll", key2, leaf.Subject, nil)
	if sdk.ThingID(renewed) != th.ID || renewed.Equal(leaf) {
		t.Fatalf("renewed certificate names %q", sdk.ThingID(renewed))
	}

	// The administrator revokes the thing's certificates (both of them):
	// /metrics counts the enrollments and the certificates' lives.
	req, _ = http.NewRequest(http.MethodPost, r.base+"/api/v1/admin/revocations", strings.NewReader(`{"thingId":"`+th.ID+`"}`))
	req.SetBasicAuth("admin", pw)
	req.Header.Set("Content-Type", "application/json")
	if resp, err = r.client.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("revocation: %d", resp.StatusCode)
	}
	r.wantMetrics(t,
		`thingid_est_enrollments_total{operation="simpleenroll",result="ok"} 1`,
		`thingid_est_enrollments_total{operation="simplereenroll",result="ok"} 1`,
		`thingid_certificates_total{event="issued"} 1`,
		`thingid_certificates_total{event="renewed"} 1`,
		`thingid_certificates_total{event="revoked"} 2`)
}

// wantMetrics scrapes /metrics and checks it has each of the lines.
func (r *running) wantMetrics(t *testing.T, lines ...string) {
	t.Helper()
	code, body := r.get(t, "/metrics", nil)
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	for _, l := range lines {
		if !slices.Contains(strings.Split(body, "\n"), l) {
			t.Errorf("/metrics lacks %s", l)
		}
	}
}

// estEnroll posts a CSR for key and returns the issued certificate.
func (r *running) estEnroll(t *testing.T, c *http.Client, op string, key *ecdsa.PrivateKey, subject pkix.Name, auth func(*http.Request)) *x509.Certificate {
	t.Helper()
	der, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: subject}, key)
	req, _ := http.NewRequest(http.MethodPost, r.base+"/.well-known/est/"+op, strings.NewReader(base64.StdEncoding.EncodeToString(der)))
	req.Header.Set("Content-Type", "application/pkcs10")
	if auth != nil {
		auth(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %d %s", op, resp.StatusCode, b)
	}
	p7, err := base64.StdEncoding.DecodeString(strings.ReplaceAll(string(b), "\r\n", ""))
	if err != nil {
		t.Fatal(err)
	}
	certs, err := sdk.ParseCertsOnly(p7)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}
