// Command coap measures the CoAP gateway against libcoap's own server,
// coap-server-openssl (Debian libcoap3-bin), on loopback: DTLS 1.2
// handshakes per second with certificates on both sides and with a
// pre-shared key, confirmable requests per second over established
// sessions and the server's CPU time per request, and the memory one idle
// DTLS session costs the server. It prints each figure for both and the
// ratio of the gateway's to libcoap's.
//
// Both servers run in child processes, so that their memory is theirs
// alone and this process is only the client: the gateway is this program
// with -serve-gateway (a SQLite store, the platform's device CA, certauth,
// a thing with a device certificate), libcoap's server gets the same
// server certificate and trusts the same platform CA, and takes the key
// the gateway issued the thing as its pre-shared key (-k; libcoap takes any
// identity with it). The client is go-coap with pion/dtls, the same for
// both, presenting the thing's certificate (or its PSK identity and key);
// it GETs /self of the gateway (the thing's identity as JSON, ~190 bytes)
// and / of libcoap (its greeting, ~170 bytes).
package main

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/thingid/thingid/bench/internal/loopback"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/coapgw"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

var (
	dur       = flag.Duration("d", 5*time.Second, "duration of each throughput run")
	workers   = flag.Int("c", 4, "concurrent clients (handshakes) and sessions (requests)")
	idle      = flag.Int("sessions", 500, "idle sessions opened to measure memory")
	rounds    = flag.Int("rounds", 1, "measure every target this many times, interleaved, and keep the best")
	libcoap   = flag.String("libcoap", "coap-server-openssl", "libcoap's server")
	serveGwIn = flag.String("serve-gateway", "", "internal: serve the gateway with the files in this directory")
	profile   = flag.String("cpuprofile", "", "write a CPU profile of the gateway (its child process) during the throughput runs to this file")
	gwEnv     = flag.String("gateway-env", "", "environment variables for the gateway child only, space-separated (\"GOGC=400\"): the runtime's tuning is a deployment's choice")
	only      = flag.String("only", "", "measure one thing only, to profile it: requests, certificates or psk (handshakes); no memory")
)

// Files the parent writes into the working directory and the gateway child
// adds to.
const (
	serverCert = "server.pem"
	serverKey  = "server.key"
	platformCA = "ca.pem"    // by the child: the platform's root CA
	thingCert  = "thing.pem" // by the child: leaf and device CA
	thingKey   = "thing.key"
	pskID      = "psk.identity" // by the child: the thing's PSK identity and key
	pskKey     = "psk.key"
)

func main() {
	flag.Parse()
	log.SetFlags(0)
	if *serveGwIn != "" {
		if err := serveGateway(*serveGwIn); err != nil {
			log.Fatalf("coap bench gateway: %v", err)
		}
		return
	}
	if err := run(); err != nil {
		log.Fatalf("coap bench: %v", err)
	}
}

// target is a server under measurement.
type target struct {
	name, addr, path string
	pid              int
}

type result struct {
	handshakes, pskHandshakes, requests figure
	perSession                          float64 // bytes of RSS per idle session
	failed                              atomic.Int64
}

// figure is the best run of one measure: operations per second, and the
// server's CPU time per operation in that run.
type figure struct {
	perSecond float64
	cpu       float64 // seconds
}

// keep keeps the run of n operations that took the server cpu, if it is
// the best yet.
func (f *figure) keep(n int, cpu time.Duration) {
	if perSecond := float64(n) / dur.Seconds(); perSecond > f.perSecond {
		f.perSecond, f.cpu = perSecond, cpu.Seconds()/float64(n)
	}
}

