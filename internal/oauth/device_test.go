package oauth

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// startDevice asks for a device code as a public client.
// extra are more parameters, name and value.
func (e *env) startDevice(t testing.TB, clientID string, extra ...string) deviceAuthResponse {
	t.Helper()
	form := url.Values{"client_id": {clientID}}
	for i := 0; i+1 < len(extra); i += 2 {
		form.Add(extra[i], extra[i+1])
	}
	resp, body := e.post(t, e.srv.Client(), "/oauth2/device_authorization", form)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("device authorization: %d %s", resp.StatusCode, body)
	}
	var d deviceAuthResponse
	if err := json.Unmarshal([]byte(body), &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// approve signs user in with a fresh browser and allows the code.
func (e *env) approve(t testing.TB, code string, u *store.User, pw string) {
	t.Helper()
	b := e.browser()
	e.signIn(t, b, u.UserName, pw)
	resp, page := e.decide(t, b, code, "allow")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Device connected") {
		t.Fatalf("allow: %d %s", resp.StatusCode, page)
	}
}

func (e *env) pollDevice(t testing.TB, clientID, deviceCode string) (*http.Response, string) {
	t.Helper()
	return e.tokenRequest(t, url.Values{"grant_type": {GrantDeviceCode}, "client_id": {clientID}, "device_code": {deviceCode}})
}

// speakerClient is the public client the speaker pairs with.
func (e *env) speakerClient(t testing.TB) *store.Client {
	c, _ := e.client(t, ClientSpec{Name: "Acme Speaker app", Type: store.ClientPublic, ThingID: e.speaker.ID,
		GrantTypes: []string{GrantDeviceCode, GrantRefreshToken}, Scopes: []string{"speaker:play", "offline_access"}})
	return c
}

func TestDevicePairingWithRealClient(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	cfg := oauth2.Config{ClientID: c.ID, Scopes: []string{"speaker:play"},
		Endpoint: oauth2.Endpoint{DeviceAuthURL: e.srv.URL + "/oauth2/device_authorization", TokenURL: e.srv.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}}
	ctx := e.ctx()
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("device auth: %v", err)
	}
	if len(da.UserCode) != 9 || da.UserCode[4] != '-' || normalizeUserCode(da.UserCode) == "" || da.Interval != 1 ||
		da.VerificationURI != e.srv.URL+"/device" || da.VerificationURIComplete != e.srv.URL+"/device?user_code="+da.UserCode {
		t.Fatalf("device auth response %+v", da)
	}
	// The device polls (authorization_pending) while the user approves.
	type result struct {
		tok *oauth2.Token
		err error
	}
	done := make(chan result, 1)
	go func() {
		tok, err := cfg.DeviceAccessToken(ctx, da)
		done <- result{tok, err}
	}()
	time.Sleep(1500 * time.Millisecond)

	b := e.browser()
	// Not signed in: the prefilled link goes to sign-in and back.
	resp, _ := e.do(t, b, http.MethodGet, "/device?user_code="+strings.ToLower(da.UserCode), "", "")
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?return_to="+url.QueryEscape("/device?user_code="+da.UserCode) {
		t.Fatalf("not signed in: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	e.signIn(t, b, "alice", alicePassword)
	resp, page := e.do(t, b, http.MethodGet, "/device?user_code="+url.QueryEscape(da.UserCode), "", "")
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, `value="`+da.UserCode+`"`) {
		t.Fatalf("prefilled form: %d %s", resp.StatusCode, page)
	}
	// Case and separators do not matter.
	typed := strings.ToLower(strings.ReplaceAll(da.UserCode, "-", " "))
	resp, page = e.post(t, b, "/device", url.Values{"csrf": {csrfOf(t, page)}, "user_code": {typed}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("consent page: %d %s", resp.StatusCode, page)
	}
	for _, want := range []string{"Living room speaker", "Speaker-1", "SN-0001", "Acme Speaker app", "speaker:play", da.UserCode} {
		if !strings.Contains(page, want) {
			t.Errorf("consent page lacks %q", want)
		}
	}
	if strings.Contains(page, "offline_access") {
		t.Error("consent page shows a scope that was not requested")
	}
	resp, page = e.post(t, b, "/device/decision", url.Values{"csrf": {csrfOf(t, page)}, "user_code": {da.UserCode}, "decision": {"allow"}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(page, "Device connected") {
		t.Fatalf("allow: %d %s", resp.StatusCode, page)
	}

	r := <-done
	if r.err != nil {
		t.Fatalf("device access token: %v", r.err)
	}
	if r.tok.RefreshToken == "" {
		t.Fatal("no refresh token")
	}
	claims, err := e.verifier.Inspect(context.Background(), r.tok.AccessToken, tokens.VerifyOptions{Audience: e.srv.URL})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if claims.Subject != e.alice.ID || claims.ClientID != c.ID || claims.ThingID != e.speaker.ID || !slices.Equal(claims.Scope, []string{"speaker:play"}) {
		t.Fatalf("claims %+v", claims)
	}
	// alice owns the speaker now, audited and published.
	rels, _ := e.st.ListRelationships(context.Background(), store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: e.speaker.ID}})
	if len(rels) != 1 || rels[0].From.ID != e.alice.ID {
		t.Fatalf("owners %+v", rels)
	}
	if evs := e.eventsOf("relationship.add"); len(evs) != 1 || evs[0].ID != e.speaker.ID || evs[0].Details["fromId"] != e.alice.ID {
		t.Fatalf("relationship.add events %+v", evs)
	}
	audit, _ := e.st.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: e.speaker.ID}})
	if !slices.ContainsFunc(audit, func(a store.AuditRecord) bool { return a.Action == "relationship.add" && a.Actor == "user:"+e.alice.ID }) {
		t.Fatalf("audit %+v", audit)
	}

	// Single use: the device code cannot be exchanged again.
	resp, body := e.pollDevice(t, c.ID, da.DeviceCode)
	if resp.StatusCode != 400 || oauthError(t, body) != "invalid_grant" {
		t.Fatalf("second exchange: %d %s", resp.StatusCode, body)
	}

	// Pairing again with the same owner is fine (the link exists already).
	again := e.startDevice(t, c.ID)
	e.approve(t, again.UserCode, e.alice, alicePassword)
	if resp, body := e.pollDevice(t, c.ID, again.DeviceCode); resp.StatusCode != 200 {
		t.Fatalf("re-pairing: %d %s", resp.StatusCode, body)
	}
}

