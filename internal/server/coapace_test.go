package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	"github.com/veraison/go-cose"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/coapgw"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/psk"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// fleetScope is a broker scope no thing's own rules grant: a token with it
// lets a thing publish there once posted to the gateway's /authz-info.
const fleetScope = "mqtt:pub:fleet/#"

// coapACE is a platform with the CoAP gateway on, things allowed to ask for
// fleetScope, and go-coap clients over pion's DTLS.
type coapACE struct {
	t    *testing.T
	r    *running
	addr string
}

func newCoAPACE(t *testing.T) *coapACE {
	t.Helper()
	return newCoAPACEWith(t, nil)
}

// newCoAPACEWith is newCoAPACE with before run on the platform before it serves.
func newCoAPACEWith(t *testing.T, before func(*Platform)) *coapACE {
	t.Helper()
	r := serveWith(t, before, func(c *config.Config) {
		c.CoAP.Enabled = true
		c.CoAP.DTLSAddress = "127.0.0.1:0"
		c.CoAP.UDPAddress = "127.0.0.1:0"
		c.OAuth.ThingScopes = append(c.OAuth.ThingScopes, fleetScope)
	})
	m := regexp.MustCompile(`serving on coaps://(\S+)`).FindStringSubmatch(r.out.String())
	if m == nil {
		t.Fatalf("no CoAP listener announced:\n%s", r.out.String())
	}
	return &coapACE{t: t, r: r, addr: m[1]}
}

// certThing is a thing with a platform certificate, as its DTLS client presents it.
func (c *coapACE) certThing(serial string) (*store.Thing, tls.Certificate) {
	c.t.Helper()
	ctx := context.Background()
	th, err := c.r.p.Identity.CreateThing(ctx, "test", &store.Thing{Type: store.ThingDevice, SerialNumber: serial})
	must(c.t, "creating the thing", err)
	_, dca, err := c.r.p.PKI()
	must(c.t, "opening the device CA", err)
	dc, err := dca.IssueDevice(th.ID, serial, time.Hour)
	must(c.t, "issuing the certificate", err)
	return th, tls.Certificate{Certificate: dc.Chain, PrivateKey: dc.Key, Leaf: dc.Leaf}
}

// pskThing is a thing with a pre-shared key, as `thingid factory issue --psk` makes it.
func (c *coapACE) pskThing(serial string) (*store.Thing, psk.Issued) {
	c.t.Helper()
	ctx := context.Background()
	th, err := c.r.p.Identity.CreateThing(ctx, "test", &store.Thing{Type: store.ThingDevice, SerialNumber: serial})
	must(c.t, "creating the thing", err)
	in, row, err := psk.Issue(c.r.p.Key, th.ID)
	must(c.t, "issuing the key", err)
	must(c.t, "storing the key", c.r.p.Identity.SetThingPSKs(ctx, "test", []*store.ThingPSK{row}))
	return th, in
}

// dialCert and dialPSK open a DTLS session, closed when the test ends.
func (c *coapACE) dialCert(cert tls.Certificate) *udpClient.Conn {
	c.t.Helper()
	return c.dial(&piondtls.Config{Certificates: []tls.Certificate{cert}, InsecureSkipVerify: true,
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret})
}

func (c *coapACE) dialPSK(in psk.Issued) *udpClient.Conn {
	c.t.Helper()
	return c.dial(&piondtls.Config{
		PSK:                  func([]byte) ([]byte, error) { return []byte(in.Key), nil },
		PSKIdentityHint:      []byte(in.Identity),
		CipherSuites:         []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ExtendedMasterSecret: piondtls.RequireExtendedMasterSecret,
	})
}

func (c *coapACE) dial(cfg *piondtls.Config) *udpClient.Conn {
	c.t.Helper()
	cc, err := dtls.Dial(c.addr, cfg)
	must(c.t, "opening a DTLS session", err)
	c.t.Cleanup(func() { cc.Close() })
	return cc
}