func run() error {
	dir, err := os.MkdirTemp("", "thingid-coap-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := writeServerCertificate(dir); err != nil {
		return err
	}
	results := map[string]*result{"thingid": {}, "libcoap": {}}
	// Throughput on fresh servers, every target every round, interleaved,
	// best kept; then memory on fresh servers again, which neither the
	// throughput runs grew nor left sessions to (libcoap keeps a closed
	// one until its idle timeout).
	err = withServers(dir, *profile, func(targets []*target, c *creds) error {
		for range *rounds {
			for _, t := range targets {
				if err := measureThroughput(t, c, results[t.name]); err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	g, l := results["thingid"], results["libcoap"]
	if *only != "" {
		printThroughput(g, l)
		return nil
	}
	err = withServers(dir, "", func(targets []*target, c *creds) error {
		for _, t := range targets {
			if err := measureMemory(t, c, results[t.name]); err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	printThroughput(g, l)
	fmt.Printf("%-36s %14.1f %14.1f %8.2fx\n", "KiB per idle DTLS session", g.perSession/1024, l.perSession/1024, g.perSession/l.perSession)
	fmt.Printf("%-36s %14d %14d\n", "handshakes failed (tried again)", g.failed.Load(), l.failed.Load())
	fmt.Printf("(%d clients, %s per run, best of %d rounds; %d idle sessions)\n", *workers, *dur, *rounds, *idle)
	return nil
}

// printThroughput prints the figures of the throughput runs.
func printThroughput(g, l *result) {
	fmt.Printf("%-36s %14s %14s %9s\n", "", "thingid", "libcoap", "ratio")
	for _, f := range []struct {
		what  string
		g, l  figure
		shown bool
	}{
		{"DTLS handshakes/s (certificates)", g.handshakes, l.handshakes, *only == "" || *only == "certificates"},
		{"DTLS handshakes/s (PSK)", g.pskHandshakes, l.pskHandshakes, *only == "" || *only == "psk"},
		{"confirmable requests/s (sessions)", g.requests, l.requests, *only == "" || *only == "requests"},
	} {
		if !f.shown {
			continue
		}
		fmt.Printf("%-36s %14.0f %14.0f %8.2fx\n", f.what, f.g.perSecond, f.l.perSecond, f.g.perSecond/f.l.perSecond)
		fmt.Printf("%-36s %14.1f %14.1f %8.2fx\n", "  server CPU µs each", f.g.cpu*1e6, f.l.cpu*1e6, f.g.cpu/f.l.cpu)
	}
}

// withServers runs f with both servers started afresh (the gateway
// profiled into profile unless ""), and stops them.
func withServers(dir, profile string, f func([]*target, *creds) error) error {
	gw, stopGw, err := startGateway(dir, profile)
	if err != nil {
		return err
	}
	defer stopGw()
	lib, stopLib, err := startLibcoap(dir)
	if err != nil {
		return err
	}
	defer stopLib()
	c, err := loadCreds(dir)
	if err != nil {
		return err
	}
	return f([]*target{gw, lib}, c)
}

// creds are the thing's: its certificate, its PSK identity and key.
type creds struct {
	cert          tls.Certificate
	identity, key []byte
}

func loadCreds(dir string) (*creds, error) {
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, thingCert), filepath.Join(dir, thingKey))
	if err != nil {
		return nil, err
	}
	id, err := os.ReadFile(filepath.Join(dir, pskID))
	if err != nil {
		return nil, err
	}
	key, err := os.ReadFile(filepath.Join(dir, pskKey))
	if err != nil {
		return nil, err
	}
	return &creds{cert: cert, identity: id, key: key}, nil
}

// measureThroughput measures handshakes (certificate, then PSK) and
// requests per second against t, keeping in r the best of this run and
// those before, with the server's CPU time per request of the run kept.
func measureThroughput(t *target, c *creds, r *result) error {
	for _, h := range []struct {
		dial func(*target, *creds) (*udpClient.Conn, error)
		best *figure
		name string
	}{{dial, &r.handshakes, "certificates"}, {dialPSK, &r.pskHandshakes, "psk"}} {
		if *only != "" && *only != h.name {
			continue
		}
		var cpu0 time.Duration
		n, err := loop(func(stop <-chan struct{}) (int, error) {
			done := 0
			for {
				select {
				case <-stop:
					return done, nil
				default:
				}
				cc, err := h.dial(t, c)
				if err == nil {
					err = get(cc, t.path)
					cc.Close()
				}
				if err != nil { // counted, not fatal: a server may drop some under load
					r.failed.Add(1)
					continue
				}
				done++
			}
		}, func() { cpu0 = loopback.CPUTime([]int{t.pid}) })
		if err != nil {
			return fmt.Errorf("handshakes: %w", err)
		}
		if err := keep(h.best, t, n, cpu0); err != nil {
			return err
		}
	}

	if *only != "" && *only != "requests" {
		return nil
	}
	var cpu0 time.Duration
	n, err := loop(func(stop <-chan struct{}) (int, error) {
		cc, err := establish(t, c, r)
		if err != nil {
			return 0, err
		}
		defer cc.Close()
		done := 0
		for {
			select {
			case <-stop:
				return done, nil
			default:
			}
			if err := get(cc, t.path); err != nil {
				return done, err
			}
			done++
		}
	}, func() { cpu0 = loopback.CPUTime([]int{t.pid}) })
	if err != nil {
		return fmt.Errorf("requests: %w", err)
	}
	return keep(&r.requests, t, n, cpu0)
}

// keep keeps in f a run of n operations of t, begun when t's server had
// used cpu0 of CPU time.
func keep(f *figure, t *target, n int, cpu0 time.Duration) error {
	cpu1 := loopback.CPUTime([]int{t.pid})
	if cpu0 < 0 || cpu1 < 0 {
		return fmt.Errorf("no CPU time in /proc/%d/stat", t.pid)
	}
	f.keep(n, cpu1-cpu0)
	return nil
}

// measureMemory opens -sessions idle sessions (establish), and sets r.perSession from the server's resident set before
// and after.
func measureMemory(t *target, c *creds, r *result) error {
	before, err := rss(t.pid)
	if err != nil {
		return err
	}
	open := make([]*udpClient.Conn, 0, *idle)
	defer func() {
		for _, cc := range open {
			cc.Close()
		}
	}()
	for range *idle {
		cc, err := establish(t, c, r)
		if err != nil {
			return fmt.Errorf("idle sessions: %w", err)
		}
		open = append(open, cc)
	}
	time.Sleep(time.Second)
	after, err := rss(t.pid)
	if err != nil {
		return err
	}
	r.perSession = float64(after-before) / float64(*idle)
	return nil
}

// loop runs f in -c goroutines for -d and sums what they counted; started,
// if given, runs once they all run.
func loop(f func(stop <-chan struct{}) (int, error), started ...func()) (int, error) {
	stop := make(chan struct{})
	var (
		wg    sync.WaitGroup
		total atomic.Int64
		first error
		once  sync.Once
	)
	for range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := f(stop)
			total.Add(int64(n))
			if err != nil {
				once.Do(func() { first = err })
			}
		}()
	}
	for _, fn := range started {
		fn()
	}
	time.Sleep(*dur)
	close(stop)
	wg.Wait()
	return int(total.Load()), first
}

func dial(t *target, c *creds) (*udpClient.Conn, error) {
	return dtls.Dial(t.addr, &piondtls.Config{
		Certificates:         []tls.Certificate{c.cert},
		InsecureSkipVerify:   true, // both servers present the same self-signed certificate
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
	})
}

// dialPSK opens a session with the thing's PSK identity and key on RFC
// 7252's mandatory suite.
func dialPSK(t *target, c *creds) (*udpClient.Conn, error) {
	return dtls.Dial(t.addr, &piondtls.Config{
		PSK:                  func([]byte) ([]byte, error) { return c.key, nil },
		PSKIdentityHint:      c.identity,
		CipherSuites:         []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
	})
}

// establish opens a session that answers a request, trying again (up to
// five times, each failure counted in r) where a server under load drops
// a handshake.
func establish(t *target, c *creds, r *result) (*udpClient.Conn, error) {
	for i := 0; ; i++ {
		cc, err := dial(t, c)
		if err == nil {
			if err = get(cc, t.path); err == nil {
				return cc, nil
			}
			cc.Close()
		}
		r.failed.Add(1)
		if i == 4 {
			return nil, err
		}
	}
}

// get is one confirmable GET answered 2.05.
func get(cc *udpClient.Conn, path string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cc.Get(ctx, path)
	if err != nil {
		return err
	}
	if res.Code() != codes.Content {
		return fmt.Errorf("GET %s: %v", path, res.Code())
	}
	return nil
}

// rss is a process's resident set in bytes.
func rss(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10, err
		}
	}
	return 0, errors.New("no VmRSS")
}

// writeServerCertificate writes the ECDSA P-256 certificate both servers
// present.
func writeServerCertificate(dir string) error {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return err
	}
	p8, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, serverCert), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, serverKey), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
}

