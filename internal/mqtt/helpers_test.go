package mqtt

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// testAuth admits every client with a password "ok" (or none when open),
// as the identity named by its user name, and grants topics by Grants.
type testAuth struct {
	open   bool
	grants topics.Grants
	mu     sync.Mutex
}

func (a *testAuth) Connect(_ context.Context, c *Client, pk *packet.Connect, old any) error {
	if !a.open && string(pk.Password) != "ok" {
		return &packet.Error{Code: packet.BadUserNameOrPassword, Reason: "password is not ok"}
	}
	if old != nil && old != pk.Username {
		return &packet.Error{Code: packet.ClientIdentifierNotValid, Reason: "another identity's session"}
	}
	c.SetIdentity(pk.Username)
	return nil
}

func (a *testAuth) Reauthenticate(_ context.Context, c *Client, pk *packet.Auth) error {
	if string(pk.Props.AuthData) != "ok" {
		return &packet.Error{Code: packet.NotAuthorized, Reason: "bad token"}
	}
	return nil
}

func (a *testAuth) setGrants(g topics.Grants) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.grants = g
}

func (a *testAuth) Publish(c *Client, topic string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grants.Name(topic)
}

func (a *testAuth) Subscribe(c *Client, filter string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grants.Filter(filter)
}

func (a *testAuth) Deliver(c *Client, topic string) bool {
	// The broker reads the session's identity and connection here, with the
	// session locked: these must never wait for its lock.
	_, _, _ = c.Identity(), c.Conn(), c.Subscriptions()
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.grants.Name(topic)
}

// server is a Server on a TCP listener on 127.0.0.1.
type server struct {
	*Server
	auth *testAuth
	addr string
}

func newServer(t testing.TB, mod func(*Config)) *server {
	t.Helper()
	auth := &testAuth{grants: topics.Grants{Allow: []string{"#"}, Deny: []string{"secret/#"}}}
	cfg := Config{Auth: auth, Log: slog.New(slog.DiscardHandler)}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := &server{Server: s, auth: auth}
	srv.addr = srv.listen(t, nil)
	return srv
}

// listen serves s on a new listener on 127.0.0.1, with TLS when tc is set,
// and returns its address.
func (s *server) listen(t testing.TB, tc *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			// Until CONNECT; short, so that TestKeepAlive proves the server
			// lifts it once connected.
			nc.SetDeadline(time.Now().Add(time.Second))
			wg.Add(1)
			go func() {
				defer wg.Done()
				if tc != nil {
					c := tls.Server(nc, tc)
					if c.Handshake() != nil {
						nc.Close()
						return
					}
					nc = c
				}
				s.ServeConn(nc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		s.Close()
		wg.Wait()
	})
	return ln.Addr().String()
}

// rawClient speaks MQTT packet by packet, to test what the server sends
// byte for byte.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	r  *bufio.Reader
	v  packet.Version
}

func (s *server) dial(t testing.TB, v packet.Version) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, r: bufio.NewReader(nc), v: v}
}

// connect sends CONNECT with password ok and expects a CONNACK accepting it.
func (s *server) connect(t testing.TB, v packet.Version, id string, mod func(*packet.Connect)) (*rawClient, *packet.Connack) {
	t.Helper()
	c := s.dial(t, v)
	pk := &packet.Connect{Version: v, CleanStart: true, ClientID: id, KeepAlive: 30,
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")}
	if mod != nil {
		mod(pk)
	}
	c.send(pk)
	ack, ok := c.read().(*packet.Connack)
	if !ok || ack.Code != packet.Success {
		t.Fatalf("CONNACK %+v", ack)
	}
	return c, ack
}

func (c *rawClient) send(p packet.Packet) {
	c.t.Helper()
	b, err := packet.Append(nil, c.v, p)
	if err != nil {
		c.t.Fatal(err)
	}
	c.write(b)
}

func (c *rawClient) write(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

// readRaw reads one packet's bytes, or fails the test after 5 s.
func (c *rawClient) readRaw() ([]byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, err := packet.ReadHeader(c.r)
	if err != nil {
		return nil, err
	}
	body := make([]byte, h.Remaining)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, err
	}
	out := append([]byte{byte(h.Type)<<4 | h.Flags}, varint(h.Remaining)...)
	return append(out, body...), nil
}

func varint(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7F)
		n >>= 7
		if n == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// read reads and decodes one packet.
func (c *rawClient) read() packet.Packet {
	c.t.Helper()
	b, err := c.readRaw()
	if err != nil {
		c.t.Fatalf("reading a packet: %v", err)
	}
	h, n, _ := packet.ParseHeader(b)
	p, err := packet.Decode(c.v, h, b[n:], 0)
	if err != nil {
		c.t.Fatalf("decoding % x: %v", b, err)
	}
	return p
}

// closed expects the server to close the connection with nothing more
// sent (EOF), as it must for MQTT 3.1.1.
func (c *rawClient) closed() {
	c.t.Helper()
	b, err := c.readRaw()
	if !errors.Is(err, io.EOF) && !isReset(err) {
		c.t.Fatalf("got % x, %v; want the connection closed", b, err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

// disconnected expects DISCONNECT with code, then the connection closed.
func (c *rawClient) disconnected(code packet.ReasonCode) *packet.Disconnect {
	c.t.Helper()
	d, ok := c.read().(*packet.Disconnect)
	if !ok || d.Code != code {
		c.t.Fatalf("got %+v, want DISCONNECT %#x", d, code)
	}
	c.closed()
	return d
}

// eventually waits up to 5 s for cond, for what the server does after the
// client saw its effect.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not so: %s", what)
		}
	}
}
