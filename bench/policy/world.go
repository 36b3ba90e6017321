package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/bench/internal/loopback"
	"github.com/thingid/thingid/internal/broker"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/gateway"
	"github.com/thingid/thingid/internal/household"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/store/sqlite"
	"github.com/thingid/thingid/internal/tokens"
)

const (
	issuer          = "https://id.bench.example"
	mqttAudience    = "urn:thingid:mqtt"
	gatewayAudience = "https://gw.bench.example"
)

var quiet = slog.New(slog.DiscardHandler)

// world is a platform's parts on one SQLite store: tokens, a household
// (mum owns two speakers, placed in the kids' room; emma, a dependant, may
// use the things there every day), the broker and the gateway.
type world struct {
	dir      string
	st       store.Store
	bus      *events.Bus
	keys     *tokens.Keys
	issuer   *tokens.Issuer
	verifier *tokens.Verifier
	svc      *counted
	emma     *store.User
	speakers [2]*store.Thing
	closers  []func()
}

// counted counts the decisions the doors ask of the household service.
type counted struct {
	*household.Service
	n atomic.Int64
}

func (c *counted) Decide(ctx context.Context, req policy.Request) (policy.Decision, error) {
	c.n.Add(1)
	return c.Service.Decide(ctx, req)
}

func newWorld(dir string) (*world, error) {
	ctx := context.Background()
	w := &world{dir: dir, bus: events.New()}
	var err error
	if w.st, err = sqlite.Open(filepath.Join(dir, "thingid.db")); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, func() { w.st.Close() })
	var mk secrets.Key
	rand.Read(mk[:])
	if w.keys, err = tokens.NewKeys(ctx, w.st, tokens.KeysConfig{MasterKey: mk, Bus: w.bus, Log: quiet}); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.keys.Close)
	if w.issuer, err = tokens.NewIssuer(w.keys, issuer); err != nil {
		return nil, err
	}
	if w.verifier, err = tokens.NewVerifier(w.keys, tokens.VerifierConfig{Issuer: issuer, Bus: w.bus, Log: quiet}); err != nil {
		return nil, err
	}
	w.closers = append(w.closers, w.verifier.Close)
	ids := identity.New(w.st, w.bus, password.Policy{})
	svc, err := household.New(household.Options{Store: w.st, Identities: ids, Engine: policy.NewEngine(nil, quiet), Bus: w.bus, Logger: quiet})
	if err != nil {
		return nil, err
	}
	w.svc = &counted{Service: svc}
	mum, err := ids.CreateUser(ctx, "bench", &store.User{UserName: "mum", Status: store.StatusActive}, "")
	if err != nil {
		return nil, err
	}
	if w.emma, err = ids.CreateUser(ctx, "bench", &store.User{UserName: "emma", DisplayName: "Emma", Status: store.StatusActive}, ""); err != nil {
		return nil, err
	}
	hh, err := svc.Create(ctx, mum, "Bench family", "Europe/Berlin")
	if err != nil {
		return nil, err
	}
	inv, err := svc.Invite(ctx, mum, hh, "emma", "", policy.Dependant)
	if err != nil {
		return nil, err
	}
	if err := svc.Accept(ctx, w.emma, inv.ID); err != nil {
		return nil, err
	}
	room, err := svc.AddRoom(ctx, mum, hh, "Kids' room")
	if err != nil {
		return nil, err
	}
	for i := range w.speakers {
		th, err := ids.CreateThing(ctx, "bench", &store.Thing{Type: store.ThingDevice, DisplayName: fmt.Sprintf("Speaker %d", i), Status: store.StatusActive})
		if err != nil {
			return nil, err
		}
		if err := ids.AddRelationship(ctx, "bench", store.Relationship{Kind: store.RelOwner,
			From: store.Ref{Kind: store.KindUser, ID: mum.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}); err != nil {
			return nil, err
		}
		if err := svc.Place(ctx, mum, hh, th.ID, room.ID); err != nil {
			return nil, err
		}
		w.speakers[i] = th
	}
	// Every day: a condition on the weekday, so that a decision holds until
	// midnight and is cached until then.
	_, err = svc.SetRules(ctx, mum, hh, []policy.Rule{{ID: "emma", Effect: policy.Allow, Who: policy.Who{Kind: policy.OneMember, Member: w.emma.ID},
		Things: policy.Things{Kind: policy.InRoom, ID: room.ID}, Actions: []policy.Action{policy.Use},
		When: policy.When{Days: []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}}}})
	return w, err
}

func (w *world) close() {
	for _, c := range slices.Backward(w.closers) {
		c()
	}
}

// token signs an access token for aud of thing acting for user ("" for
// itself) under a new grant.
func (w *world) token(aud string, thing *store.Thing, user string) (string, error) {
	client := "client-" + thing.ID
	sub := user
	if sub == "" {
		sub = client
	}
	g := &store.Grant{ClientID: client, ThingID: thing.ID, UserID: user}
	if err := w.st.CreateGrant(context.Background(), g); err != nil {
		return "", err
	}
	return w.issuer.AccessToken(tokens.Claims{Subject: sub, ClientID: client, ThingID: thing.ID, Audience: []string{aud},
		GrantID: g.ID, ExpiresAt: time.Now().Add(50 * time.Minute)})
}

// latencies are one target's measurements.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	s := slices.Clone(l)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

// compare prints p50 and p99 of base and with, and what with adds at p99.
func compare(what, baseName, withName string, base, with latencies) {
	fmt.Printf("  %-34s p50 %8s  p99 %8s\n", baseName, base.pct(0.5), base.pct(0.99))
	fmt.Printf("  %-34s p50 %8s  p99 %8s\n", withName, with.pct(0.5), with.pct(0.99))
	fmt.Printf("  %s: added p50 %s, added p99 %s\n", what, with.pct(0.5)-base.pct(0.5), with.pct(0.99)-base.pct(0.99))
}

