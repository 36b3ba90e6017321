package server

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/fxamacker/cbor/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/veraison/go-cose"

	"github.com/thingid/thingid/internal/ace"
	"github.com/thingid/thingid/internal/audit"
	"github.com/thingid/thingid/internal/browsertest"
	"github.com/thingid/thingid/internal/coapgw"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/store"
)

// registered is a confidential client and its secret.
type registered struct{ id, secret string }

// aceAdmin is a CoAP platform with an administrator, ada, and three
// confidential clients: edge, a resource server of the broker's audience
// (the gateway's CWTs); constrained, another of that audience, which sends
// its credentials in the body (client_secret_post, as a CoAP resource
// server does); elsewhere, a resource server of another audience; plain,
// no resource server at all (oauth.resourceServers).
type aceAdmin struct {
	*coapACE
	ada                                 *store.User
	edge, constrained, elsewhere, plain registered
}

func newACEAdmin(t *testing.T) *aceAdmin {
	t.Helper()
	a := &aceAdmin{}
	a.coapACE = newCoAPACEWith(t, func(p *Platform) {
		ctx := context.Background()
		var err error
		a.ada, err = p.Identity.CreateUser(ctx, "test", &store.User{UserName: "ada"}, umaPW)
		must(t, "creating ada", err)
		srv, cleanup, err := p.OAuthAdmin(ctx, slog.New(slog.DiscardHandler))
		must(t, "opening the authorization server", err)
		defer cleanup()
		for _, c := range []struct {
			name, method string
			into         *registered
		}{{"edge-rs", "", &a.edge}, {"constrained-rs", "client_secret_post", &a.constrained}, {"elsewhere-rs", "", &a.elsewhere}, {"plain", "", &a.plain}} {
			cl, secret, err := srv.CreateClient(ctx, "test", oauth.ClientSpec{Name: c.name, GrantTypes: []string{"client_credentials"}, TokenEndpointAuthMethod: c.method})
			must(t, "registering "+c.name, err)
			*c.into = registered{cl.ID, secret}
		}
		p.Config.OAuth.ResourceServers = map[string][]string{
			a.edge.id:        {p.Config.MQTT.Audience},
			a.constrained.id: {p.Config.MQTT.Audience},
			a.elsewhere.id:   {"urn:example:elsewhere"},
		}
	})
	setAdmin(t, a.r, a.ada.ID, true)
	return a
}

// cti is a CWT's cti, read without verifying it.
func cti(t *testing.T, tok []byte) []byte {
	t.Helper()
	var m cose.Sign1Message
	must(t, "decoding the CWT", m.UnmarshalCBOR(tok))
	var claims map[any]any
	must(t, "decoding the claims", cbor.Unmarshal(m.Payload, &claims))
	b, _ := claims[uint64(7)].([]byte)
	return b
}

// introspectJSON asks /ace/introspect as RFC 7662 does: a form, a JSON answer.
func (a *aceAdmin) introspectJSON(t *testing.T, form url.Values, auth func(*http.Request)) (int, map[string]any) {
	t.Helper()
	return introspectAt(t, a.r, ace.PathIntrospect, form, auth)
}