// startGateway runs this program with -serve-gateway and waits for the
// address it announces.
func startGateway(dir, profile string) (*target, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(self, "-serve-gateway", dir, "-cpuprofile", profile)
	cmd.Env = append(os.Environ(), strings.Fields(*gwEnv)...)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	stop := func() { stdin.Close(); _ = cmd.Wait() }
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "ready ")
	if err != nil || !ok {
		stop()
		return nil, nil, fmt.Errorf("the gateway child said %q: %v", line, err)
	}
	return &target{name: "thingid", addr: addr, path: coapgw.PathSelf, pid: cmd.Process.Pid}, stop, nil
}

// startLibcoap runs coap-server-openssl on a free port (DTLS on the next
// one) with the server certificate, trusting the platform's root CA (it
// takes one certificate from -C; the client sends the device CA in its
// chain), and waits until it answers.
func startLibcoap(dir string) (*target, func(), error) {
	port, err := freePortPair()
	if err != nil {
		return nil, nil, err
	}
	c, err := loadCreds(dir)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(*libcoap, "-A", "127.0.0.1", "-p", strconv.Itoa(port), "-v", "0", "-k", string(c.key),
		"-c", filepath.Join(dir, serverCert), "-j", filepath.Join(dir, serverKey), "-C", filepath.Join(dir, platformCA))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("%s (Debian libcoap3-bin): %w", *libcoap, err)
	}
	stop := func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }
	t := &target{name: "libcoap", addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)), path: "/", pid: cmd.Process.Pid}
	for i := 0; ; i++ {
		cc, err := dial(t, c)
		if err == nil {
			err = get(cc, t.path)
			cc.Close()
		}
		if err == nil {
			return t, stop, nil
		}
		if i == 50 {
			stop()
			return nil, nil, fmt.Errorf("%s does not answer: %w", *libcoap, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePortPair is a UDP port whose next one is free too, for libcoap's
// CoAP and DTLS listeners.
func freePortPair() (int, error) {
	for range 20 {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := c.LocalAddr().(*net.UDPAddr).Port
		next, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+1)))
		c.Close()
		if err == nil {
			next.Close()
			return port, nil
		}
	}
	return 0, errors.New("no free pair of UDP ports")
}

