package mqttlink_test

import (
	"context"
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/examples/internal/mqttlink"
	"github.com/thingid/thingid/examples/internal/platformtest"
	"github.com/thingid/thingid/sdk"
)

// thing calls home as a device of the platform: its certificate and a token
// source of its own, bound to that certificate.
func thing(t *testing.T, pl *platformtest.Platform, serial string) (string, *tls.Certificate, *sdk.Client) {
	t.Helper()
	id, certFile, keyFile := pl.Device(t, "Thermostat", serial, 0)
	dev, err := sdk.New(sdk.Config{Server: pl.URL, CertFile: certFile, KeyFile: keyFile, RootCAs: pl.Roots})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return id, &pair, dev
}

func token(t *testing.T, dev *sdk.Client) string {
	t.Helper()
	ts, err := dev.CallHome(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	return tok.AccessToken
}

// A device connects with its certificate and bound token, takes a fresh
// token without reconnecting (MQTT 5 re-authentication), and is refused
// what is not its own.
func TestConnectAndReauthenticate(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{Broker: true})
	id, cert, dev := thing(t, pl, "TH-1")
	got := make(chan mqttlink.Message, 10)
	ctx := context.Background()
	conn, err := mqttlink.Dial(ctx, mqttlink.Config{Broker: pl.BrokerURL, RootCAs: pl.Roots, Certificate: cert, ClientID: id,
		Token: token(t, dev), Subscribe: []string{"things/" + id + "/commands/#"}, Timeout: 10 * time.Second,
		OnMessage: func(topic string, payload []byte) { got <- mqttlink.Message{Topic: topic, Payload: payload} }})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// Its own commands come back to it (a thing may publish under its own topic).
	if err := conn.Publish(ctx, "things/"+id+"/commands/setpoint", []byte("21.5")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-got:
		if m.Topic != "things/"+id+"/commands/setpoint" || string(m.Payload) != "21.5" {
			t.Fatalf("got %s %q", m.Topic, m.Payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the message did not come back")
	}

	fresh := token(t, dev)
	if did, err := conn.Renew(ctx, fresh, cert.Leaf); !did || err != nil {
		t.Fatalf("re-authentication with a fresh token: %v %v", did, err)
	}
	if did, err := conn.Renew(ctx, fresh, cert.Leaf); did || err != nil {
		t.Fatalf("the same token again: %v %v", did, err)
	}
	_, otherCert, _ := thing(t, pl, "TH-4")
	if _, err := conn.Renew(ctx, "a token bound to another certificate", otherCert.Leaf); !errors.Is(err, mqttlink.ErrNewCertificate) {
		t.Fatalf("a token for a renewed certificate: %v", err)
	}
	if err := conn.Publish(ctx, "things/"+id+"/telemetry", []byte(`{"t":20}`)); err != nil {
		t.Fatalf("publishing after re-authentication: %v", err)
	}
	if err := conn.Publish(ctx, "things/someone-else/telemetry", []byte(`{}`)); err == nil {
		t.Fatal("published under another thing's topic")
	}

	// Another thing's token is refused, and ends the connection.
	_, _, other := thing(t, pl, "TH-2")
	if err := conn.Reauthenticate(ctx, token(t, other)); err == nil {
		t.Fatal("re-authenticated as another thing")
	}
	select {
	case <-conn.Done():
		if !mqttlink.Revoked(conn.Err()) {
			t.Errorf("ended with %v", conn.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the connection should end after a refused re-authentication")
	}
}

// What the broker refuses at CONNECT comes back as a RefusedError naming the
// reason.
func TestRefusals(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{Broker: true})
	id, cert, dev := thing(t, pl, "TH-3")
	tok := token(t, dev)
	for _, tc := range []struct {
		name    string
		cfg     mqttlink.Config
		code    byte
		revoked bool
	}{
		{"bound token without its certificate", mqttlink.Config{ClientID: id, Token: tok}, mqttlink.CodeBadCredentials, true},
		{"another client identifier", mqttlink.Config{ClientID: "not-" + id, Token: tok, Certificate: cert}, 0x85, false},
		{"a token that is not one", mqttlink.Config{ClientID: id, Token: "not.a.token", Certificate: cert}, mqttlink.CodeBadCredentials, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Broker, tc.cfg.RootCAs = pl.BrokerURL, pl.Roots
			_, err := mqttlink.Dial(context.Background(), tc.cfg)
			var re *mqttlink.RefusedError
			if !errors.As(err, &re) || re.Code != tc.code || mqttlink.Revoked(err) != tc.revoked {
				t.Fatalf("got %v, want reason code 0x%02X", err, tc.code)
			}
		})
	}
	// A subscription outside the thing's topics is refused by name.
	_, err := mqttlink.Dial(context.Background(), mqttlink.Config{Broker: pl.BrokerURL, RootCAs: pl.Roots, Certificate: cert,
		ClientID: id, Token: tok, Subscribe: []string{"things/+/commands/#"}})
	if err == nil || !strings.Contains(err.Error(), "things/+/commands/#") {
		t.Fatalf("subscription to every thing's commands: %v", err)
	}
}

// Broker URLs other than mqtts:// and mqtt:// are refused before dialing.
func TestBrokerURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8883", "https://localhost:8883", "mqtts://", "mqtts://h/path", "mqtts://u:p@h", "mqtts://h?x=1"} {
		if _, err := mqttlink.Dial(context.Background(), mqttlink.Config{Broker: u, ClientID: "c", Token: "t"}); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

func FuzzBrokerURL(f *testing.F) {
	for _, s := range []string{"mqtts://localhost:8883", "mqtt://127.0.0.1", "mqtts://[::1]:1", "mqtts://%zz", "mqtt://h:99999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, u string) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel() // never dial: only the parsing is under test
		mqttlink.Dial(ctx, mqttlink.Config{Broker: u, ClientID: "c", Token: "t", Timeout: time.Millisecond})
	})
}
