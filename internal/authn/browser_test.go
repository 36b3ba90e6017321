package authn

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/browsertest"
)

// TestBrowserSignInAndOut: the account page sends a stranger to sign in, the
// form brings them back signed in, and signing out ends it.
func TestBrowserSignInAndOut(t *testing.T) {
	ctx := browsertest.New(t)
	e := newEnv(t, testOptions())

	resp, err := chromedp.RunResponse(ctx, chromedp.Navigate(e.srv.URL+"/account"))
	if err != nil || resp.Status != 200 || !strings.Contains(resp.URL, "/signin?return_to=%2Faccount") {
		t.Fatalf("opening /account signed out: %v %v, want the sign-in page", resp, err)
	}
	if err := chromedp.Do(ctx,
		chromedp.SendKeys(chromedp.ID("userName"), "alice"),
		chromedp.SendKeys(chromedp.ID("password"), alicePassword),
	); err != nil {
		t.Fatalf("filling the form: %v", err)
	}
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	if err != nil || resp.Status != 200 || !strings.HasSuffix(resp.URL, "/account") {
		t.Fatalf("after signing in: %v %v, want 200 on /account", resp, err)
	}
	heading, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	if err != nil || heading != "Signed in as alice" {
		t.Fatalf("signed-in heading %q (%v)", heading, err)
	}
	// The cookie is out of the page's reach.
	if cookies, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`)); err != nil || strings.Contains(cookies, "thingid-session") {
		t.Fatalf("document.cookie = %q (%v): the session cookie must be HttpOnly", cookies, err)
	}
	resp, err = chromedp.RunResponse(ctx, chromedp.Click(chromedp.ID("signout")))
	if err != nil || resp.Status != 200 {
		t.Fatalf("signing out: %v %v", resp, err)
	}
	if heading, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1"))); err != nil || heading != "Signed out" {
		t.Fatalf("after signing out the heading is %q (%v)", heading, err)
	}
	resp, err = chromedp.RunResponse(ctx, chromedp.Navigate(e.srv.URL+"/account"))
	if err != nil || !strings.Contains(resp.URL, "/signin") {
		t.Fatalf("/account after signing out: %v %v, want the sign-in page", resp, err)
	}
	if list, _ := e.s.st.ListSessions(context.Background(), e.alice.ID); len(list) != 0 {
		t.Fatalf("sessions left after signing out: %d", len(list))
	}
}
