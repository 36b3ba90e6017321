package broker

import (
	"testing"

	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/mqttnats"
	"github.com/thingid/thingid/internal/mqttnats/natstest"
	"github.com/thingid/thingid/internal/tokens"
)

// No identity can resume another identity's persistent session on another
// node of a cluster by naming its client id: the node reads the session
// from the cluster before the broker decides, so the owner check sees the
// identity stored with it (session_owner, 0x85), and its owner resumes it
// there.
func TestAttackSessionTakeoverAcrossNodes(t *testing.T) {
	url := natstest.Start(t)
	cluster := func(node string) Cluster {
		r, err := mqttnats.Dial(url, node, quiet)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	var tlsB Listener // node b's TLS listener, its configuration its own
	e := newEnv(t, func(o *Options) {
		o.Cluster = cluster("a")
		tlsB = o.Listeners[0]
		tlsB.TLS = tlsB.TLS.Clone()
	})
	other := *e // node b: the same store and keys, a broker of its own
	other.opts.Dir, other.opts.Cluster, other.opts.Listeners = t.TempDir(), cluster("b"), []Listener{tlsB}
	other.start()

	alice, bob := e.user("alice"), e.user("bob")
	expiry := uint32(3600)
	cp := func(tok string, clean bool) *paho.Connect {
		return &paho.Connect{ClientID: "shared-name", CleanStart: clean, Password: []byte(tok), PasswordFlag: true,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}}
	}
	c, _, err := e.connect5(e.dial("tls"), cp(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}), true))
	if err != nil {
		t.Fatal(err)
	}
	c.Disconnect(&paho.Disconnect{})
	for _, clean := range []bool{false, true} {
		if code, _ := other.connackCode("tls", cp(e.token(tokens.Claims{Subject: bob.ID, ClientID: "app"}), clean)); code != 0x85 {
			t.Errorf("bob took alice's session on another node (clean start %v): %#x", clean, code)
		}
	}
	c, ca, err := other.connect5(other.dial("tls"), cp(e.token(tokens.Claims{Subject: alice.ID, ClientID: "app"}), false))
	if err != nil {
		t.Fatalf("alice cannot resume her session on another node: %v", err)
	}
	if !ca.SessionPresent {
		t.Error("alice's session is not present on another node")
	}
	c.Disconnect(&paho.Disconnect{})
}
