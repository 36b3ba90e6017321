package directory

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/netlimit"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/postgres"
	"github.com/thingid/thingid/internal/store/postgres/pgtest"
	"github.com/thingid/thingid/internal/store/sqlite"
)

// testEnv is a directory serving on both kinds of listener on loopback,
// through a real netlimit.Limiter, on a real SQLite store through the real
// identity service, with sign-in's real password checks (authn.Sessions):
//
//	alice  a user with a password, owner of the speaker, in "family"
//	bob    a user with a password, owner of the thermostat
//	root   an administrator
//	olga   a user whose password is a one-time password
type testEnv struct {
	srv      *Server
	ldaps    string // host:port
	plain    string // host:port (StartTLS)
	caFile   string // PEM of the server certificate, for ldapsearch
	clientTL *tls.Config

	st                     store.Store
	ids                    *identity.Service
	sessions               *authn.Sessions
	alice, bob, root, olga *store.User
	speaker, thermostat    *store.Thing
	family                 *store.Group
}

const (
	alicePassword = "purple monkey dishwasher"
	bobPassword   = "correct stapler battery horse"
	rootPassword  = "the root of all passwords"
	olgaPassword  = "one time only please thanks"
	base          = "dc=thingid,dc=test"
)

func aliceDN() string { return "uid=alice,ou=people," + base }

type envOption func(*Options, *netlimit.Policy, *authn.SessionOptions)

func withLimits(l Limits) envOption {
	return func(o *Options, _ *netlimit.Policy, _ *authn.SessionOptions) { o.Limits = l }
}

func withPerAddress(n int) envOption {
	return func(_ *Options, p *netlimit.Policy, _ *authn.SessionOptions) { p.PerAddress = n }
}

// withLog sends the directory's log to l.
func withLog(l *slog.Logger) envOption {
	return func(o *Options, _ *netlimit.Policy, _ *authn.SessionOptions) { o.Log = l }
}

// withAddressBurst lets one address make n sign-in attempts, and about no
// more for the rest of the test.
func withAddressBurst(n int) envOption {
	return func(_ *Options, _ *netlimit.Policy, so *authn.SessionOptions) {
		so.IPBurst, so.IPAttemptsPerMinute = n, 0.001
	}
}

func defaultLimits() Limits {
	return Limits{MaxMessageBytes: 64 << 10, IdleTimeout: time.Minute, ReadTimeout: 10 * time.Second, SizeLimit: 100, TimeLimit: time.Minute}
}

// opener opens a fresh, empty store for a test.
type opener func(t testing.TB) store.Store

