package selfservice

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/browsertest"
)

func fillForm(user, pw, confirm string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.SendKeys(chromedp.ID("userName"), user),
		chromedp.SendKeys(chromedp.ID("email"), user+"@example.org"),
		chromedp.SendKeys(chromedp.ID("displayName"), "Browser User"),
		chromedp.SendKeys(chromedp.ID("password"), pw),
		chromedp.SendKeys(chromedp.ID("passwordConfirm"), confirm),
	)
}

func TestBrowserRegistration(t *testing.T) {
	ctx := browsertest.New(t)
	e := newEnv(t, testOptions())

	if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/register"), fillForm("heidi", goodPassword, goodPassword)); err != nil {
		t.Fatalf("filling the form: %v", err)
	}
	// Submitting navigates: POST, 303, GET of the confirmation.
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	if err != nil {
		t.Fatalf("submitting: %v", err)
	}
	if resp.Status != 200 || !strings.HasSuffix(resp.URL, "/register/done") {
		t.Fatalf("after submitting: %d %s, want 200 on /register/done", resp.Status, resp.URL)
	}
	heading, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("h1")))
	if err != nil || heading != "Your account has been created" {
		t.Fatalf("confirmation heading %q (%v)", heading, err)
	}
	u, err := e.store.GetUserByName(context.Background(), "heidi")
	if err != nil || u.DisplayName != "Browser User" || u.Emails[0].Value != "heidi@example.org" {
		t.Fatalf("stored user %+v (%v)", u, err)
	}
}

func TestBrowserWeakPasswordShownAtField(t *testing.T) {
	ctx := browsertest.New(t)
	e := newEnv(t, testOptions())

	if err := chromedp.Do(ctx, chromedp.Navigate(e.srv.URL+"/register"), fillForm("ivan", "123456789012345", "123456789012345")); err != nil {
		t.Fatalf("filling the form: %v", err)
	}
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(`button[type="submit"]`)))
	if err != nil {
		t.Fatalf("submitting: %v", err)
	}
	if resp.Status != 422 {
		t.Fatalf("status %d, want 422", resp.Status)
	}
	msg, err := chromedp.Run(ctx, chromedp.Text(chromedp.ID("password-error")))
	if err != nil || !strings.Contains(msg, "avoid repeated characters") {
		t.Fatalf("error at the password field %q (%v)", msg, err)
	}
	// The error sits in the password's field group and is announced with it.
	described, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.ID("password"), "aria-describedby"))
	if err != nil || !strings.Contains(described.Value, "password-error") {
		t.Fatalf("aria-describedby %q (%v), want it to name password-error", described.Value, err)
	}
	groupHasError, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("password").parentElement.contains(document.getElementById("password-error"))`))
	if err != nil || !groupHasError {
		t.Fatalf("the error is not next to the password field (%v)", err)
	}
	name, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("userName")))
	pw, _ := chromedp.Run(ctx, chromedp.Value(chromedp.ID("password")))
	if name != "ivan" || pw != "" {
		t.Fatalf("after the error the form holds userName %q and password %q; want the name kept and the password cleared", name, pw)
	}
	if _, err := e.store.GetUserByName(context.Background(), "ivan"); err == nil {
		t.Fatal("a user with a weak password was stored")
	}
}
