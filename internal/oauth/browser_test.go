package oauth

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/browsertest"

	"github.com/thingid/thingid/internal/store"
)

// pairInBrowser plays the person on the laptop: opens verification_uri_complete,
// signs in as alice, confirms the prefilled code, checks that the consent page
// says which device asks, and presses button ("allow" or "deny").
func pairInBrowser(t *testing.T, button string) (*env, *store.Client, deviceAuthResponse) {
	ctx := browsertest.New(t)
	e := newEnv(t)
	c := e.speakerClient(t)
	d := e.startDevice(t, c.ID)

	err := chromedp.Do(ctx,
		chromedp.Navigate(d.VerificationURIComplete),
		chromedp.WaitVisible(chromedp.ID("userName")),
	)
	if err != nil {
		t.Fatalf("opening the verification URI: %v", err)
	}
	signinURL, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.Contains(signinURL, "/signin?return_to=") {
		t.Fatalf("not sent to sign in: %s (%v)", signinURL, err)
	}
	err = chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("userName"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), alicePassword),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("user_code")),
	)
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	prefilled, err := chromedp.Run(ctx, chromedp.Value(chromedp.ID("user_code")))
	if err != nil || prefilled != d.UserCode {
		t.Errorf("prefilled %q (%v), want %q", prefilled, err, d.UserCode)
	}
	if err := chromedp.Do(ctx, chromedp.Submit(chromedp.ID("user_code")), chromedp.WaitVisible(chromedp.ID("allow"))); err != nil {
		t.Fatalf("confirming the code: %v", err)
	}
	consent, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Living room speaker", "Speaker-1", "SN-0001", "speaker:play"} {
		if !strings.Contains(consent, want) {
			t.Errorf("consent page lacks %q:\n%s", want, consent)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID(button)), chromedp.WaitVisible(chromedp.ID("message"))); err != nil {
		t.Fatalf("pressing %s: %v", button, err)
	}
	return e, c, d
}

// TestBrowserPairing: after Allow the device gets its tokens and alice owns it.
func TestBrowserPairing(t *testing.T) {
	e, c, d := pairInBrowser(t, "allow")
	resp, body := e.pollDevice(t, c.ID, d.DeviceCode)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("device token: %d %s", resp.StatusCode, body)
	}
	owners, err := e.st.ListRelationships(context.Background(), store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: e.speaker.ID}})
	if err != nil || len(owners) != 1 || owners[0].From.ID != e.alice.ID {
		t.Errorf("owner relationship after Allow: %v %v", owners, err)
	}
}

// TestBrowserPairingDenied: after Deny the device gets access_denied and no owner.
func TestBrowserPairingDenied(t *testing.T) {
	e, c, d := pairInBrowser(t, "deny")
	resp, body := e.pollDevice(t, c.ID, d.DeviceCode)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "access_denied") {
		t.Fatalf("device after Deny: %d %s", resp.StatusCode, body)
	}
	owners, _ := e.st.ListRelationships(context.Background(), store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: e.speaker.ID}})
	if len(owners) != 0 {
		t.Errorf("owner relationship after Deny: %v", owners)
	}
}

// TestBrowserAuthorizationCode: alice signs in and allows in Chromium, and
// the browser lands on the client's redirect URI with the code. The consent
// form's answer is a redirect to another site, which the page's CSP
// form-action must name (browsers block the redirect otherwise).
func TestBrowserAuthorizationCode(t *testing.T) {
	ctx := browsertest.New(t)
	got := make(chan url.Values, 1)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>Acme</title><p id="done">Back at Acme</p>`))
	}))
	defer app.Close()
	e := newEnv(t)
	c, _ := e.client(t, ClientSpec{Name: "Acme web app", Type: store.ClientPublic, RedirectURIs: []string{app.URL + "/cb"},
		GrantTypes: []string{GrantAuthorizationCode}, Scopes: []string{"speaker:play"}})
	cfg := e.oauthConfig(c, "speaker:play")
	cfg.RedirectURL = app.URL + "/cb"
	verifier := oauth2.GenerateVerifier()
	err := chromedp.Do(ctx,
		chromedp.Navigate(cfg.AuthCodeURL("st-b", oauth2.S256ChallengeOption(verifier))),
		chromedp.WaitVisible(chromedp.ID("userName")),
		chromedp.SendKeys(chromedp.ID("userName"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), alicePassword),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("allow")),
		chromedp.Click(chromedp.ID("allow")),
		chromedp.WaitVisible(chromedp.ID("done")),
	)
	if err != nil {
		t.Fatalf("sign in and allow: %v", err)
	}
	q := <-got
	if q.Get("state") != "st-b" || q.Get("code") == "" {
		t.Fatalf("back at the client with %v", q)
	}
	if _, err := cfg.Exchange(e.ctx(), q.Get("code"), oauth2.VerifierOption(verifier)); err != nil {
		t.Fatalf("exchange: %v", err)
	}
}