// post sends body to path on cc and returns the answer's code and body.
func post(t *testing.T, cc *udpClient.Conn, path string, cf message.MediaType, body []byte) (codes.Code, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cc.Post(ctx, path, cf, bytes.NewReader(body))
	must(t, "posting "+path, err)
	b, _ := res.ReadBody()
	return res.Code(), b
}

// token asks the gateway's /ace/token on cc for a CWT with scope for client.
func token(t *testing.T, cc *udpClient.Conn, client, scope string) []byte {
	t.Helper()
	code, b := post(t, cc, ace.PathToken, coapgw.ACECBOR, enc(t, map[int]any{33: 2, 24: client, 9: scope}))
	var out map[any]any
	must(t, "decoding the answer", cbor.Unmarshal(b, &out))
	tok, _ := out[uint64(1)].([]byte)
	if code != codes.Created || len(tok) == 0 {
		t.Fatalf("token over CoAP: %v %v", code, out)
	}
	return tok
}

// claimsOf is the claims of a CWT, read without verifying it.
func claimsOf(t *testing.T, tok []byte) map[any]any {
	t.Helper()
	var m cose.Sign1Message
	must(t, "decoding the CWT", m.UnmarshalCBOR(tok))
	var claims map[any]any
	must(t, "decoding the claims", cbor.Unmarshal(m.Payload, &claims))
	return claims
}

// cnf is the confirmation claim of a CWT, read without verifying it.
func cnf(t *testing.T, tok []byte) map[any]any {
	t.Helper()
	c, _ := claimsOf(t, tok)[uint64(8)].(map[any]any)
	return c
}

// byteString is the token as RFC 9200 §5.10.1 posts it: a CBOR byte string.
func byteString(t *testing.T, tok []byte) []byte { return enc(t, tok) }

