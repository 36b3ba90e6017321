package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/netlimit"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// thingid serve with mqtt enabled: the broker listens with the platform's
// server certificate and accepts the platform's tokens for its audience.
func TestBrokerServed(t *testing.T) {
	cfg := config.Default()
	cfg.Home = t.TempDir()
	cfg.MQTT.Enabled = true
	cfg.MQTT.TLS.Address = "127.0.0.1:0"
	cfg.MQTT.IDTokenClients = []string{"owner-app"}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	addr, tk := serveBroker(t, ctx, p)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	things, _, err := p.BenchTokens(ctx, 1, log)
	if err != nil {
		t.Fatal(err)
	}
	pool := platformCA(t, p)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	// paho writes a packet in several writes from more than one goroutine:
	// over TLS the connection must be one it can lock (paho.ClientConfig.Conn).
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	if _, err := c.Connect(cctx, &paho.Connect{ClientID: things[0].ClientID, KeepAlive: 30, CleanStart: true, Password: []byte(things[0].Token), PasswordFlag: true}); err != nil {
		t.Fatalf("connect with a platform token: %v", err)
	}
	c.Disconnect(&paho.Disconnect{})

	// mqtt.idTokenClients reaches the broker: a user's ID token issued to
	// owner-app, tied to the user's grant of that client, is a password.
	u, err := p.Identity.CreateUser(ctx, "test", &store.User{UserName: "owner", Status: store.StatusActive}, "")
	if err != nil {
		t.Fatal(err)
	}
	g := &store.Grant{ClientID: "owner-app", UserID: u.ID, Created: time.Now()}
	if err := p.Store.CreateGrant(ctx, g); err != nil {
		t.Fatal(err)
	}
	idToken, err := tk.issuer.IDToken(tokens.IDClaims{Subject: u.ID, Audience: []string{"owner-app"}, AuthorizedParty: "owner-app",
		ExpiresAt: time.Now().Add(time.Minute), Extra: map[string]any{"gid": g.ID}})
	if err != nil {
		t.Fatal(err)
	}
	conn, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
	if _, err := c.Connect(cctx, &paho.Connect{ClientID: "owner-phone", KeepAlive: 30, CleanStart: true, Password: []byte(idToken), PasswordFlag: true}); err != nil {
		t.Fatalf("connect with an ID token of a listed client: %v", err)
	}
	c.Disconnect(&paho.Disconnect{})

	// Another thing's client identifier is refused.
	conn, _ = tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	c = paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn)})
	if _, err := c.Connect(cctx, &paho.Connect{ClientID: "someone-else", KeepAlive: 30, Password: []byte(things[0].Token), PasswordFlag: true}); err == nil {
		t.Error("connected under another client identifier")
	}
}

// serveBroker starts p's broker as thingid serve does and returns the
// address of its TLS listener and the platform's tokens.
func serveBroker(t *testing.T, ctx context.Context, p *Platform) (string, *tokenSet) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tk, cleanup, err := p.newTokens(ctx, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cleanup)
	certs, err := p.newCertAuth(ctx, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(certs.Close)
	var out bytes.Buffer
	admins := authn.NewAdmins(adminReader{p.Identity, p.Store}, p.TokenKey())
	reg := newRegistry()
	conns, err := netlimit.New(netlimit.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	hh, err := p.newHouseholds(log)
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.startBroker(ctx, tk, certs, reg, conns, admins, hh, log, &out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	_, addr, ok := strings.Cut(strings.TrimSpace(out.String()), "mqtts://")
	if !ok {
		t.Fatalf("no address printed: %q", out.String())
	}
	return addr, tk
}

// platformCA is a pool of p's platform CA, which its server certificate
// chains to.
func platformCA(t *testing.T, p *Platform) *x509.CertPool {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(p.Config.Home, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return pool
}
