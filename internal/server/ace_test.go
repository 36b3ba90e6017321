package server

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/veraison/go-cose"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/store"
)

// aceThing is a thing with a device certificate, and a client that
// presents it over mutual TLS.
type aceThing struct {
	th     *store.Thing
	client *http.Client
	key    *ecdsa.PrivateKey
}

func newACEThing(t *testing.T, r *running) *aceThing {
	t.Helper()
	ctx := context.Background()
	th, err := r.p.Identity.CreateThing(ctx, "test", &store.Thing{DisplayName: "Thermostat", Type: store.ThingDevice, Model: "T-1", Status: store.StatusActive, SerialNumber: "T1-0001"})
	must(t, "creating the thing", err)
	_, dca, err := r.p.PKI()
	must(t, "opening the device CA", err)
	dc, err := dca.IssueDevice(th.ID, th.SerialNumber, 0)
	must(t, "issuing the certificate", err)
	_, err = r.p.Identity.AddCertificate(ctx, "test", th.ID, store.CertRefOf(dc.Leaf))
	must(t, "recording the certificate", err)
	return &aceThing{th: th, key: dc.Key.(*ecdsa.PrivateKey),
		client: r.withClientCert(tls.Certificate{Certificate: dc.Chain, PrivateKey: dc.Key, Leaf: dc.Leaf})}
}

