package tokens

import (
	"context"
	"testing"
	"time"
)

// go test -run '^$' -bench . ./internal/tokens/
func BenchmarkIssue(b *testing.B) {
	for _, alg := range []string{ES256, EdDSA} {
		b.Run(alg, func(b *testing.B) {
			e := newEnv(b, &memStore{}, masterKey(), nil, newClock(), alg)
			c := accessClaims(time.Now())
			for b.Loop() {
				if _, err := e.is.AccessToken(c); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{ES256, EdDSA} {
		b.Run(alg, func(b *testing.B) {
			clk := newClock()
			e := newEnv(b, &memStore{}, masterKey(), nil, clk, alg)
			tok := e.accessToken(b, accessClaims(clk.Now()))
			ctx, opts := context.Background(), VerifyOptions{Audience: testAudience}
			p := FromConnection(tok, nil)
			for b.Loop() {
				if _, err := e.v.Verify(ctx, p, opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}
