package broker

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/thingid/thingid/internal/events"
	thingmqtt "github.com/thingid/thingid/internal/mqtt"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// Every token that must not open a connection, each refused with
// "bad user name or password" (0x86) or "not authorized" (0x87).
func TestAttackTokens(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	other := e.thing("T-100")
	good := e.thingToken(th)
	wrongIssuer, _ := tokens.NewIssuer(e.keys, "https://evil.example.com")
	idToken, _ := e.issuer.IDToken(tokens.IDClaims{Subject: "client-" + th.ID, Audience: []string{testAudience}, ExpiresAt: time.Now().Add(time.Minute)})
	revokedGID := e.grant("client-"+th.ID, th.ID, "")
	revokedInStore := e.thingToken(th)
	gidOfStored := func() string { // the grant of revokedInStore: revoke it only in the store
		gs, _ := e.st.ListGrants(context.Background(), store.GrantFilter{ClientID: "client-" + th.ID})
		return gs[len(gs)-1].ID
	}()
	e.st.RevokeGrant(context.Background(), gidOfStored, time.Now())
	revokedTok := e.token(tokens.Claims{Subject: "client-" + th.ID, ClientID: "client-" + th.ID, ThingID: th.ID, GrantID: revokedGID})
	e.bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: revokedGID, Details: map[string]string{"exp": strconv.FormatInt(time.Now().Add(time.Hour).Unix(), 10)}})
	signed := func(c tokens.Claims, is *tokens.Issuer) string {
		s, err := is.AccessToken(c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	base := tokens.Claims{Subject: "client-" + th.ID, ClientID: "client-" + th.ID, ThingID: th.ID, Audience: []string{testAudience},
		GrantID: e.grant("client-"+th.ID, th.ID, ""), ExpiresAt: time.Now().Add(time.Minute)}
	expired := base
	expired.IssuedAt, expired.ExpiresAt = time.Now().Add(-30*time.Minute), time.Now().Add(-10*time.Minute)
	wrongAud := base
	wrongAud.Audience = []string{"https://api.example.com"}
	parts := strings.Split(good, ".")
	sig := []byte(parts[2])
	sig[5] ^= 'A' ^ 'B'
	tampered := parts[0] + "." + parts[1] + "." + string(sig)
	payloadSwap := parts[0] + "." + strings.Split(e.thingToken(other), ".")[1] + "." + parts[2]

	cases := []struct {
		name, clientID, token string
		want                  byte
	}{
		{"expired", th.ID, signed(expired, e.issuer), 0x86},
		{"tampered signature", th.ID, tampered, 0x86},
		{"payload of another token", other.ID, payloadSwap, 0x86},
		{"wrong issuer", th.ID, signed(base, wrongIssuer), 0x86},
		{"wrong audience", th.ID, signed(wrongAud, e.issuer), 0x86},
		{"revoked (event)", th.ID, revokedTok, 0x86},
		{"revoked (only in the store, as after a restart)", th.ID, revokedInStore, 0x87},
		{"ID token", th.ID, idToken, 0x86},
		{"unsigned", th.ID, parts[0] + "." + parts[1] + ".", 0x86},
		{"client id of another thing", other.ID, good, 0x85},
		{"empty client id (server-assigned)", "", good, 0x85},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, reason := e.connackCode("tls", &paho.Connect{ClientID: tc.clientID, CleanStart: true, Password: []byte(tc.token), PasswordFlag: true})
			if code != tc.want {
				t.Errorf("CONNACK %#x (%s), want %#x", code, reason, tc.want)
			}
		})
	}
	if code, reason := e.connackCode("tls", &paho.Connect{ClientID: th.ID, CleanStart: true, Password: []byte(good), PasswordFlag: true}); code != 0 {
		t.Fatalf("the good token was refused too: %#x %s", code, reason)
	}
	// Disabled things cannot connect.
	e.ids.UpdateThing(context.Background(), "test", other.ID, 0, func(x *store.Thing) error { x.Status = store.StatusDisabled; return nil })
	if code, _ := e.connackCode("tls", &paho.Connect{ClientID: other.ID, Password: []byte(e.thingToken(other)), PasswordFlag: true}); code != 0x87 {
		t.Errorf("disabled thing: %#x", code)
	}
}

