package coapgw

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/store"
)

// pskThing creates an active thing and issues it a pre-shared key, as
// `thingid factory issue --psk` does.
func (e *env) pskThing(serial string) (*store.Thing, psk.Issued) {
	e.t.Helper()
	ctx := context.Background()
	th, err := e.ids.CreateThing(ctx, "test", &store.Thing{Model: "THERMO", SerialNumber: serial})
	if err != nil {
		e.t.Fatal(err)
	}
	return th, e.issuePSK(th.ID)
}

// issuePSK gives the thing a new key, replacing its key.
func (e *env) issuePSK(thingID string) psk.Issued {
	e.t.Helper()
	in, row, err := psk.Issue(e.master, thingID)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.ids.SetThingPSKs(context.Background(), "test", []*store.ThingPSK{row}); err != nil {
		e.t.Fatal(err)
	}
	return in
}

// dialPSK opens a DTLS session with go-coap's client on a PSK suite,
// sending identity and using key.
func (e *env) dialPSK(identity, key string) (*udpClient.Conn, error) {
	return dtls.Dial(e.gw.DTLSAddr().String(), &piondtls.Config{
		PSK:                  func([]byte) ([]byte, error) { return []byte(key), nil },
		PSKIdentityHint:      []byte(identity),
		CipherSuites:         []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
	})
}

// openPSK is a PSK session that calls home, closed when t ends.
func (e *env) openPSK(t *testing.T, in psk.Issued, when string) *udpClient.Conn {
	t.Helper()
	cc, err := e.dialPSK(in.Identity, in.Key)
	if err != nil {
		t.Fatal(when+":", err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !callsHome(ctx, cc) {
		t.Fatal(when + ": no answer")
	}
	return cc
}

// waitClosed fails t unless the server closes cc's session.
func waitClosed(t *testing.T, cc *udpClient.Conn, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	select {
	case <-cc.Done():
	case <-ctx.Done():
		t.Fatal(what + ": the session was not closed")
	}
}

func TestPSKCallHome(t *testing.T) {
	e := newEnv(t, nil)
	th, in := e.pskThing("PSK-1")
	cc := e.openPSK(t, in, "PSK session")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cc.Get(ctx, PathSelf)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := res.ReadBody()
	if !strings.Contains(string(body), `"id":"`+th.ID+`"`) {
		t.Fatalf("call home over PSK: %s", body)
	}
}

// TestPSKOfAnotherThingRefused: a thing holding its own key cannot be
// another thing by sending that thing's identity, nor by pairing the other
// thing's id with its own key id.
func TestPSKOfAnotherThingRefused(t *testing.T) {
	e := newEnv(t, nil)
	_, mine := e.pskThing("PSK-A")
	victim, theirs := e.pskThing("PSK-B")
	myKeyID := mine.Identity[strings.LastIndexByte(mine.Identity, '.')+1:]
	for name, identity := range map[string]string{
		"the other thing's identity":              theirs.Identity,
		"the other thing's id with my key id":     psk.Identity{ThingID: victim.ID, KeyID: myKeyID}.String(),
		"my identity, the other thing's id cased": strings.ToUpper(victim.ID) + "." + myKeyID,
	} {
		if served(e.dialPSK(identity, mine.Key)) {
			t.Errorf("%s with my key was served", name)
		}
	}
	e.openPSK(t, theirs, "the other thing's own key")
}

func TestPSKUnknownIdentityRefused(t *testing.T) {
	e := newEnv(t, nil)
	_, in := e.pskThing("PSK-C")
	bare, err := e.ids.CreateThing(context.Background(), "test", &store.Thing{SerialNumber: "NO-KEY"})
	if err != nil {
		t.Fatal(err)
	}
	keyID := in.Identity[strings.LastIndexByte(in.Identity, '.')+1:]
	for name, identity := range map[string]string{
		"no such thing":          "01900000-0000-7000-8000-000000000000." + keyID,
		"a thing with no key":    bare.ID + "." + keyID,
		"no key id":              in.Identity[:strings.LastIndexByte(in.Identity, '.')],
		"not an identity at all": "alice",
	} {
		if served(e.dialPSK(identity, in.Key)) {
			t.Errorf("%s (%q) was served", name, identity)
		}
	}
}

func TestPSKDisabledThingRefusedAndSessionEnded(t *testing.T) {
	e := newEnv(t, nil)
	th, in := e.pskThing("PSK-D")
	cc := e.openPSK(t, in, "before disable")
	if _, err := e.ids.UpdateThing(context.Background(), "test", th.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, cc, "disabled thing")
	if served(e.dialPSK(in.Identity, in.Key)) {
		t.Fatal("a disabled thing's key made a new session")
	}
}

// TestPSKReissueEndsSessionAndOldKeyRefused: a re-issued key ends the
// sessions of the key it replaced, the old key is refused from then on, and
// the thing's certificate session is not the key's business.
func TestPSKReissueEndsSessionAndOldKeyRefused(t *testing.T) {
	e := newEnv(t, nil)
	th, cert := e.thing("PSK-E")
	old := e.issuePSK(th.ID)
	withKey := e.openPSK(t, old, "before re-issue")
	withCert := e.open(t, cert, "certificate session")
	cur := e.issuePSK(th.ID)
	waitClosed(t, withKey, "re-issued key")
	if served(e.dialPSK(old.Identity, old.Key)) {
		t.Fatal("the replaced key made a new session")
	}
	if served(e.dialPSK(cur.Identity, old.Key)) {
		t.Fatal("the new identity with the replaced key made a new session")
	}
	e.openPSK(t, cur, "the new key")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if !callsHome(ctx, withCert) {
		t.Fatal("the re-issue ended the thing's certificate session")
	}
}

func TestPSKUnlinkEndsSession(t *testing.T) {
	e := newEnv(t, nil)
	th, in := e.pskThing("PSK-F")
	ctx := context.Background()
	owner := e.own(t, th.ID)
	cc := e.openPSK(t, in, "before unlink")
	if err := e.ids.RemoveRelationship(ctx, "test", owner); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, cc, "unlinked thing")
}

// TestPSKSessionsOffWithoutKeys: a gateway given no PSKs offers no PSK
// suite at all.
func TestPSKSessionsOffWithoutKeys(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.PSKs = nil })
	_, in := e.pskThing("PSK-G")
	if served(e.dialPSK(in.Identity, in.Key)) {
		t.Fatal("a gateway without PSKs served a PSK session")
	}
}

