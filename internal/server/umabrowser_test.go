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
		chromedp.SetValue(chromedp.CSS(speaker+`input[name="expiresAt"]`), tomorrow()),
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

// TestBrowserSharingConditions: alice shares her speaker with bob on school
// days from 07:00 to 20:00 in Chromium, without JavaScript on the page: a
// zone that is none is refused at the "When" inputs, which keep what she
// entered; corrected, the share's row says when it holds.
func TestBrowserSharingConditions(t *testing.T) {
	tab := browsertest.New(t)
	w := newSharingWorld(t)
	speaker := `section[data-resource="` + w.speaker + `"] `
	browserSignIn(t, tab, w.r.base, "/account/sharing", "alice")
	zone, err := chromedp.Run(tab, chromedp.Value(chromedp.CSS(speaker+`input[name="zone"]`)))
	if err != nil || zone != "UTC" {
		t.Fatalf("the zone offered to alice, in no household: %q %v", zone, err)
	}
	fill := []chromedp.Action[chromedp.Void]{
		chromedp.Click(chromedp.CSS(speaker + `input[name="kind"][value="user"]`)),
		chromedp.SendKeys(chromedp.CSS(speaker+`input[name="grantee"]`), "bob"),
		chromedp.Click(chromedp.CSS(speaker + `input[name="scope"][value="use"]`)),
		chromedp.SetValue(chromedp.CSS(speaker+`input[name="zone"]`), "Europe/Nowhere"),
		chromedp.SetValue(chromedp.CSS(speaker+`input[name="start"]`), "07:00"),
		chromedp.SetValue(chromedp.CSS(speaker+`input[name="end"]`), "20:00"),
	}
	for _, d := range []string{"mon", "tue", "wed", "thu", "fri"} {
		fill = append(fill, chromedp.Click(chromedp.CSS(speaker+`input[name="day"][value="`+d+`"]`)))
	}
	resp, err := chromedp.RunResponse(tab, append(fill, chromedp.Click(chromedp.CSS(speaker+`button[name="share"]`)))...)
	if err != nil || resp.Status != 400 {
		t.Fatalf("a zone that is none: %v %v", resp, err)
	}
	summary, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(".summary")))
	if err != nil || !strings.Contains(summary, "When:") || !strings.Contains(summary, "Europe/Nowhere") {
		t.Fatalf("error summary: %q %v", summary, err)
	}
	start, err := chromedp.Run(tab, chromedp.Value(chromedp.CSS(speaker+`input[name="start"]`)))
	if err != nil || start != "07:00" {
		t.Fatalf("the window was not kept: %q %v", start, err)
	}
	notice := submitForm(t, tab, "sharing with a zone that is one",
		chromedp.SetValue(chromedp.CSS(speaker+`input[name="zone"]`), "Europe/Berlin"),
		chromedp.Click(chromedp.CSS(speaker+`button[name="share"]`)))
	if notice != "Shared." {
		t.Errorf("notice after sharing: %q", notice)
	}
	when, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(speaker+`tr[data-share] td.when`)))
	if err != nil || when != "from 07:00 to 20:00 on school days (Europe/Berlin)" {
		t.Fatalf("the share's row: %q %v", when, err)
	}
	// bob reads the same words on what is shared with him.
	bobTab, cancel := chromedp.NewContext(tab, chromedp.WithNewBrowserContext())
	defer cancel()
	browserSignIn(t, bobTab, w.r.base, "/account/shared", "bob")
	when, err = chromedp.Run(bobTab, chromedp.Text(chromedp.CSS(`#shared td.when`)))
	if err != nil || when != "from 07:00 to 20:00 on school days (Europe/Berlin)" {
		t.Fatalf("bob's shared page: %q %v", when, err)
	}
}
