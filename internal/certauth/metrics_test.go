package certauth

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/thingid/thingid/internal/store"
)

// TestRevocationMetrics: each certificate newly revoked counts once, in
// the series internal/est counts issuance in.
func TestRevocationMetrics(t *testing.T) {
	e := newEnv(t)
	reg := prometheus.NewRegistry()
	c, err := New(context.Background(), Options{Store: e.st, Identity: e.ids, DeviceCA: e.dca, Bus: e.bus, Log: quiet,
		ReloadInterval: time.Hour, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx := context.Background()

	_, one := e.thing("SN-1")
	if done, err := c.Revoke(ctx, "test", Revocation{Certificate: one.Leaf, Reason: ReasonKeyCompromise}); err != nil || len(done) != 1 {
		t.Fatalf("revoke one: %v %d", err, len(done))
	}
	// Revoking it again changes nothing and counts nothing.
	if done, err := c.Revoke(ctx, "test", Revocation{Fingerprint: one.FingerprintSHA256}); err != nil || len(done) != 0 {
		t.Fatalf("revoke again: %v %d", err, len(done))
	}
	th, _ := e.thing("SN-2")
	second, err := e.dca.IssueDevice(th.ID, "SN-2", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ids.AddCertificate(ctx, "test", th.ID, store.CertRefOf(second.Leaf)); err != nil {
		t.Fatal(err)
	}
	if done, err := c.Revoke(ctx, "test", Revocation{ThingID: th.ID, Reason: ReasonCessationOfOperation}); err != nil || len(done) != 2 {
		t.Fatalf("revoke a thing's two certificates: %v %d", err, len(done))
	}
	// A refused revocation counts nothing.
	if _, err := c.Revoke(ctx, "test", Revocation{Fingerprint: "not hex"}); err == nil {
		t.Fatal("a malformed fingerprint was accepted")
	}

	// Another component registering the series with the same registry
	// (internal/est) counts in the same one.
	shared, err := CertificateEvents(reg)
	if err != nil {
		t.Fatal(err)
	}
	shared.WithLabelValues(CertIssued).Inc()
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP thingid_certificates_total Device certificates the server issued, renewed and revoked, by event.
# TYPE thingid_certificates_total counter
thingid_certificates_total{event="issued"} 1
thingid_certificates_total{event="renewed"} 0
thingid_certificates_total{event="revoked"} 3
`), "thingid_certificates_total")
	if err != nil {
		t.Fatal(err)
	}
}