// A PSK thing is a first-class ACE client: its token request is
// authenticated by its DTLS session's key, the CWT is bound to its PSK
// identity (cnf kid, RFC 9202 §3.3), and the gateway accepts it at
// /authz-info from a session of that key only.
func TestACEWithPSKOverCoAP(t *testing.T) {
	c := newCoAPACE(t)
	th, in := c.pskThing("ACE-PSK-1")
	cc := c.dialPSK(in)
	tok := token(t, cc, th.ID, "device")
	if kid, _ := cnf(t, tok)[uint64(3)].([]byte); string(kid) != in.Identity {
		t.Fatalf("cnf of a PSK session's token: %v; want kid %q", cnf(t, tok), in.Identity)
	}
	if code, b := post(t, cc, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Created {
		t.Fatalf("authz-info on the token's own PSK session: %v %s", code, b)
	}

	// Another thing's client_id over this PSK session.
	other, otherKey := c.pskThing("ACE-PSK-2")
	if code, b := post(t, cc, ace.PathToken, coapgw.ACECBOR, enc(t, map[int]any{33: 2, 24: other.ID})); code != codes.Unauthorized || !bytes.Contains(b, []byte("another thing")) {
		t.Errorf("a token for another thing over my PSK: %v %x", code, b)
	}
	// A registered client cannot be authenticated by a thing's PSK.
	if code, _ := post(t, cc, ace.PathToken, coapgw.ACECBOR, enc(t, map[int]any{33: 2, 24: "thingid-console"})); code != codes.Unauthorized {
		t.Errorf("a registered client's token over a thing's PSK: %v", code)
	}

	// The token replayed by clients not holding its key: another thing's
	// PSK session, a certificate session.
	if code, _ := post(t, c.dialPSK(otherKey), coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Unauthorized {
		t.Errorf("the PSK token posted by another PSK thing: %v; want 4.01", code)
	}
	_, cert := c.certThing("ACE-CERT-1")
	if code, _ := post(t, c.dialCert(cert), coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Unauthorized {
		t.Errorf("the PSK token posted over a certificate session: %v; want 4.01", code)
	}
	// A new session of the same key holds it: that is possession.
	if code, b := post(t, c.dialPSK(in), coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Created {
		t.Errorf("the token on a new session of its key: %v %s", code, b)
	}
}

// A token posted to /authz-info grants its scope on that session, besides
// the thing's own broker rules, and only there.
func TestAuthzInfoGrantsItsScope(t *testing.T) {
	c := newCoAPACE(t)
	th, cert := c.certThing("ACE-SCOPE-1")
	cc := c.dialCert(cert)
	tok := token(t, cc, th.ID, fleetScope)
	if code, _ := post(t, cc, "/mqtt/fleet/thermostats", message.TextPlain, []byte("21.5")); code != codes.Forbidden {
		t.Fatalf("a topic outside the thing's rules before its token: %v", code)
	}
	if code, b := post(t, cc, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Created {
		t.Fatalf("authz-info: %v %s", code, b)
	}
	if code, _ := post(t, cc, "/mqtt/fleet/thermostats", message.TextPlain, []byte("21.5")); code != codes.Changed {
		t.Fatalf("the token's scope on its session: %v", code)
	}
	if code, _ := post(t, cc, "/mqtt/things/"+th.ID+"/telemetry", message.TextPlain, []byte("21.5")); code != codes.Changed {
		t.Fatalf("the thing's own rules with a token: %v", code)
	}
	// Another session of the same thing has not posted it.
	if code, _ := post(t, c.dialCert(cert), "/mqtt/fleet/thermostats", message.TextPlain, []byte("21.5")); code != codes.Forbidden {
		t.Errorf("the scope on a session that posted no token: %v", code)
	}
}

// Tokens /authz-info refuses, with RFC 9200 §5.10.1.1's codes.
func TestAttackAuthzInfoOverCoAP(t *testing.T) {
	c := newCoAPACE(t)
	th, cert := c.certThing("ACE-ATTACK-1")
	cc := c.dialCert(cert)
	for name, body := range map[string][]byte{
		"no token":                 nil,
		"not CBOR":                 []byte("hello"),
		"a truncated string":       {0x58, 0x20, 0x01},
		"a byte string of garbage": enc(t, []byte("garbage")),
	} {
		if code, _ := post(t, cc, coapgw.PathAuthzInfo, coapgw.ACECBOR, body); code != codes.BadRequest {
			t.Errorf("%s: %v; want 4.00", name, code)
		}
	}
	// A CWT for another audience: 4.03.
	code, b := post(t, cc, ace.PathToken, coapgw.ACECBOR, enc(t, map[int]any{33: 2, 24: th.ID, 5: c.r.p.Config.HTTP.PublicURL}))
	var out map[any]any
	must(t, "decoding the answer", cbor.Unmarshal(b, &out))
	if tok, _ := out[uint64(1)].([]byte); code != codes.Created || len(tok) == 0 {
		t.Fatalf("a token for the platform's own audience: %v %v", code, out)
	} else if code, _ := post(t, cc, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Forbidden {
		t.Errorf("a token for another audience: %v; want 4.03", code)
	}
	// A token of this thing's key, posted by another thing: 4.01.
	tok := token(t, cc, th.ID, fleetScope)
	_, otherCert := c.certThing("ACE-ATTACK-2")
	if code, _ := post(t, c.dialCert(otherCert), coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Unauthorized {
		t.Errorf("a token posted by a client not holding its key: %v; want 4.01", code)
	}
}

// Revoking a CWT by its cti, from a session of its key, ends the session
// holding it as the event arrives; the next request on that thing's new
// session is refused its scope, and the token is refused at /authz-info.
func TestRevokedCWTEndsItsSession(t *testing.T) {
	c := newCoAPACE(t)
	th, cert := c.certThing("ACE-REVOKE-1")
	holder := c.dialCert(cert)
	tok := token(t, holder, th.ID, fleetScope)
	if code, b := post(t, holder, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Created {
		t.Fatalf("authz-info: %v %s", code, b)
	}
	if code, _ := post(t, holder, "/mqtt/fleet/thermostats", message.TextPlain, []byte("1")); code != codes.Changed {
		t.Fatalf("the token's scope: %v", code)
	}
	// Another thing cannot revoke it.
	_, otherCert := c.certThing("ACE-REVOKE-2")
	if code, _ := post(t, c.dialCert(otherCert), ace.PathRevoke, coapgw.ACECBOR, enc(t, map[int]any{11: tok})); code != codes.Unauthorized {
		t.Fatalf("a revocation by a client not holding the key: %v", code)
	}
	if code, _ := post(t, holder, "/mqtt/fleet/thermostats", message.TextPlain, []byte("2")); code != codes.Changed {
		t.Fatalf("after a refused revocation: %v", code)
	}
	// The thing revokes it from another session of its key.
	if code, b := post(t, c.dialCert(cert), ace.PathRevoke, coapgw.ACECBOR, enc(t, map[int]any{11: tok})); code != codes.Created {
		t.Fatalf("revoke: %v %x", code, b)
	}
	waitEnded(t, holder, "the session holding the revoked token")
	next := c.dialCert(cert)
	if code, _ := post(t, next, "/mqtt/fleet/thermostats", message.TextPlain, []byte("3")); code != codes.Forbidden {
		t.Errorf("the scope of a revoked token on the next session: %v", code)
	}
	if code, _ := post(t, next, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Unauthorized {
		t.Errorf("the revoked token posted again: %v; want 4.01", code)
	}
}

// Revoking a token's grant (tokens.EventGrantRevoke, as oauth publishes it
// when a grant is revoked) ends the PSK session holding one of its CWTs.
func TestRevokedGrantEndsTheSessionOfItsCWT(t *testing.T) {
	c := newCoAPACE(t)
	th, in := c.pskThing("ACE-REVOKE-3")
	cc := c.dialPSK(in)
	tok := token(t, cc, th.ID, fleetScope)
	if code, b := post(t, cc, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Created {
		t.Fatalf("authz-info: %v %s", code, b)
	}
	acc, err := c.r.p.ace.Load().AuthzInfo(context.Background(), tok, ace.Identity{PSK: []byte(in.Identity)})
	must(t, "reading the token", err)
	c.r.p.Bus.Publish(events.Event{Type: tokens.EventGrantRevoke, Kind: "grant", ID: acc.GrantID, Time: time.Now(),
		Details: map[string]string{"exp": strconv.FormatInt(acc.ExpiresAt.Unix(), 10)}})
	waitEnded(t, cc, "the PSK session holding a CWT of the revoked grant")
}

// waitEnded fails t unless the gateway ends cc's session.
func waitEnded(t *testing.T, cc *udpClient.Conn, what string) {
	t.Helper()
	select {
	case <-cc.Done():
	case <-time.After(10 * time.Second):
		t.Fatal(what + " was not ended")
	}
}

// libcoap's client posts a CWT to /authz-info as a file (-f): accepted on
// the certificate session of its key, refused with 4.01 and the reason on
// a PSK session, which does not hold it.
func TestAuthzInfoWithLibcoap(t *testing.T) {
	c := newCoAPPlatform(t, "COAP-AUTHZ-1")
	dir := t.TempDir()
	req, answer, cwt := filepath.Join(dir, "req.cbor"), filepath.Join(dir, "answer.cbor"), filepath.Join(dir, "token.cwt")
	must(t, "writing the request", os.WriteFile(req, enc(t, map[int]any{33: 2, 24: c.th.ID}), 0o600))
	printed := c.client(ace.PathToken, "-m", "post", "-t", "19", "-f", req, "-o", answer)
	b, _ := os.ReadFile(answer)
	var out map[any]any
	must(t, "decoding the answer "+printed, cbor.Unmarshal(b, &out))
	tok, _ := out[uint64(1)].([]byte)
	must(t, "writing the token", os.WriteFile(cwt, tok, 0o600))
	if printed := c.client(coapgw.PathAuthzInfo, "-m", "post", "-t", "19", "-f", cwt); strings.Contains(printed, "4.") || strings.Contains(printed, "5.") {
		t.Fatalf("authz-info over the token's certificate session: %s", printed)
	}

	in, row, err := psk.Issue(c.r.p.Key, c.th.ID)
	must(t, "issuing a key", err)
	must(t, "storing the key", c.r.p.Identity.SetThingPSKs(context.Background(), "test", []*store.ThingPSK{row}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	refused, _ := exec.CommandContext(ctx, c.tool, "-B", "5", "-u", in.Identity, "-k", in.Key, "-m", "post", "-t", "19", "-f", cwt,
		"coaps://"+c.addr+coapgw.PathAuthzInfo).CombinedOutput()
	if !strings.Contains(string(refused), "4.01") || !strings.Contains(string(refused), "did not prove") {
		t.Fatalf("a certificate-bound token over a PSK session: %s", refused)
	}
}

// An AIF scope (RFC 9237) at the token endpoint is the text scopes of the
// gateway's resources it names, decided as those are: POST on
// /mqtt/fleet/# is mqtt:pub:fleet/#, granted and answered as AIF, and the
// gateway enforces it once the token is posted; GET on it (a subscription
// no rule gives the thing) is refused by name.
func TestAIFScopeOverCoAP(t *testing.T) {
	c := newCoAPACE(t)
	th, cert := c.certThing("ACE-AIF-1")
	cc := c.dialCert(cert)
	aif := func(methods int) []byte { return enc(t, []any{[]any{"/mqtt/fleet/#", methods}}) }
	code, b := post(t, cc, ace.PathToken, coapgw.ACECBOR, enc(t, map[int]any{33: 2, 24: th.ID, 9: aif(2)}))
	var out map[any]any
	must(t, "decoding the answer", cbor.Unmarshal(b, &out))
	tok, _ := out[uint64(1)].([]byte)
	if granted, _ := out[uint64(9)].([]byte); code != codes.Created || len(tok) == 0 || !bytes.Equal(granted, aif(2)) {
		t.Fatalf("a token for an AIF scope: %v %v", code, out)
	}
	// The CWT carries the scope as it was asked (RFC 9200 §5.8.4.2), and
	// introspection answers it so.
	if claim, _ := claimsOf(t, tok)[uint64(9)].([]byte); !bytes.Equal(claim, aif(2)) {
		t.Errorf("the CWT's scope (9): %#v; want the AIF %x", claimsOf(t, tok)[uint64(9)], aif(2))
	}
	code, b = post(t, cc, ace.PathIntrospect, coapgw.ACECBOR, enc(t, map[int]any{11: tok}))
	out = nil
	must(t, "decoding the introspection", cbor.Unmarshal(b, &out))
	if scope, _ := out[uint64(9)].([]byte); code != codes.Created || out[uint64(10)] != true || !bytes.Equal(scope, aif(2)) {
		t.Errorf("introspection of the AIF token by its holder: %v %v", code, out)
	}
	if code, _ := post(t, cc, "/mqtt/fleet/thermostats", message.TextPlain, []byte("1")); code != codes.Forbidden {
		t.Fatalf("before the token: %v", code)
	}
	if code, b := post(t, cc, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Created {
		t.Fatalf("authz-info: %v %s", code, b)
	}
	if code, _ := post(t, cc, "/mqtt/fleet/thermostats", message.TextPlain, []byte("1")); code != codes.Changed {
		t.Fatalf("POST under the AIF scope: %v", code)
	}
	code, b = post(t, cc, ace.PathToken, coapgw.ACECBOR, enc(t, map[int]any{33: 2, 24: th.ID, 9: aif(3)}))
	out = nil
	must(t, "decoding the refusal", cbor.Unmarshal(b, &out))
	if desc, _ := out[uint64(31)].(string); code != codes.BadRequest || out[uint64(30)] != uint64(6) || !strings.Contains(desc, "mqtt:sub:fleet/#") {
		t.Errorf("GET on a topic the thing may not observe: %v %v; want invalid_scope (6) naming mqtt:sub:fleet/#", code, out)
	}
	code, b = post(t, cc, ace.PathToken, coapgw.ACECBOR, enc(t, map[int]any{33: 2, 24: th.ID, 9: enc(t, []any{[]any{"/self", 1}})}))
	out = nil
	must(t, "decoding the refusal", cbor.Unmarshal(b, &out))
	if desc, _ := out[uint64(31)].(string); code != codes.BadRequest || !strings.Contains(desc, `"/self" is not a resource of this gateway`) {
		t.Errorf("an AIF scope of another resource: %v %v", code, out)
	}
}
