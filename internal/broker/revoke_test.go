package broker

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// closed waits for the broker to end c's connection and returns the
// DISCONNECT reason code and how long it took (logged, never asserted).
func closed(t *testing.T, c *client5, since time.Time) byte {
	t.Helper()
	select {
	case d := <-c.disconnected:
		t.Logf("connection closed %v after the change (reason %#x)", time.Since(since).Round(time.Millisecond), d.ReasonCode)
		return d.ReasonCode
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open")
		return 0
	}
}

// A device paired to a user (device flow) is subscribed and publishing; the
// user unlinks it through the identity service, as oauth's Unlink does,
// together with revoking its grant. Its connection ends and its old token
// no longer connects.
func TestRevocationUnlink(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	alice := e.user("alice")
	e.own(alice, th)
	gid := e.grant("speaker-app", th.ID, alice.ID)
	tok := e.token(tokens.Claims{Subject: alice.ID, ClientID: "speaker-app", ThingID: th.ID, GrantID: gid})
	device := e.mustConnect5(th.ID, tok)
	device.sub(t, "things/"+th.ID+"/commands/#", 1)
	device.pub(t, "things/"+th.ID+"/telemetry", 1, "21")

	app := e.mustConnect5("alice-app", e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}))
	app.sub(t, "things/"+th.ID+"/#", 1)

	start := time.Now()
	rel := store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: alice.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}
	if err := e.ids.RemoveRelationship(context.Background(), "user:"+alice.ID, rel); err != nil {
		t.Fatal(err)
	}
	if rc := closed(t, device, start); rc != 0x87 {
		t.Errorf("reason %#x", rc)
	}
	e.st.RevokeGrant(context.Background(), gid, time.Now())
	e.bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: gid, Details: map[string]string{"exp": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}})
	if code, _ := e.connackCode("tls", &paho.Connect{ClientID: th.ID, Password: []byte(tok), PasswordFlag: true}); code < 0x80 {
		t.Errorf("reconnect with the old token: %#x", code)
	}
	// The user's app stays connected but no longer reads the thing.
	if rc := app.sub(t, "things/"+th.ID+"/#", 1); rc != 0x87 {
		t.Errorf("app re-subscribed to an unlinked thing: %#x", rc)
	}
	svc := e.mustConnect5("svc", e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:pub:things/#"}}))
	svc.pub(t, "things/"+th.ID+"/telemetry", 1, "after unlink")
	app.none(t, "things/"+th.ID+"/telemetry")
}

// Each revocation event ends the connections it concerns.
func TestRevocationEvents(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.CertificateLogin = true })
	ctx := context.Background()
	cases := []struct {
		name   string
		revoke func(th *store.Thing, u *store.User, gid, certFP string)
	}{
		{"grant.revoke", func(_ *store.Thing, _ *store.User, gid, _ string) {
			e.st.RevokeGrant(ctx, gid, time.Now())
			e.bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: gid, Details: map[string]string{"exp": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}})
		}},
		{"thing.disable", func(th *store.Thing, _ *store.User, _, _ string) {
			e.ids.UpdateThing(ctx, "test", th.ID, 0, func(x *store.Thing) error { x.Status = store.StatusDisabled; return nil })
		}},
		{"thing.delete", func(th *store.Thing, _ *store.User, _, _ string) { e.ids.DeleteThing(ctx, "test", th.ID, 0) }},
		{"user.disable", func(_ *store.Thing, u *store.User, _, _ string) {
			e.ids.UpdateUser(ctx, "test", u.ID, 0, func(x *store.User) error { x.Status = store.StatusDisabled; return nil })
		}},
		{"cert.revoke", func(th *store.Thing, _ *store.User, _, fp string) {
			e.bus.Publish(events.Event{Type: certauth.EventCertRevoke, Kind: "thing", ID: th.ID, Details: map[string]string{"fingerprint": fp}})
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			th, u := e.thing("T-100"), e.user("u-"+tc.name)
			e.own(u, th)
			gid := e.grant("paired-app", th.ID, u.ID)
			cert := e.deviceCert(th.ID, false)
			sum := sha256.Sum256(cert.Leaf.Raw)
			var c *client5
			var err error
			if tc.name == "cert.revoke" {
				c, _, err = e.connect5(e.dialCert(cert), &paho.Connect{ClientID: th.ID, CleanStart: true})
			} else {
				tok := e.token(tokens.Claims{Subject: u.ID, ClientID: "paired-app", ThingID: th.ID, GrantID: gid})
				c, _, err = e.connect5(e.dial("tls"), &paho.Connect{ClientID: th.ID, CleanStart: true, Password: []byte(tok), PasswordFlag: true})
			}
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			tc.revoke(th, u, gid, hex.EncodeToString(sum[:]))
			if rc := closed(t, c, start); rc != 0x87 {
				t.Errorf("reason %#x", rc)
			}
		})
	}
}