// A token bound to a certificate (RFC 8705) is accepted only on a TLS
// connection presenting that certificate.
func TestAttackBoundToken(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	cert := e.deviceCert(th.ID, true)
	bound := e.token(tokens.Claims{Subject: "client-" + th.ID, ClientID: "client-" + th.ID, ThingID: th.ID,
		Confirmation: &tokens.Confirmation{X5TS256: tokens.CertThumbprint(cert.Leaf)}})
	cp := func() *paho.Connect {
		return &paho.Connect{ClientID: th.ID, CleanStart: true, Password: []byte(bound), PasswordFlag: true}
	}
	for name, conn := range map[string]net.Conn{
		"no certificate":      e.dial("tls"),
		"plain TCP":           e.dial("tcp"),
		"another certificate": e.dialCert(e.deviceCert(th.ID, true)),
	} {
		if _, ca, err := e.connect5(conn, cp()); err == nil || ca == nil || ca.ReasonCode != 0x86 {
			t.Errorf("%s: connected or wrong code (%v)", name, err)
		}
	}
	if _, ca, err := e.connect5(e.dialCert(cert), cp()); err != nil {
		t.Fatalf("with its certificate: %v %+v", err, ca)
	}
	// DPoP-bound tokens have no proof in MQTT.
	dpop := e.token(tokens.Claims{Subject: "client-" + th.ID, ClientID: "client-" + th.ID, ThingID: th.ID,
		Confirmation: &tokens.Confirmation{JKT: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}})
	if code, _ := e.connackCode("tls", &paho.Connect{ClientID: th.ID, Password: []byte(dpop), PasswordFlag: true}); code != 0x86 {
		t.Errorf("DPoP-bound token: %#x", code)
	}
}

// Subscriptions that reach other identities' topics and publishes to them.
func TestAttackTopics(t *testing.T) {
	e := newEnv(t, nil)
	th, other := e.thing("T-100"), e.thing("T-100")
	device := e.mustConnect5(th.ID, e.thingToken(th))
	spy := e.mustConnect5(other.ID, e.thingToken(other))
	admin := e.mustConnect5("ops", e.token(tokens.Claims{Subject: "ops", ClientID: "ops", Scope: []string{"admin"}}))
	for _, f := range []string{
		"#", "+/#", "things/#", "things/+/commands/#", "things/+/telemetry", "$SYS/#", "$SYS/broker/clients/connected",
		"things/" + other.ID + "/commands/#", "things/" + th.ID + "/#", "$share/g/things/" + other.ID + "/commands/#", "+",
	} {
		if rc := device.sub(t, f, 0); rc != 0x87 {
			t.Errorf("device subscribed to %s: %#x", f, rc)
		}
	}
	if rc := device.sub(t, "$share/g/things/"+th.ID+"/commands/#", 0); rc != 0 {
		t.Errorf("shared subscription to its own commands: %#x", rc)
	}
	if rc := admin.sub(t, "$SYS/broker/clients/connected", 0); rc != 0 {
		t.Errorf("administrator $SYS: %#x", rc)
	}
	// A user token with the admin scope is not an administrator's unless the
	// directory says so.
	u := e.user("mallory")
	fake := e.mustConnect5("mallory", e.token(tokens.Claims{Subject: u.ID, ClientID: "app", Scope: []string{"admin"}}))
	if rc := fake.sub(t, "$SYS/#", 0); rc != 0x87 {
		t.Errorf("user with admin scope got $SYS: %#x", rc)
	}

	// Publishing to another thing's topic: QoS 1 gets 0x87; QoS 0 is dropped.
	spy.sub(t, "things/"+other.ID+"/commands/#", 1)
	if rc := device.pub(t, "things/"+other.ID+"/commands/unlock", 1, "x"); rc != 0x87 {
		t.Errorf("QoS 1 publish to another thing: %#x", rc)
	}
	device.pub(t, "things/"+other.ID+"/commands/unlock", 0, "x")
	// A topic alias cannot smuggle a topic past the check.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	alias := uint16(1)
	r, _ := device.Publish(ctx, &paho.Publish{Topic: "things/" + th.ID + "/telemetry", QoS: 1, Payload: []byte("ok"), Properties: &paho.PublishProperties{TopicAlias: &alias}})
	if r == nil || r.ReasonCode != 0 {
		t.Errorf("publish setting an alias for its own topic: %+v", r)
	}
	r, _ = device.Publish(ctx, &paho.Publish{Topic: "things/" + other.ID + "/commands/unlock", QoS: 1, Payload: []byte("x"), Properties: &paho.PublishProperties{TopicAlias: &alias}})
	if r == nil || r.ReasonCode != 0x87 {
		t.Errorf("re-pointing an alias at another thing's topic: %+v", r)
	}
	// The sentinel: published last, received first if anything was delivered.
	spy.pub(t, "things/"+other.ID+"/commands/sentinel", 1, "s")
	if m := spy.expect(t, "things/"+other.ID+"/commands/sentinel"); m == nil {
		return
	}
	spy.none(t, "things/"+other.ID+"/commands/unlock")
}

