package authn

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const signinHelp = `
# HELP thingid_signin_total Sign-in attempts with user name and password (page and API), by result.
# TYPE thingid_signin_total counter
`

// metricsEnv is an env whose sessions register their metrics with reg and
// whose clients' network may make burst attempts.
func metricsEnv(t *testing.T, burst int) (*env, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	opts := testOptions()
	opts.Registerer = reg
	opts.IPAttemptsPerMinute, opts.IPBurst = 1, burst
	return newEnv(t, opts), reg
}

// TestSignInMetrics: the form and the JSON API count in one series, by
// result.
func TestSignInMetrics(t *testing.T) {
	e, reg := metricsEnv(t, 8)
	c := e.client()
	tok := e.formToken(t, c, "/signin")
	if resp, page := e.postForm(t, c, "/signin", url.Values{"csrf": {tok}, "userName": {"alice"}, "password": {alicePassword}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("form sign-in: %d %s", resp.StatusCode, page)
	}
	// Five failures of one account, then it waits: the sixth attempt is
	// refused unchecked.
	for i := range 6 {
		if resp, body := e.signinJSON(t, c, "mallory", "guess "+strconv.Itoa(i)); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d %s", i, resp.StatusCode, body)
		}
	}
	e.mustChange(t)
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusOK {
		t.Fatalf("one-time password: %d %s", resp.StatusCode, body)
	}
	// The network spent its burst of eight attempts.
	if resp, body := e.signinJSON(t, c, "alice", alicePassword); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("throttled: %d %s", resp.StatusCode, body)
	}
	err := testutil.GatherAndCompare(reg, strings.NewReader(signinHelp+`
thingid_signin_total{result="bad_credentials"} 5
thingid_signin_total{result="error"} 0
thingid_signin_total{result="locked"} 1
thingid_signin_total{result="ok"} 1
thingid_signin_total{result="password_change_required"} 1
thingid_signin_total{result="throttled"} 1
`), "thingid_signin_total")
	if err != nil {
		t.Fatal(err)
	}
}

// TestAttackSignInMetricsNoEnumeration: /metrics is as discreet as the
// sign-in answer. An unknown user, a wrong password and the right password
// of a disabled user are one result, so that watching the counters while
// guessing tells an attacker neither that a name exists nor that a guess
// was right.
func TestAttackSignInMetricsNoEnumeration(t *testing.T) {
	e, reg := metricsEnv(t, 100)
	c := e.client()
	for _, try := range [][2]string{{"alice", "wrong"}, {"nobody", "wrong"}, {"dora", doraPassword}, {"dora", "wrong"}} {
		if resp, body := e.signinJSON(t, c, try[0], try[1]); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: %d %s", try[0], resp.StatusCode, body)
		}
	}
	err := testutil.GatherAndCompare(reg, strings.NewReader(signinHelp+`
thingid_signin_total{result="bad_credentials"} 4
thingid_signin_total{result="error"} 0
thingid_signin_total{result="locked"} 0
thingid_signin_total{result="ok"} 0
thingid_signin_total{result="password_change_required"} 0
thingid_signin_total{result="throttled"} 0
`), "thingid_signin_total")
	if err != nil {
		t.Fatal(err)
	}
}
