package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/examples/music-service/music"
	"github.com/thingid/thingid/internal/browsertest"
	"github.com/thingid/thingid/sdk"
)

// revocationDeadline is the issue's "within one second of unlinking": how
// long the test polls for the speaker's connection to close and its token
// to be refused. A deadline on a poll, not a measurement.
const revocationDeadline = time.Second

// apiRate is the route's limit per speaker and minute.
const apiRate = 3

// storyPlatform runs `thingid serve` with the gateway and the broker on free
// ports, the speaker's scopes including openid (so that its token could
// read its owner's profile at userinfo until unlinked), the cloud API
// behind the gateway, and the route of the music service (a trusted UMA
// resource server, examples/music-service) that music starts.
type storyPlatform struct {
	*instance
	base, gateway, broker string // URLs
	brokerPort            string
	caFile                string
	cloud                 *cloudAPI
	// musicAddr is where the music service listens, behind the gateway;
	// musicID and musicSecret are its client's.
	musicAddr, musicID, musicSecret string
	// adminToken is an admin API token: checked by a keyed hash, quick
	// enough to poll the broker's admin API with (unlike a password).
	adminToken string
}

func startStoryPlatform(t *testing.T) *storyPlatform {
	t.Helper()
	home, addrs := t.TempDir(), freeAddrs(t, 4)
	addr, brokerAddr, gatewayAddr := addrs[0], addrs[1], addrs[2]
	_, port, _ := net.SplitHostPort(addr)
	_, brokerPort, _ := net.SplitHostPort(brokerAddr)
	_, gatewayPort, _ := net.SplitHostPort(gatewayAddr)
	sp := &storyPlatform{base: "https://localhost:" + port, gateway: "https://localhost:" + gatewayPort,
		broker: "mqtts://localhost:" + brokerPort, brokerPort: brokerPort, caFile: filepath.Join(home, "pki", "ca.crt"), musicAddr: addrs[3]}
	// The music service is a trusted resource server: its client, its
	// place in the configuration and its route exist before the platform
	// starts, as an operator would set them up.
	sp.musicID, sp.musicSecret = createClient(t, home, "music-service", "--grant-type", "client_credentials", "--scope", "uma_protection")
	cfg := filepath.Join(t.TempDir(), "thingid.yaml")
	if err := os.WriteFile(cfg, []byte("oauth:\n  thingScopes: [device, profile, openid]\numa:\n  trustedResourceServers: ["+sp.musicID+"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	routes := filepath.Join(home, "routes")
	if err := os.MkdirAll(routes, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(routes, "music.yaml"), []byte(music.RouteFile("http://"+sp.musicAddr, sp.musicID)), 0o600); err != nil {
		t.Fatal(err)
	}
	sp.instance = start(t, home, addr, "THINGID_CONFIG="+cfg, "THINGID_MQTT_TLS_ADDRESS="+brokerAddr, "THINGID_GATEWAY_ADDRESS="+gatewayAddr)
	token, errOut, err := thingid(t, nil, "", "--home", home, "admin", "token", "--name", "e2e-story")
	if err != nil {
		t.Fatalf("admin token: %v %s", err, errOut)
	}
	sp.adminToken = strings.TrimSpace(token)
	sp.cloud = newCloudAPI(t)
	route := fmt.Sprintf(`routes:
  - name: acme-cloud
    match: {pathPrefix: /v1, methods: [GET]}
    upstream: {url: "%s"}
    filters:
      - oauth2:
          scopes: {"*": [device]}
          forwardToken: true        # the test replays the speaker's token after unlinking
      - throttle:
          key: [thing]
          rate: {requests: %d, per: 1m}
`, sp.cloud.URL, apiRate)
	// Written while serving: the gateway picks the route up on its own.
	if err := os.WriteFile(filepath.Join(routes, ".acme-cloud.yaml"), []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(routes, ".acme-cloud.yaml"), filepath.Join(routes, "acme-cloud.yaml")); err != nil {
		t.Fatal(err)
	}
	sp.pollUntil(t, 10*time.Second, "the gateway to serve the acme-cloud route (401 without a token)", func() (bool, string) {
		resp, err := sp.client.Get(sp.gateway + "/v1/playlists")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized, resp.Status
	})
	return sp
}

// pollUntil checks every 20 ms until ok, for at most timeout; state says
// what the last check found, for the failure message.
func (sp *storyPlatform) pollUntil(t *testing.T, timeout time.Duration, what string, ok func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		done, state := ok()
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %s: %s (last: %s); the log:\n%s", timeout, what, state, sp.out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createClient registers a client with `thingid clients create` on home.
func createClient(t *testing.T, home, name string, args ...string) (id, secret string) {
	t.Helper()
	out, errOut, err := thingid(t, nil, "", append([]string{"--home", home, "clients", "create", "--name", name}, args...)...)
	if err != nil {
		t.Fatalf("clients create: %v %s", err, errOut)
	}
	idm := regexp.MustCompile(`client_id: (\S+)`).FindStringSubmatch(out)
	secretm := regexp.MustCompile(`client_secret: (\S+)`).FindStringSubmatch(out)
	if idm == nil || secretm == nil {
		t.Fatalf("no client id or secret in %q", out)
	}
	return idm[1], secretm[1]
}

// service registers the manufacturer's cloud service with the CLI and gets
// its token by client credentials.
func (sp *storyPlatform) service(t *testing.T) (clientID, token string) {
	t.Helper()
	id, secret := createClient(t, sp.home, "acme-telemetry", "--grant-type", "client_credentials", "--scope", "mqtt:sub:things/+/telemetry")
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: sp.base + "/oauth2/token", Scopes: []string{"mqtt:sub:things/+/telemetry"}}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, sp.client))
	if err != nil {
		t.Fatalf("the cloud service's token: %v", err)
	}
	return id, tok.AccessToken
}

