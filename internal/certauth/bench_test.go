package certauth

import (
	"crypto/x509"
	"testing"
)

// BenchmarkVerify measures Verify on the hot path of a TLS login, on all
// cores: a platform device certificate, and a manufacturer certificate after
// its first contact provisioned the thing. Each verification reads the thing
// from SQLite (status and serial are checked on every login).
//
//	go test -run XXX -bench Verify -benchtime 5s ./internal/certauth/
func BenchmarkVerify(b *testing.B) {
	e := newEnv(b)
	_, dc := e.thing("SPK-BENCH")
	_, caCert, caKey := e.manufacturer("Acme", acme)
	leaf, _ := issue(b, leafTmpl("ACME-BENCH"), caCert, caKey)
	for _, bc := range []struct {
		name  string
		chain []*x509.Certificate
	}{
		{"platform", chain(b, dc)},
		{"manufacturer", []*x509.Certificate{leaf}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if _, err := e.c.Verify(b.Context(), bc.chain); err != nil { // the first contact
				b.Fatal(err)
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := e.c.Verify(b.Context(), bc.chain); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "verifications/s")
		})
	}
}