// A resource server registered as a client introspects the CWTs of its
// audience, in JSON (RFC 7662, Basic) and in CBOR (RFC 9200 §5.9, its
// credentials in the body); every other caller is answered active false or
// refused.
func TestACEIntrospectionByResourceServers(t *testing.T) {
	a := newACEAdmin(t)
	th, cert := a.certThing("ACE-RS-1")
	holder := a.dialCert(cert)
	tok := token(t, holder, th.ID, fleetScope)
	form := url.Values{"token": {base64.RawURLEncoding.EncodeToString(tok)}}

	code, out := a.introspectJSON(t, form, basic(a.edge.id, a.edge.secret))
	jwk, _ := out["cnf"].(map[string]any)["jwk"].(map[string]any)
	if code != http.StatusOK || out["active"] != true || !strings.Contains(out["scope"].(string), fleetScope) || out["client_id"] != th.ID ||
		out["sub"] != th.ID || out["ace_profile"] != "coap_dtls" || out["cti"] != base64.RawURLEncoding.EncodeToString(cti(t, tok)) ||
		jwk["kty"] != "EC" || jwk["crv"] != "P-256" || out["exp"] == nil {
		t.Fatalf("the resource server's introspection in JSON: %d %v", code, out)
	}
	if aud, _ := out["aud"].([]any); len(aud) != 1 || aud[0] != a.r.p.Config.MQTT.Audience {
		t.Fatalf("aud %v", out["aud"])
	}
	// CBOR over CoAP, from a DTLS session of another thing: the resource
	// server's credentials in the body authenticate it.
	_, rsCert := a.certThing("ACE-RS-HOST")
	code2, b := post(t, a.dialCert(rsCert), ace.PathIntrospect, coapgw.ACECBOR, enc(t, map[int]any{11: tok, 24: a.constrained.id, 25: a.constrained.secret}))
	var m map[any]any
	must(t, "decoding the CoAP answer", cbor.Unmarshal(b, &m))
	if code2 != codes.Created || m[uint64(10)] != true || m[uint64(3)] != a.r.p.Config.MQTT.Audience || m[uint64(24)] != th.ID || m[uint64(8)] == nil {
		t.Fatalf("the resource server's introspection in CBOR over CoAP: %v %v", code2, m)
	}

	// Attacks. A client that authenticates but is neither the token's
	// client nor a resource server of its audience learns what it would of
	// a token that does not exist (oauth.Server.Disclose, the rule of
	// /oauth2/introspect too).
	for name, auth := range map[string]func(*http.Request){
		"a resource server of another audience": basic(a.elsewhere.id, a.elsewhere.secret),
		"a client that is no resource server":   basic(a.plain.id, a.plain.secret),
	} {
		if code, out := a.introspectJSON(t, form, auth); code != http.StatusOK || len(out) != 1 || out["active"] != false {
			t.Errorf("%s: %d %v; want only active false", name, code, out)
		}
	}
	for name, auth := range map[string]func(*http.Request){
		"a wrong secret": basic(a.edge.id, a.elsewhere.secret),
		"no credentials": nil,
	} {
		if code, out := a.introspectJSON(t, form, auth); code != http.StatusUnauthorized || out["error"] != "invalid_client" || out["active"] != nil {
			t.Errorf("%s: %d %v; want 401 invalid_client", name, code, out)
		}
	}
	if code, m := postACE(t, a.r, a.r.client, ace.PathIntrospect, enc(t, map[int]any{11: tok})); code != http.StatusUnauthorized || m[uint64(30)] != uint64(2) {
		t.Errorf("CBOR without credentials or a key: %d %v; want 401 invalid_client (2)", code, m)
	}
	if code, out := a.introspectJSON(t, url.Values{"token": {"%%%"}}, basic(a.edge.id, a.edge.secret)); code != http.StatusBadRequest || !strings.Contains(out["error_description"].(string), "token") {
		t.Errorf("a token that is not base64url: %d %v", code, out)
	}
	// Revoked by its holder: no longer active for anyone.
	if code, b := post(t, holder, ace.PathRevoke, coapgw.ACECBOR, enc(t, map[int]any{11: tok})); code != codes.Created {
		t.Fatalf("revoke: %v %x", code, b)
	}
	if code, out := a.introspectJSON(t, form, basic(a.edge.id, a.edge.secret)); code != http.StatusOK || len(out) != 1 || out["active"] != false {
		t.Errorf("a revoked token: %d %v; want only active false", code, out)
	}
}

// auditRecords reads the audit log's records of action about thing
// through the audit API, oldest first.
func (a *aceAdmin) auditRecords(t *testing.T, action, thing string) []audit.Record {
	t.Helper()
	q := audit.Filter{Action: store.TextMatch{Value: action}, Subject: thing, SubjectKind: store.KindThing}.Values()
	q.Set("order", "oldest")
	code, body := a.r.get(t, "/api/v1/admin/audit?"+q.Encode(), basic("admin", adminPassword(t, a.r)))
	var page struct{ Records []audit.Record }
	if code != http.StatusOK || json.Unmarshal([]byte(body), &page) != nil {
		t.Fatalf("the audit log: %d %s", code, body)
	}
	return page.Records
}

func detail(t *testing.T, r audit.Record) map[string]any {
	t.Helper()
	var d map[string]any
	must(t, "the record's detail", json.Unmarshal(r.Detail, &d))
	return d
}

