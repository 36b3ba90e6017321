package mqtt

import (
	"fmt"
	"sync"
	"testing"

	"github.com/thingid/thingid/internal/mqtt/mqtttest"
	"github.com/thingid/thingid/internal/mqtt/packet"
)

// Attacks on Server.DisconnectIdentity: what the server decided about one
// identity never ends a connection that took the client identifier over.

// takers gives the connections a test registers (by the client's local
// address) an identity of their own at CONNECT, after testAuth admitted
// them as "user".
type takers struct{ m sync.Map }

func (tk *takers) install(s *server) {
	s.auth.setOnConnect(func(c *Client) {
		if nc := c.Conn(); nc != nil {
			if id, ok := tk.m.Load(nc.RemoteAddr().String()); ok {
				c.SetIdentity(id)
			}
		}
	})
}

// dial dials a connection that connects as identity.
func (tk *takers) dial(t *testing.T, s *server, identity any) *mqtttest.Conn {
	c := s.dial(t, packet.V5)
	tk.m.Store(c.NC.LocalAddr().String(), identity)
	return c
}

// TestAttackDisconnectIdentityRacesTakeover: an expiry or a revocation
// decided about the identity a session had ("user") races a connection
// that takes the client identifier over as another identity, clean or
// resuming, many rounds: whichever wins, the connection that took over
// stays connected with its identity, and the old one ends (taken over,
// or with the expiry's code). Half the rounds decide only once the
// takeover's CONNACK came, so a DisconnectIdentity that ignored the
// identity would end the new connection every time.
func TestAttackDisconnectIdentityRacesTakeover(t *testing.T) {
	s := newServer(t, nil)
	var tk takers
	tk.install(s)
	rounds := 120
	if testing.Short() {
		rounds = 30
	}
	for round := range rounds {
		id := fmt.Sprint("race-", round)
		expiry := withExpiry(60)
		old, _ := s.connect(t, packet.V5, id, expiry)
		tag := new(int)
		taker := tk.dial(t, s, tag)
		discard := round%2 == 1
		after := round%4 >= 2
		var ended bool
		done := make(chan struct{})
		decide := func() {
			defer close(done)
			ended = s.DisconnectIdentity(id, "user", packet.MaximumConnectTime, "the token expired", discard)
		}
		if !after {
			go decide()
		}
		pk := &packet.Connect{CleanStart: round%3 == 0, ClientID: id, KeepAlive: 30,
			UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")}
		expiry(pk)
		taker.Connect(pk)
		if after {
			decide()
		}
		<-done
		if after && ended {
			t.Fatalf("round %d: the identity before the takeover was ended after it", round)
		}
		taker.Send(&packet.Ping{})
		if got := taker.Read(); got.Type() != packet.PINGRESP {
			t.Fatalf("round %d (discard %v, decided after %v, ended %v): the connection that took over got %+v", round, discard, after, ended, got)
		}
		if cl := s.Client(id); cl == nil || cl.Identity() != any(tag) || cl.Conn() == nil {
			t.Fatalf("round %d: the session is not the taker's, connected", round)
		}
		d, ok := old.Read().(*packet.Disconnect)
		if !ok || (d.Code != packet.SessionTakenOver && d.Code != packet.MaximumConnectTime) {
			t.Fatalf("round %d: the old connection got %+v", round, d)
		}
		if !ended && d.Code != packet.SessionTakenOver {
			t.Fatalf("round %d: not ended, yet the old connection got %#x", round, d.Code)
		}
		old.NC.Close()
		taker.NC.Close()
	}
}

// TestAttackStaleDiscardOfAwaySession: a revocation (discard) decided
// about the identity a session had before another identity took it over
// discards nothing once the taker is away: neither its pending will nor
// its session with a queued message. The identity it has now is
// discarded.
func TestAttackStaleDiscardOfAwaySession(t *testing.T) {
	s := newServer(t, nil)
	var tk takers
	tk.install(s)
	stale := narrowed{"user"} // testAuth lets "user" take a narrowed session over
	w, _ := s.connect(t, packet.V5, "watch", nil)
	w.Subscribe(1, []packet.ReasonCode{1}, mqtttest.Sub("will/#", 1))
	expiry := withExpiry(60)
	old := tk.dial(t, s, stale)
	pk := &packet.Connect{CleanStart: true, ClientID: "away", KeepAlive: 30,
		UsernameFlag: true, Username: "user", PasswordFlag: true, Password: []byte("ok")}
	expiry(pk)
	old.Connect(pk)
	if got := s.Client("away").Identity(); got != any(stale) {
		t.Fatalf("identity %v", got)
	}

	taker, ack := s.connect(t, packet.V5, "away", func(pk *packet.Connect) {
		pk.CleanStart = false
		expiry(pk)
		pk.Will = &packet.Will{Topic: "will/away", Payload: []byte("x")}
		pk.Will.Props.WillDelay = 1
		pk.Will.Props.Set(packet.PropWillDelay)
	})
	if !ack.SessionPresent {
		t.Fatal("the takeover did not resume")
	}
	old.Disconnected(packet.SessionTakenOver)
	taker.Subscribe(1, []packet.ReasonCode{1}, mqtttest.Sub("q/#", 1))
	taker.NC.Close() // away, its will pending for a second
	eventually(t, "the taker away", func() bool { c := s.Client("away"); return c != nil && c.Conn() == nil })

	p, _ := s.connect(t, packet.V5, "pub", nil)
	p.Send(&packet.Publish{QoS: 1, PacketID: 1, Topic: "q/1", Payload: []byte("queued")})
	if a, ok := p.Read().(*packet.Ack); !ok || a.PacketID != 1 {
		t.Fatalf("PUBACK %+v", a)
	}
	if s.DisconnectIdentity("away", stale, packet.NotAuthorized, "session ended: revoked", true) {
		t.Fatal("a stale identity's revocation reached the session of another")
	}
	if got := w.Publication(); got.Topic != "will/away" {
		t.Fatalf("got %s; want the taker's will kept through the refused discard", got.Topic)
	}
	back, ack := s.connect(t, packet.V5, "away", func(pk *packet.Connect) {
		pk.CleanStart = false
		expiry(pk)
	})
	if !ack.SessionPresent {
		t.Fatal("the session was discarded by a stale identity's revocation")
	}
	if got := back.Publication(); string(got.Payload) != "queued" {
		t.Fatalf("got %q; want the queued message", got.Payload)
	}
	back.NC.Close()
	eventually(t, "away again", func() bool { c := s.Client("away"); return c != nil && c.Conn() == nil })
	if !s.DisconnectIdentity("away", "user", packet.NotAuthorized, "session ended: revoked", true) {
		t.Fatal("the identity the session has was not discarded")
	}
	eventually(t, "the session discarded", func() bool { return s.Client("away") == nil })
}

// TestAttackDisconnectIdentityAfterReauth: a re-authentication (MQTT 5
// AUTH) that changes the identity makes the one before it stale: what was
// decided about it ends nothing; the new identity is ended.
func TestAttackDisconnectIdentityAfterReauth(t *testing.T) {
	s := newServer(t, nil)
	c, _ := s.connect(t, packet.V5, "reauth", nil)
	reauthenticate(t, c, "narrow")
	for _, discard := range []bool{true, false} {
		if s.DisconnectIdentity("reauth", "user", packet.NotAuthorized, "revoked", discard) {
			t.Fatalf("discard %v: the identity before the re-authentication was ended", discard)
		}
	}
	if s.DisconnectIdentity("nobody", "user", packet.NotAuthorized, "revoked", true) {
		t.Fatal("a client identifier without a session was ended")
	}
	c.Send(&packet.Ping{})
	if got := c.Read(); got.Type() != packet.PINGRESP {
		t.Fatalf("after the refused ends: %+v", got)
	}
	if !s.DisconnectIdentity("reauth", narrowed{"user"}, packet.NotAuthorized, "revoked", true) {
		t.Fatal("the identity after the re-authentication was not ended")
	}
	c.Disconnected(packet.NotAuthorized)
	eventually(t, "the session discarded", func() bool { return s.Client("reauth") == nil })
}
