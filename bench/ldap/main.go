// Command ldap measures thingid's directory against OpenLDAP's slapd
// (back-mdb) on the same data: it loads N people and M devices into a
// fresh SQLite store served by thingid's directory, and the same entries
// into a slapd of its own (a child process on a loopback port, its
// configuration and database in a temporary directory), then measures,
// for both over LDAPS with the same client: binds/s, equality searches/s
// by serial number and by mail, substring searches/s and a paged scan of
// every device, and prints the ratio thingid/slapd.
//
// Results go to stdout, one "name value unit" line per figure; progress
// goes to stderr.
//
//	go run ./bench/ldap                                   # small: a minute
//	go run ./bench/ldap -people 100000 -devices 1000000   # the sizes
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/bench/internal/loopback"
)

const (
	suffix       = "dc=example,dc=org"
	benchPW      = "a bench password of some length"
	adminUID     = "benchadmin"
	slapdRootDN  = "cn=admin," + suffix
	slapdRootPW  = "slapd root secret"
	pagedResults = 1000
)

type params struct {
	people, devices, bindUsers int
	ops, binds, workers        int
	rounds                     int
	only                       string
	measure                    map[string]bool // nil: every measurement
}

func main() {
	var p params
	flag.IntVar(&p.people, "people", 10_000, "people (inetOrgPerson), each with one mail address")
	flag.IntVar(&p.devices, "devices", 20_000, "devices, each owned by one person")
	flag.IntVar(&p.bindUsers, "bind-users", 50, "people with a password, who bind (the hash is argon2id for both servers)")
	flag.IntVar(&p.ops, "ops", 2000, "searches per measurement")
	flag.IntVar(&p.binds, "binds", 20, "binds measured (each checks an argon2id hash: a few a second)")
	flag.IntVar(&p.workers, "c", 4, "concurrent client connections")
	flag.IntVar(&p.rounds, "rounds", 1, "rounds of measurements, the servers taking turns (slapd first every other round); the ratios compare medians")
	flag.StringVar(&p.only, "only", "", "measure only thingid or only slapd")
	which := flag.String("measure", "", "comma-separated measurements to take (bind, eq_serial, eq_mail, substring_serial, paged_scan); default all")
	slapd := flag.String("slapd", "/usr/sbin/slapd", "slapd binary (Debian slapd)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of thingid's server process here")
	serve := flag.String(serveFlag, "", "internal: serve thingid's directory on the data set, with the certificate and hash in this directory")
	flag.Parse()
	if *which != "" {
		p.measure = map[string]bool{}
		for _, m := range strings.Split(*which, ",") {
			p.measure[m] = true
		}
	}
	if p.people < p.bindUsers || p.people < 1 || p.devices < 10 {
		fmt.Fprintln(os.Stderr, "bench/ldap: -people must be at least 1 and -bind-users, -devices at least 10")
		os.Exit(2)
	}
	if *serve != "" {
		if err := serveThingid(*serve, p, *cpuprofile); err != nil {
			fmt.Fprintln(os.Stderr, "bench/ldap: thingid:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(p, *slapd, *cpuprofile); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ldap:", err)
		os.Exit(1)
	}
}

// target is one server under measurement.
type target struct {
	name   string
	pid    int    // the server's process, for its CPU time
	url    string // ldaps://127.0.0.1:port
	tls    *tls.Config
	admin  func(c *ldap.Conn) error // binds as a principal that reads everything
	userDN func(i int) string
}

func run(p params, slapdBin, cpuprofile string) error {
	dir, err := os.MkdirTemp("", "thingid-bench-ldap-*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cert, err := newCertificate(dir)
	if err != nil {
		return err
	}
	hash, err := hashPassword()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "hash"), []byte(hash), 0o600); err != nil {
		return err
	}
	var targets []target
	if p.only != "slapd" {
		th, stop, err := startThingid(dir, cert, p, cpuprofile)
		if err != nil {
			return fmt.Errorf("thingid: %w", err)
		}
		defer stop()
		targets = append(targets, th)
	}
	if p.only != "thingid" {
		sl, stop, err := startSlapd(slapdBin, dir, cert, hash, p)
		if err != nil {
			return fmt.Errorf("slapd: %w", err)
		}
		defer stop()
		targets = append(targets, sl)
	}
	// On a shared machine the load moves between one server's turn and the
	// other's: rounds in alternating order, and medians, even that out.
	rounds := map[string]map[string][]figure{}
	for r := range max(p.rounds, 1) {
		for i := range targets {
			t := targets[(i+r)%len(targets)]
			if rounds[t.name] == nil {
				rounds[t.name] = map[string][]figure{}
			}
			for name, f := range measure(t, p) {
				rounds[t.name][name] = append(rounds[t.name][name], f)
			}
		}
	}
	if len(targets) == 2 {
		for _, m := range measurements {
			a, b := median(rounds["thingid"][m.name]), median(rounds["slapd"][m.name])
			if b.rate > 0 && a.cpu > 0 {
				fmt.Printf("ldap_%s_ratio %.2f thingid/slapd (server CPU per operation: %.2f slapd/thingid)\n", m.name, a.rate/b.rate, float64(b.cpu)/float64(a.cpu))
			}
		}
	}
	return nil
}

// timed runs op n times over workers connections bound by bind, and
// returns operations per second and the server's CPU time per operation.
func timed(t target, workers, n int, bind func(*ldap.Conn) error, op func(c *ldap.Conn, i int) error) (figure, error) {
	conns := make([]*ldap.Conn, workers)
	for w := range conns {
		c, err := ldap.DialURL(t.url, ldap.DialWithTLSConfig(t.tls))
		if err != nil {
			return figure{}, err
		}
		defer c.Close()
		if err := bind(c); err != nil {
			return figure{}, err
		}
		conns[w] = c
	}
	next := make(chan int)
	errs := make(chan error, workers)
	start, cpu := time.Now(), loopback.CPUTime([]int{t.pid})
	for _, c := range conns {
		go func() {
			for i := range next {
				if err := op(c, i); err != nil {
					errs <- err
					for range next { // drain
					}
					return
				}
			}
			errs <- nil
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	el, used := time.Since(start), loopback.CPUTime([]int{t.pid})-cpu
	return figure{rate: float64(n) / el.Seconds(), cpu: used / time.Duration(n)}, first
}

// median is the median rate and the median CPU time of fs (each apart).
func median(fs []figure) figure {
	if len(fs) == 0 {
		return figure{}
	}
	rates, cpus := make([]float64, len(fs)), make([]time.Duration, len(fs))
	for i, f := range fs {
		rates[i], cpus[i] = f.rate, f.cpu
	}
	slices.Sort(rates)
	slices.Sort(cpus)
	return figure{rate: rates[len(fs)/2], cpu: cpus[len(fs)/2]}
}
