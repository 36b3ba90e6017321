package est

import (
	"context"
	"crypto/x509/pkix"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/thingid/thingid/internal/certauth"
)

// TestEnrollmentMetrics: real enrollments over TLS, counted by operation
// and result, and the certificates they issue in the series revocations
// count in too.
func TestEnrollmentMetrics(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	tok := e.token(t, e.thing)
	key := newKey(t)
	resp, body := e.post(t, c, opEnroll, csrBody(t, key, pkix.Name{}), basic(e.thing.ID, tok))
	e.checkIssued(t, resp, body, key, e.thing)
	if resp, body := e.post(t, c, opEnroll, csrBody(t, newKey(t), pkix.Name{}), basic(e.thing.ID, tok)); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token reuse: %d %s", resp.StatusCode, body)
	}

	pair, _, _ := e.deviceCert(t, e.thing)
	key = newKey(t)
	resp, body = e.post(t, e.client(pair), opReenroll, reenrollCSR(t, key, pair.Leaf, false), nil)
	e.checkIssued(t, resp, body, key, e.thing)
	if resp, body := e.post(t, c, opReenroll, reenrollCSR(t, newKey(t), pair.Leaf, false), nil); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("re-enrollment without a certificate: %d %s", resp.StatusCode, body)
	}
	if _, err := e.certs.Revoke(context.Background(), "admin:test", certauth.Revocation{Certificate: pair.Leaf}); err != nil {
		t.Fatal(err)
	}

	// The database is gone: the server's failure, not the device's.
	next := e.token(t, e.thing)
	e.st.Close()
	if resp, body := e.post(t, c, opEnroll, csrBody(t, newKey(t), pkix.Name{}), basic(e.thing.ID, next)); resp.StatusCode != http.StatusInternalServerError {
		t.Fatalf("enrollment without a database: %d %s", resp.StatusCode, body)
	}

	err := testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP thingid_certificates_total Device certificates the server issued, renewed and revoked, by event.
# TYPE thingid_certificates_total counter
thingid_certificates_total{event="issued"} 1
thingid_certificates_total{event="renewed"} 1
thingid_certificates_total{event="revoked"} 1
# HELP thingid_est_enrollments_total EST enrollments by operation (simpleenroll, simplereenroll) and result (ok, refused, error).
# TYPE thingid_est_enrollments_total counter
thingid_est_enrollments_total{operation="simpleenroll",result="error"} 1
thingid_est_enrollments_total{operation="simpleenroll",result="ok"} 1
thingid_est_enrollments_total{operation="simpleenroll",result="refused"} 1
thingid_est_enrollments_total{operation="simplereenroll",result="error"} 0
thingid_est_enrollments_total{operation="simplereenroll",result="ok"} 1
thingid_est_enrollments_total{operation="simplereenroll",result="refused"} 1
`), "thingid_certificates_total", "thingid_est_enrollments_total")
	if err != nil {
		t.Fatal(err)
	}
}
