package broker

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
)

const (
	testIssuer   = "https://id.example.com"
	testAudience = "urn:thingid:mqtt"
)

var quiet = slog.New(slog.DiscardHandler)

// testRules are the configuration's defaults plus a rule for anonymous
// clients, so that each kind of identity has something to test.
var testRules = []Rule{
	{Who: WhoThing, Publish: []string{"things/${thing.id}/#"}, Subscribe: []string{"things/${thing.id}/commands/#"}},
	{Who: WhoUser, Subscribe: []string{"things/${owned.thing.id}/#"}},
	{Who: WhoAdmin, Subscribe: []string{"$SYS/#"}},
	{Who: WhoAnonymous, Publish: []string{"lab/public/#"}, Subscribe: []string{"lab/public/#"}},
}

// env is a broker on a real SQLite store with real keys, tokens and events.
type env struct {
	t      testing.TB
	st     store.Store
	bus    *events.Bus
	ids    *identity.Service
	issuer *tokens.Issuer
	keys   *tokens.Keys
	opts   Options
	b      *Broker
	pool   *x509.CertPool // trusts the server certificate
	// client certificates signed by clientCA (the test plays certauth)
	clientCA    *x509.Certificate
	clientCAKey *ecdsa.PrivateKey
}

func newEnv(t testing.TB, mod func(*Options)) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bus := events.New()
	var mk secrets.Key
	rand.Read(mk[:])
	keys, err := tokens.NewKeys(ctx, st, tokens.KeysConfig{MasterKey: mk, Bus: bus, MaxTokenLifetime: time.Hour, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(keys.Close)
	issuer, err := tokens.NewIssuer(keys, testIssuer)
	if err != nil {
		t.Fatal(err)
	}
	v, err := tokens.NewVerifier(keys, tokens.VerifierConfig{Issuer: testIssuer, Bus: bus, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Close)
	e := &env{t: t, st: st, bus: bus, ids: identity.New(st, bus, password.Policy{MinLength: 8}), issuer: issuer, keys: keys}
	serverCert, pool := selfSigned(t)
	e.pool = pool
	e.clientCA, e.clientCAKey = newCA(t)
	srvTLS := &tls.Config{Certificates: []tls.Certificate{serverCert}, ClientAuth: tls.RequestClientCert, MinVersion: tls.VersionTLS12}
	e.opts = Options{
		Listeners: []Listener{
			{Name: "tls", Kind: ListenerTCP, Address: "127.0.0.1:0", TLS: srvTLS},
			{Name: "tcp", Kind: ListenerTCP, Address: "127.0.0.1:0"},
			{Name: "websocket", Kind: ListenerWebSocket, Address: "127.0.0.1:0", TLS: srvTLS, AllowedOrigins: []string{"https://app.example.com"}},
			{Name: "lab", Kind: ListenerTCP, Address: "127.0.0.1:0", Anonymous: true},
		},
		Audience:  testAudience,
		Verifier:  v,
		Directory: st,
		Rules:     testRules,
		Dir:       t.TempDir(),
		Bus:       bus,
		Audit:     st,
		Log:       testLog(),
		VerifyCertificate: func(ctx context.Context, chain []*x509.Certificate) (string, error) {
			if err := chain[0].CheckSignatureFrom(e.clientCA); err != nil {
				return "", errors.New("unknown CA")
			}
			return chain[0].Subject.CommonName, nil
		},
	}
	if mod != nil {
		mod(&e.opts)
	}
	e.start()
	return e
}

// start starts (or restarts) the broker on the same listeners' kinds and data directory.
func (e *env) start() {
	e.t.Helper()
	b, err := Start(context.Background(), e.opts)
	if err != nil {
		e.t.Fatal(err)
	}
	e.b = b
	e.t.Cleanup(func() { b.Close() })
}

func (e *env) thing(model string) *store.Thing {
	e.t.Helper()
	th, err := e.ids.CreateThing(context.Background(), "test", &store.Thing{Type: store.ThingDevice, DisplayName: "thermostat", Model: model, Status: store.StatusActive})
	if err != nil {
		e.t.Fatal(err)
	}
	return th
}

func (e *env) user(name string) *store.User {
	e.t.Helper()
	u, err := e.ids.CreateUser(context.Background(), "test", &store.User{UserName: name, Status: store.StatusActive}, "")
	if err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *env) own(u *store.User, th *store.Thing) {
	e.t.Helper()
	err := e.ids.AddRelationship(context.Background(), "test", store.Relationship{Kind: store.RelOwner,
		From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}})
	if err != nil {
		e.t.Fatal(err)
	}
}

// grant stores a grant as oauth would and returns its id.
func (e *env) grant(client, thing, user string) string {
	e.t.Helper()
	g := &store.Grant{ClientID: client, ThingID: thing, UserID: user}
	if err := e.st.CreateGrant(context.Background(), g); err != nil {
		e.t.Fatal(err)
	}
	return g.ID
}

// token signs c, filling in what every test token has.
func (e *env) token(c tokens.Claims) string {
	e.t.Helper()
	if c.Audience == nil {
		c.Audience = []string{testAudience}
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = time.Now().Add(10 * time.Minute)
	}
	if c.GrantID == "" {
		user := ""
		if c.Subject != c.ClientID {
			user = c.Subject
		}
		c.GrantID = e.grant(c.ClientID, c.ThingID, user)
	}
	tok, err := e.issuer.AccessToken(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

// thingToken is what client_credentials gives the client of a thing.
func (e *env) thingToken(th *store.Thing, scopes ...string) string {
	return e.token(tokens.Claims{Subject: "client-" + th.ID, ClientID: "client-" + th.ID, ThingID: th.ID, Scope: scopes})
}

// dial opens a connection to the named listener.
func (e *env) dial(name string) net.Conn {
	e.t.Helper()
	addr := e.b.Addr(name)
	var conn net.Conn
	var err error
	if name == "tls" {
		conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: e.pool, ServerName: "localhost"})
	} else {
		conn, err = net.Dial("tcp", addr)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return conn
}

// client5 is an MQTT 5 client (paho.golang) and what it received.
type client5 struct {
	*paho.Client
	mu           sync.Mutex
	got          []*paho.Publish
	msgs         chan *paho.Publish
	disconnected chan *paho.Disconnect
}

// connect5 connects over conn; the error and CONNACK say how it went.
func (e *env) connect5(conn net.Conn, cp *paho.Connect) (*client5, *paho.Connack, error) {
	c := &client5{msgs: make(chan *paho.Publish, 1000), disconnected: make(chan *paho.Disconnect, 1)}
	c.Client = paho.NewClient(paho.ClientConfig{
		// paho writes from several goroutines (the pinger's PINGREQ, acks)
		// and writes a packet in several Writes; on a tls.Conn, which has
		// no writev, a PINGREQ can land inside a PUBLISH and corrupt it.
		Conn: packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			c.mu.Lock()
			c.got = append(c.got, pr.Packet)
			c.mu.Unlock()
			c.msgs <- pr.Packet
			return true, nil
		}},
		OnServerDisconnect: func(d *paho.Disconnect) { c.disconnected <- d },
		OnClientError:      func(error) {},
		PacketTimeout:      5 * time.Second,
	})
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, cp)
	if err == nil {
		e.t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	}
	return c, ca, err
}