func TestDeviceCodeAttacks(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.DeviceInterval = 2 * time.Second })
	c := e.speakerClient(t)
	other, _ := e.client(t, ClientSpec{Name: "other", Type: store.ClientPublic, GrantTypes: []string{GrantDeviceCode}, Scopes: []string{"speaker:play"}})
	expect := func(t *testing.T, resp *http.Response, body, code string) {
		t.Helper()
		if resp.StatusCode != 400 || oauthError(t, body) != code {
			t.Fatalf("%d %s, want %s", resp.StatusCode, body, code)
		}
	}

	t.Run("another client", func(t *testing.T) {
		d := e.startDevice(t, c.ID)
		e.approve(t, d.UserCode, e.alice, alicePassword)
		resp, body := e.pollDevice(t, other.ID, d.DeviceCode)
		expect(t, resp, body, "invalid_grant")
		// The right client is unaffected.
		if resp, body := e.pollDevice(t, c.ID, d.DeviceCode); resp.StatusCode != 200 {
			t.Fatalf("rightful client: %d %s", resp.StatusCode, body)
		}
	})
	t.Run("polling faster than the interval", func(t *testing.T) {
		d := e.startDevice(t, c.ID)
		resp, body := e.pollDevice(t, c.ID, d.DeviceCode)
		expect(t, resp, body, "authorization_pending")
		resp, body = e.pollDevice(t, c.ID, d.DeviceCode)
		expect(t, resp, body, "slow_down")
		stored, err := e.st.GetDeviceCode(context.Background(), e.s.deviceHash(d.DeviceCode))
		if err != nil || stored.Interval != 7*time.Second {
			t.Fatalf("interval after slow_down: %v (%v), want 2 s + 5 s", stored.Interval, err)
		}
		resp, body = e.pollDevice(t, c.ID, d.DeviceCode)
		expect(t, resp, body, "slow_down")
	})
	t.Run("denied", func(t *testing.T) {
		d := e.startDevice(t, c.ID)
		b := e.browser()
		e.signIn(t, b, "alice", alicePassword)
		resp, page := e.decide(t, b, d.UserCode, "deny")
		if resp.StatusCode != 200 || !strings.Contains(page, "denied") {
			t.Fatalf("deny: %d %s", resp.StatusCode, page)
		}
		resp, body := e.pollDevice(t, c.ID, d.DeviceCode)
		expect(t, resp, body, "access_denied")
		// A decided code cannot be approved afterwards.
		resp, _ = e.enterCode(t, b, d.UserCode)
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("entering a denied code: %d", resp.StatusCode)
		}
	})
	t.Run("unknown code", func(t *testing.T) {
		resp, body := e.pollDevice(t, c.ID, "made-up")
		expect(t, resp, body, "expired_token")
	})
	t.Run("confidential client must authenticate", func(t *testing.T) {
		cc, _ := e.client(t, ClientSpec{Name: "conf", GrantTypes: []string{GrantDeviceCode}})
		resp, body := e.post(t, e.srv.Client(), "/oauth2/device_authorization", url.Values{"client_id": {cc.ID}})
		if resp.StatusCode != 401 || oauthError(t, body) != "invalid_client" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
	t.Run("scope beyond the client", func(t *testing.T) {
		resp, body := e.post(t, e.srv.Client(), "/oauth2/device_authorization", url.Values{"client_id": {c.ID}, "scope": {"speaker:admin"}})
		if resp.StatusCode != 400 || oauthError(t, body) != "invalid_scope" {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
	})
}

func TestDeviceCodeExpires(t *testing.T) {
	e := newEnv(t, func(o *Options) { o.DeviceCodeLifetime = time.Second })
	c := e.speakerClient(t)
	d := e.startDevice(t, c.ID)
	if d.ExpiresIn != 1 {
		t.Fatalf("expires_in %d", d.ExpiresIn)
	}
	time.Sleep(1100 * time.Millisecond)
	resp, body := e.pollDevice(t, c.ID, d.DeviceCode)
	if resp.StatusCode != 400 || oauthError(t, body) != "expired_token" {
		t.Fatalf("expired: %d %s", resp.StatusCode, body)
	}
	b := e.browser()
	e.signIn(t, b, "alice", alicePassword)
	if resp, _ := e.enterCode(t, b, d.UserCode); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("entering an expired code: %d", resp.StatusCode)
	}
}

func TestDeviceOwnedByAnotherUser(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	d := e.startDevice(t, c.ID)
	e.approve(t, d.UserCode, e.alice, alicePassword)

	d2 := e.startDevice(t, c.ID)
	b := e.browser()
	e.signIn(t, b, "bob", bobPassword)
	resp, page := e.decide(t, b, d2.UserCode, "allow")
	if resp.StatusCode != http.StatusConflict || !strings.Contains(page, "another account") {
		t.Fatalf("bob takes alice's speaker: %d %s", resp.StatusCode, page)
	}
	resp, body := e.pollDevice(t, c.ID, d2.DeviceCode)
	if oauthError(t, body) != "authorization_pending" {
		t.Fatalf("after refusal: %d %s", resp.StatusCode, body)
	}
	gs, _ := e.st.ListGrants(context.Background(), store.GrantFilter{UserID: e.bob.ID})
	if len(gs) != 0 {
		t.Fatalf("bob got grants %+v", gs)
	}
}

func TestUserCodeBruteForceIsLimited(t *testing.T) {
	e := newEnv(t)
	c := e.speakerClient(t)
	d := e.startDevice(t, c.ID)
	b := e.browser()
	e.signIn(t, b, "bob", bobPassword)
	for i := range 5 {
		resp, page := e.enterCode(t, b, "BCDF-GHJK"[:9-1]+string("LMNPQ"[i]))
		if resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("wrong code %d: %d %s", i, resp.StatusCode, page)
		}
	}
	// Now even the right code is refused, for this user...
	resp, page := e.enterCode(t, b, d.UserCode)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("sixth attempt: %d %s", resp.StatusCode, page)
	}
	// ...and for anyone else from the same address.
	a := e.browser()
	e.signIn(t, a, "alice", alicePassword)
	if resp, _ := e.enterCode(t, a, d.UserCode); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("same address, other user: %d", resp.StatusCode)
	}
	// The decision endpoint counts too.
	_, form := e.do(t, a, http.MethodGet, "/device", "", "")
	resp, _ = e.post(t, a, "/device/decision", url.Values{"csrf": {csrfOf(t, form)}, "user_code": {d.UserCode}, "decision": {"allow"}})
	if resp.StatusCode == http.StatusOK {
		t.Fatal("decision accepted past the limit")
	}
}

