package server

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/browsertest"
)

// TestBrowserSharing plays the owner and the friend in Chromium, each in a
// browser context of their own (their own cookies): alice opens
// /account/sharing, signs in and comes back, shares her speaker with bob
// until tomorrow; bob signs in and sees it on /account/shared; alice
// revokes it, and bob's page no longer shows it.
func TestBrowserSharing(t *testing.T) {
	aliceTab := browsertest.New(t)
	w := newSharingWorld(t)
	bobTab, cancel := chromedp.NewContext(aliceTab, chromedp.WithNewBrowserContext())
	defer cancel()
	speaker := `section[data-resource="` + w.speaker + `"] `

	signIn := func(tab context.Context, path, name string) { browserSignIn(t, tab, w.r.base, path, name) }
	submit := func(tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) string {
		return submitForm(t, tab, what, actions...)
	}
	sharedWithBob := func() string {
		t.Helper()
		must(t, "bob opens /account/shared", chromedp.Do(bobTab, chromedp.Navigate(w.r.base+"/account/shared"), chromedp.WaitVisible(chromedp.CSS("h1"))))
		text, err := chromedp.Run(bobTab, chromedp.Text(chromedp.CSS("main")))
		if err != nil {
			t.Fatal(err)
		}
		return text
	}

	signIn(aliceTab, "/account/sharing", "alice")
	notice := submit(aliceTab, "sharing the speaker with bob",
		chromedp.Click(chromedp.CSS(speaker+`input[name="kind"][value="user"]`)),
		chromedp.SendKeys(chromedp.CSS(speaker+`input[name="grantee"]`), "bob"),
		chromedp.Click(chromedp.CSS(speaker+`input[name="scope"][value="use"]`)),
		chromedp.SetValue(chromedp.CSS(speaker+`input[name="expires_at"]`), tomorrow()),
		chromedp.Click(chromedp.CSS(speaker+`button[name="share"]`)))
	if notice != "Shared." {
		t.Errorf("notice after sharing: %q", notice)
	}
	row, err := chromedp.Run(aliceTab, chromedp.Text(chromedp.CSS(speaker+`tr[data-share]`)))
	if err != nil || !strings.Contains(row, "bob") || !strings.Contains(row, "use") || !strings.Contains(row, tomorrow()) {
		t.Fatalf("the speaker's share on alice's page: %q %v", row, err)
	}

	signIn(bobTab, "/account/shared", "bob")
	if text := sharedWithBob(); !strings.Contains(text, "Living room speaker") || !strings.Contains(text, "alice") || !strings.Contains(text, tomorrow()) {
		t.Fatalf("bob's shared page before the revocation:\n%s", text)
	}

	notice = submit(aliceTab, "revoking bob's access", chromedp.Click(chromedp.CSS(speaker+`button[name="revoke"]`)))
	if !strings.HasPrefix(notice, "Access revoked.") {
		t.Errorf("notice after revoking: %q", notice)
	}
	if text := sharedWithBob(); strings.Contains(text, "Living room speaker") {
		t.Fatalf("bob's shared page after the revocation:\n%s", text)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}