func openSQLite(t testing.TB) store.Store {
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openPostgres(t testing.TB) store.Store {
	st, err := postgres.Open(context.Background(), pgtest.DSN(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// stores are the backends the key tests run on: SQLite, and PostgreSQL
// (skipped without THINGID_TEST_POSTGRES_DSN, failing in CI).
var stores = []struct {
	name string
	open opener
}{{"sqlite", openSQLite}, {"postgres", openPostgres}}

// onEachStore runs test on a directory over each of stores.
func onEachStore(t *testing.T, test func(t *testing.T, e *testEnv)) {
	for _, b := range stores {
		t.Run(b.name, func(t *testing.T) { test(t, newEnvOn(t, b.open)) })
	}
}

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	return newEnvOn(t, openSQLite, opts...)
}

// newEnvOn is newEnv on the store open opens.
func newEnvOn(t *testing.T, open opener, opts ...envOption) *testEnv {
	t.Helper()
	cert, pool, caPEM := selfSigned(t)
	e := &testEnv{clientTL: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}
	e.seed(t, open(t))
	o := Options{BaseDN: base, TLS: &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequestClientCert},
		Limits: defaultLimits(), Log: slog.New(slog.DiscardHandler),
		Store: e.st, Writer: e.ids, IsAdministrator: authn.NewAdmins(e.st, make([]byte, 32)).IsAdministrator,
		// Certificate binds are tested with the platform's certauth in
		// internal/server (TestDirectoryExternalBind).
		VerifyCertificate: func(context.Context, []*x509.Certificate) (string, error) {
			return "", errors.New("no certificates in this package's tests")
		},
	}
	pol := netlimit.Policy{Name: "ldap", PerAddress: 64}
	so := authn.SessionOptions{Key: make([]byte, 32), Audit: e.st, Logger: slog.New(slog.DiscardHandler)}
	for _, f := range opts {
		f(&o, &pol, &so)
	}
	e.sessions = authn.NewSessions(e.ids, e.st.(authn.SessionStore), nil, so)
	o.Passwords = e.sessions
	if o.ServiceAccounts != nil {
		o.ClientSecrets = serviceSecrets{e.sessions}
	}
	srv, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	lim, err := netlimit.New(netlimit.Options{Max: 256, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	for _, ldaps := range []bool{true, false} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := pol
		p.Name = map[bool]string{true: "ldaps", false: "ldap"}[ldaps]
		go srv.Serve(lim.Listen(ln, p), ldaps)
		t.Cleanup(func() { ln.Close() })
		if ldaps {
			e.ldaps = ln.Addr().String()
		} else {
			e.plain = ln.Addr().String()
		}
	}
	t.Cleanup(func() { srv.Close() })
	e.caFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(e.caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	return e
}

// seed creates the identities of the test on st, a fresh store.
func (e *testEnv) seed(t testing.TB, st store.Store) {
	t.Helper()
	var err error
	ctx := context.Background()
	e.st = st
	e.ids = identity.New(st, events.New(), password.Policy{})
	user := func(name, pw string, u store.User) *store.User {
		u.UserName = name
		created, err := e.ids.CreateUser(ctx, "test", &u, pw)
		if err != nil {
			t.Fatalf("creating %s: %v", name, err)
		}
		return created
	}
	e.alice = user("alice", alicePassword, store.User{DisplayName: "Alice Liddell", Name: store.Name{GivenName: "Alice", FamilyName: "Liddell"},
		Emails: []store.MultiValue{{Value: "alice@example.org", Primary: true}}, PhoneNumbers: []store.MultiValue{{Value: "+44 1865 000000"}}, Locale: "en-GB"})
	e.bob = user("bob", bobPassword, store.User{Emails: []store.MultiValue{{Value: "bob@example.org"}}})
	e.root = user("root", rootPassword, store.User{})
	e.olga = user("olga", "", store.User{})
	if e.olga, err = e.ids.ResetPassword(ctx, "test", e.olga.ID, olgaPassword); err != nil || !e.olga.MustChangePassword {
		t.Fatalf("one-time password for olga: %v", err)
	}
	if _, err := e.ids.CreateGroup(ctx, "test", &store.Group{DisplayName: authn.AdminGroup, Members: []store.Ref{{Kind: store.KindUser, ID: e.root.ID}}}); err != nil {
		t.Fatal(err)
	}
	thing := func(owner *store.User, th store.Thing) *store.Thing {
		th.Type = store.ThingDevice
		created, err := e.ids.CreateThing(ctx, "test", &th)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.ids.AddRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: owner.ID}, To: store.Ref{Kind: store.KindThing, ID: created.ID}}); err != nil {
			t.Fatal(err)
		}
		return created
	}
	e.speaker = thing(e.alice, store.Thing{DisplayName: "Kitchen speaker", SerialNumber: "SPK-0001", Manufacturer: "Acme", Model: "S1",
		FirmwareVersion: "1.2.3", Location: "kitchen", MACAddresses: []string{"aa:bb:cc:dd:ee:01"},
		// A description that is not text is not a description LDAP shows.
		Attributes: map[string]any{"description": 42.0}})
	e.thermostat = thing(e.bob, store.Thing{DisplayName: "Thermostat", SerialNumber: "THM-0001",
		Attributes: map[string]any{"description": "In the Hall, by the door_1 at 50%"}})
	if e.family, err = e.ids.CreateGroup(ctx, "test", &store.Group{DisplayName: "family",
		Members: []store.Ref{{Kind: store.KindUser, ID: e.alice.ID}, {Kind: store.KindThing, ID: e.speaker.ID}}}); err != nil {
		t.Fatal(err)
	}
}

// selfSigned makes a certificate for 127.0.0.1 that is its own CA.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// dialStartTLS connects to the plain listener and runs StartTLS.
func (e *testEnv) dialStartTLS(t *testing.T) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldap://" + e.plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.StartTLS(e.clientTL); err != nil {
		t.Fatalf("StartTLS: %v", err)
	}
	return c
}

// dialPlain connects to the plain listener without TLS.
func (e *testEnv) dialPlain(t *testing.T) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldap://" + e.plain)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// dialLDAPS connects to the LDAPS listener.
func (e *testEnv) dialLDAPS(t *testing.T) *ldap.Conn {
	t.Helper()
	c, err := ldap.DialURL("ldaps://"+e.ldaps, ldap.DialWithTLSConfig(e.clientTL))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// tool returns the path of an OpenLDAP client, skipping the test when it is
// missing (failing in CI).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s is required in CI: apt-get install ldap-utils", name)
		}
		t.Skipf("%s not installed (apt-get install ldap-utils)", name)
	}
	return p
}

// run runs an OpenLDAP client trusting the test certificate; it returns the
// output and the exit code.
func (e *testEnv) run(t *testing.T, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Env = append(os.Environ(), "LDAPTLS_CACERT="+e.caFile, "LDAPTLS_REQCERT=demand", "LDAPCONF=/dev/null", "LDAPRC=/dev/null")
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return string(out), code
}
