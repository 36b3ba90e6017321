package broker

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

func waitServed(t *testing.T, want int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); mqtttest.Serving() != want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections served, want %d", mqtttest.Serving(), want)
		}
	}
}

// idleTLS connects a thing over TLS with keepAlive (seconds) and returns
// the TCP connection under it, for bytes that are not the TLS client's.
func (e *env) idleTLS(t *testing.T, keepAlive uint16) (net.Conn, *mqtttest.Conn) {
	t.Helper()
	raw, err := net.Dial("tcp", e.b.Addr("tls"))
	if err != nil {
		t.Fatal(err)
	}
	th := e.thing("M")
	c := mqtttest.New(t, tls.Client(raw, &tls.Config{RootCAs: e.pool, ServerName: "localhost"}), packet.V5)
	c.Connect(&packet.Connect{ClientID: th.ID, CleanStart: true, KeepAlive: keepAlive, PasswordFlag: true, Password: []byte(e.thingToken(th))})
	return raw, c
}

// serverClosed waits until the server has closed raw (EOF or reset), whatever it
// sent before.
func serverClosed(t *testing.T, raw net.Conn) {
	t.Helper()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := io.Copy(io.Discard, raw)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("the server kept the connection")
	}
}

// Bytes under the TLS client that break its records, sent to a connection
// whose reader waits outside crypto/tls, each end the connection and its
// goroutine: a record cut short and a silence after it end at 1.5 times
// the keep-alive (the reader waits inside the record, in crypto/tls),
// the rest at once.
func TestAttackIdleTLSRecords(t *testing.T) {
	e := newEnv(t, nil)
	waitServed(t, 0)
	for _, tc := range []struct {
		name  string
		bytes string
		close bool // the client closes after them
	}{
		{"a header cut short, then silence", "\x17\x03", false},
		{"half a record, then silence", "\x17\x03\x03\x00\x40" + strings.Repeat("x", 20), false},
		{"half a record, then the end", "\x17\x03\x03\x00\x40" + strings.Repeat("x", 20), true},
		{"a record of 65535 bytes announced", "\x17\x03\x03\xff\xff" + strings.Repeat("x", 100), false},
		{"an empty record", "\x17\x03\x03\x00\x00", false},
		{"not TLS", "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", false},
		{"a ClientHello in the clear after the handshake", "\x16\x03\x01\x00\x04\x01\x00\x00\x00", false},
		{"an alert in the clear", "\x15\x03\x03\x00\x02\x02\x28", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, _ := e.idleTLS(t, 1)
			e.waitReaders(t, 1)
			if _, err := raw.Write([]byte(tc.bytes)); err != nil {
				t.Fatal(err)
			}
			if tc.close {
				raw.(*net.TCPConn).CloseWrite()
			}
			serverClosed(t, raw)
			waitServed(t, 0)
			e.waitReaders(t, 0)
		})
	}
}

// Many idle TLS connections woken at once are each read and wait again,
// parked, without a goroutine each; the server's shutdown ends those
// waiting (MQTT 5: DISCONNECT 0x8B), and none is left.
func TestIdleTLSConnectionsWakeTogether(t *testing.T) {
	const n = 40
	e := newEnv(t, nil)
	waitServed(t, 0)
	conns := make([]*mqtttest.Conn, n)
	for i := range conns {
		_, conns[i] = e.idleTLS(t, 60) // none may time out while the others connect
	}
	e.waitReaders(t, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() {
			<-start
			c.Send(&packet.Ping{})
			if p, err := c.ReadRaw(); err != nil || len(p) != 2 || packet.Type(p[0]>>4) != packet.PINGRESP {
				t.Errorf("after PINGREQ: % x, %v", p, err)
			}
		})
	}
	close(start)
	wg.Wait()
	e.waitReaders(t, n)
	want := 0
	if runtime.GOOS != "linux" {
		want = n // each waits on a goroutine of its own
	}
	if got := mqtttest.Serving(); got != want {
		t.Fatalf("%d goroutines serve %d parked connections, want %d", got, n, want)
	}
	e.b.Close() // waits for every connection to end
	for _, c := range conns {
		c.Disconnected(packet.ServerShuttingDown)
	}
	waitServed(t, 0)
	e.waitReaders(t, 0)
}
