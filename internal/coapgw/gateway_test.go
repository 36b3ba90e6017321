package coapgw

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
)

var quiet = slog.New(slog.DiscardHandler)

// env is a gateway on a real SQLite store, the real identity service, event
// bus, platform CA and certauth Checker.
type env struct {
	t      testing.TB
	dir    string
	st     store.Store
	master secrets.Key
	ids    *identity.Service
	dca    *pki.DeviceCA
	certs  *certauth.Checker
	gw     *Gateway
}

func newEnv(t testing.TB, tune func(*Options)) *env {
	t.Helper()
	dir := t.TempDir()
	key, err := secrets.LoadOrCreate(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	_, dca, err := pki.Open(filepath.Join(dir, "pki"), key, pki.Import{})
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(filepath.Join(dir, "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	bus := events.New()
	ids := identity.New(st, bus, password.Policy{})
	certs, err := certauth.New(context.Background(), certauth.Options{Store: st, Identity: ids, DeviceCA: dca, Bus: bus, Log: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(certs.Close)
	opts := Options{
		DTLSAddress: "127.0.0.1:0",
		UDPAddress:  "127.0.0.1:0",
		Certificate: selfSigned(t, "coap.test"),
		Verifier:    certs,
		PSKs:        psk.NewKeys(st, key),
		Bus:         bus,
		Log:         quiet,
		Registerer:  prometheus.NewRegistry(),
	}
	if tune != nil {
		tune(&opts)
	}
	gw, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(gw.Close)
	return &env{t: t, dir: dir, st: st, master: key, ids: ids, dca: dca, certs: certs, gw: gw}
}

// thing creates an active thing with a platform certificate, recorded on
// the thing as the factory does, and returns it as a DTLS client presents it.
func (e *env) thing(serial string) (*store.Thing, tls.Certificate) {
	e.t.Helper()
	ctx := context.Background()
	th, err := e.ids.CreateThing(ctx, "test", &store.Thing{Manufacturer: "thingid", Model: "THERMO", SerialNumber: serial})
	if err != nil {
		e.t.Fatal(err)
	}
	dc, err := e.dca.IssueDevice(th.ID, serial, 0)
	if err != nil {
		e.t.Fatal(err)
	}
	if th, err = e.ids.AddCertificate(ctx, "test", th.ID, store.CertRefOf(dc.Leaf)); err != nil {
		e.t.Fatal(err)
	}
	return th, tls.Certificate{Certificate: dc.Chain, PrivateKey: dc.Key, Leaf: dc.Leaf}
}

// dial opens a DTLS session with go-coap's client, presenting cert.
func (e *env) dial(cert tls.Certificate) (*udpClient.Conn, error) {
	return dtls.Dial(e.gw.DTLSAddr().String(), &piondtls.Config{
		Certificates:          []tls.Certificate{cert},
		InsecureSkipVerify:    true, // the server's certificate is not what this test checks
		ExtendedMasterSecret:  piondtls.RequireExtendedMasterSecret,
		ConnectionIDGenerator: piondtls.OnlySendCIDGenerator(),
	})
}

// selfSigned is a certificate with its key, for the server or a forger.
func selfSigned(t testing.TB, cn string) tls.Certificate {
	t.Helper()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, SerialNumber: "SN-1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), DNSNames: []string{cn},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k}
}

func TestCallHomeWithFactoryCertificate(t *testing.T) {
	e := newEnv(t, nil)
	th, cert := e.thing("TH-1")
	cc, err := e.dial(cert)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cc.Get(ctx, PathSelf)
	if err != nil {
		t.Fatal(err)
	}
	if res.Code() != codes.Content {
		t.Fatalf("GET %s: %v, want 2.05", PathSelf, res.Code())
	}
	b, _ := io.ReadAll(res.Body())
	var v selfView
	if err := json.Unmarshal(b, &v); err != nil || v.ID != th.ID || v.SerialNumber != "TH-1" || v.Status != "active" {
		t.Fatalf("call home %s: %+v %v, want thing %s", b, v, err, th.ID)
	}
}

func TestUnknownCARefusedAtHandshake(t *testing.T) {
	e := newEnv(t, nil)
	if e.servedAnew(selfSigned(t, "forged")) {
		t.Fatal("a certificate of an unknown CA was answered")
	}
}

func TestDisabledThingRefusedAndSessionEnded(t *testing.T) {
	e := newEnv(t, nil)
	th, cert := e.thing("TH-2")
	cc, err := e.dial(cert)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := cc.Get(ctx, PathSelf); err != nil || res.Code() != codes.Content {
		t.Fatalf("before disable: %v", err)
	}
	if _, err := e.ids.UpdateThing(ctx, "test", th.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	// The session is gone on the server: the next request gets no answer.
	short, cancel2 := context.WithTimeout(ctx, 2*time.Second)
	defer cancel2()
	if res, err := cc.Get(short, PathSelf); err == nil {
		t.Fatalf("disabled thing's session still answered: %v", res.Code())
	}
	// A new handshake with the same certificate is refused.
	if e.servedAnew(cert) {
		t.Fatal("disabled thing's new session answered")
	}
}

func TestLoopbackUDPProvesNoIdentity(t *testing.T) {
	e := newEnv(t, nil)
	cc, err := udp.Dial(e.gw.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cc.Get(ctx, PathSelf)
	if err != nil || res.Code() != codes.Unauthorized {
		t.Fatalf("GET %s over plain UDP: %v %v, want 4.01", PathSelf, res, err)
	}
	if n, _ := res.BodySize(); n != 0 {
		t.Errorf("an unauthenticated peer got %d bytes of body", n)
	}
}

// own makes a new user the owner of thing, and returns that relationship.
func (e *env) own(t *testing.T, thing string) store.Relationship {
	t.Helper()
	ctx := context.Background()
	u, err := e.ids.CreateUser(ctx, "test", &store.User{UserName: "owner"}, "")
	if err != nil {
		t.Fatal(err)
	}
	owner := store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: thing}}
	if err := e.ids.AddRelationship(ctx, "test", owner); err != nil {
		t.Fatal(err)
	}
	return owner
}

// open opens a DTLS session with cert that calls home, closed when t ends;
// when names the moment in the failure.
func (e *env) open(t *testing.T, cert tls.Certificate, when string) *udpClient.Conn {
	t.Helper()
	cc, err := e.dial(cert)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !callsHome(ctx, cc) {
		t.Fatal(when + ": no answer")
	}
	return cc
}

// servedAnew reports whether a new DTLS session with cert calls home within
// two seconds; a handshake refused at Dial or at first use (pion may report
// it there) is not served.
func (e *env) servedAnew(cert tls.Certificate) bool { return served(e.dial(cert)) }

// served reports whether a new DTLS session (a dial's result) calls home
// within two seconds.
func served(cc *udpClient.Conn, err error) bool {
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	// pion's handshake, when the server drops it, waits on a lock the
	// request's context cannot reach: closing the connection ends it.
	stop := context.AfterFunc(ctx, func() { cc.Close() })
	defer func() {
		if stop() {
			cc.Close()
		}
	}()
	return callsHome(ctx, cc)
}

// callsHome is whether cc's GET /self is answered with 2.05 before ctx ends.
func callsHome(ctx context.Context, cc *udpClient.Conn) bool {
	res, err := cc.Get(ctx, PathSelf)
	return err == nil && res.Code() == codes.Content
}

func TestRevokedCertificateEndsSession(t *testing.T) {
	e := newEnv(t, nil)
	th, cert := e.thing("TH-3")
	cc := e.open(t, cert, "before revocation")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := e.certs.Revoke(ctx, "test", certauth.Revocation{ThingID: th.ID, Certificate: cert.Leaf, Reason: certauth.ReasonKeyCompromise}); err != nil {
		t.Fatal(err)
	}
	// The server closed the session: the client hears its close_notify.
	select {
	case <-cc.Done():
	case <-ctx.Done():
		t.Fatal("the revoked certificate's session was not closed")
	}
	if e.servedAnew(cert) {
		t.Fatal("a revoked certificate made a new session")
	}
}

func TestMaxSessionsRefusesHandshake(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.MaxSessions = 1 })
	_, a := e.thing("TH-4")
	_, b := e.thing("TH-5")
	e.open(t, a, "first session")
	if e.servedAnew(b) {
		t.Fatal("a session past MaxSessions was served")
	}
}

func TestMalformedDatagramsLeaveGatewayServing(t *testing.T) {
	e := newEnv(t, nil)
	for _, addr := range []string{e.gw.UDPAddr().String(), e.gw.DTLSAddr().String()} {
		c, err := net.Dial("udp", addr)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range [][]byte{
			{},                                   // empty
			{0x40},                               // header cut short
			{0x4f, 0x01, 0, 1},                   // token length 15 (reserved)
			{0x40, 0x01, 0, 1, 0xff},             // payload marker without payload
			{0x40, 0x01, 0, 1, 0xdd, 0xff, 0xff}, // option length past the datagram
			{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff}, // DTLS record longer than sent
			bytes.Repeat([]byte{0xff}, 2000),
		} {
			if _, err := c.Write(d); err != nil {
				t.Fatal(err)
			}
		}
		c.Close()
	}
	_, cert := e.thing("TH-6")
	e.open(t, cert, "after malformed datagrams")
}

func TestUnknownResourceAnswerNoLargerThanRequest(t *testing.T) {
	e := newEnv(t, nil)
	cc, err := udp.Dial(e.gw.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := cc.Get(ctx, "/no/such/resource")
	if err != nil || res.Code() != codes.NotFound {
		t.Fatalf("GET unknown: %v %v, want 4.04", res, err)
	}
	if n, _ := res.BodySize(); n != 0 {
		t.Errorf("an unknown resource answered %d bytes of body", n)
	}
}

func TestHandshakeRatePerAddress(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.HandshakesPerSecond, o.HandshakeBurst = 0.001, 2 })
	_, cert := e.thing("TH-7")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i := range 2 {
		cc, err := e.dial(cert)
		if err != nil {
			t.Fatalf("handshake %d within the burst: %v", i+1, err)
		}
		if !callsHome(ctx, cc) {
			t.Fatalf("handshake %d within the burst: no answer", i+1)
		}
		cc.Close()
	}
	if e.servedAnew(cert) {
		t.Fatal("a handshake past the address's rate was served")
	}
}

func TestUnlinkEndsSession(t *testing.T) {
	e := newEnv(t, nil)
	th, cert := e.thing("TH-8")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	owner := e.own(t, th.ID)
	cc := e.open(t, cert, "before unlink")
	if err := e.ids.RemoveRelationship(ctx, "test", owner); err != nil {
		t.Fatal(err)
	}
	select {
	case <-cc.Done():
	case <-ctx.Done():
		t.Fatal("the unlinked thing's session was not closed")
	}
}

func TestCloseEndsOpenSessions(t *testing.T) {
	e := newEnv(t, nil)
	_, cert := e.thing("TH-9")
	cc, err := e.dial(cert)
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !callsHome(ctx, cc) {
		t.Fatal("no answer")
	}
	e.gw.Close()
	select {
	case <-cc.Done():
	case <-ctx.Done():
		t.Fatal("Close left the session open")
	}
}
