package broker

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// idTokenApp is the client whose ID tokens the broker accepts in these tests.
const idTokenApp = "home-app"

// idEnv is a broker that accepts ID tokens of idTokenApp.
func idEnv(t *testing.T) *env {
	return newEnv(t, func(o *Options) { o.IDTokenClients = []string{idTokenApp} })
}

// idToken signs an ID token as oauth's code flow does (aud and azp the
// client, gid its grant), then applies mod to the claims.
func (e *env) idToken(userID, client, gid string, mod func(*tokens.IDClaims)) string {
	e.t.Helper()
	c := tokens.IDClaims{Subject: userID, Audience: []string{client}, AuthorizedParty: client,
		ExpiresAt: time.Now().Add(10 * time.Minute), Extra: map[string]any{"gid": gid}}
	if mod != nil {
		mod(&c)
	}
	tok, err := e.issuer.IDToken(c)
	if err != nil {
		e.t.Fatal(err)
	}
	return tok
}

func revokeEvent(e *env, gid string) {
	e.bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: gid, Details: map[string]string{"exp": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}})
}

// An ID token of a listed client connects as its user: the user rules apply
// (an owner's app reads its own things) and nothing else, not even what
// scopes in the token would say.
func TestIDTokenLogin(t *testing.T) {
	e := idEnv(t)
	alice := e.user("alice")
	th, other := e.thing("T-100"), e.thing("T-100")
	e.own(alice, th)
	tok := e.idToken(alice.ID, idTokenApp, e.grant(idTokenApp, "", alice.ID), func(c *tokens.IDClaims) {
		c.Extra["scope"] = "mqtt:sub:# mqtt:pub:# admin" // not a source of rights in an ID token
	})
	app := e.mustConnect5("alice-phone", tok)
	if rc := app.sub(t, "things/"+th.ID+"/#", 1); rc != 1 {
		t.Fatalf("owner subscribing to its thing: %#x", rc)
	}
	for _, f := range []string{"things/" + other.ID + "/#", "#", "$SYS/#"} {
		if rc := app.sub(t, f, 1); rc != 0x87 {
			t.Errorf("subscribe %s: %#x", f, rc)
		}
	}
	if rc := app.pub(t, "things/"+th.ID+"/commands/x", 1, "x"); rc != 0x87 {
		t.Errorf("publish without a publish rule: %#x", rc)
	}
	device := e.mustConnect5(th.ID, e.thingToken(th)) // access tokens still work
	device.pub(t, "things/"+th.ID+"/telemetry", 1, "21")
	app.expect(t, "things/"+th.ID+"/telemetry")

	// The same over MQTT 5 Authentication Data.
	if code, reason := e.connackCode("tls", &paho.Connect{ClientID: "alice-tablet", CleanStart: true,
		Properties: &paho.ConnectProperties{AuthMethod: AuthMethod, AuthData: []byte(tok)}}); code != 0 {
		t.Errorf("ID token as Authentication Data: %#x %s", code, reason)
	}
}

