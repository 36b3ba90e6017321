package broker

import (
	"crypto/tls"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/netlimit"
)

// Issue 12, item 3, for MQTT: 3,000 connections from 127.0.0.2 (with a cap
// of 100 per address, so that the attacker fills it however slowly its
// connections open) that finish
// TLS and then never send CONNECT, or send it one byte at a time. The
// address holds at most its cap (the rest are closed before TLS), the ones
// it holds end at the connect timeout, and meanwhile things from 127.0.0.1
// connect, publish and are answered.
func TestAttackSlowConnects(t *testing.T) {
	const attackers, perAddress = 3000, 100
	reg := prometheus.NewRegistry()
	conns, err := netlimit.New(netlimit.Options{Log: quiet, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(o *Options) {
		o.Connections = conns
		o.Limits.ConnectionsPerAddress = perAddress
		o.Limits.ConnectTimeout = 5 * time.Second // longer than the attacker needs to fill its cap, even under -race
	})
	th := e.thing("T-100")
	addr := e.b.Addr("tls")

	var refused, lost atomic.Int64
	var mu sync.Mutex
	var held []net.Conn
	jobs := make(chan int)
	var wg sync.WaitGroup
	// The attacker keeps its own cost low: resumed sessions, X25519 only.
	tlsConfig := &tls.Config{InsecureSkipVerify: true, ClientSessionCache: tls.NewLRUClientSessionCache(16), CurvePreferences: []tls.CurveID{tls.X25519}}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	for range 32 {
		wg.Go(func() {
			for range jobs {
				raw, err := dialer.Dial("tcp", addr)
				if err != nil {
					lost.Add(1) // a full backlog on a loaded machine
					continue
				}
				raw.SetDeadline(time.Now().Add(5 * time.Second))
				c := tls.Client(raw, tlsConfig)
				if err := c.Handshake(); err != nil {
					refused.Add(1) // closed before TLS
					raw.Close()
					continue
				}
				raw.SetDeadline(time.Time{})
				mu.Lock()
				held = append(held, c)
				mu.Unlock()
			}
		})
	}
	for i := range attackers {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	t.Logf("127.0.0.2: %d connections finished TLS, %d were closed before, %d not accepted in time", len(held), refused.Load(), lost.Load())
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()

	// Half of them send a CONNECT one byte at a time.
	connect := []byte{0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00, 0x03, 'a', 'b', 'c'}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range 6 {
			for k, c := range held {
				if k%2 == 0 {
					c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
					c.Write(connect[i : i+1])
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	for round := 0; ; round++ {
		c := e.mustConnect5(th.ID, e.thingToken(th)) // from 127.0.0.1
		if rc := c.pub(t, "things/"+th.ID+"/telemetry", 1, "still here"); rc != 0 {
			t.Errorf("round %d: PUBACK %#x", round, rc)
		}
		if open := gauge(t, reg, "thingid_connections_open"); open > perAddress+5 {
			t.Errorf("round %d: %v connections open, more than the cap of %d", round, open, perAddress)
		}
		select {
		case <-time.After(500 * time.Millisecond):
			continue
		case <-done:
		}
		break
	}
	if refused.Load() == 0 {
		t.Error("no connection from 127.0.0.2 was refused")
	}
	// The connect timeout ends every connection held without CONNECT.
	deadline := time.Now().Add(10 * time.Second)
	var still int
	for _, c := range held {
		c.SetReadDeadline(deadline)
		if _, err := c.Read(make([]byte, 1)); err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				still++
			}
		}
	}
	if still > 0 {
		t.Errorf("%d connections without CONNECT still open after the connect timeout", still)
	}
}

// gauge sums the samples of a gauge in reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetGauge().GetValue()
			}
		}
	}
	return sum
}
