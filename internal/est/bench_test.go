package est

import (
	"context"
	"crypto/tls"
	"crypto/x509/pkix"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// BenchmarkEnroll measures EST enrollments of distinct devices over HTTPS
// against the real handler, SQLite store (synchronous=FULL) and device CA,
// 8 devices at a time, each on a TLS 1.3 connection of its own (full
// handshake, as a device calling in):
//
//   - simpleenroll with a one-time token: token check, replay record,
//     signature, the certificate recorded on the thing with its audit
//     record, in one transaction;
//   - simplereenroll with the device's certificate, which certauth checks
//     during the request.
//
// The devices' own work (keys, CSRs) and the administrators' (things,
// tokens, factory certificates) is done before the timer starts.
//
//	go test -run XXX -bench Enroll -benchtime 2000x ./internal/est/
func BenchmarkEnroll(b *testing.B) {
	b.Run("simpleenroll-token", func(b *testing.B) {
		e := newEnv(b)
		things := e.things(b, b.N)
		bodies, auths := make([]string, b.N), make([]func(*http.Request), b.N)
		for i, th := range things {
			bodies[i] = csrBody(b, newKey(b), pkix.Name{})
			auths[i] = bearer(e.est.mint(th.ID, time.Now().Add(time.Hour)).Secret)
		}
		e.bench(b, "simpleenroll", bodies, auths, nil)
	})
	b.Run("simplereenroll-mtls", func(b *testing.B) {
		e := newEnv(b)
		things := e.things(b, b.N)
		bodies, auths, certs := make([]string, b.N), make([]func(*http.Request), b.N), make([]tls.Certificate, b.N)
		for i, th := range things {
			certs[i], _, _ = e.deviceCert(b, th)
			bodies[i] = reenrollCSR(b, newKey(b), certs[i].Leaf, false)
		}
		e.bench(b, "simplereenroll", bodies, auths, certs)
	})
}

// things creates n devices with serials, as a factory batch does.
func (e *env) things(b *testing.B, n int) []*store.Thing {
	things := make([]*store.Thing, n)
	for i := range things {
		things[i] = &store.Thing{Model: "Bench", SerialNumber: fmt.Sprintf("BENCH-%07d", i)}
	}
	for i := 0; i < n; i += 1000 {
		if _, err := e.id.CreateThings(context.Background(), "bench", things[i:min(i+1000, n)]); err != nil {
			b.Fatal(err)
		}
	}
	return things
}

func (e *env) bench(b *testing.B, op string, bodies []string, auths []func(*http.Request), certs []tls.Certificate) {
	var next atomic.Int64
	b.SetParallelism(4) // 8 devices at a time on 2 cores
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			var c *http.Client
			if certs != nil {
				c = e.client(certs[i])
			} else {
				c = e.client()
			}
			c.Transport.(*http.Transport).DisableKeepAlives = true
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL+Prefix+op, strings.NewReader(bodies[i]))
			req.Header.Set("Content-Type", "application/pkcs10")
			if auths[i] != nil {
				auths[i](req)
			}
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("%s: %d", op, resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "enrollments/s")
}
