package server

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
)

// A UMA client and resource server written only from the UMA 2.0 Grant and
// Federated Authorization recommendations, over raw net/http: nothing of
// thingid's code or constants takes part on their side, so that a
// third-party client following the recommendations works with thingid.
// Their only thingid knowledge is what a developer is given: client
// credentials, the authorization server's URI and an access token the
// client holds for its user (pushed as a claim token, in the format the
// need_info hint names).

// thirdParty is an HTTP client of the platform's public URL, reaching it
// the way a deployment's DNS would.
func thirdParty(t *testing.T, r *running) *http.Client {
	pub, err := url.Parse(r.p.Config.HTTP.PublicURL)
	if err != nil {
		t.Fatal(err)
	}
	listener := strings.TrimPrefix(r.base, "https://")
	tr := r.client.Transport.(*http.Transport).Clone()
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == pub.Host {
			addr = listener
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
	return &http.Client{Transport: tr, Timeout: r.client.Timeout}
}

// doJSON sends a request and decodes a JSON object answer.
func doJSON(c *http.Client, req *http.Request) (int, map[string]any, error) {
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var out map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			return 0, nil, fmt.Errorf("%s %s: %d, not JSON: %s", req.Method, req.URL, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, out, nil
}

// rawJSON is doJSON in the test's goroutine.
func rawJSON(t *testing.T, c *http.Client, req *http.Request) (int, map[string]any) {
	t.Helper()
	code, out, err := doJSON(c, req)
	if err != nil {
		t.Fatal(err)
	}
	return code, out
}

func newRequest(t *testing.T, method, u, contentType, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return req
}

// basicAuth is RFC 6749 §2.3.1: the form-encoded id and secret in HTTP Basic.
func basicAuth(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// umaChallenge reads a UMA 2.0 Grant §3.2 WWW-Authenticate header:
// UMA realm="…", as_uri="…", ticket="…".
func umaChallenge(h string) (map[string]string, error) {
	rest, ok := strings.CutPrefix(h, "UMA ")
	if !ok {
		return nil, fmt.Errorf("not a UMA challenge: %q", h)
	}
	params := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			return nil, fmt.Errorf("malformed parameter %q", part)
		}
		params[k] = v[1 : len(v)-1]
	}
	return params, nil
}

// thirdPartyRS is a resource server protecting one photo: without a
// sufficient RPT it asks the permission endpoint for a ticket and answers
// 401 (Grant §3.2, Federated Authorization §4); with one, it introspects
// the RPT (Federated Authorization §5) and checks its permissions.
type thirdPartyRS struct {
	hc         *http.Client
	conf       map[string]any // the authorization server's uma2-configuration
	pat        string
	resourceID string
}

// call asks the authorization server's endpoint with the PAT.
func (rs *thirdPartyRS) call(endpoint, contentType, body string) (int, map[string]any, error) {
	req, err := http.NewRequest("POST", rs.conf[endpoint].(string), strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+rs.pat)
	return doJSON(rs.hc, req)
}

func (rs *thirdPartyRS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rpt, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		code, in, err := rs.call("introspection_endpoint", "application/x-www-form-urlencoded", url.Values{"token": {rpt}}.Encode())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if code == 200 && in["active"] == true {
			perms, _ := in["permissions"].([]any)
			for _, p := range perms {
				pm, _ := p.(map[string]any)
				scopes, _ := pm["resource_scopes"].([]any)
				if pm["resource_id"] == rs.resourceID && slices.Contains(scopes, any("view")) {
					_, _ = io.WriteString(w, "the photo")
					return
				}
			}
		}
	}
	body, _ := json.Marshal([]map[string]any{{"resource_id": rs.resourceID, "resource_scopes": []string{"view"}}})
	code, out, err := rs.call("permission_endpoint", "application/json", string(body))
	if err != nil || code != 201 {
		http.Error(w, fmt.Sprintf("permission endpoint: %d %v", code, out), http.StatusBadGateway)
		return
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`UMA realm="photos", as_uri="%s", ticket="%s"`, rs.conf["issuer"], out["ticket"]))
	w.WriteHeader(http.StatusUnauthorized)
}

