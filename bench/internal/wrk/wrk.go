// Package wrk runs the wrk HTTP benchmarking tool (Debian's wrk 4) for the
// programs under bench/ and reads its summary.
package wrk

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Run is one wrk run.
type Run struct {
	Bin      string        // the wrk binary; "" is "wrk" on PATH
	Threads  int           // -t
	Conns    int           // -c
	Duration time.Duration // -d
	Headers  []string      // -H, "Name: value"
	// Method and Body, when Method is set, make every request a request with
	// that method and body (through a Lua script), as a token endpoint needs.
	Method, Body string
	URL          string
}

// Result is wrk's summary.
type Result struct {
	RPS      float64
	P50, P99 time.Duration
}

var (
	rpsRe = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p50Re = regexp.MustCompile(`\n\s+50%\s+([0-9.]+)(us|ms|s)`)
	p99Re = regexp.MustCompile(`\n\s+99%\s+([0-9.]+)(us|ms|s)`)
	errRe = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// Do runs wrk and returns its summary; an error when a response was not
// 2xx or 3xx, or the summary cannot be read.
func (r Run) Do() (Result, error) {
	bin := r.Bin
	if bin == "" {
		bin = "wrk"
	}
	args := []string{"-t", strconv.Itoa(r.Threads), "-c", strconv.Itoa(r.Conns), "-d", r.Duration.String(), "--latency"}
	for _, h := range r.Headers {
		args = append(args, "-H", h)
	}
	if r.Method != "" {
		dir, err := os.MkdirTemp("", "wrk-")
		if err != nil {
			return Result{}, err
		}
		defer os.RemoveAll(dir)
		script := filepath.Join(dir, "request.lua")
		lua := fmt.Sprintf("wrk.method = %s\nwrk.body = %s\n", luaString(r.Method), luaString(r.Body))
		if err := os.WriteFile(script, []byte(lua), 0o600); err != nil {
			return Result{}, err
		}
		args = append(args, "-s", script)
	}
	out, err := exec.Command(bin, append(args, r.URL)...).CombinedOutput()
	if err != nil {
		return Result{}, fmt.Errorf("wrk: %v: %s", err, out)
	}
	return parse(string(out))
}

// parse reads wrk's summary (printed with --latency).
func parse(s string) (Result, error) {
	if m := errRe.FindStringSubmatch(s); m != nil {
		return Result{}, fmt.Errorf("%s requests were not answered 2xx:\n%s", m[1], s)
	}
	rm, p50, p99 := rpsRe.FindStringSubmatch(s), p50Re.FindStringSubmatch(s), p99Re.FindStringSubmatch(s)
	if rm == nil || p50 == nil || p99 == nil {
		return Result{}, errors.New("cannot read wrk's output:\n" + s)
	}
	rps, err := strconv.ParseFloat(rm[1], 64)
	if err != nil {
		return Result{}, fmt.Errorf("wrk's Requests/sec: %w", err)
	}
	return Result{RPS: rps, P50: duration(p50), P99: duration(p99)}, nil
}

// luaString quotes s as a Lua string literal.
func luaString(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\r", `\r`).Replace(s) + `"`
}

func duration(m []string) time.Duration {
	v, _ := strconv.ParseFloat(m[1], 64)
	unit := map[string]time.Duration{"us": time.Microsecond, "ms": time.Millisecond, "s": time.Second}[m[2]]
	return time.Duration(v * float64(unit))
}
