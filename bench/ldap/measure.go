package main

import (
	"fmt"
	"os"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// measurements are the figures taken of each target, in order.
var measurements = []struct{ name, unit string }{
	{"bind", "binds/s"},
	{"eq_serial", "searches/s"},
	{"eq_mail", "searches/s"},
	{"substring_serial", "searches/s"},
	{"paged_scan", "entries/s"},
}

// spread is the i-th of n keys, visited in a scattered order.
func spread(i, n int) int { return (i * 7919) % n }

// The ids of the data set are fixed, so both servers name entries alike:
// UUIDs (version 7's layout) numbered by the index.
func personID(i int) string { return fmt.Sprintf("00000000-0000-7000-8000-%012d", i) }
func deviceID(i int) string { return fmt.Sprintf("00000000-0001-7000-8000-%012d", i) }

// owner is the person who owns device i.
func owner(i int, p params) int { return i % p.people }

func serial(i int) string { return fmt.Sprintf("SN%09d", i) }
func uid(i int) string    { return fmt.Sprintf("user%07d", i) }
func mail(i int) string   { return uid(i) + "@example.org" }

// search runs one search and checks it found want entries.
func search(c *ldap.Conn, base, filter string, want int) error {
	res, err := c.Search(ldap.NewSearchRequest(base, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false, filter, nil, nil))
	if err != nil {
		return fmt.Errorf("search %s: %w", filter, err)
	}
	if len(res.Entries) != want {
		return fmt.Errorf("search %s: %d entries, want %d", filter, len(res.Entries), want)
	}
	return nil
}

// figure is one measurement of one server: operations (or entries) per
// second, and the server's CPU time per operation.
type figure struct {
	rate float64
	cpu  time.Duration
}

// measure takes every figure of t and prints it.
func measure(t target, p params) map[string]figure {
	out := map[string]figure{}
	devices, people := "ou=devices,"+suffix, "ou=people,"+suffix
	nop := func(*ldap.Conn) error { return nil }
	ops := map[string]func() (figure, error){
		// Binds on open connections: the password check, not TLS handshakes.
		"bind": func() (figure, error) {
			return timed(t, p.workers, max(p.binds, p.workers), nop, func(c *ldap.Conn, i int) error {
				return c.Bind(t.userDN(i%p.bindUsers), benchPW)
			})
		},
		"eq_serial": func() (figure, error) {
			return timed(t, p.workers, p.ops, t.admin, func(c *ldap.Conn, i int) error {
				return search(c, devices, "(serialNumber="+serial(spread(i, p.devices))+")", 1)
			})
		},
		"eq_mail": func() (figure, error) {
			return timed(t, p.workers, p.ops, t.admin, func(c *ldap.Conn, i int) error {
				return search(c, people, "(mail="+mail(spread(i, p.people))+")", 1)
			})
		},
		// Ten devices a search: the serial numbers sharing all digits but the last.
		"substring_serial": func() (figure, error) {
			return timed(t, p.workers, p.ops, t.admin, func(c *ldap.Conn, i int) error {
				return search(c, devices, "(serialNumber="+serial(spread(i, p.devices/10) * 10)[:10]+"*)", 10)
			})
		},
		// One client reads every device, a page of 1,000 at a time.
		"paged_scan": func() (figure, error) {
			var n int
			f, err := timed(t, 1, 1, t.admin, func(c *ldap.Conn, _ int) error {
				res, err := c.SearchWithPaging(ldap.NewSearchRequest(devices, ldap.ScopeSingleLevel, ldap.NeverDerefAliases, 0, 0, false,
					"(objectClass=device)", nil, nil), pagedResults)
				if err != nil {
					return err
				}
				if n = len(res.Entries); n != p.devices {
					return fmt.Errorf("paged scan: %d entries, want %d", n, p.devices)
				}
				return nil
			})
			// Per entry, not per scan.
			return figure{rate: f.rate * float64(n), cpu: f.cpu / time.Duration(max(n, 1))}, err
		},
	}
	for _, m := range measurements {
		if p.measure != nil && !p.measure[m.name] {
			continue
		}
		start := time.Now()
		f, err := ops[m.name]()
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s %s: %v\n", t.name, m.name, err)
			continue
		}
		out[m.name] = f
		digits := 0
		if f.rate < 100 { // binds: argon2id makes them few
			digits = 2
		}
		fmt.Printf("ldap_%s_%s %.*f %s (server CPU %.1f µs each)\n", m.name, t.name, digits, f.rate, m.unit, float64(f.cpu.Nanoseconds())/1000)
		fmt.Fprintf(os.Stderr, "  %s %s took %s\n", t.name, m.name, time.Since(start).Round(time.Millisecond))
	}
	return out
}