// A will on a topic the identity may not publish to is refused at CONNECT.
func TestAttackWillTopic(t *testing.T) {
	e := newEnv(t, nil)
	th, other := e.thing("T-100"), e.thing("T-100")
	code, _ := e.connackCode("tls", &paho.Connect{ClientID: th.ID, Password: []byte(e.thingToken(th)), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: "things/" + other.ID + "/commands/unlock", Payload: []byte("x")}})
	if code != 0x87 {
		t.Errorf("will on another thing's topic: %#x", code)
	}
	code, _ = e.connackCode("tls", &paho.Connect{ClientID: th.ID, Password: []byte(e.thingToken(th)), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: "things/" + th.ID + "/status", Payload: []byte("offline")}})
	if code != 0 {
		t.Errorf("will on its own topic: %#x", code)
	}
}

// No identity can resume another identity's session by naming its client id.
func TestAttackSessionTakeover(t *testing.T) {
	e := newEnv(t, nil)
	alice, bob := e.user("alice"), e.user("bob")
	expiry := uint32(3600)
	cp := func(tok string) *paho.Connect {
		return &paho.Connect{ClientID: "shared-name", Password: []byte(tok), PasswordFlag: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	c, _, err := e.connect5(e.dial("tls"), cp(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"})))
	if err != nil {
		t.Fatal(err)
	}
	c.Disconnect(&paho.Disconnect{})
	if code, _ := e.connackCode("tls", cp(e.token(tokens.Claims{Subject: bob.ID, ClientID: "app"}))); code != 0x85 {
		t.Errorf("bob took alice's session: %#x", code)
	}
	if code, _ := e.connackCode("tls", cp(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}))); code != 0 {
		t.Errorf("alice cannot resume her session: %#x", code)
	}
}

// Oversize and malformed packets end the connection; the broker serves on.
func TestAttackPackets(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.Limits.MaxPacketSize, o.Limits.ConnectTimeout = 1024, time.Second })
	th := e.thing("T-100")
	c := e.mustConnect5(th.ID, e.thingToken(th))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Publish(ctx, &paho.Publish{Topic: "things/" + th.ID + "/x", QoS: 1, Payload: bytes.Repeat([]byte("x"), 4096)})
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Error("oversize packet did not end the connection")
	}
	for name, raw := range map[string][]byte{
		"not CONNECT first":     {0x30, 0x03, 0x00, 0x01, 'a'},
		"bad protocol name":     {0x10, 0x0c, 0x00, 0x04, 'M', 'Q', 'X', 'X', 0x05, 0x02, 0x00, 0x3c, 0x00, 0x00},
		"remaining length lies": {0x10, 0xff, 0xff, 0xff, 0x7f},
		"truncated":             {0x10, 0x10, 0x00, 0x04, 'M'},
		"reserved flags":        {0x1f, 0x00},
		"HTTP":                  []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
	} {
		conn := e.dial("tcp")
		conn.Write(raw)
		conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		io.Copy(io.Discard, conn) // returns when the broker closes the connection
		conn.Close()
		_ = name
	}
	e.mustConnect5(th.ID, e.thingToken(th)) // still serving
}

