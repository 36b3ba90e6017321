// Package natstest starts real nats-server processes for tests: one, or a
// cluster of them joined by routes, with JetStream.
package natstest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is one nats-server process with JetStream (stored in a temporary
// directory) and its monitoring port.
type Server struct {
	// URL is the client URL, nats://127.0.0.1:port.
	URL string
	// Monitor is the base of the monitoring endpoints (/varz, /subsz, /jsz).
	Monitor string
	bin     string
	args    []string
	cmd     *exec.Cmd
	size    int // of its cluster, 0 for none
}

// Start runs a real nats-server on a free port of 127.0.0.1 and returns
// its URL.
func Start(t testing.TB) string {
	t.Helper()
	return Run(t).URL
}

// Run runs a real nats-server on free ports of 127.0.0.1, stopped when the
// test ends.
func Run(t testing.TB) *Server {
	t.Helper()
	s := newServer(t, "", freeAddrs(t, 2), nil)
	s.start(t)
	return s
}

// Cluster runs n nats-servers joined by routes into one NATS cluster with
// clustered JetStream, and waits until each knows the n of them and their
// JetStream leader.
func Cluster(t testing.TB, n int) []*Server {
	t.Helper()
	addrs := freeAddrs(t, 3*n) // a route's, a client's and a monitor's each
	routes := make([]string, n)
	for i := range routes {
		routes[i] = "nats-route://" + addrs[3*i+2]
	}
	servers := make([]*Server, n)
	for i := range servers {
		servers[i] = newServer(t, "n"+strconv.Itoa(i+1), addrs[3*i:3*i+2], []string{
			"--cluster_name", "thingid", "--cluster", strings.Replace(routes[i], "nats-route", "nats", 1),
			"--routes", strings.Join(append(append([]string(nil), routes[:i]...), routes[i+1:]...), ","),
		})
		servers[i].size = n
		servers[i].start(t)
	}
	for _, s := range servers {
		s.waitJetStream(t)
	}
	return servers
}

// newServer is a server on addrs (the client's, the monitor's) with extra
// arguments, not started.
func newServer(t testing.TB, name string, addrs []string, extra []string) *Server {
	t.Helper()
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		bin = "/usr/sbin/nats-server"
		if _, err := os.Stat(bin); err != nil {
			if os.Getenv("CI") == "true" {
				t.Fatal("nats-server is not installed; CI must run the cluster tests (scripts/test.sh installs it)")
			}
			t.Skip("nats-server is not installed (apt-get install nats-server): skipping the cluster tests")
		}
	}
	addr, monitor := addrs[0], addrs[1]
	host, port, _ := net.SplitHostPort(addr)
	_, mport, _ := net.SplitHostPort(monitor)
	args := []string{"-a", host, "-p", port, "-m", mport, "-js", "-sd", t.TempDir()}
	if name != "" {
		args = append(args, "-n", name)
	}
	s := &Server{URL: "nats://" + addr, Monitor: "http://" + monitor, bin: bin, args: append(args, extra...)}
	t.Cleanup(s.Kill)
	return s
}

// freeAddrs are n different ports of 127.0.0.1, free a moment ago, taken
// below the range the kernel gives clients' sockets
// (ip_local_port_range): a port from that range, free when it is chosen,
// can be taken by any connection the test process (or another) opens
// before nats-server binds it, or binds it again after Restart.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	low := 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil {
				low = v
			}
		}
	}
	const first = 10000
	addrs := make([]string, 0, n)
	for tries := 0; len(addrs) < n; tries++ {
		port := 0 // the kernel's choice, when no room is left below the range
		if low-first > 1000 && tries < 1000 {
			port = first + rand.IntN(low-first)
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil && port == 0 {
			t.Fatal(err)
		}
		if err != nil {
			continue // taken
		}
		defer ln.Close()
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs
}

func (s *Server) start(t testing.TB) {
	t.Helper()
	s.cmd = exec.Command(s.bin, s.args...)
	// Its output goes to a file of the test's (a file: no goroutine copies
	// it), read when the server does not come up.
	out, err := os.CreateTemp(t.TempDir(), "nats-server-*.log")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.URL, "nats://")
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("nats-server did not listen on %s within 10 s; its output:\n%s", addr, log)
		}
	}
}

// Kill ends the server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	if s.cmd != nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
		s.cmd = nil
	}
}

// Restart starts a killed server again, on its ports and its store; a
// server of a cluster, until it knows the JetStream leader again.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Kill()
	s.start(t)
	if s.size > 0 {
		s.waitJetStream(t)
	}
}

// Get decodes the JSON of a monitoring endpoint (path "/varz", "/subsz"…)
// into v.
func (s *Server) Get(t testing.TB, path string, v any) {
	t.Helper()
	res, err := http.Get(s.Monitor + path)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		t.Fatalf("nats-server %s: %s", path, res.Status)
	}
	if err := json.NewDecoder(res.Body).Decode(v); err != nil {
		t.Fatalf("nats-server %s: %v", path, err)
	}
}

// Varz is what /varz says of the messages the server carried.
type Varz struct {
	InMsgs   int64 `json:"in_msgs"`
	OutMsgs  int64 `json:"out_msgs"`
	InBytes  int64 `json:"in_bytes"`
	OutBytes int64 `json:"out_bytes"`
}

// Varz is the server's message counters now.
func (s *Server) Varz(t testing.TB) Varz {
	t.Helper()
	var v Varz
	s.Get(t, "/varz", &v)
	return v
}

// waitJetStream waits until the server knows its cluster's JetStream
// group, all of it, and its leader.
func (s *Server) waitJetStream(t testing.TB) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		var jsz struct {
			Meta *struct {
				Leader string `json:"leader"`
				Size   int    `json:"cluster_size"`
			} `json:"meta_cluster"`
		}
		res, err := http.Get(s.Monitor + "/jsz")
		if err != nil {
			last = err.Error()
			continue
		}
		err = json.NewDecoder(res.Body).Decode(&jsz)
		res.Body.Close()
		if err == nil && jsz.Meta != nil && jsz.Meta.Leader != "" && jsz.Meta.Size == s.size {
			return
		}
		last = fmt.Sprint(err)
	}
	t.Fatalf("nats-server %s: no JetStream group of %d with a leader after 30 s (%s)", s.URL, s.size, last)
}