func TestUMAThirdPartyClientFromTheRecommendations(t *testing.T) {
	w := newUMAWorld(t)
	hc := thirdParty(t, w.r)
	issuer := w.r.p.Config.HTTP.PublicURL
	discover := func(asURI string) map[string]any {
		code, conf := rawJSON(t, hc, newRequest(t, "GET", strings.TrimSuffix(asURI, "/")+"/.well-known/uma2-configuration", "", ""))
		if code != 200 {
			t.Fatalf("uma2-configuration: %d %v", code, conf)
		}
		return conf
	}

	// The resource server: a PAT with client_credentials (it is a trusted
	// first-party resource server), then the photo registered for alice.
	rs := &thirdPartyRS{hc: hc, conf: discover(issuer)}
	req := newRequest(t, "POST", rs.conf["token_endpoint"].(string), "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=uma_protection")
	req.Header.Set("Authorization", basicAuth(w.music.id, w.music.secret))
	code, out := rawJSON(t, hc, req)
	if code != 200 {
		t.Fatalf("PAT: %d %v", code, out)
	}
	rs.pat = out["access_token"].(string)
	req = newRequest(t, "POST", rs.conf["resource_registration_endpoint"].(string), "application/json",
		`{"name":"Beach","type":"https://photos.example/photo","resource_scopes":["view","edit"],"owner":"alice"}`)
	req.Header.Set("Authorization", "Bearer "+rs.pat)
	if code, out = rawJSON(t, hc, req); code != 201 {
		t.Fatalf("resource registration: %d %v", code, out)
	}
	rs.resourceID = out["_id"].(string)
	photos := httptest.NewServer(rs)
	defer photos.Close()

	// The client, for bob: it holds an access token acting for him.
	bobsToken := w.userToken(t, w.app.id, w.bob, nil)
	get := func(rpt string) *http.Response {
		req := newRequest(t, "GET", photos.URL+"/photos/beach", "", "")
		if rpt != "" {
			req.Header.Set("Authorization", "Bearer "+rpt)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	tokenRequest := func(endpoint string, params url.Values) (int, map[string]any) {
		params.Set("grant_type", "urn:ietf:params:oauth:grant-type:uma-ticket")
		req := newRequest(t, "POST", endpoint, "application/x-www-form-urlencoded", params.Encode())
		req.Header.Set("Authorization", basicAuth(w.app.id, w.app.secret))
		return rawJSON(t, hc, req)
	}

	// Grant §3.2: no RPT, a 401 with the authorization server and a ticket.
	resp := get("")
	ch, err := umaChallenge(resp.Header.Get("WWW-Authenticate"))
	if resp.StatusCode != 401 || err != nil || ch["as_uri"] != issuer || ch["ticket"] == "" {
		t.Fatalf("the resource server's answer: %d %v %v", resp.StatusCode, ch, err)
	}
	conf := discover(ch["as_uri"])
	grants, _ := conf["grant_types_supported"].([]any)
	if !slices.Contains(grants, any("urn:ietf:params:oauth:grant-type:uma-ticket")) {
		t.Fatalf("the authorization server does not offer the UMA grant: %v", grants)
	}
	endpoint := conf["token_endpoint"].(string)

	// Grant §3.3.1: the ticket alone; §3.3.6 need_info with required_claims.
	code, out = tokenRequest(endpoint, url.Values{"ticket": {ch["ticket"]}})
	if code != 403 || out["error"] != "need_info" {
		t.Fatalf("ticket alone: %d %v", code, out)
	}
	required, _ := out["required_claims"].([]any)
	if len(required) == 0 {
		t.Fatalf("need_info without required_claims: %v", out)
	}
	formats, _ := required[0].(map[string]any)["claim_token_format"].([]any)
	var format string
	for _, f := range formats {
		if s, _ := f.(string); strings.HasSuffix(s, ":access_token") {
			format = s
		}
	}
	if format == "" || !slices.Contains(conf["claim_token_formats_supported"].([]any), any(format)) {
		t.Fatalf("no access token claim token format among %v (supported %v)", formats, conf["claim_token_formats_supported"])
	}
	// Grant §3.3.1: push the claim token with the rotated ticket; the owner
	// has not decided (§3.3.6 request_submitted, with a ticket and interval).
	code, out = tokenRequest(endpoint, url.Values{"ticket": {out["ticket"].(string)}, "claim_token": {bobsToken}, "claim_token_format": {format}})
	if code != 403 || out["error"] != "request_submitted" || out["ticket"] == nil || out["interval"] == nil {
		t.Fatalf("with the claim token: %d %v", code, out)
	}
	ticket := out["ticket"].(string)

	// Alice approves on her account (the platform's owners' API).
	jar, _ := cookiejar.New(nil)
	alice := &http.Client{Transport: hc.Transport, Timeout: hc.Timeout, Jar: jar}
	if code, out := rawJSON(t, alice, newRequest(t, "POST", issuer+"/api/v1/signin", "application/json", `{"userName":"alice","password":`+jsonQuote(umaPW)+`}`)); code != 200 {
		t.Fatalf("alice signs in: %d %v", code, out)
	}
	code, out = rawJSON(t, alice, newRequest(t, "GET", issuer+"/api/v1/uma/requests?status=pending", "", ""))
	requests, _ := out["requests"].([]any)
	if code != 200 || len(requests) != 1 {
		t.Fatalf("alice's pending requests: %d %v", code, out)
	}
	id := requests[0].(map[string]any)["id"].(string)
	if code, out := rawJSON(t, alice, newRequest(t, "POST", issuer+"/api/v1/uma/requests/"+id+"/approve", "application/json", `{"scopes":["view"]}`)); code != 200 {
		t.Fatalf("approve: %d %v", code, out)
	}

	// Grant §3.3.5: the RPT (and a pct); the resource server introspects
	// it and serves the photo.
	code, out = tokenRequest(endpoint, url.Values{"ticket": {ticket}, "claim_token": {bobsToken}, "claim_token_format": {format}})
	if code != 200 || out["access_token"] == nil || !strings.EqualFold(out["token_type"].(string), "bearer") || out["pct"] == nil {
		t.Fatalf("RPT: %d %v", code, out)
	}
	pct := out["pct"].(string)
	if resp := get(out["access_token"].(string)); resp.StatusCode != 200 {
		t.Fatalf("the photo with the RPT: %d", resp.StatusCode)
	}
	// Later, a new ticket: the pct stands for bob's claims.
	ch, err = umaChallenge(get("").Header.Get("WWW-Authenticate"))
	if err != nil {
		t.Fatal(err)
	}
	code, out = tokenRequest(endpoint, url.Values{"ticket": {ch["ticket"]}, "pct": {pct}})
	if code != 200 {
		t.Fatalf("RPT with the pct: %d %v", code, out)
	}
	if resp := get(out["access_token"].(string)); resp.StatusCode != 200 {
		t.Fatalf("the photo with the second RPT: %d", resp.StatusCode)
	}
}