// Anonymous clients get in only where a listener allows, with exactly the
// anonymous rules.
func TestAnonymous(t *testing.T) {
	e := newEnv(t, nil)
	if code, _ := e.connackCode("tcp", &paho.Connect{ClientID: "lab-1"}); code != 0x87 {
		t.Errorf("anonymous on a listener without anonymous: %#x", code)
	}
	c, _, err := e.connect5(e.dial("lab"), &paho.Connect{ClientID: "lab-1", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	if rc := c.sub(t, "lab/public/#", 0); rc != 0 {
		t.Errorf("anonymous rule: %#x", rc)
	}
	if rc := c.sub(t, "things/#", 0); rc != 0x87 {
		t.Errorf("anonymous got more than its rules: %#x", rc)
	}
	// A wrong token is refused, not treated as anonymous.
	if code, _ := e.connackCode("lab", &paho.Connect{ClientID: "lab-2", Password: []byte("x.y.z"), PasswordFlag: true}); code != 0x86 {
		t.Errorf("bad token on an anonymous listener: %#x", code)
	}
}

// Certificate login: off unless configured; a certificate the checker
// refuses is refused.
func TestCertificateLogin(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	if _, ca, err := e.connect5(e.dialCert(e.deviceCert(th.ID, false)), &paho.Connect{ClientID: th.ID}); err == nil || ca.ReasonCode != 0x87 {
		t.Errorf("certificate login while off: %v", err)
	}
	e = newEnv(t, func(o *Options) { o.CertificateLogin = true })
	th = e.thing("T-100")
	if _, ca, err := e.connect5(e.dialCert(e.deviceCert(th.ID, false)), &paho.Connect{ClientID: th.ID}); err != nil {
		t.Errorf("certificate login: %v %+v", err, ca)
	}
	if _, ca, err := e.connect5(e.dialCert(e.deviceCert(th.ID, true)), &paho.Connect{ClientID: th.ID}); err == nil || ca.ReasonCode != 0x86 {
		t.Errorf("self-signed certificate: %v", err)
	}
	other := e.thing("T-100")
	if _, ca, err := e.connect5(e.dialCert(e.deviceCert(th.ID, false)), &paho.Connect{ClientID: other.ID}); err == nil || ca.ReasonCode != 0x85 {
		t.Errorf("certificate of one thing, client id of another: %v", err)
	}
}

// The WebSocket listener refuses browser origins that are not configured.
func TestWebSocketOrigins(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("T-100")
	d := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: e.pool, ServerName: "localhost"}, Subprotocols: []string{"mqtt"}}
	url := "wss://" + e.b.Addr("websocket") + WebSocketPath
	for origin, want := range map[string]int{"https://evil.example.com": http.StatusForbidden, "https://app.example.com": http.StatusSwitchingProtocols, "": http.StatusSwitchingProtocols} {
		h := http.Header{}
		if origin != "" {
			h.Set("Origin", origin)
		}
		ws, resp, err := d.Dial(url, h)
		if resp == nil || resp.StatusCode != want {
			t.Errorf("origin %q: %v %v", origin, resp, err)
			continue
		}
		if ws == nil {
			continue
		}
		conn := thingmqtt.WebSocket(ws)
		if _, ca, err := e.connect5(conn, &paho.Connect{ClientID: th.ID, CleanStart: true, Password: []byte(e.thingToken(th)), PasswordFlag: true}); err != nil {
			t.Errorf("MQTT over WebSocket: %v %+v", err, ca)
		}
	}
}