// music starts examples/music-service with one playlist (OWNER:NAME:TRACKS)
// and returns it with the playlist's resource id.
func (sp *storyPlatform) music(t *testing.T, playlist string) (p *process, resource string) {
	t.Helper()
	secretFile := filepath.Join(t.TempDir(), "music-secret")
	if err := os.WriteFile(secretFile, []byte(sp.musicSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	p = startProcess(t, exampleBinary(t, "music-service"), "--server", sp.base, "--ca", sp.caFile, "--client-id", sp.musicID,
		"--client-secret-file", secretFile, "--listen", sp.musicAddr, "--playlist", playlist)
	m, _ := p.out.find(t, regexp.MustCompile(`^playlist ".*" of \S+ is resource (\S+):`), 0, 30*time.Second, "the music service to register the playlist")
	p.out.find(t, regexp.MustCompile(`^serving 1 playlists on`), 0, 30*time.Second, "the music service to listen")
	return p, m[1]
}

// speaker starts the simulator on device i of b, quick to call the API
// and publish, exiting when unlinked, with flags of its own after; it keeps
// its refresh token in state.
func (sp *storyPlatform) speaker(t *testing.T, b batch, i int, server string, flags ...string) (p *process, state string) {
	state = filepath.Join(t.TempDir(), "speaker.json")
	return startProcess(t, exampleBinary(t, "smart-speaker"), append([]string{"--server", server, "--ca", sp.caFile,
		"--cert", b.cert(i), "--key", b.key(i), "--gateway", sp.gateway, "--broker", sp.broker,
		"--api-interval", "100ms", "--interval", "200ms", "--state", state,
		"--once", "--timeout", "10s", "--retry-for", "10s"}, flags...)...), state
}

// userID looks a user up by name over SCIM.
func (sp *storyPlatform) userID(t *testing.T, name string) string {
	t.Helper()
	code, body := sp.scim(t, "GET", "/Users?filter="+url.QueryEscape(`userName eq "`+name+`"`), nil)
	res, _ := body["Resources"].([]any)
	if code != http.StatusOK || len(res) != 1 {
		t.Fatalf("SCIM search for %s: %d %v", name, code, body)
	}
	return res[0].(map[string]any)["id"].(string)
}

// owners lists the owners of a thing over SCIM.
func (sp *storyPlatform) owners(t *testing.T, thing string) []string {
	t.Helper()
	code, body := sp.scim(t, "GET", "/Devices/"+thing, nil)
	if code != http.StatusOK {
		t.Fatalf("SCIM device %s: %d %v", thing, code, body)
	}
	ext, _ := body[thingExt].(map[string]any)
	owners, _ := ext["owners"].([]any)
	var ids []string
	for _, o := range owners {
		ids = append(ids, o.(map[string]any)["value"].(string))
	}
	return ids
}

// mqttConnected tells whether the broker's admin API lists a connected
// client with this id.
func (sp *storyPlatform) mqttConnected(t *testing.T, clientID string) (bool, string) {
	req, _ := http.NewRequest("GET", sp.url("/api/v1/admin/mqtt/clients"), nil)
	req.Header.Set("Authorization", "Bearer "+sp.adminToken)
	resp, err := sp.client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var list struct {
		Clients []struct {
			ClientID  string `json:"clientId"`
			Connected bool   `json:"connected"`
		} `json:"clients"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &list) != nil {
		t.Fatalf("broker admin API: %s %s", resp.Status, b)
	}
	for _, c := range list.Clients {
		if c.ClientID == clientID && c.Connected {
			return true, string(b)
		}
	}
	return false, string(b)
}

// The smart-speaker story with real participants around the real binary:
// the simulator as the speaker, Chromium as its buyer and as the buyer's
// friend, mosquitto_sub as the manufacturer's cloud service, an HTTP server
// as its cloud API, examples/music-service as the music service where the
// friend keeps a playlist.
func TestSmartSpeakerStory(t *testing.T) {
	mosquittoSub := tool(t, "mosquitto_sub", "mosquitto-clients")
	mosquittoPub := tool(t, "mosquitto_pub", "mosquitto-clients")
	browser := browsertest.New(t)
	shots := browsertest.NewScreenshots(t)
	sp := startStoryPlatform(t)

	// Factory: one speaker with its certificate.
	b := issueBatch(t, sp.home, 1)
	thing := b.thing(0)

	// Registration: the buyer creates an account on the manufacturer's site.
	const name, password = "alice", "a walk along the river at dawn"
	must(t, "registering in the browser", chromedp.Do(browser,
		chromedp.Navigate(sp.base+"/register"),
		chromedp.SendKeys(chromedp.ID("userName"), name),
		chromedp.SendKeys(chromedp.ID("email"), name+"@example.com"),
		chromedp.SendKeys(chromedp.ID("displayName"), "Alice"),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.SendKeys(chromedp.ID("passwordConfirm"), password),
	))
	shots.Take(t, browser, "register")
	// Submitting navigates (POST, 303, GET of the confirmation): waiting for
	// that response, not for an h1, which the form's page has too.
	if resp, err := chromedp.RunResponse(browser, chromedp.Click(chromedp.CSS(`button[type="submit"]`))); err != nil || resp.Status != http.StatusOK {
		t.Fatalf("submitting the registration: %v %v", resp, err)
	}
	if h, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("h1"))); err != nil || h != "Your account has been created" {
		t.Fatalf("after registering: %q %v", h, err)
	}
	shots.Take(t, browser, "registered")
	alice := sp.userID(t, name)

	// The friend has an account, and a playlist at the music service.
	const friend, friendPassword = "bob", "the owls are not what they seem"
	resp, err := sp.client.Post(sp.base+"/api/v1/register", "application/json", strings.NewReader(`{"userName":"`+friend+`","email":"`+friend+`@example.com","password":"`+friendPassword+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("registering %s: %s", friend, resp.Status)
	}
	musicSvc, playlist := sp.music(t, friend+":Road trip:Born to Run,Roadrunner,Thunder Road")

	// The cloud service listens to every speaker's telemetry.
	serviceID, serviceToken := sp.service(t)
	sub := startProcess(t, mosquittoSub, "-h", "localhost", "-p", sp.brokerPort, "--cafile", sp.caFile, "-V", "mqttv5",
		"-i", serviceID, "-u", serviceID, "-P", serviceToken, "-t", "things/+/telemetry", "-q", "1", "-v", "-C", "1", "-W", "60")

	// Call home: the speaker presents its factory certificate and shows a user code.
	spk, stateFile := sp.speaker(t, b, 0, sp.base, "--playlist", sp.gateway+music.PathPrefix+playlist, "--playlist-interval", "200ms")
	spk.out.find(t, speakerEvent("called-home"), 0, 30*time.Second, "the speaker to call home")
	m, _ := spk.out.find(t, userCodeLine, 0, 30*time.Second, "a user code on the speaker's display")
	verification, userCode := m[1], m[2]

	// Pairing: the buyer types the code at /device on the laptop and allows.
	pairInBrowser(t, browser, shots, verification, name, password, userCode, b.serial(0), "allow")
	_, paired := spk.out.find(t, speakerEvent("paired"), 0, 30*time.Second, "the speaker to get its tokens")
	if owners := sp.owners(t, thing); !slices.Equal(owners, []string{alice}) {
		t.Errorf("owners of the speaker after pairing: %v, want [%s]", owners, alice)
	}

	// The cloud API through the gateway: the speaker's token acts for alice,
	// bound to its certificate, and the gateway says so to the upstream.
	spk.out.find(t, speakerEvent("cloud-api"), paired, 30*time.Second, "the speaker's first cloud API call")
	calls := sp.cloud.received()
	if len(calls) == 0 || calls[0].Subject != alice || calls[0].Thing != thing || !strings.Contains(calls[0].Scope, "device") {
		t.Fatalf("the cloud API received %+v; want subject %s, thing %s, scope device", calls, alice, thing)
	}
	token := calls[0].Token
	c := claims(t, token)
	cnf, _ := c["cnf"].(map[string]any)
	if c["sub"] != alice || c["client_id"] != thing || cnf["x5t#S256"] != thumbprint(t, b.cert(0)) {
		t.Errorf("the speaker's access token: sub %v client_id %v cnf %v; want %s, %s and its certificate's thumbprint", c["sub"], c["client_id"], cnf, alice, thing)
	}

	// Telemetry reaches the cloud service.
	if err := sub.exit(t, 30*time.Second, "mosquitto_sub"); err != nil {
		t.Fatalf("mosquitto_sub: %v\n%s", err, sub.out)
	}
	if got := sub.out.String(); !regexp.MustCompile(`^things/` + thing + `/telemetry \{"seq":\d+,`).MatchString(got) {
		t.Errorf("mosquitto_sub received %q, want the speaker's telemetry", got)
	}

	// Throttling: apiRate calls pass, the next is 429.
	_, throttled := spk.out.find(t, speakerEvent("throttled"), paired, 30*time.Second, "the gateway to throttle the speaker")
	passed := 0
	for _, l := range spk.out.from(paired)[:throttled-paired] {
		if speakerEvent("cloud-api").MatchString(l) {
			passed++
		}
	}
	if passed != apiRate || len(sp.cloud.received()) != apiRate {
		t.Errorf("%d calls passed (the cloud API saw %d) before the first 429, want %d", passed, len(sp.cloud.received()), apiRate)
	}
	dev := sp.deviceClient(t, b.cert(0), b.key(0))
	status, header := get(t, dev, sp.gateway+"/v1/playlists", token)
	if status != http.StatusTooManyRequests || header.Get("Retry-After") == "" || !strings.Contains(header.Get("RateLimit-Policy"), fmt.Sprintf("q=%d", apiRate)) {
		t.Errorf("the speaker's token over its rate: %d %v, want 429 with Retry-After and RateLimit-Policy", status, header)
	}
	if connected, list := sp.mqttConnected(t, thing); !connected {
		t.Fatalf("the speaker is not connected to the broker before unlinking: %s", list)
	}

	// The friend's playlist: the speaker asked for it, and the friend was
	// asked; in the browser of their own laptop they approve, the speaker
	// plays it, they revoke, and the speaker's next request is refused.
	shareAndRevokeInBrowser(t, sp, shots, spk, paired, friend, friendPassword, playlist, func() {
		served := regexp.MustCompile(`^served "Road trip" of bob to ` + alice + ` \(client ` + thing + `, thing ` + thing + `\)$`)
		musicSvc.out.find(t, served, 0, 30*time.Second, "the music service to serve the playlist to alice through the speaker")
	})

	// The credentials the speaker holds now, to try them after unlinking.
	state, err := os.ReadFile(stateFile)
	var saved struct {
		RefreshToken string `json:"refresh_token"`
	}
	if err != nil || json.Unmarshal(state, &saved) != nil || saved.RefreshToken == "" {
		t.Fatalf("the speaker's state file: %s %v", state, err)
	}
	if status, _ := get(t, dev, sp.base+"/oauth2/userinfo", token); status != http.StatusOK {
		t.Fatalf("userinfo with the speaker's token before unlinking: %d", status)
	}

	// Unlink from "my devices".
	before := spk.out.len()
	unlinkInBrowser(t, browser, shots, sp.base, thing)
	unlinked := time.Now()

	// Locked out within the deadline: the broker closed the connection, the
	// gateway refuses the token.
	within := func(what string, ok func() (bool, string)) {
		t.Helper()
		for {
			done, state := ok()
			if done {
				return
			}
			if time.Since(unlinked) > revocationDeadline {
				t.Errorf("not within %s of unlinking: %s (last: %s)", revocationDeadline, what, state)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	within("the broker closes the speaker's connection", func() (bool, string) {
		connected, list := sp.mqttConnected(t, thing)
		return !connected, list
	})
	within("the gateway refuses the speaker's token", func() (bool, string) {
		status, header := get(t, dev, sp.gateway+"/v1/playlists", token)
		return status == http.StatusUnauthorized && strings.Contains(header.Get("WWW-Authenticate"), "invalid_token"), fmt.Sprint(status)
	})
	within("the speaker sees its connection closed", func() (bool, string) {
		for _, l := range spk.out.from(before) {
			if speakerEvent("mqtt-disconnected").MatchString(l) {
				return true, l
			}
		}
		return false, "no mqtt-disconnected line"
	})
	if err := spk.exit(t, 30*time.Second, "the speaker"); err != nil {
		t.Errorf("the speaker (--once) after unlinking: %v\n%s", err, spk.out)
	}
	spk.out.find(t, speakerEvent("unlinked"), before, time.Second, "the speaker to say it was unlinked")

	// Nothing the speaker still holds reads alice's data any more.
	if owners := sp.owners(t, thing); len(owners) != 0 {
		t.Errorf("owners after unlinking: %v", owners)
	}
	if status, _ := get(t, dev, sp.base+"/oauth2/userinfo", token); status != http.StatusUnauthorized {
		t.Errorf("userinfo with the old token: %d, want 401", status)
	}
	resp, err = dev.PostForm(sp.base+"/oauth2/token", url.Values{"grant_type": {"refresh_token"}, "client_id": {thing}, "refresh_token": {saved.RefreshToken}})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "invalid_grant") {
		t.Errorf("refresh with the old refresh token: %s %s, want invalid_grant", resp.Status, body)
	}
	pub := exec.Command(mosquittoPub, "-h", "localhost", "-p", sp.brokerPort, "--cafile", sp.caFile, "--cert", b.cert(0), "--key", b.key(0),
		"-V", "mqttv5", "-i", thing, "-u", thing, "-P", token, "-t", "things/"+thing+"/telemetry", "-m", `{"seq":0}`, "-q", "1")
	if out, err := pub.CombinedOutput(); err == nil || !strings.Contains(string(out), "Bad User Name or Password") {
		t.Errorf("mosquitto_pub with the old token: %v %s; want the connection refused (bad user name or password)", err, out)
	}
}

// pairInBrowser plays the buyer at the verification URI: sign in, type the
// code, check the consent page names the speaker, and press button.
func pairInBrowser(t *testing.T, browser context.Context, shots *browsertest.Screenshots, verification, name, password, code, serial, button string) {
	t.Helper()
	must(t, "opening "+verification, chromedp.Do(browser, chromedp.Navigate(verification), chromedp.WaitVisible(chromedp.ID("userName"))))
	shots.Take(t, browser, "signin")
	must(t, "signing in", chromedp.Do(browser,
		chromedp.SendKeys(chromedp.ID("userName"), name),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("user_code")),
	))
	must(t, "typing the user code", chromedp.Do(browser, chromedp.SendKeys(chromedp.ID("user_code"), code)))
	shots.Take(t, browser, "user-code")
	must(t, "sending the user code", chromedp.Do(browser, chromedp.Submit(chromedp.ID("user_code")), chromedp.WaitVisible(chromedp.ID(button))))
	page, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{code, "Speaker-1", serial, "Acme"} {
		if !strings.Contains(page, want) {
			t.Errorf("the consent page does not show %q:\n%s", want, page)
		}
	}
	shots.Take(t, browser, "consent")
	must(t, "pressing "+button, chromedp.Do(browser, chromedp.Click(chromedp.ID(button)), chromedp.WaitVisible(chromedp.ID("message"))))
	shots.Take(t, browser, button)
}

// shareAndRevokeInBrowser plays the buyer's friend in a browser of their
// own while the speaker asks for their playlist: the request is on
// /account/sharing, the friend approves it and the speaker plays the
// playlist (played checks what else should see it), the friend revokes the
// share on the same page and the speaker's next request is refused.
func shareAndRevokeInBrowser(t *testing.T, sp *storyPlatform, shots *browsertest.Screenshots, spk *process, paired int, name, password, playlist string, played func()) {
	t.Helper()
	_, asked := spk.out.find(t, speakerEvent("playlist-waiting"), paired, 30*time.Second, "the speaker to ask for the playlist")
	browser := browsertest.New(t)
	request := `section[data-request]`
	resource := `section[data-resource="` + playlist + `"]`
	// submit sends a form and returns the notice of the page it leads to.
	submit := func(what string, actions ...chromedp.Action[chromedp.Void]) string {
		t.Helper()
		resp, err := chromedp.RunResponse(browser, actions...)
		if err != nil || resp.Status != http.StatusOK {
			t.Fatalf("%s: %v %v", what, resp, err)
		}
		notice, err := chromedp.Run(browser, chromedp.Text(chromedp.ID("notice")))
		if err != nil {
			t.Fatalf("%s: no notice: %v", what, err)
		}
		return notice
	}

	must(t, "opening /account/sharing", chromedp.Do(browser, chromedp.Navigate(sp.base+"/account/sharing"), chromedp.WaitVisible(chromedp.ID("userName"))))
	must(t, "signing in as "+name, chromedp.Do(browser,
		chromedp.SendKeys(chromedp.ID("userName"), name),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.CSS(request)),
	))
	if text, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(request))); err != nil || !strings.Contains(text, "alice asks for Road trip") || !strings.Contains(text, "play") {
		t.Fatalf("the request on %s's page: %q %v", name, text, err)
	}
	shots.Take(t, browser, "friend-request")
	if notice := submit("approving the request", chromedp.Click(chromedp.CSS(request+` button[name="approve"]`))); !strings.HasPrefix(notice, "Request approved") {
		t.Errorf("notice after approving: %q", notice)
	}
	if row, err := chromedp.Run(browser, chromedp.Text(chromedp.CSS(resource+` tr[data-share]`))); err != nil || !strings.Contains(row, "alice") || !strings.Contains(row, "play") {
		t.Fatalf("the share on %s's page: %q %v", name, row, err)
	}
	shots.Take(t, browser, "friend-shared")

	m, playing := spk.out.find(t, speakerEvent("playlist"), asked, 30*time.Second, "the speaker to play the shared playlist")
	if !strings.Contains(m[1], `playing "Road trip" of bob`) {
		t.Errorf("the speaker: %s", m[1])
	}
	played()

	if notice := submit("revoking alice's access", chromedp.Click(chromedp.CSS(resource+` button[name="revoke"]`))); !strings.HasPrefix(notice, "Access revoked.") {
		t.Errorf("notice after revoking: %q", notice)
	}
	shots.Take(t, browser, "friend-revoked")
	if m, _ := spk.out.find(t, speakerEvent("playlist-waiting"), playing, 30*time.Second, "the speaker's next request to be refused"); !strings.HasPrefix(m[1], "stopped playing it") {
		t.Errorf("the speaker after the revocation: %s", m[1])
	}
}

// unlinkInBrowser unlinks the thing on the "my devices" page.
func unlinkInBrowser(t *testing.T, browser context.Context, shots *browsertest.Screenshots, base, thing string) {
	t.Helper()
	row := "#device-" + thing
	must(t, "opening my devices", chromedp.Do(browser, chromedp.Navigate(base+"/account/devices"), chromedp.WaitVisible(chromedp.CSS(row))))
	shots.Take(t, browser, "my-devices")
	must(t, "pressing Unlink", chromedp.Do(browser, chromedp.Click(chromedp.CSS(row+` button[type="submit"]`)), chromedp.WaitVisible(chromedp.ID("empty"))))
	shots.Take(t, browser, "unlinked")
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// get calls url with the access token (if any) and returns the status and headers.
func get(t *testing.T, c *http.Client, u, token string) (int, http.Header) {
	t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// The household story (issue 14) around the real binary: alice's household
// on a clock past 20:00 (its time zone chosen so), the speaker in the kids'
// room, emma invited and accepting, pairing it in Chromium and streaming
// with paho; alice's 07:00–20:00 rule ends the stream at the broker and the
// gateway's policy filter refuses the speaker; the preview and the audit
// log say why.
func TestHouseholdStory(t *testing.T) {
	sp := startStoryPlatform(t)
	shots := browsertest.NewScreenshots(t)
	b := issueBatch(t, sp.home, 1)
	thing := b.thing(0)

	// The kids' route: the cloud API behind oauth2 and the policy filter.
	routes := filepath.Join(sp.home, "routes")
	route := fmt.Sprintf("routes:\n  - name: acme-kids\n    match: {pathPrefix: /kids, methods: [GET]}\n    upstream: {url: %q}\n    filters:\n      - oauth2: {scopes: {\"*\": [device]}}\n      - policy: {actions: {GET: use}}\n", sp.cloud.URL)
	if err := os.WriteFile(filepath.Join(routes, ".kids.yaml"), []byte(route), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(routes, ".kids.yaml"), filepath.Join(routes, "kids.yaml")); err != nil {
		t.Fatal(err)
	}
	sp.pollUntil(t, 10*time.Second, "the gateway to serve the kids' route", func() (bool, string) {
		resp, err := sp.client.Get(sp.gateway + "/kids/v1/playlists")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusUnauthorized, resp.Status
	})

	alice := newMember(t, sp, "alice", "a walk along the river at dawn")
	emma := newMember(t, sp, "emma", "the owls are not what they seem")
	tz := bedtimeZone(time.Now())
	var h struct {
		ID    string `json:"id"`
		Rules []struct {
			Text string `json:"text"`
		} `json:"rules"`
	}
	alice.send(t, "POST", "/api/v1/households", map[string]string{"name": "Home", "timeZone": tz}, http.StatusCreated, &h)
	var room struct {
		ID string `json:"id"`
	}
	alice.send(t, "POST", "/api/v1/households/"+h.ID+"/rooms", map[string]string{"name": "Kids' room"}, http.StatusCreated, &room)

	// The speaker's device flow through the SDK, its user in Chromium.
	dev, err := sdk.New(sdk.Config{Server: sp.base, CertFile: b.cert(0), KeyFile: b.key(0), RootCAs: sp.client.Transport.(*http.Transport).TLSClientConfig.RootCAs})
	if err != nil {
		t.Fatal(err)
	}
	pair := func(m *member) *sdk.TokenSource {
		t.Helper()
		codes, done := make(chan sdk.UserCode, 1), make(chan error, 1)
		var ts *sdk.TokenSource
		go func() {
			var err error
			ts, err = dev.Pair(context.Background(), func(_ context.Context, c sdk.UserCode) error { codes <- c; return nil })
			done <- err
		}()
		var code sdk.UserCode
		select {
		case code = <-codes:
		case err := <-done:
			t.Fatalf("pairing for %s: %v", m.name, err)
		}
		pairInBrowser(t, browsertest.New(t), shots, code.VerificationURI, m.name, m.password, code.UserCode, b.serial(0), "allow")
		if err := <-done; err != nil {
			t.Fatalf("pairing for %s: %v", m.name, err)
		}
		return ts
	}
	pair(alice)
	alice.send(t, "PUT", "/api/v1/households/"+h.ID+"/things/"+thing, map[string]string{"roomId": room.ID}, http.StatusOK, nil)

	// emma is invited as a dependant and accepts.
	alice.send(t, "POST", "/api/v1/households/"+h.ID+"/invitations", map[string]string{"userName": "emma", "role": "dependant"}, http.StatusCreated, nil)
	var invs struct {
		Invitations []struct {
			ID string `json:"id"`
		} `json:"invitations"`
	}
	emma.send(t, "GET", "/api/v1/households/invitations", nil, http.StatusOK, &invs)
	if len(invs.Invitations) != 1 {
		t.Fatalf("emma's invitations: %+v", invs)
	}
	emma.send(t, "POST", "/api/v1/households/invitations/"+invs.Invitations[0].ID+"/accept", nil, http.StatusNoContent, nil)

	// For now emma may pair and use the kids' room's things at any time.
	rule := map[string]any{"id": "kids-speaker", "effect": "allow", "who": map[string]any{"kind": "member", "member": emma.id},
		"things": map[string]any{"kind": "room", "id": room.ID}, "actions": []string{"pair", "use"}}
	alice.send(t, "PUT", "/api/v1/households/"+h.ID+"/rules", map[string]any{"rules": []any{rule}}, http.StatusOK, nil)
	ts := pair(emma)
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if c := claims(t, tok.AccessToken); c["sub"] != emma.id {
		t.Fatalf("the speaker's token after emma paired it acts for %v, want emma %s", c["sub"], emma.id)
	}
	devClient := sp.deviceClient(t, b.cert(0), b.key(0))
	if status, _ := get(t, devClient, sp.gateway+"/kids/v1/playlists", tok.AccessToken); status != http.StatusOK {
		t.Fatalf("the speaker for emma through the kids' route: %d, want 200", status)
	}

	// The speaker streams for emma (paho, MQTT 5, its certificate).
	cert, err := tls.LoadX509KeyPair(b.cert(0), b.key(0))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := tls.Dial("tcp", "localhost:"+sp.brokerPort, &tls.Config{RootCAs: sp.client.Transport.(*http.Transport).TLSClientConfig.RootCAs, Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan *paho.Disconnect, 1)
	cl := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn), OnServerDisconnect: func(d *paho.Disconnect) { ended <- d }})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho.Connect{ClientID: thing, KeepAlive: 30, CleanStart: true, Username: thing, UsernameFlag: true,
		Password: []byte(tok.AccessToken), PasswordFlag: true}); err != nil {
		t.Fatalf("the speaker's MQTT connection for emma: %v", err)
	}
	defer cl.Disconnect(&paho.Disconnect{})
	if sa, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "things/" + thing + "/commands/#", QoS: 1}}}); err != nil || sa.Reasons[0] >= 0x80 {
		t.Fatalf("subscribing to its commands: %v %v", sa, err)
	}

	// Bedtime: 07:00–20:00, and it is 21:xx in the household.
	rule["actions"], rule["when"] = []string{"use"}, map[string]any{"start": "07:00", "end": "20:00"}
	alice.send(t, "PUT", "/api/v1/households/"+h.ID+"/rules", map[string]any{"rules": []any{rule}}, http.StatusOK, &h)
	const why = "outside the allowed times: Emma may use the things in Kids' room from 07:00 to 20:00"
	select {
	case d := <-ended:
		if d.ReasonCode != 0x98 || d.Properties == nil || d.Properties.ReasonString != why {
			t.Errorf("the broker ended the stream with 0x%02X %+v, want 0x98 %q", d.ReasonCode, d.Properties, why)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the broker did not end emma's stream after the rule closed her window")
	}
	resp, err := devClient.Do(func() *http.Request {
		req, _ := http.NewRequest("GET", sp.gateway+"/kids/v1/playlists", nil)
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		return req
	}())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "policy_denied") || !strings.Contains(string(body), why) {
		t.Errorf("the speaker for emma after 20:00: %s %s, want 403 policy_denied %q", resp.Status, body, why)
	}

	// The guardian sees why: the preview, and the audit log.
	var d struct {
		Allowed bool   `json:"allowed"`
		Rule    string `json:"rule"`
		Reason  string `json:"reason"`
	}
	alice.send(t, "POST", "/api/v1/households/"+h.ID+"/decisions", map[string]string{"userId": emma.id, "thingId": thing, "action": "use"}, http.StatusOK, &d)
	if d.Allowed || d.Rule != "kids-speaker" || d.Reason != why {
		t.Errorf("alice's preview: %+v, want refused by kids-speaker: %q", d, why)
	}
	req, _ := http.NewRequest("GET", sp.url("/api/v1/admin/audit?action=policy.deny&actor=user:"+emma.id), nil)
	req.Header.Set("Authorization", "Bearer "+sp.adminToken)
	resp, err = sp.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var page struct {
		Records []struct {
			Detail struct {
				Door, Rule, Reason string
			} `json:"detail"`
		} `json:"records"`
	}
	err = json.NewDecoder(resp.Body).Decode(&page)
	resp.Body.Close()
	doors := map[string]bool{}
	for _, r := range page.Records {
		if r.Detail.Rule == "kids-speaker" && r.Detail.Reason == why {
			doors[r.Detail.Door] = true
		}
	}
	if err != nil || !doors["gateway"] || !doors["broker"] {
		t.Errorf("policy.deny records of emma: %+v %v, want the gateway's and the broker's with the rule", page, err)
	}
}
