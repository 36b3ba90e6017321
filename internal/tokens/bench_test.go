package tokens

import (
	"context"
	"strconv"
	"syscall"
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

// BenchmarkVerify verifies one token again and again (a device that
// reconnects: the memo answers); BenchmarkVerifyNew a new token each time
// (first connections: the full path, and the memo filling and evicting).
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

func BenchmarkVerifyNew(b *testing.B) {
	for _, alg := range []string{ES256, EdDSA} {
		b.Run(alg, func(b *testing.B) {
			clk := newClock()
			e := newEnv(b, &memStore{}, masterKey(), nil, clk, alg)
			toks := make([]string, b.N)
			for i := range toks {
				c := accessClaims(clk.Now())
				c.ID = strconv.Itoa(i)
				toks[i] = e.accessToken(b, c)
			}
			ctx, opts := context.Background(), VerifyOptions{Audience: testAudience}
			b.ResetTimer()
			for _, tok := range toks {
				if _, err := e.v.Verify(ctx, FromConnection(tok, nil), opts); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkAccessPaths verifies new tokens on the lean path and on jwx's
// (no memo), reporting the process's CPU time per token as well, which a
// loaded machine changes less than the wall clock.
//
//	go test -run '^$' -bench AccessPaths -benchtime 3000x -cpu 1 ./internal/tokens/
func BenchmarkAccessPaths(b *testing.B) {
	for _, alg := range []string{ES256, EdDSA} {
		clk := newClock()
		e := newEnv(b, &memStore{}, masterKey(), nil, clk, alg)
		for name, verify := range map[string]func(string) error{
			"lean": func(tok string) error {
				_, _, err := e.v.verifyAccess(context.Background(), []byte(tok), testAudience)
				return err
			},
			"jwx": func(tok string) error { _, err := e.v.jwxAccess(tok, testAudience); return err },
		} {
			b.Run(alg+"/"+name, func(b *testing.B) {
				toks := make([]string, b.N)
				for i := range toks {
					c := accessClaims(clk.Now())
					c.ID = strconv.Itoa(i)
					toks[i] = e.accessToken(b, c)
				}
				cpu := cpuTime(b)
				b.ResetTimer()
				for _, tok := range toks {
					if err := verify(tok); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64((cpuTime(b)-cpu).Microseconds())/float64(b.N), "cpu-µs/op")
			})
		}
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
