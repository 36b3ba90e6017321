package identity

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

func TestAddCertificate(t *testing.T) {
	s, st, rec := newService(t)
	ctx := context.Background()
	fp := func(c byte) string { return strings.Repeat(string(c), 64) }
	th, err := s.CreateThing(ctx, "test", &store.Thing{SerialNumber: "SN-1", Certificates: []store.CertRef{
		{FingerprintSHA256: fp('a'), NotAfter: time.Now().Add(-time.Minute)}, // expired
		{FingerprintSHA256: fp('b'), NotAfter: time.Now().Add(time.Hour)},
		{FingerprintSHA256: fp('c')}, // no expiry known
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.AddCertificate(ctx, "thing:"+th.ID, th.ID, store.CertRef{FingerprintSHA256: fp('d'), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	var fps []string
	for _, c := range got.Certificates {
		fps = append(fps, c.FingerprintSHA256[:1])
	}
	if strings.Join(fps, "") != "bcd" {
		t.Fatalf("certificates %v, want b c d (the expired one dropped)", fps)
	}
	// Recording the same certificate again keeps one entry.
	if got, err = s.AddCertificate(ctx, "test", th.ID, store.CertRef{FingerprintSHA256: fp('d')}); err != nil || len(got.Certificates) != 3 {
		t.Fatalf("again: %v %+v", err, got.Certificates)
	}
	if _, err := s.AddCertificate(ctx, "test", th.ID, store.CertRef{FingerprintSHA256: "XYZ"}); err == nil {
		t.Error("a malformed fingerprint was recorded")
	}
	if _, err := s.AddCertificate(ctx, "test", "nope", store.CertRef{FingerprintSHA256: fp('e')}); err == nil {
		t.Error("a certificate was recorded on a missing thing")
	}
	if types := strings.Join(rec.types(), ","); types != "thing.create,thing.update,thing.update" {
		t.Errorf("events %s", types)
	}
	audit, _ := st.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: th.ID}})
	if len(audit) != 3 || audit[1].Actor != "thing:"+th.ID || !strings.Contains(string(audit[1].Detail), fp('d')) {
		t.Errorf("audit %+v", audit)
	}
}
