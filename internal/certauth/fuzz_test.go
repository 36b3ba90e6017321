package certauth

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
)

// FuzzCASpec feeds the body of POST /api/v1/admin/cas through decoding and
// validation: either a refusal or a CA certificate with a usable template,
// never a panic.
func FuzzCASpec(f *testing.F) {
	dir := f.TempDir()
	key, _ := secrets.LoadOrCreate(dir, "")
	_, dca, err := pki.Open(filepath.Join(dir, "pki"), key, pki.Import{})
	if err != nil {
		f.Fatal(err)
	}
	ca, _ := newCA(f, pkix.Name{CommonName: "Fuzz CA"}, nil, nil, -1)
	good, _ := json.Marshal(CASpec{Name: "Acme", Certificate: pemOf(ca), Template: acme})
	f.Add(good)
	f.Add([]byte(`{"name":"x","certificate":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----","template":{"serialFrom":"uri"}}`))
	f.Add([]byte(`{"template":{"attributes":{"a":[[[[[]]]]]},"thingType":"gateway"}}`))
	f.Add([]byte(`{}{}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var spec CASpec
		if decodeJSON(strings.NewReader(string(body)), &spec) != nil {
			return
		}
		cert, err := spec.check(dca)
		var ce *CAError
		switch {
		case err != nil && !errors.As(err, &ce):
			t.Fatalf("refusal without a field: %v", err)
		case err == nil && (cert == nil || !cert.IsCA || spec.Template.Manufacturer == "" || spec.Template.ThingType == ""):
			t.Fatalf("accepted %+v", spec)
		}
	})
}

// FuzzRevocationRequest feeds the body of POST /api/v1/admin/revocations
// through decoding and the certificate parser.
func FuzzRevocationRequest(f *testing.F) {
	ca, _ := newCA(f, pkix.Name{CommonName: "Fuzz CA"}, nil, nil, -1)
	good, _ := json.Marshal(map[string]string{"certificate": pemOf(ca), "reason": "keyCompromise", "thingId": "t"})
	f.Add(good)
	f.Add([]byte(`{"fingerprintSha256":"AB:CD","reason":"unspecified"}`))
	f.Add([]byte(`{"reason":"certificateHold"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var q revocationRequest
		if decodeJSON(strings.NewReader(string(body)), &q) != nil {
			return
		}
		rv, err := q.revocation()
		var re *RevocationError
		switch {
		case err != nil && !errors.As(err, &re):
			t.Fatalf("refusal without a field: %v", err)
		case err == nil && q.Certificate != "" && rv.Certificate == nil:
			t.Fatal("a certificate given but none parsed")
		}
		if _, ok := reasonNames[rv.Reason]; err == nil && !ok {
			t.Fatalf("reason %d accepted", rv.Reason)
		}
		parseFingerprint(q.Fingerprint)
	})
}

// FuzzSerialOf reads serial numbers out of arbitrary certificates.
func FuzzSerialOf(f *testing.F) {
	ca, _ := newCA(f, pkix.Name{CommonName: "Fuzz CA", SerialNumber: "SN-1"}, nil, nil, -1)
	f.Add(ca.Raw, SerialFromSerialNumber)
	f.Add(ca.Raw, SerialFromURI)
	f.Fuzz(func(t *testing.T, der []byte, from string) {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		if s, err := serialOf(c, from); err == nil && s == "" {
			t.Fatal("empty serial without an error")
		}
	})
}