// Every ID token that must not open a connection.
func TestIDTokenRefused(t *testing.T) {
	e := idEnv(t)
	ctx := context.Background()
	alice, bob := e.user("alice"), e.user("bob")
	gid := e.grant(idTokenApp, "", alice.ID)
	good := e.idToken(alice.ID, idTokenApp, gid, nil)
	revokedByEvent := e.grant(idTokenApp, "", alice.ID)
	revokeEvent(e, revokedByEvent)
	revokedInStore := e.grant(idTokenApp, "", alice.ID)
	e.st.RevokeGrant(ctx, revokedInStore, time.Now())
	disabled := e.user("mallory")
	disabledTok := e.idToken(disabled.ID, idTokenApp, e.grant(idTokenApp, "", disabled.ID), nil)
	e.ids.UpdateUser(ctx, "test", disabled.ID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil })
	parts := strings.Split(good, ".")
	sig := []byte(parts[2])
	sig[5] ^= 'A' ^ 'B'
	bobsParts := strings.Split(e.idToken(bob.ID, idTokenApp, e.grant(idTokenApp, "", bob.ID), nil), ".")

	cases := []struct {
		name, token string
		want        byte
	}{
		{"client not listed", e.idToken(alice.ID, "other-app", e.grant("other-app", "", alice.ID), nil), 0x86},
		{"audience the broker's, not a client's", e.idToken(alice.ID, testAudience, gid, nil), 0x86},
		{"azp another client", e.idToken(alice.ID, idTokenApp, gid, func(c *tokens.IDClaims) {
			c.Audience, c.AuthorizedParty = []string{idTokenApp, "other-app"}, "other-app"
		}), 0x86},
		{"no gid", e.idToken(alice.ID, idTokenApp, gid, func(c *tokens.IDClaims) { c.Extra = nil }), 0x86},
		{"gid of another client", e.idToken(alice.ID, idTokenApp, e.grant("other-app", "", alice.ID), nil), 0x86},
		{"gid of another user", e.idToken(alice.ID, idTokenApp, e.grant(idTokenApp, "", bob.ID), nil), 0x86},
		{"gid of a client's own grant", e.idToken(alice.ID, idTokenApp, e.grant(idTokenApp, "", ""), nil), 0x86},
		{"gid unknown", e.idToken(alice.ID, idTokenApp, "no-such-grant", nil), 0x87},
		{"grant revoked (event)", e.idToken(alice.ID, idTokenApp, revokedByEvent, nil), 0x86},
		{"grant revoked (only in the store)", e.idToken(alice.ID, idTokenApp, revokedInStore, nil), 0x87},
		{"user disabled", disabledTok, 0x87},
		{"expired", e.idToken(alice.ID, idTokenApp, gid, func(c *tokens.IDClaims) {
			c.IssuedAt, c.ExpiresAt = time.Now().Add(-30*time.Minute), time.Now().Add(-10*time.Minute)
		}), 0x86},
		{"tampered signature", parts[0] + "." + parts[1] + "." + string(sig), 0x86},
		{"another user's claims under this signature", parts[0] + "." + bobsParts[1] + "." + parts[2], 0x86},
		// An access token addressed to the listed client is still an access
		// token (typ at+jwt): it never takes the ID token path.
		{"access token for the client", e.token(tokens.Claims{Subject: alice.ID, ClientID: idTokenApp, GrantID: gid, Audience: []string{idTokenApp}}), 0x86},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, reason := e.connackCode("tls", &paho.Connect{ClientID: "alice-phone", CleanStart: true, Password: []byte(tc.token), PasswordFlag: true})
			if code != tc.want {
				t.Errorf("CONNACK %#x (%s), want %#x", code, reason, tc.want)
			}
		})
	}
	if code, reason := e.connackCode("tls", &paho.Connect{ClientID: "alice-phone", CleanStart: true, Password: []byte(good), PasswordFlag: true}); code != 0 {
		t.Fatalf("the good ID token was refused too: %#x %s", code, reason)
	}
}

