package server

import (
	"encoding/base64"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/postgres/pgtest"
	"github.com/thingid/thingid/internal/tokens"
)

// node opens a Platform of its own data directory on dsn with masterKey,
// as every node of a cluster does.
func node(t *testing.T, dsn, masterKey string) *Platform {
	t.Helper()
	cfg := config.Default()
	cfg.Home = t.TempDir()
	cfg.MasterKey = masterKey
	cfg.Storage.Type, cfg.Storage.Postgres.DSN = "postgres", dsn
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := Open(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Every node of one database issues and checks with the same platform CA
// and device CA, however many start at once on an empty database, and a
// node that made a CA of its own is refused rather than run with it.
func TestNodesShareTheCAs(t *testing.T) {
	dsn := pgtest.DSN(t)
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	nodes := []*Platform{node(t, dsn, key), node(t, dsn, key), node(t, dsn, key)}
	type cas struct{ root, device []byte }
	got := make([]cas, len(nodes))
	var wg sync.WaitGroup
	for i, p := range nodes {
		wg.Go(func() {
			root, dca, err := p.PKI()
			if err != nil {
				t.Error(err)
				return
			}
			got[i] = cas{root.Cert.Raw, dca.Cert.Raw}
		})
	}
	wg.Wait()
	later := node(t, dsn, key)
	root, dca, err := later.PKI()
	if err != nil {
		t.Fatal(err)
	}
	got = append(got, cas{root.Cert.Raw, dca.Cert.Raw})
	for i, c := range got {
		if string(c.root) != string(got[0].root) || string(c.device) != string(got[0].device) {
			t.Errorf("node %d has CAs of its own", i)
		}
	}
	// A restart reads its own directory and the database: the same CAs.
	if root, _, err := nodes[1].PKI(); err != nil || string(root.Cert.Raw) != string(got[0].root) {
		t.Errorf("node 1 again: %v", err)
	}

	// A node with another master key cannot open them, and says why.
	other := node(t, dsn, base64.StdEncoding.EncodeToString([]byte(strings.Repeat("x", 32))))
	if _, _, err := other.PKI(); err == nil || !strings.Contains(err.Error(), "same masterKey") {
		t.Errorf("a node with another master key: %v", err)
	}

	// A node set up alone (its own CA, on SQLite) joining the database.
	alone := config.Default()
	alone.Home, alone.MasterKey = t.TempDir(), key
	if err := alone.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := Open(t.Context(), alone)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := p.PKI(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	alone.Storage.Type, alone.Storage.Postgres.DSN = "postgres", dsn
	joined, err := Open(t.Context(), alone)
	if err != nil {
		t.Fatal(err)
	}
	defer joined.Close()
	if _, _, err := joined.PKI(); err == nil || !strings.Contains(err.Error(), "not the CA every other node of this database uses") {
		t.Errorf("a node with a CA of its own joined with: %v", err)
	}
	if pki.HasCA(alone.Home+"/pki") && !strings.Contains(readFile(t, alone.Home+"/pki/"+pki.CACertFile), "CERTIFICATE") {
		t.Error("the node's own CA was damaged")
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Self-registration attempts are counted for every node of one database
// together: a client spreading them over two nodes gets no more than on one
// (burst 5 and registration.attemptsPerMinute 2: 7 in a minute).
func TestNodesCountRegistrationAttemptsTogether(t *testing.T) {
	dsn := pgtest.DSN(t)
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	cluster := func(c *config.Config) {
		c.Storage.Type, c.Storage.Postgres.DSN, c.MasterKey = "postgres", dsn, key
		c.Registration.AttemptsPerMinute = 2
	}
	a := serve(t, cluster)
	b := serve(t, cluster)
	for i := range 8 {
		node := []*running{a, b}[i%2]
		resp, err := node.client.Post(node.base+"/api/v1/register", "application/json", strings.NewReader("{"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		want := http.StatusBadRequest // an attempt, counted
		if i == 7 {
			want = http.StatusTooManyRequests
		}
		if resp.StatusCode != want {
			t.Fatalf("attempt %d on node %d: %d, want %d", i+1, i%2, resp.StatusCode, want)
		}
	}
}

// A node that starts after a grant was revoked (and so never saw the
// revocation's event) refuses the grant's access tokens as the others do.
func TestNodeStartedAfterARevocationRefusesItsTokens(t *testing.T) {
	dsn := pgtest.DSN(t)
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	quiet := slog.New(slog.DiscardHandler)
	a := node(t, dsn, key)
	tkA, stopA, err := a.newTokens(t.Context(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer stopA()
	token := func(gid string) string {
		tok, err := tkA.issuer.AccessToken(tokens.Claims{Subject: "c1", ClientID: "c1", GrantID: gid, Audience: []string{a.Config.HTTP.PublicURL}, ExpiresAt: time.Now().Add(5 * time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	revoked, live := &store.Grant{ClientID: "c1"}, &store.Grant{ClientID: "c1"}
	for _, g := range []*store.Grant{revoked, live} {
		if err := a.Store.CreateGrant(t.Context(), g); err != nil {
			t.Fatal(err)
		}
	}
	revokedToken, liveToken := token(revoked.ID), token(live.ID)
	if err := a.Store.RevokeGrant(t.Context(), revoked.ID, time.Now()); err != nil {
		t.Fatal(err)
	}

	b := node(t, dsn, key)
	tkB, stopB, err := b.newTokens(t.Context(), quiet)
	if err != nil {
		t.Fatal(err)
	}
	defer stopB()
	verify := func(tok string) error {
		_, err := tkB.verifier.Verify(t.Context(), tokens.FromBody(tok, nil), tokens.VerifyOptions{Audience: b.Config.HTTP.PublicURL})
		return err
	}
	if err := verify(revokedToken); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("the revoked grant's token on the node started later: %v, want ErrRevoked", err)
	}
	if err := verify(liveToken); err != nil {
		t.Errorf("a live grant's token on the node started later: %v", err)
	}
}