// serveGateway is the child: the gateway on a fresh store and PKI, with a
// thing whose certificate and key it writes for the parent, until stdin
// closes.
func serveGateway(dir string) error {
	ctx := context.Background()
	quiet := slog.New(slog.DiscardHandler)
	key, err := secrets.LoadOrCreate(dir, "")
	if err != nil {
		return err
	}
	_, dca, err := pki.Open(filepath.Join(dir, "pki"), key, pki.Import{})
	if err != nil {
		return err
	}
	st, err := sqlite.Open(filepath.Join(dir, "thingid.db"))
	if err != nil {
		return err
	}
	defer st.Close()
	// The event bus as the server has it: the gateway follows revocations,
	// and a PSK session takes what its handshake's lookup found (psk.go).
	bus := events.New()
	ids := identity.New(st, bus, password.Policy{})
	certs, err := certauth.New(ctx, certauth.Options{Store: st, Identity: ids, DeviceCA: dca, Bus: bus, Log: quiet})
	if err != nil {
		return err
	}
	defer certs.Close()
	th, err := ids.CreateThing(ctx, "bench", &store.Thing{Manufacturer: "thingid", Model: "BENCH", SerialNumber: "COAP-BENCH-" + strconv.FormatInt(time.Now().UnixNano(), 36)}) // one per start
	if err != nil {
		return err
	}
	dc, err := dca.IssueDevice(th.ID, th.SerialNumber, 24*time.Hour)
	if err != nil {
		return err
	}
	if _, err := ids.AddCertificate(ctx, "bench", th.ID, store.CertRefOf(dc.Leaf)); err != nil {
		return err
	}
	keyPEM, err := dc.KeyPEM()
	if err != nil {
		return err
	}
	issued, row, err := psk.Issue(key, th.ID)
	if err != nil {
		return err
	}
	if err := ids.SetThingPSKs(ctx, "bench", []*store.ThingPSK{row}); err != nil {
		return err
	}
	for name, b := range map[string][]byte{thingCert: dc.ChainPEM(), thingKey: keyPEM, pskID: []byte(issued.Identity), pskKey: []byte(issued.Key),
		platformCA: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: dca.Root.Raw})} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return err
		}
	}
	server, err := tls.LoadX509KeyPair(filepath.Join(dir, serverCert), filepath.Join(dir, serverKey))
	if err != nil {
		return err
	}
	gw, err := coapgw.New(coapgw.Options{
		DTLSAddress: "127.0.0.1:0", Certificate: server, Verifier: certs, PSKs: psk.NewKeys(st, key), Bus: bus, Log: quiet,
		// One client address makes every handshake here: the limits for
		// an address under attack are not what is measured.
		HandshakesPerSecond: 1e9, HandshakeBurst: 1 << 30, MaxSessions: 1 << 20,
	})
	if err != nil {
		return err
	}
	defer gw.Close()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("ready %s\n", gw.DTLSAddr())
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // until the parent closes it
	return nil
}
