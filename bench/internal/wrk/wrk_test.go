package wrk

import (
	"strings"
	"testing"
	"time"
)

const summary = `Running 10s test @ http://127.0.0.1:8080/oauth2/token
  2 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     2.61ms    3.10ms  58.11ms   91.62%
    Req/Sec     6.72k   512.31     7.90k    70.50%
  Latency Distribution
     50%    1.96ms
     75%    2.80ms
     90%    4.51ms
     99%   20.10ms
  133702 requests in 10.00s, 96.13MB read
Requests/sec:  13363.42
Transfer/sec:      9.61MB
`

func TestParse(t *testing.T) {
	r, err := parse(summary)
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS != 13363.42 || r.P50 != 1960*time.Microsecond || r.P99 != 20100*time.Microsecond {
		t.Fatalf("%+v", r)
	}
	bad := strings.Replace(summary, "Requests/sec", "  Non-2xx or 3xx responses: 12\nRequests/sec", 1)
	if _, err := parse(bad); err == nil || !strings.Contains(err.Error(), "12 requests") {
		t.Fatalf("non-2xx answers: %v", err)
	}
	if _, err := parse("wrk: unable to connect"); err == nil {
		t.Fatal("no summary accepted")
	}
}

func TestLuaString(t *testing.T) {
	if got := luaString("a\"b\\c\nd"); got != `"a\"b\\c\nd"` {
		t.Fatal(got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(summary)
	f.Add("Requests/sec: 1e400\n 50% 1us\n 99% 2s")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := parse(s)
		if err == nil && (r.RPS < 0 || r.P50 < 0 || r.P99 < 0) {
			t.Fatalf("negative figures from %q: %+v", s, r)
		}
	})
}