// TestCoAPClientPSK: libcoap's client with -u and -k, against the gateway.
func TestCoAPClientPSK(t *testing.T) {
	coapClient(t)
	e := newEnv(t, nil)
	th, in := e.pskThing("LIBCOAP-PSK")
	url := "coaps://" + e.gw.DTLSAddr().String() + PathSelf
	out, err := runCoAPClient(t, "-u", in.Identity, "-k", in.Key, "-m", "get", url)
	if err != nil || !strings.Contains(out, `"id":"`+th.ID+`"`) {
		t.Fatalf("coap-client -u -k GET %s: %v\n%s", url, err, out)
	}
	wrong := strings.Repeat("A", len(in.Key))
	if out, _ := runCoAPClient(t, "-u", in.Identity, "-k", wrong, "-m", "get", url); strings.Contains(out, `"id"`) {
		t.Fatalf("a wrong key was answered:\n%s", out)
	}
	e.issuePSK(th.ID)
	if out, _ := runCoAPClient(t, "-u", in.Identity, "-k", in.Key, "-m", "get", url); strings.Contains(out, `"id"`) {
		t.Fatalf("a re-issued key was answered:\n%s", out)
	}
}

// countedKeys is psk.Keys that counts its lookups and makes change once,
// after the first lookup that finds a key: inside the PSK callback, after
// the store was read and before the handshake's session is recorded.
type countedKeys struct {
	PSKs
	lookups atomic.Int32
	once    sync.Once
	change  atomic.Pointer[func()] // set while handshakes may run
}

