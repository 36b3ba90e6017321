package broker

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"testing"

	"github.com/eclipse/paho.golang/paho"
	"github.com/thingid/thingid/internal/mqttload/heldtest"
)

// BenchmarkHeldConnections measures what one held, idle, authenticated
// connection costs the broker: live heap, goroutine stacks and goroutines,
// after a garbage collection, over plain TCP and over TLS. Each thing
// connects with its own token through the real listener. The connections are
// opened by a child process (TestHoldConnections in this binary) so that
// the clients' side of them (their TLS state, the server certificate each
// one parses) is not counted. With THINGID_HELD_PROFILE=dir it also writes
// the heap and goroutine profiles taken while the connections are held.
//
//	go test -run '^$' -bench HeldConnections -benchtime 1x ./internal/broker/
//
// tls-classic-hello is TLS with a client that offers no post-quantum key
// share (heldtest.EnvClassicHello), as most devices do: a smaller
// ClientHello, which crypto/tls's buffers keep the size of.
func BenchmarkHeldConnections(b *testing.B) {
	for _, listener := range []string{"tcp", "tls"} {
		b.Run(listener, func(b *testing.B) { benchHeld(b, listener, 2000) })
	}
	b.Run("tls-classic-hello", func(b *testing.B) { benchHeld(b, "tls", 2000, heldtest.EnvClassicHello+"=1") })
}

func benchHeld(b *testing.B, listener string, n int, childEnv ...string) {
	if os.Getenv("THINGID_HELD_PROFILE") != "" {
		runtime.MemProfileRate = 1 // every allocation, not a sample
	}
	// The child connects from one address: let it hold them all.
	e := newEnv(b, func(o *Options) { o.Limits.ConnectionsPerAddress = n + 1 })
	dir := b.TempDir()
	var creds strings.Builder
	for range n {
		th := e.thing("M")
		fmt.Fprintf(&creds, "%s %s\n", th.ID, e.thingToken(th))
	}
	env := append([]string{heldtest.EnvAddr + "=" + e.b.Addr(listener), heldtest.EnvCreds + "=" + filepath.Join(dir, "creds")}, childEnv...)
	if err := os.WriteFile(filepath.Join(dir, "creds"), []byte(creds.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	if listener == "tls" {
		ca := e.opts.Listeners[0].TLS.Certificates[0].Certificate[0]
		if err := os.WriteFile(filepath.Join(dir, "ca.der"), ca, 0o600); err != nil {
			b.Fatal(err)
		}
		env = append(env, heldtest.EnvCA+"="+filepath.Join(dir, "ca.der"))
	}
	b.ResetTimer()
	o := heldtest.Options{N: n, Env: env, Ready: func() {
		if got := e.b.server.Stats.Connected.Load(); got != int64(n) {
			b.Fatalf("%d clients connected, want %d", got, n)
		}
	}}
	if p := os.Getenv("THINGID_HELD_PROFILE"); p != "" {
		o.Held = func() { writeProfiles(b, p, listener) }
	}
	heldtest.Measure(b, o)
}

func writeProfiles(b *testing.B, dir, listener string) {
	for _, p := range []string{"heap", "goroutine"} {
		f, err := os.Create(filepath.Join(dir, listener+"."+p))
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.Lookup(p).WriteTo(f, 0); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}

// TestHoldConnections is the child process of BenchmarkHeldConnections: it
// holds the connections until its standard input closes. Run on its own, it
// does nothing.
func TestHoldConnections(t *testing.T) { heldtest.Hold(t) }

// A connection keeps nothing of its CONNECT packet: the core copies what it
// keeps (client identifier, will) and the session holds the identity, never
// the token sent as Authentication Data.
func TestConnectionKeepsNoToken(t *testing.T) {
	e := newEnv(t, nil)
	th := e.thing("M")
	tok := e.thingToken(th)
	_, _, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th.ID, CleanStart: true, Username: "device", UsernameFlag: true,
		Properties:  &paho.ConnectProperties{AuthMethod: AuthMethod, AuthData: []byte(tok), User: paho.UserProperties{{Key: "k", Value: "v"}}},
		WillMessage: &paho.WillMessage{Topic: "things/" + th.ID + "/status", Payload: []byte("offline")}})
	if err != nil {
		t.Fatal(err)
	}
	cl := e.b.server.Client(th.ID)
	if cl == nil {
		t.Fatal("no client")
	}
	id := sessionOf(cl).state.Load().id
	if cl.ID != th.ID || id.AuthMethod != AuthMethod || id.Thing != th.ID || bytes.Contains(e.b.auth.EncodeIdentity(cl.Identity()), []byte(tok)) {
		t.Fatalf("the session keeps id %q, method %q, thing %q, record %q", cl.ID, id.AuthMethod, id.Thing, e.b.auth.EncodeIdentity(cl.Identity()))
	}

	// A persistent session keeps its identity record (record.go).
	th2 := e.thing("M")
	expiry := uint32(60)
	if _, _, err := e.connect5(e.dial("tls"), &paho.Connect{ClientID: th2.ID, Password: []byte(e.thingToken(th2)), PasswordFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}); err != nil {
		t.Fatal(err)
	}
	rec := e.b.auth.EncodeIdentity(e.b.server.Client(th2.ID).Identity())
	if id, ok := decodeRecord(rec); !ok || id.Thing != th2.ID {
		t.Fatalf("persistent session record %q", rec)
	}
}