// postACE sends body as application/ace+cbor and decodes the CBOR answer.
func postACE(t *testing.T, r *running, c *http.Client, path string, body []byte) (int, map[any]any) {
	t.Helper()
	req, _ := http.NewRequest("POST", r.base+path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ace.MediaType)
	resp, err := c.Do(req)
	must(t, "posting "+path, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != ace.MediaType {
		t.Fatalf("%s: %d %s %s", path, resp.StatusCode, ct, b)
	}
	var out map[any]any
	must(t, "decoding the answer", cbor.Unmarshal(b, &out))
	return resp.StatusCode, out
}

func enc(t *testing.T, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	must(t, "encoding", err)
	return b
}

// A thing authenticated by its certificate gets a CWT over HTTPS: signed by
// the key the JWKS publishes, for the broker's audience, with the thing's
// scopes and bound to its certificate's key.
func TestACETokenForAThing(t *testing.T) {
	r := serve(t)
	th := newACEThing(t, r)
	code, out := postACE(t, r, th.client, ace.PathToken, enc(t, map[int]any{33: 2, 24: th.th.ID}))
	if code != http.StatusOK || out[uint64(38)] != uint64(1) || out[uint64(2)] == nil {
		t.Fatalf("token: %d %v", code, out)
	}
	tok, _ := out[uint64(1)].([]byte)
	var msg cose.Sign1Message
	must(t, "decoding the CWT", msg.UnmarshalCBOR(tok))
	kid, _ := msg.Headers.Protected[cose.HeaderLabelKeyID].([]byte)
	_, jwksBody := r.get(t, "/oauth2/jwks", nil)
	set, err := jwk.Parse([]byte(jwksBody))
	must(t, "parsing the JWKS", err)
	k, ok := set.LookupKeyID(string(kid))
	if !ok {
		t.Fatalf("kid %q is not in the JWKS", kid)
	}
	var pub ecdsa.PublicKey
	must(t, "the JWK's key", jwk.Export(k, &pub))
	v, err := cose.NewVerifier(cose.AlgorithmES256, &pub)
	must(t, "a verifier", err)
	must(t, "verifying the CWT with the published key", msg.Verify(nil, v))
	var claims map[any]any
	must(t, "decoding the claims", cbor.Unmarshal(msg.Payload, &claims))
	if claims[uint64(2)] != th.th.ID || claims[uint64(3)] != r.p.Config.MQTT.Audience || claims[uint64(9)] != "device profile" || claims[uint64(1)] != r.p.Config.HTTP.PublicURL {
		t.Fatalf("claims %v", claims)
	}
	var cnf struct {
		Key cose.Key `cbor:"1,keyasint"`
	}
	must(t, "cnf", cbor.Unmarshal(enc(t, claims[uint64(8)]), &cnf))
	bound, err := cnf.Key.PublicKey()
	if err != nil || !th.key.PublicKey.Equal(bound) {
		t.Fatalf("cnf %v is not the certificate's key: %v", claims[uint64(8)], err)
	}
}

// Every rule of the token endpoint, broken over HTTPS.
func TestAttackACEToken(t *testing.T) {
	r := serve(t)
	th := newACEThing(t, r)
	ck, err := cose.NewKeyFromPublic(th.key.Public())
	must(t, "a COSE_Key", err)
	errorOf := func(out map[any]any) (any, string) { d, _ := out[uint64(31)].(string); return out[uint64(30)], d }
	for _, c := range []struct {
		name   string
		client *http.Client
		body   []byte
		status int
		code   any
		says   string
	}{
		{"a scope the thing may not have", th.client, enc(t, map[int]any{33: 2, 24: th.th.ID, 9: "device scim:write"}), 400, uint64(6), "scim:write"},
		{"without its certificate", r.client, enc(t, map[int]any{33: 2, 24: th.th.ID, 4: map[int]any{1: ck}}), 401, uint64(2), "mutual TLS"},
		{"no key at all", r.client, enc(t, map[int]any{33: 2, 24: th.th.ID}), 400, uint64(1), "req_cnf (4)"},
		{"another thing's id", th.client, enc(t, map[int]any{33: 2, 24: "someone-else"}), 401, uint64(2), ""},
		{"an audience not its own", th.client, enc(t, map[int]any{33: 2, 24: th.th.ID, 5: "https://evil.example.com"}), 400, "invalid_target", "evil"},
		{"no grant_type", th.client, enc(t, map[int]any{24: th.th.ID}), 400, uint64(1), "grant_type (33)"},
		{"duplicate keys", th.client, []byte{0xa2, 0x18, 0x21, 0x02, 0x18, 0x21, 0x02}, 400, uint64(1), "more than once"},
		{"malformed CBOR", th.client, []byte{0xa2, 0x18}, 400, uint64(1), "CBOR map"},
		{"oversized", th.client, enc(t, map[int]any{33: 2, 24: strings.Repeat("a", 5000)}), 400, uint64(1), "larger than"},
		{"a PSK kid over a certificate", th.client, enc(t, map[int]any{33: 2, 24: th.th.ID, 4: map[int]any{3: []byte("x")}}), 400, uint64(7), "PSK identity"},
	} {
		status, out := postACE(t, r, c.client, ace.PathToken, c.body)
		code, desc := errorOf(out)
		if status != c.status || code != c.code || !strings.Contains(desc, c.says) {
			t.Errorf("%s: %d %v %q; want %d %v saying %q", c.name, status, code, desc, c.status, c.code, c.says)
		}
	}
	// An operator sees the refusals by code.
	if _, body := r.get(t, "/metrics", nil); !strings.Contains(body, `thingid_ace_requests_total{endpoint="token",result="invalid_scope"} 1`) {
		t.Errorf("no ACE refusals in /metrics:\n%.3000s", body)
	}
	// Not ACE at all: a problem document naming the header.
	var resp *http.Response
	resp, err = th.client.Post(r.base+ace.PathToken, "application/json", strings.NewReader("{}"))
	must(t, "posting JSON", err)
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType || !strings.Contains(string(b), `"field":"Content-Type"`) {
		t.Errorf("JSON body: %d %s", resp.StatusCode, b)
	}
}

// A constrained thing pairs as an HTTPS one does: device authorization, then
// polling answers authorization_pending until someone allows it.
func TestACEDeviceFlow(t *testing.T) {
	r := serve(t)
	th := newACEThing(t, r)
	code, out := postACE(t, r, th.client, ace.PathDeviceAuthorization, enc(t, map[int]any{24: th.th.ID, 9: "device"}))
	dc, _ := out["device_code"].(string)
	if code != http.StatusOK || dc == "" || out["user_code"] == nil || !strings.HasSuffix(out["verification_uri"].(string), "/device") {
		t.Fatalf("device authorization: %d %v", code, out)
	}
	code, out = postACE(t, r, th.client, ace.PathToken, enc(t, map[any]any{33: "urn:ietf:params:oauth:grant-type:device_code", 24: th.th.ID, "device_code": dc}))
	if code != http.StatusBadRequest || out[uint64(30)] != "authorization_pending" {
		t.Fatalf("polling: %d %v", code, out)
	}
	code, out = postACE(t, r, th.client, ace.PathDeviceAuthorization, enc(t, map[int]any{24: th.th.ID, 9: "scim:write"}))
	if code != http.StatusBadRequest || out[uint64(30)] != uint64(6) {
		t.Fatalf("device authorization for a scope the thing may not have: %d %v", code, out)
	}
}

// A constrained thermostat pairs with a person exactly as an HTTPS device
// does: she allows it on /device, and its next poll gets a CWT for her, and
// a refresh token that ACE refreshes into another CWT.
func TestACEPairing(t *testing.T) {
	w := newHomeWorld(t)
	th := newACEThing(t, w.r)
	_, out := postACE(t, w.r, th.client, ace.PathDeviceAuthorization, enc(t, map[int]any{24: th.th.ID, 9: "device"}))
	dc, _ := out["device_code"].(string)
	uc, _ := out["user_code"].(string)
	if r := w.allow(t, "gran", uc); r.status != 200 {
		t.Fatalf("gran allows: %d %.300s", r.status, r.body)
	}
	code, out := postACE(t, w.r, th.client, ace.PathToken, enc(t, map[any]any{33: "urn:ietf:params:oauth:grant-type:device_code", 24: th.th.ID, "device_code": dc}))
	rt, _ := out[uint64(37)].(string)
	if code != http.StatusOK || rt == "" {
		t.Fatalf("the poll after pairing: %d %v", code, out)
	}
	if c := cwtClaims(t, out); c[uint64(2)] != w.gran.ID || c["thing"] != th.th.ID {
		t.Fatalf("the paired token's claims: %v", c)
	}
	code, out = postACE(t, w.r, th.client, ace.PathToken, enc(t, map[int]any{33: 3, 24: th.th.ID, 37: rt}))
	if code != http.StatusOK || cwtClaims(t, out)[uint64(2)] != w.gran.ID {
		t.Fatalf("refreshing: %d %v", code, out)
	}
}

// cwtClaims are the claims of the CWT in a token answer, unverified
// (TestACETokenForAThing verifies one).
func cwtClaims(t *testing.T, answer map[any]any) map[any]any {
	t.Helper()
	var msg cose.Sign1Message
	tok, _ := answer[uint64(1)].([]byte)
	must(t, "decoding the CWT", msg.UnmarshalCBOR(tok))
	var c map[any]any
	must(t, "decoding the claims", cbor.Unmarshal(msg.Payload, &c))
	return c
}
