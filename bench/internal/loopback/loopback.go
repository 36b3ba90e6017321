// Package loopback is what the proxy benchmarks under bench/ share on
// 127.0.0.1: free addresses, waiting for a listener, the upstream they proxy
// to (the benchmark's own binary in a child process, the same for every
// target), and the CPU time processes spent, from /proc.
package loopback

import (
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// UpstreamFlag is the flag under which a benchmark's binary serves the
// upstream: its main calls ServeUpstream with the flag's value.
const UpstreamFlag = "upstream"

// ServeUpstream answers every request on addr with a small JSON body, as an
// API would; it returns only on failure, which it reports and exits.
func ServeUpstream(addr string) {
	body := []byte(`{"ok":true,"temperature":21.5}` + "\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
	log.Fatal(http.ListenAndServe(addr, h))
}

// Upstream is the upstream child process.
type Upstream struct {
	Addr string
	cmd  *exec.Cmd
}

// StartUpstream runs this binary with -upstream on a free address, without
// the garbage collector's settings of this process (GOGC and GOMEMLIMIT
// tune the proxies measured here, not the upstream every target shares),
// and waits until it listens.
func StartUpstream() (*Upstream, error) {
	addr, err := FreeAddr()
	if err != nil {
		return nil, err
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "-"+UpstreamFlag, addr)
	cmd.Stderr = os.Stderr
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOGC=") && !strings.HasPrefix(kv, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	u := &Upstream{Addr: addr, cmd: cmd}
	if err := WaitListening(addr); err != nil {
		u.Stop()
		return nil, err
	}
	return u, nil
}

// Pid is the upstream process's.
func (u *Upstream) Pid() int { return u.cmd.Process.Pid }

// Stop ends the upstream.
func (u *Upstream) Stop() { _ = u.cmd.Process.Kill(); _ = u.cmd.Wait() }

// FreeAddr is a 127.0.0.1 address nothing listens on now.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitListening waits up to 10 s until something accepts on addr.
func WaitListening(addr string) error {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return nil
		}
	}
	return fmt.Errorf("nothing listens on %s", addr)
}

// CPUTime is the CPU time (user and system, all threads) the processes
// have used, from /proc; -1 where /proc cannot tell.
func CPUTime(pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return -1
		}
		// Fields 14 and 15, utime and stime, counted after the command
		// name, which is in parentheses and may hold spaces.
		_, rest, _ := strings.Cut(string(b), ") ")
		f := strings.Fields(rest)
		if len(f) < 13 {
			return -1
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += u + s
	}
	return time.Duration(ticks) * (time.Second / 100) // USER_HZ is 100 on Linux
}

// Children are the child processes of pid (nginx's workers).
func Children(pid int) []int {
	var kids []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids
}