// mqtt measures QoS 1 publishes through the broker: speaker 1 acting for
// itself (no policy), speaker 0 acting for emma (the household's rules).
func (w *world) mqtt() error {
	ctx := context.Background()
	b, err := broker.Start(ctx, broker.Options{
		Listeners: []broker.Listener{{Name: "tcp", Kind: broker.ListenerTCP, Address: "127.0.0.1:0"}},
		Audience:  mqttAudience, Verifier: w.verifier, Directory: w.st,
		Rules: []broker.Rule{{Who: broker.WhoThing, Publish: []string{"things/${thing.id}/#"}}},
		Dir:   filepath.Join(w.dir, "mqtt"), Bus: w.bus, Audit: w.st, Policies: w.svc, Log: quiet,
	})
	if err != nil {
		return err
	}
	defer b.Close()
	connect := func(thing *store.Thing, user string) (*paho.Client, error) {
		tok, err := w.token(mqttAudience, thing, user)
		if err != nil {
			return nil, err
		}
		conn, err := net.Dial("tcp", b.Addr("tcp"))
		if err != nil {
			return nil, err
		}
		c := paho.NewClient(paho.ClientConfig{Conn: conn, OnClientError: func(error) {}})
		ca, err := c.Connect(ctx, &paho.Connect{ClientID: thing.ID, CleanStart: true, KeepAlive: 60, Password: []byte(tok), PasswordFlag: true})
		if err != nil {
			return nil, fmt.Errorf("connect: %w %+v", err, ca)
		}
		return c, nil
	}
	asked := w.svc.n.Load()
	plain, err := connect(w.speakers[1], "")
	if err != nil {
		return err
	}
	defer plain.Disconnect(&paho.Disconnect{})
	governed, err := connect(w.speakers[0], w.emma.ID)
	if err != nil {
		return err
	}
	defer governed.Disconnect(&paho.Disconnect{})
	atConnect := w.svc.n.Load() - asked
	publish := func(c *paho.Client, topic string, into *latencies) error {
		msg := &paho.Publish{Topic: topic, QoS: 1, Payload: []byte("21.5")}
		for range *n {
			start := time.Now()
			r, err := c.Publish(ctx, msg)
			if err != nil {
				return err
			}
			if r.ReasonCode != 0 {
				return fmt.Errorf("PUBACK %#x", r.ReasonCode)
			}
			*into = append(*into, time.Since(start))
		}
		return nil
	}
	asked = w.svc.n.Load()
	var base, with latencies
	for range *rounds {
		if err := publish(plain, "things/"+w.speakers[1].ID+"/telemetry", &base); err != nil {
			return err
		}
		if err := publish(governed, "things/"+w.speakers[0].ID+"/telemetry", &with); err != nil {
			return err
		}
	}
	fmt.Printf("\nMQTT PUBLISH, QoS 1, one at a time (PUBACK round trip), %d rounds of %d each:\n", *rounds, *n)
	compare("the policy at PUBLISH", "a thing acting for itself", "a thing acting for a dependant", base, with)
	fmt.Printf("  decisions asked: %d at the two CONNECTs (publish and subscribe, for the dependant), %d during the %d publishes\n",
		atConnect, w.svc.n.Load()-asked, len(with))
	return nil
}

// gateway measures GETs through the gateway on a route with oauth2 and on
// one with oauth2 and policy, both for speaker 0 acting for emma.
func (w *world) gateway() error {
	up, err := loopback.StartUpstream()
	if err != nil {
		return err
	}
	defer up.Stop()
	routes := fmt.Sprintf(`routes:
  - name: plain
    match: {pathPrefix: /plain}
    upstream: {url: "http://%s"}
    filters: [oauth2]
  - name: policy
    match: {pathPrefix: /policy}
    upstream: {url: "http://%s"}
    filters: [oauth2, policy]
`, up.Addr, up.Addr)
	rdir := filepath.Join(w.dir, "routes")
	if err := os.MkdirAll(rdir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rdir, "routes.yaml"), []byte(routes), 0o600); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	g, err := gateway.New(gateway.Options{RoutesDir: rdir, Audience: gatewayAudience, PublicURL: "https://" + ln.Addr().String(), // the origin of DPoP proofs; none here
		Verifier: w.verifier, Bus: w.bus, Replay: w.st, Things: w.st, Decider: w.svc, Log: quiet})
	if err != nil {
		ln.Close()
		return err
	}
	defer g.Close()
	srv := &http.Server{Handler: g, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	defer srv.Close()
	tok, err := w.token(gatewayAudience, w.speakers[0], w.emma.ID)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	get := func(path string, into *latencies) error {
		req, err := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		for range *n {
			start := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("GET %s: %s", path, resp.Status)
			}
			*into = append(*into, time.Since(start))
		}
		return nil
	}
	asked := w.svc.n.Load()
	var base, with latencies
	for range *rounds {
		if err := get("/plain/state", &base); err != nil {
			return err
		}
		if err := get("/policy/state", &with); err != nil {
			return err
		}
	}
	fmt.Printf("\nGateway GET, one at a time, plain HTTP, %d rounds of %d each:\n", *rounds, *n)
	compare("the policy filter", "route with oauth2", "route with oauth2 and policy", base, with)
	fmt.Printf("  decisions asked: %d (one per request on the policy route)\n", w.svc.n.Load()-asked)
	return nil
}