// A connection opened with an ID token ends like one opened with an access
// token: grant revoked, user disabled, token expired; an owner unlink takes
// the thing's topics away; MQTT 5 re-authentication takes a fresh ID token.
func TestIDTokenRevocation(t *testing.T) {
	e := idEnv(t)
	ctx := context.Background()
	connect := func(tok string) *client5 {
		c, ca, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: "app-" + strconv.FormatInt(time.Now().UnixNano(), 36), CleanStart: true,
			Properties: &paho.ConnectProperties{AuthMethod: AuthMethod, AuthData: []byte(tok)}})
		if err != nil {
			t.Fatalf("%v %+v", err, ca)
		}
		return c
	}

	t.Run("grant revoked", func(t *testing.T) {
		u := e.user("u-grant")
		gid := e.grant(idTokenApp, "", u.ID)
		c := connect(e.idToken(u.ID, idTokenApp, gid, nil))
		start := time.Now()
		e.st.RevokeGrant(ctx, gid, time.Now())
		revokeEvent(e, gid)
		if rc := closed(t, c, start); rc != 0x87 {
			t.Errorf("reason %#x", rc)
		}
	})
	t.Run("user disabled", func(t *testing.T) {
		u := e.user("u-disable")
		c := connect(e.idToken(u.ID, idTokenApp, e.grant(idTokenApp, "", u.ID), nil))
		start := time.Now()
		e.ids.UpdateUser(ctx, "test", u.ID, 0, func(x *store.User) error { x.Status = store.StatusDisabled; return nil })
		if rc := closed(t, c, start); rc != 0x87 {
			t.Errorf("reason %#x", rc)
		}
	})
	t.Run("owner unlinked", func(t *testing.T) {
		u, th, kept := e.user("u-unlink"), e.thing("T-100"), e.thing("T-100")
		e.own(u, th)
		e.own(u, kept)
		c := connect(e.idToken(u.ID, idTokenApp, e.grant(idTokenApp, "", u.ID), nil))
		for _, x := range []*store.Thing{th, kept} {
			if rc := c.sub(t, "things/"+x.ID+"/#", 1); rc != 1 {
				t.Fatalf("subscribe: %#x", rc)
			}
		}
		rel := store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: th.ID}}
		if err := e.ids.RemoveRelationship(ctx, "user:"+u.ID, rel); err != nil {
			t.Fatal(err)
		}
		// The event recompiles the app's rules: wait until a SUBSCRIBE says so.
		for deadline := time.Now().Add(10 * time.Second); c.sub(t, "things/"+th.ID+"/#", 1) != 0x87; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("still allowed to subscribe to an unlinked thing")
			}
		}
		svc := e.mustConnect5("svc", e.token(tokens.Claims{Subject: "svc", ClientID: "svc", Scope: []string{"mqtt:pub:things/#"}}))
		svc.pub(t, "things/"+th.ID+"/telemetry", 1, "after unlink")
		svc.pub(t, "things/"+kept.ID+"/telemetry", 1, "sentinel") // delivered after the first, had that been
		c.expect(t, "things/"+kept.ID+"/telemetry")
		c.none(t, "things/"+th.ID+"/telemetry")
	})
	t.Run("expiry and re-authentication", func(t *testing.T) {
		u := e.user("u-expiry")
		gid := e.grant(idTokenApp, "", u.ID)
		short := func() string {
			return e.idToken(u.ID, idTokenApp, gid, func(c *tokens.IDClaims) { c.ExpiresAt = time.Now().Add(2 * time.Second) })
		}
		c := connect(short())
		if rc := closed(t, c, time.Now()); rc != 0xA0 {
			t.Errorf("expiry reason %#x", rc)
		}
		c = connect(short())
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ar, err := c.Authenticate(actx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: AuthMethod, AuthData: []byte(e.idToken(u.ID, idTokenApp, gid, nil))}})
		if err != nil || !ar.Success {
			t.Fatalf("re-authentication: %v %+v", err, ar)
		}
		time.Sleep(3 * time.Second) // past the first token's expiry
		c.connected(t, "the connection, at the old token's expiry,")
		// A fresh ID token of another user ends the connection.
		other := e.user("u-other")
		ar, _ = c.Authenticate(actx, &paho.Auth{ReasonCode: 0x19, Properties: &paho.AuthProperties{AuthMethod: AuthMethod,
			AuthData: []byte(e.idToken(other.ID, idTokenApp, e.grant(idTokenApp, "", other.ID), nil))}})
		if ar == nil || ar.Success || ar.ReasonCode != 0x87 {
			t.Errorf("re-authentication as another user: %+v", ar)
		}
	})
}
