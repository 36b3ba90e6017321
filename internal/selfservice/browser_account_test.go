package selfservice

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/browsertest"
)

// navigate submits with actions and checks where the browser lands and the
// page's heading.
func navigate(t *testing.T, tab context.Context, what string, status int, path, heading string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	resp, err := chromedp.RunResponse(tab, actions...)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	u, _ := url.Parse(resp.URL)
	h1, _ := chromedp.Run(tab, chromedp.Text(chromedp.CSS("h1")))
	if resp.Status != int64(status) || u == nil || u.Path != path || h1 != heading {
		main, _ := chromedp.Run(tab, chromedp.Text(chromedp.CSS("main")))
		t.Fatalf("%s: %d on %s with heading %q; want %d on %s with %q\n%s", what, resp.Status, resp.URL, h1, status, path, heading, main)
	}
}

// signInBrowser signs name in on the sign-in page with pw and lands on the account page.
func signInBrowser(t *testing.T, tab context.Context, base, name, pw string) {
	t.Helper()
	navigate(t, tab, "opening sign-in", 200, "/signin", "Sign in", chromedp.Navigate(base+"/signin"))
	navigate(t, tab, name+" signing in", 200, "/account", "Signed in as "+name,
		chromedp.SendKeys(chromedp.ID("userName"), name),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.Submit(chromedp.ID("password")))
}

// TestBrowserForgotPassword: from the sign-in page's "Forgot password?" to
// signing in with the new password, the link read from the outbox.
func TestBrowserForgotPassword(t *testing.T) {
	tab := browsertest.New(t)
	e := newAccountEnv(t)
	e.user(t, "alice", true)

	navigate(t, tab, "opening sign-in", 200, "/signin", "Sign in", chromedp.Navigate(e.srv.URL+"/signin"))
	navigate(t, tab, "following Forgot password?", 200, "/password/forgot", "Forgot your password?", chromedp.Click(chromedp.ID("forgot")))
	navigate(t, tab, "asking for a link", 200, "/password/forgot/sent", "Check your e-mail",
		chromedp.SendKeys(chromedp.ID("account"), "alice@example.org"),
		chromedp.Click(chromedp.ID("submit")))
	link := e.h.baseURL + pathReset + "?token=" + e.resetToken(t, "alice@example.org")
	navigate(t, tab, "opening the link", 200, pathReset, "Choose a new password", chromedp.Navigate(link))
	// Two different passwords: the error is at the field, the link still works.
	navigate(t, tab, "mistyping", 422, pathReset, "Choose a new password",
		chromedp.SendKeys(chromedp.ID("newPassword"), newPassword),
		chromedp.SendKeys(chromedp.ID("passwordConfirm"), newPassword+"x"),
		chromedp.Click(chromedp.ID("submit")))
	if msg, err := chromedp.Run(tab, chromedp.Text(chromedp.ID("passwordConfirm-error"))); err != nil || !strings.Contains(msg, "do not match") {
		t.Fatalf("error at the confirmation %q (%v)", msg, err)
	}
	navigate(t, tab, "setting the password", 200, pathReset+"/done", "Password changed",
		chromedp.SendKeys(chromedp.ID("newPassword"), newPassword),
		chromedp.SendKeys(chromedp.ID("passwordConfirm"), newPassword),
		chromedp.Click(chromedp.ID("submit")))
	signInBrowser(t, tab, e.srv.URL, "alice", newPassword)
	// The link is spent.
	navigate(t, tab, "opening the link again", 400, pathReset, "Link not valid", chromedp.Navigate(link))
}

// TestBrowserAccountPages: from the account page, change the address
// (following the mailed link), download the data with the page's button,
// and delete the account.
func TestBrowserAccountPages(t *testing.T) {
	tab := browsertest.New(t)
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	signInBrowser(t, tab, e.srv.URL, "alice", goodPassword)

	navigate(t, tab, "opening the e-mail page", 200, pathEmail, "Change your e-mail address", chromedp.Click(chromedp.CSS(`a[href="/account/email"]`)))
	navigate(t, tab, "asking for the change", 200, pathEmail, "Change your e-mail address",
		chromedp.SendKeys(chromedp.ID("email"), "alice@example.net"),
		chromedp.Click(chromedp.ID("submit")))
	if notice, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(".notice"))); err != nil || !strings.Contains(notice, "sent a link") {
		t.Fatalf("notice %q (%v)", notice, err)
	}
	navigate(t, tab, "following the link", 200, pathEmail+"/confirm", "E-mail address changed", chromedp.Navigate(e.srv.URL+e.emailLink(t, "alice@example.net")))
	if u, _ := e.store.GetUser(context.Background(), alice.ID); u.VerifiedEmail() != "alice@example.net" {
		t.Fatalf("address %q after the link", u.VerifiedEmail())
	}

	navigate(t, tab, "back to the account", 200, "/account", "Signed in as alice", chromedp.Navigate(e.srv.URL+"/account"))
	navigate(t, tab, "opening the data page", 200, pathData, "Download your data", chromedp.Click(chromedp.CSS(`a[href="/account/data"]`)))
	// The button downloads the document (Content-Disposition: attachment)
	// into the directory the browser is told to save to.
	dir := t.TempDir()
	allow := func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := cdp.Call(ctx, tg, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{Behavior: browser.SetDownloadBehaviorBehaviorAllow, DownloadPath: dir})
		return chromedp.Void{}, err
	}
	if err := chromedp.Do(tab, allow, chromedp.Click(chromedp.ID("submit"))); err != nil {
		t.Fatalf("downloading: %v", err)
	}
	var doc []byte
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if doc, _ = os.ReadFile(filepath.Join(dir, "thingid-data.json")); len(doc) > 0 && json.Valid(doc) {
			break
		}
	}
	var x export
	if err := json.Unmarshal(doc, &x); err != nil || x.Profile.UserName != "alice" || x.Profile.Emails[0].Value != "alice@example.net" {
		t.Fatalf("the download %q (%v)", doc, err)
	}

	navigate(t, tab, "back to the account", 200, "/account", "Signed in as alice", chromedp.Navigate(e.srv.URL+"/account"))
	navigate(t, tab, "opening the deletion page", 200, pathDelete, "Delete your account", chromedp.Click(chromedp.CSS(`a[href="/account/delete"]`)))
	navigate(t, tab, "a wrong password", 422, pathDelete, "Delete your account",
		chromedp.SendKeys(chromedp.ID("password"), "not my password at all"),
		chromedp.Click(chromedp.ID("submit")))
	navigate(t, tab, "deleting", 200, pathDeleted, "Account deleted",
		chromedp.SendKeys(chromedp.ID("password"), goodPassword),
		chromedp.Click(chromedp.ID("submit")))
	if _, err := e.store.GetUser(context.Background(), alice.ID); err == nil {
		t.Fatal("the account is still there")
	}
	navigate(t, tab, "the account page afterwards", 200, "/signin", "Sign in", chromedp.Navigate(e.srv.URL+"/account"))
}
