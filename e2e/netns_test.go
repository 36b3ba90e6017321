package e2e

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// bridge is a network of the test's own: a Linux bridge with addresses on
// 10.X.Y.0/24 and hosts in network namespaces joined to it by veth pairs.
// The test's side (the root namespace) has .1; every name carries a random
// tag, so parallel runs and leftovers of a killed run do not meet.
type bridge struct {
	t      *testing.T
	tag    string // 6 hex digits
	prefix string // "10.X.Y."
}

// newBridge creates the bridge, or skips when the kernel refuses network
// namespaces to this process (not root, or a container without
// CAP_NET_ADMIN): that is the machine, not a missing package.
func newBridge(t *testing.T) *bridge {
	t.Helper()
	tool(t, "ip", "iproute2")
	b := make([]byte, 3)
	rand.Read(b)
	br := &bridge{t: t, tag: fmt.Sprintf("%x", b), prefix: fmt.Sprintf("10.%d.%d.", 200+int(b[0])%50, b[1])}
	if out, err := exec.Command("ip", "link", "add", br.name(), "type", "bridge").CombinedOutput(); err != nil {
		if strings.Contains(string(out), "Operation not permitted") {
			t.Skipf("this process may not create network interfaces (%s): the cluster test needs root with CAP_NET_ADMIN", strings.TrimSpace(string(out)))
		}
		t.Fatalf("ip link add %s type bridge: %v %s", br.name(), err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "link", "del", br.name()).Run() })
	br.ip("addr", "add", br.prefix+"1/24", "dev", br.name())
	br.ip("link", "set", br.name(), "up")
	return br
}

func (br *bridge) name() string { return "tid" + br.tag }

// ip runs one ip(8) command and fails the test if it fails.
func (br *bridge) ip(args ...string) {
	br.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		br.t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// addr is the address .last on the bridge's network.
func (br *bridge) addr(last int) string { return br.prefix + fmt.Sprint(last) }

// alias gives the test's side one more address, .last (HAProxy's own
// source address, so that the nodes can tell its connections from the
// test's).
func (br *bridge) alias(last int) string {
	br.ip("addr", "add", br.addr(last)+"/24", "dev", br.name())
	return br.addr(last)
}

// host creates the network namespace of host name with address .last on
// the bridge, and returns the namespace's name.
func (br *bridge) host(name string, last int) string {
	br.t.Helper()
	ns := "tid" + br.tag + "-" + name
	br.ip("netns", "add", ns)
	br.t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	outside, inside := br.veth(name), "tid"+br.tag+name+"i"
	br.ip("link", "add", outside, "type", "veth", "peer", "name", inside)
	br.ip("link", "set", inside, "netns", ns)
	br.ip("-n", ns, "link", "set", inside, "name", "eth0")
	br.ip("-n", ns, "addr", "add", br.addr(last)+"/24", "dev", "eth0")
	br.ip("-n", ns, "link", "set", "eth0", "up")
	br.ip("-n", ns, "link", "set", "lo", "up")
	br.ip("link", "set", outside, "master", br.name())
	br.ip("link", "set", outside, "up")
	return ns
}

// veth is the bridge's end of host name's link.
func (br *bridge) veth(name string) string { return "tid" + br.tag + name + "o" }

// relay is a TCP forwarder from the bridge to a service of the test, which
// a test can cut as a partition would: bytes stop flowing both ways and new
// connections hang, without a reset, until it is mended.
type relay struct {
	addr string
	mu   sync.Mutex
	open chan struct{} // closed while bytes flow
}

// cut stops every byte; mend lets them flow again.
func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
		r.open = make(chan struct{})
	default:
	}
}

func (r *relay) mend() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.open:
	default:
		close(r.open)
	}
}

// flowing waits until bytes may flow.
func (r *relay) flowing() {
	r.mu.Lock()
	open := r.open
	r.mu.Unlock()
	<-open
}

// copy moves bytes from src to dst while the relay is not cut.
func (r *relay) copy(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			r.flowing()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// forward relays TCP connections from the bridge's .1 to target (a
// service of the test's loopback, such as the test PostgreSQL), until the
// test ends.
func (br *bridge) forward(target string) *relay {
	br.t.Helper()
	ln, err := net.Listen("tcp", br.addr(1)+":0")
	if err != nil {
		br.t.Fatal(err)
	}
	r := &relay{addr: ln.Addr().String(), open: make(chan struct{})}
	close(r.open)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	br.t.Cleanup(func() {
		ln.Close()
		r.mend()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				r.flowing() // a cut link answers no new connection either
				out, err := net.Dial("tcp", target)
				if err != nil {
					fmt.Fprintln(os.Stderr, "e2e: forward:", err)
					in.Close()
					return
				}
				mu.Lock()
				conns = append(conns, in, out)
				mu.Unlock()
				wg.Go(func() { r.copy(out, in) })
				r.copy(in, out)
			})
		}
	})
	return r
}