func TestDevicePagesRefuseOpenRedirectAndCSRF(t *testing.T) {
	e := newEnv(t)
	b := e.browser()
	for _, q := range []string{
		"", "?user_code=//evil.example", "?return_to=https://evil.example", "?user_code=https://evil.example/BCDFGHJK",
		"?user_code=%2F%2Fevil.example%2FBCDF", "?user_code=BCDF-GHJK%0d%0aLocation:%20https://evil.example",
	} {
		resp, _ := e.do(t, b, http.MethodGet, "/device"+q, "", "")
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/signin?return_to=%2Fdevice" {
			t.Errorf("GET /device%s: %d to %q, want /signin?return_to=%%2Fdevice", q, resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	resp, _ := e.do(t, b, http.MethodGet, "/device?user_code=bcdf+ghjk", "", "")
	if loc := resp.Header.Get("Location"); loc != "/signin?return_to="+url.QueryEscape("/device?user_code=BCDF-GHJK") {
		t.Errorf("prefilled: %q", loc)
	}
	// Sign-in honours the return_to it gets from us and nothing else.
	e.signIn(t, b, "alice", alicePassword)
	resp, page := e.do(t, b, http.MethodGet, "/device", "", "")
	if resp.StatusCode != 200 {
		t.Fatalf("signed in: %d", resp.StatusCode)
	}
	for _, h := range []string{"Content-Security-Policy", "X-Frame-Options"} {
		if resp.Header.Get(h) == "" {
			t.Errorf("page lacks %s", h)
		}
	}
	// POST without or with a forged CSRF token.
	for _, tok := range []string{"", "forged", csrfOf(t, page) + "x"} {
		resp, _ := e.post(t, b, "/device", url.Values{"csrf": {tok}, "user_code": {"BCDF-GHJK"}})
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("csrf %q: %d", tok, resp.StatusCode)
		}
	}
	// A cross-site form post is refused before anything else.
	resp, _ = e.post(t, b, "/device/decision", url.Values{"csrf": {csrfOf(t, page)}, "user_code": {"BCDF-GHJK"}, "decision": {"allow"}},
		"Sec-Fetch-Site", "cross-site")
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site post: %d", resp.StatusCode)
	}
}

