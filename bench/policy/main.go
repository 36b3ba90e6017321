// Command policy measures the households' decision engine and what its
// doors add, in one run:
//
//   - Decisions per second per core in-process: a household of 7 members,
//     5 rooms, 24 things and 16 rules (windows on school days and weekends,
//     across midnight, date ranges, denies), decided by internal/policy
//     (Cedar, cedar-go) for a sample of requests at times spread over a
//     week, one goroutine; and the same rules written in Rego, evaluated by
//     OPA's in-process rego package (a prepared query) on the same sample
//     with the same inputs, as the peer. Both must agree on every request;
//     the ratio is Cedar's decisions per CPU second to OPA's.
//   - The added p99 at MQTT PUBLISH: the real broker (SQLite, ES256 tokens)
//     on 127.0.0.1, QoS 1 publishes one at a time (PUBACK round trip) by a
//     thing acting for itself (no policy) and by the same kind of thing
//     acting for a dependant (decided by the household's rules, cached for
//     the connection), interleaved rounds; the decisions asked during the
//     publishes are counted (0: every publish was decided from the cache).
//   - The gateway policy filter's added p99: the real gateway (plain HTTP
//     on 127.0.0.1, the upstream in a child process), GETs one at a time
//     on a route with oauth2 and on one with oauth2 and policy (asked on
//     every request), interleaved rounds.
//
// OPA is a dependency of this program's module only (bench/policy has its
// own go.mod), not of thingid's binary.
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"time"

	"github.com/thingid/thingid/bench/internal/loopback"
)

var (
	dur      = flag.Duration("d", 5*time.Second, "how long each engine decides")
	samples  = flag.Int("samples", 10000, "requests in the decision sample")
	n        = flag.Int("n", 20000, "publishes, and gateway requests, per target and round")
	rounds   = flag.Int("rounds", 3, "interleaved rounds of the latency measurements")
	upstream = flag.String(loopback.UpstreamFlag, "", "internal: serve the upstream on this address")
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *upstream != "" {
		loopback.ServeUpstream(*upstream)
		return
	}
	if *dur <= 0 || *samples < 1 || *n < 100 || *rounds < 1 {
		log.Fatal("policy bench: -d, -samples, -rounds must be positive, -n at least 100")
	}
	fmt.Printf("GOMAXPROCS %d, %d CPUs, %s\n", runtime.GOMAXPROCS(0), runtime.NumCPU(), runtime.Version())
	if err := run(); err != nil {
		log.Fatalf("policy bench: %v", err)
	}
}

func run() error {
	if err := engines(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "thingid-policy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	w, err := newWorld(dir)
	if err != nil {
		return err
	}
	defer w.close()
	if err := w.mqtt(); err != nil {
		return err
	}
	return w.gateway()
}