// A token's expiry ends the connection (MQTT 5: 0xA0 maximum connect time)
// unless the client re-authenticates with a fresh token first (AUTH 0x19),
// which moves the deadline.
func TestExpiryAndReauthentication(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	short := func() string {
		return e.token(tokens.Claims{Subject: "client-" + th.ID, ClientID: "client-" + th.ID, ThingID: th.ID, ExpiresAt: time.Now().Add(2 * time.Second)})
	}
	connect := func(tok string) *client5 {
		c, ca, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th.ID, CleanStart: true,
			Properties: &paho.ConnectProperties{AuthMethod: AuthMethod, AuthData: []byte(tok)}})
		if err != nil {
			t.Fatalf("%v %+v", err, ca)
		}
		return c
	}
	c := connect(short())
	start := time.Now()
	if rc := closed(t, c, start); rc != 0xA0 {
		t.Errorf("expiry reason %#x", rc)
	}

	c = connect(short())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ar, err := c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: AuthMethod, AuthData: []byte(e.thingToken(th))}})
	if err != nil || !ar.Success {
		t.Fatalf("re-authentication: %v %+v", err, ar)
	}
	time.Sleep(3 * time.Second) // past the first token's expiry
	if rc := c.pub(t, "things/"+th.ID+"/telemetry", 1, "still here"); rc != 0 {
		t.Errorf("publish after re-authentication: %#x", rc)
	}
	c.connected(t, "the connection, at the old token's expiry,")
	// Re-authenticating as another identity ends the connection.
	other := e.thing("T-100")
	ar, _ = c.Authenticate(ctx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: AuthMethod, AuthData: []byte(e.thingToken(other))}})
	if ar == nil || ar.Success || ar.ReasonCode != 0x87 {
		t.Errorf("re-authentication as another thing: %+v", ar)
	}
}

// A thing disabled while this node missed the event (its relay reconnected:
// the store changed, no event came) is ended when the bus says events were
// missed: every session is read again.
func TestResyncEndsSessionsOfMissedChanges(t *testing.T) {
	e := newEnv(t, nil)
	th, u := e.thing("T-100"), e.user("resync")
	e.own(u, th)
	gid := e.grant("paired-app", th.ID, u.ID)
	tok := e.token(tokens.Claims{Subject: u.ID, ClientID: "paired-app", ThingID: th.ID, GrantID: gid})
	c, _, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th.ID, CleanStart: true, Password: []byte(tok), PasswordFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	other := e.thing("T-100")
	o := e.mustConnect5(other.ID, e.token(tokens.Claims{Subject: other.ID, ClientID: other.ID, ThingID: other.ID}))
	if _, err := e.st.UpdateThing(context.Background(), th.ID, 0, func(x *store.Thing) error { x.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.bus.Publish(events.Event{Type: events.Resync, Local: true})
	if rc := closed(t, c, start); rc != 0x87 {
		t.Errorf("reason %#x", rc)
	}
	o.pub(t, "things/"+other.ID+"/telemetry", 1, "still connected")
}

// A token the verifier remembers from an accepted CONNECT is refused at the
// next CONNECT once its grant is revoked, whichever way this node learns
// it: the revocation event alone (the deny set), or the stored grant alone
// (an event this node missed).
func TestRememberedTokenRevoked(t *testing.T) {
	e := newEnv(t, nil)
	// The deny set refuses the token (0x86 Bad User Name or Password); the
	// stored grant, the identity (0x87 Not Authorized).
	for by, want := range map[string]byte{"event": 0x86, "store": 0x87} {
		t.Run(by, func(t *testing.T) {
			th := e.thing("T-100")
			gid := e.grant("client-"+th.ID, th.ID, "")
			tok := e.token(tokens.Claims{Subject: "client-" + th.ID, ClientID: "client-" + th.ID, ThingID: th.ID, GrantID: gid})
			cp := func() *paho.Connect {
				return &paho.Connect{ClientID: th.ID, Password: []byte(tok), PasswordFlag: true}
			}
			for range 2 { // the second CONNECT is answered from the verifier's memo
				if code, reason := e.connackCode("tcp", cp()); code != 0 {
					t.Fatalf("before the revocation: %#x %s", code, reason)
				}
			}
			switch by {
			case "event":
				e.bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: gid,
					Details: map[string]string{"exp": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}})
			case "store":
				if err := e.st.RevokeGrant(context.Background(), gid, time.Now()); err != nil {
					t.Fatal(err)
				}
			}
			if code, reason := e.connackCode("tcp", cp()); code != want {
				t.Errorf("after the revocation (%s): %#x %s, want %#x", by, code, reason, want)
			}
		})
	}
}