func (k *countedKeys) Key(ctx context.Context, identity []byte) (*store.Thing, []byte, error) {
	k.lookups.Add(1)
	th, key, err := k.PSKs.Key(ctx, identity)
	if change := k.change.Load(); err == nil && change != nil {
		k.once.Do(*change)
	}
	return th, key, err
}

// TestPSKKeyReadOncePerHandshake: the thing and key the PSK callback
// found make the session; the store is not read again.
func TestPSKKeyReadOncePerHandshake(t *testing.T) {
	keys := &countedKeys{}
	e := newEnv(t, func(o *Options) { keys.PSKs = o.PSKs; o.PSKs = keys })
	th, in := e.pskThing("PSK-ONCE")
	cc := e.openPSK(t, in, "PSK session")
	if n := keys.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups of the key for one handshake, want 1", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cc.Get(ctx, PathSelf)
	if err != nil {
		t.Fatal(err)
	}
	if body, _ := res.ReadBody(); !strings.Contains(string(body), `"id":"`+th.ID+`"`) {
		t.Fatalf("call home: %s", body)
	}
}

// TestPSKChangeDuringHandshakeRefused: the thing disabled, its key
// re-issued or its owner unlinked after the PSK callback found its key and
// before the session is recorded — when no session exists for the event to
// end — closes the session that handshake makes, with or without an event
// bus. Its next handshake decides afresh.
func TestPSKChangeDuringHandshakeRefused(t *testing.T) {
	for _, tc := range []struct {
		name        string
		noBus       bool
		change      func(e *env, th *store.Thing, owner store.Relationship) error
		servedAfter bool // whether the key makes a session afterwards
	}{
		{name: "disabled", change: func(e *env, th *store.Thing, _ store.Relationship) error {
			_, err := e.ids.UpdateThing(context.Background(), "test", th.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil })
			return err
		}},
		{name: "disabled, no event bus", noBus: true, change: func(e *env, th *store.Thing, _ store.Relationship) error {
			_, err := e.ids.UpdateThing(context.Background(), "test", th.ID, 0, func(t *store.Thing) error { t.Status = store.StatusDisabled; return nil })
			return err
		}},
		{name: "key re-issued", change: func(e *env, th *store.Thing, _ store.Relationship) error {
			e.issuePSK(th.ID)
			return nil
		}},
		{name: "owner unlinked", servedAfter: true, change: func(e *env, _ *store.Thing, owner store.Relationship) error {
			return e.ids.RemoveRelationship(context.Background(), "test", owner)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := &countedKeys{}
			e := newEnv(t, func(o *Options) {
				keys.PSKs = o.PSKs
				o.PSKs = keys
				if tc.noBus {
					o.Bus = nil
				}
			})
			th, in := e.pskThing("PSK-MID")
			owner := e.own(t, th.ID)
			changed := make(chan error, 1)
			change := func() { changed <- tc.change(e, th, owner) }
			keys.change.Store(&change)
			if served(e.dialPSK(in.Identity, in.Key)) {
				t.Fatalf("%s between the key's lookup and the session: the session was served", tc.name)
			}
			if err := <-changed; err != nil {
				t.Fatal(err)
			}
			if again := served(e.dialPSK(in.Identity, in.Key)); again != tc.servedAfter {
				t.Fatalf("the next handshake served: %v, want %v", again, tc.servedAfter)
			}
		})
	}
}

// TestPSKResyncDuringHandshakeRefused: a node that may have missed events
// (events.Resync) between a key's lookup and its session's recording
// cannot tell whether its thing changed: the session is closed, and the
// next handshake, read afresh, is served.
func TestPSKResyncDuringHandshakeRefused(t *testing.T) {
	keys := &countedKeys{}
	bus := events.New()
	e := newEnv(t, func(o *Options) { keys.PSKs, o.PSKs, o.Bus = o.PSKs, keys, bus })
	_, in := e.pskThing("PSK-RESYNC")
	change := func() { bus.Publish(events.Event{Type: events.Resync, Local: true}) }
	keys.change.Store(&change)
	if served(e.dialPSK(in.Identity, in.Key)) {
		t.Fatal("a resync between the key's lookup and the session: the session was served")
	}
	e.openPSK(t, in, "the next handshake")
}