func TestUserCodes(t *testing.T) {
	seen := map[string]bool{}
	for range 2000 {
		c := newUserCode()
		if len(c) != 8 || strings.Trim(c, userCodeAlphabet) != "" {
			t.Fatalf("user code %q", c)
		}
		seen[c] = true
	}
	if len(seen) < 1990 {
		t.Fatalf("only %d distinct codes of 2000", len(seen))
	}
	for in, want := range map[string]string{
		"BCDF-GHJK": "BCDFGHJK", "bcdf ghjk": "BCDFGHJK", " b-c-d-f-g-h-j-k ": "BCDFGHJK",
		"BCDFGHJ": "", "BCDFGHJKL": "", "ABCDFGHJ": "", "BCDF_GHJK": "", "BCDFGHJĶ": "", "ＢCDFGHJK": "",
	} {
		if got := normalizeUserCode(in); got != want {
			t.Errorf("normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzNormalizeUserCode(f *testing.F) {
	for _, s := range []string{"BCDF-GHJK", "bcdf ghjk", "", "//evil", "\u00e9"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out := normalizeUserCode(in)
		if out != "" && (len(out) != 8 || strings.Trim(out, userCodeAlphabet) != "") {
			t.Fatalf("normalize(%q) = %q", in, out)
		}
	})
}