// mustConnect5 connects clientID with token over TLS.
func (e *env) mustConnect5(clientID, token string) *client5 {
	e.t.Helper()
	c, ca, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: clientID, CleanStart: true, Password: []byte(token), PasswordFlag: true})
	if err != nil {
		reason := ""
		if ca != nil {
			reason = ca.Properties.ReasonString
		}
		e.t.Fatalf("connect %s: %v (%s)", clientID, err, reason)
	}
	return c
}

// connackCode connects and returns the CONNACK reason code (0 on success).
func (e *env) connackCode(listener string, cp *paho.Connect) (byte, string) {
	e.t.Helper()
	c, ca, err := e.connect5(e.dial(listener), cp)
	if err == nil {
		c.Disconnect(&paho.Disconnect{})
		return 0, ""
	}
	if ca == nil {
		e.t.Fatalf("no CONNACK: %v", err)
	}
	reason := ""
	if ca.Properties != nil {
		reason = ca.Properties.ReasonString
	}
	return ca.ReasonCode, reason
}

// connected fails the test if the broker has ended c's connection; what
// says which connection, and why it should not have been.
func (c *client5) connected(t testing.TB, what string) {
	t.Helper()
	select {
	case d := <-c.disconnected:
		t.Fatalf("%s was ended: %#x", what, d.ReasonCode)
	default:
	}
}

func (c *client5) sub(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: qos}}})
	if sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// pub publishes; for QoS 1 it returns the PUBACK reason code.
func (c *client5) pub(t testing.TB, topic string, qos byte, payload string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := c.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if qos == 0 {
		if err != nil {
			t.Fatalf("publish %s: %v", topic, err)
		}
		return 0
	}
	if r == nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
	return r.ReasonCode
}

// expect waits until a message on topic has been received (in any order
// with the others).
func (c *client5) expect(t testing.TB, topic string) *paho.Publish {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		c.mu.Lock()
		for _, m := range c.got {
			if m.Topic == topic {
				c.mu.Unlock()
				return m
			}
		}
		c.mu.Unlock()
		select {
		case <-c.msgs:
		case <-timeout:
			t.Fatalf("no message on %s", topic)
			return nil
		}
	}
}

// none checks that no message on topic forbidden was received so far
// (called after a sentinel published later has arrived, so no timing is
// asserted).
func (c *client5) none(t testing.TB, forbidden string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.got {
		if m.Topic == forbidden {
			t.Fatalf("received %s, which this identity may not read", forbidden)
		}
	}
}

func selfSigned(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}, pool
}

func newCA(t testing.TB) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "device CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

// deviceCert issues a client certificate for thingID from the test CA (or
// self-signed when selfSign).
func (e *env) deviceCert(thingID string, selfSign bool) tls.Certificate {
	e.t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: thingID},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	parent, signer := e.clientCA, any(e.clientCAKey)
	if selfSign {
		parent, signer = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		e.t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
}

// dialCert opens a TLS connection presenting cert.
func (e *env) dialCert(cert tls.Certificate) net.Conn {
	e.t.Helper()
	conn, err := tls.Dial("tcp", e.b.Addr("tls"), &tls.Config{RootCAs: e.pool, ServerName: "localhost", Certificates: []tls.Certificate{cert}})
	if err != nil {
		e.t.Fatal(err)
	}
	return conn
}

func testLog() *slog.Logger {
	if os.Getenv("THINGID_TEST_MQTT_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return quiet
}
