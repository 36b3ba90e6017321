package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
	"github.com/thingid/thingid/internal/mqtt/topics"
)

// testAuth admits every client with a password "ok" (or none when open),
// as the identity named by its user name, and grants topics by Grants.
type testAuth struct {
	open   bool
	grants topics.Grants
	mu     sync.Mutex
	// onConnect, when set (setOnConnect), sees each client Connect admits.
	onConnect func(*Client)
}

// challengeMethod is the test's enhanced authentication: the server sends
// "nonce", the client must answer "nonce:ok".
const challengeMethod = "CHALLENGE"

// storeDown is the user name whose CONNECT testAuth cannot decide: it
// fails as an unreachable store would, with an error naming an address.
const storeDown = "store-down"

func (a *testAuth) Connect(_ context.Context, c *Client, pk *packet.Connect, old any) error {
	if pk.Username == storeDown {
		return errors.New("identity: dial tcp 10.1.2.3:5432: connection refused")
	}
	if pk.Props.AuthMethod == challengeMethod {
		c.SetIdentity(pk.Username)
		return &Challenge{Data: []byte("nonce")}
	}
	if !a.open && string(pk.Password) != "ok" {
		return &packet.Error{Code: packet.BadUserNameOrPassword, Reason: "password is not ok"}
	}
	if n, ok := old.(narrowed); ok {
		old = n.name
	}
	if old != nil && old != pk.Username {
		return &packet.Error{Code: packet.ClientIdentifierNotValid, Reason: "another identity's session"}
	}
	c.SetIdentity(pk.Username)
	a.mu.Lock()
	f := a.onConnect
	a.mu.Unlock()
	if f != nil {
		f(c)
	}
	return nil
}

func (a *testAuth) Continue(_ context.Context, c *Client, pk *packet.Auth) error {
	if string(pk.Props.AuthData) != "nonce:ok" {
		return &packet.Error{Code: packet.NotAuthorized, Reason: "wrong answer"}
	}
	return nil
}

func (a *testAuth) Reauthenticate(_ context.Context, c *Client, pk *packet.Auth) error {
	if pk.Props.AuthMethod == challengeMethod {
		return &Challenge{Data: []byte("nonce")}
	}
	switch string(pk.Props.AuthData) {
	case "ok":
	case "narrow":
		c.SetIdentity(narrowed{c.Identity().(string)})
	default:
		return &packet.Error{Code: packet.NotAuthorized, Reason: "bad token"}
	}
	return nil
}

// narrowed is the identity of a client that re-authenticated with
// "narrow": the same user, who may publish nothing.
type narrowed struct{ name string }

func (a *testAuth) setOnConnect(f func(*Client)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.onConnect = f
}

func (a *testAuth) setGrants(g topics.Grants) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.grants = g
}

func (a *testAuth) Publish(c *Client, topic string) bool {
	if _, ok := c.Identity().(narrowed); ok {
		return false
	}
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
					c := TLSServer(nc, tc)
					if c.Handshake() != nil {
						nc.Close()
						return
					}
					nc = c
				} else {
					nc = Plain(nc) // parked when idle, as the broker's
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

func (s *server) dial(t testing.TB, v packet.Version) *mqtttest.Conn {
	t.Helper()
	return mqtttest.Dial(t, s.addr, v)
}

// connect connects with password ok and expects the CONNACK to accept it.
func (s *server) connect(t testing.TB, v packet.Version, id string, mod func(*packet.Connect)) (*mqtttest.Conn, *packet.Connack) {
	t.Helper()
	c := s.dial(t, v)
	pk := &packet.Connect{CleanStart: true, ClientID: id, KeepAlive: 30,
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")}
	if mod != nil {
		mod(pk)
	}
	return c, c.Connect(pk)
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

// trickle writes one byte to c every interval, n times at most, until the
// connection fails or stop is called; stop waits for it.
func trickle(c *mqtttest.Conn, every time.Duration, n int) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(every)
		defer tick.Stop()
		for range n {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if _, err := c.NC.Write([]byte{'x'}); err != nil {
				return
			}
		}
	})
	return func() { close(done); wg.Wait() }
}

// willOn sets a CONNECT's will: payload "x" on topic.
func willOn(topic string) func(*packet.Connect) {
	return func(pk *packet.Connect) { pk.Will = &packet.Will{Topic: topic, Payload: []byte("x")} }
}