// An administrator lists a thing's CWTs and revokes one by its cti through
// the admin API: the gateway ends the PSK session holding it, and the
// issuance and the revocation are in the audit log with who, which cti and
// which thing. Wrong ctis, another thing's and callers who are no
// administrators are refused.
func TestAdminRevokesACWT(t *testing.T) {
	a := newACEAdmin(t)
	th, in := a.pskThing("ACE-ADMIN-1")
	_, other := a.pskThing("ACE-ADMIN-2")
	cc := a.dialPSK(in)
	tok := token(t, cc, th.ID, fleetScope)
	if code, b := post(t, cc, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Created {
		t.Fatalf("authz-info: %v %s", code, b)
	}
	id := hex.EncodeToString(cti(t, tok))
	admin := basic("admin", adminPassword(t, a.r))
	list := func() []map[string]any {
		t.Helper()
		code, body := a.r.get(t, "/api/v1/admin/things/"+th.ID+"/cwts", admin)
		var out struct{ CWTs []map[string]any }
		if code != http.StatusOK || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("the thing's CWTs: %d %s", code, body)
		}
		return out.CWTs
	}
	if l := list(); len(l) != 1 || l[0]["cti"] != id || l[0]["revoked"] != false || l[0]["clientId"] != th.ID || l[0]["scope"] != fleetScope {
		t.Fatalf("the thing's CWTs: %v", l)
	}

	otherThing := strings.SplitN(other.Identity, ".", 2)[0]
	unknown := map[bool]string{true: "1", false: "0"}[id[0] == '0'] + id[1:]
	for _, c := range []struct {
		name, path string
		auth       func(*http.Request)
		status     int
	}{
		{"a cti that is no hex", "/api/v1/admin/things/" + th.ID + "/cwts/zz", admin, http.StatusBadRequest},
		{"another thing's path", "/api/v1/admin/things/" + otherThing + "/cwts/" + id, admin, http.StatusNotFound},
		{"an unknown cti", "/api/v1/admin/things/" + th.ID + "/cwts/" + unknown, admin, http.StatusNotFound},
		{"no credentials", "/api/v1/admin/things/" + th.ID + "/cwts/" + id, nil, http.StatusUnauthorized},
		{"a wrong password", "/api/v1/admin/things/" + th.ID + "/cwts/" + id, basic("admin", umaPW), http.StatusUnauthorized},
	} {
		resp, body := a.r.do(t, nil, "DELETE", c.path, c.auth)
		if resp.StatusCode != c.status || (c.status == http.StatusBadRequest && !strings.Contains(body, `"cti"`)) {
			t.Errorf("%s: %d %s; want %d", c.name, resp.StatusCode, body, c.status)
		}
	}
	if code, _ := post(t, cc, "/mqtt/fleet/thermostats", message.TextPlain, []byte("1")); code != codes.Changed {
		t.Fatalf("the token's scope after refused revocations: %v", code)
	}

	start := time.Now()
	if resp, body := a.r.do(t, nil, "DELETE", "/api/v1/admin/things/"+th.ID+"/cwts/"+id, admin); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("revoking: %d %s", resp.StatusCode, body)
	}
	waitEnded(t, cc, "the PSK session holding the CWT an administrator revoked")
	t.Logf("the gateway ended the session %v after the DELETE was sent", time.Since(start))
	if l := list(); len(l) != 1 || l[0]["revoked"] != true {
		t.Errorf("the list after the revocation: %v", l)
	}
	a.r.wantMetrics(t, `thingid_ace_requests_total{endpoint="admin_revoke",result="ok"} 1`,
		`thingid_ace_requests_total{endpoint="admin_revoke",result="other"} 2`)

	issued := a.auditRecords(t, ace.ActionIssue, th.ID)
	if len(issued) != 1 || issued[0].Actor != "client:"+th.ID || detail(t, issued[0])["cti"] != id || detail(t, issued[0])["thing"] != th.ID {
		t.Errorf("the issuance in the audit log: %+v", issued)
	}
	revoked := a.auditRecords(t, ace.ActionRevoke, th.ID)
	if len(revoked) != 1 || !strings.HasPrefix(revoked[0].Actor, "admin") || detail(t, revoked[0])["cti"] != id ||
		detail(t, revoked[0])["by"] != "administrator" || detail(t, revoked[0])["thing"] != th.ID {
		t.Errorf("the revocation in the audit log: %+v", revoked)
	}
}

// TestBrowserConsoleRevokesCWT plays the administrator in Chromium: a
// thing holds a CWT on a DTLS session of its certificate; ada opens the
// thing's page, finds the CWT, revokes it through the confirmation page,
// and the gateway ends the session holding it.
func TestBrowserConsoleRevokesCWT(t *testing.T) {
	tab := browsertest.New(t)
	shots := browsertest.NewScreenshots(t)
	a := newACEAdmin(t)
	th, cert := a.certThing("ACE-CONSOLE-1")
	holder := a.dialCert(cert)
	tok := token(t, holder, th.ID, fleetScope)
	if code, b := post(t, holder, coapgw.PathAuthzInfo, coapgw.ACECBOR, byteString(t, tok)); code != codes.Created {
		t.Fatalf("authz-info: %v %s", code, b)
	}
	id := hex.EncodeToString(cti(t, tok))

	browserSignIn(t, tab, a.r.base, "/admin/things/"+th.ID, "ada")
	row := `tr[data-cti="` + id + `"]`
	must(t, "finding the CWT on the thing's page", chromedp.Do(tab, chromedp.WaitVisible(chromedp.CSS(row))))
	text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(row)))
	if err != nil || !strings.Contains(text, fleetScope) || !strings.Contains(text, "active") {
		t.Fatalf("the CWT's row: %q %v", text, err)
	}
	shots.Take(t, tab, "thing")
	must(t, "revoking the CWT", chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(row+` button[name="revoke-cwt"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm"))))
	shots.Take(t, tab, "confirm")
	if notice := submitForm(t, tab, "confirming", chromedp.Click(chromedp.ID("confirm"))); !strings.HasPrefix(notice, "CWT revoked.") {
		t.Errorf("after revoking: %q", notice)
	}
	waitEnded(t, holder, "the session holding the CWT revoked in the console")
	text, err = chromedp.Run(tab, chromedp.Text(chromedp.CSS(row)))
	if err != nil || !strings.Contains(text, "revoked") {
		t.Errorf("the CWT's row after the revocation: %q %v", text, err)
	}
	shots.Take(t, tab, "revoked")
	if recs := a.auditRecords(t, ace.ActionRevoke, th.ID); len(recs) != 1 || recs[0].Actor != "admin:"+a.ada.ID || detail(t, recs[0])["cti"] != id {
		t.Errorf("the console's revocation in the audit log: %+v", recs)
	}
}
