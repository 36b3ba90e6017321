package server

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/browsertest"
)

// TestBrowserHousehold plays the guardian and the child in Chromium, each
// in a browser context of their own: mum creates the household and invites
// emma, who accepts; mum adds the kids' room, places her speaker in it,
// allows emma 07:00–20:00 with the rule form, and the preview says
// allowed at 19:30 and refused at 20:30 on the households' clock.
func TestBrowserHousehold(t *testing.T) {
	mumTab := browsertest.New(t)
	w := newHomeWorld(t)
	emmaTab, cancel := chromedp.NewContext(mumTab, chromedp.WithNewBrowserContext())
	defer cancel()

	signIn := func(tab context.Context, path, name string) { browserSignIn(t, tab, w.r.base, path, name) }
	submit := func(tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) string {
		return submitForm(t, tab, what, actions...)
	}

	signIn(mumTab, "/account/household", "mum")
	notice := submit(mumTab, "creating the household",
		chromedp.SendKeys(chromedp.ID("create-name"), "Smiths"),
		chromedp.SendKeys(chromedp.ID("create-timeZone"), "Europe/Berlin"),
		chromedp.Click(chromedp.CSS(`button[name="create"]`)))
	if !strings.HasPrefix(notice, "Household created.") {
		t.Errorf("after creating: %q", notice)
	}
	page, err := chromedp.Run(mumTab, chromedp.Location())
	must(t, "reading the household's address", err)
	household, _ := url.Parse(page)
	notice = submit(mumTab, "inviting emma",
		chromedp.SendKeys(chromedp.ID("invite-invitee"), "emma"),
		chromedp.SetValue(chromedp.ID("invite-role"), "dependant"),
		chromedp.Click(chromedp.CSS(`button[name="invite"]`)))
	if !strings.HasPrefix(notice, "Invitation made.") {
		t.Errorf("after inviting: %q", notice)
	}

	signIn(emmaTab, "/account/household", "emma")
	card, err := chromedp.Run(emmaTab, chromedp.Text(chromedp.CSS(`section[data-invitation]`)))
	if err != nil || !strings.Contains(card, "Smiths") || !strings.Contains(card, "Mum invites you as dependant") {
		t.Fatalf("emma's invitation: %q %v", card, err)
	}
	if notice := submit(emmaTab, "emma accepting", chromedp.Click(chromedp.CSS(`button[name="accept"]`))); !strings.HasPrefix(notice, "You are a member") {
		t.Errorf("after accepting: %q", notice)
	}

	must(t, "mum reloads", chromedp.Do(mumTab, chromedp.Navigate(household.String()), chromedp.WaitVisible(chromedp.ID("room-name"))))
	submit(mumTab, "adding the kids' room",
		chromedp.SendKeys(chromedp.ID("room-name"), "Kids' room"),
		chromedp.Click(chromedp.CSS(`button[name="addRoom"]`)))
	submit(mumTab, "placing the speaker",
		chromedp.SetValue(chromedp.ID("place-thing"), w.speaker.ID),
		chromedp.Click(chromedp.CSS(`button[name="place"]`)))
	room, err := chromedp.Run(mumTab, chromedp.Text(chromedp.CSS(`section[data-room]`)))
	if err != nil || !strings.Contains(room, "Kids' room") || !strings.Contains(room, "Kids' speaker") {
		t.Fatalf("the kids' room: %q %v", room, err)
	}
	// The values of the choices a guardian reads as "Emma" and "the things
	// in Kids' room".
	who, err := chromedp.Run(mumTab, chromedp.Evaluate[string](`[...document.querySelectorAll('#rule-who option')].find(o => o.text.startsWith('Emma')).value`))
	must(t, "finding Emma in the rule form", err)
	things, err := chromedp.Run(mumTab, chromedp.Evaluate[string](`[...document.querySelectorAll('#rule-things option')].find(o => o.text === "the things in Kids' room").value`))
	must(t, "finding the kids' room in the rule form", err)
	notice = submit(mumTab, "allowing emma 07:00–20:00",
		chromedp.SetValue(chromedp.ID("rule-who"), who),
		chromedp.Click(chromedp.ID("rule-action-use")),
		chromedp.SetValue(chromedp.ID("rule-things"), things),
		chromedp.SetValue(chromedp.ID("rule-start"), "07:00"),
		chromedp.SetValue(chromedp.ID("rule-end"), "20:00"),
		chromedp.Click(chromedp.CSS(`button[name="addRule"]`)))
	if !strings.HasPrefix(notice, "Rule added.") {
		t.Errorf("after adding the rule: %q", notice)
	}
	rule, err := chromedp.Run(mumTab, chromedp.Text(chromedp.CSS(`#rules li`)))
	if err != nil || !strings.Contains(rule, "Emma may use the things in Kids' room from 07:00 to 20:00") {
		t.Fatalf("the rule in words: %q %v", rule, err)
	}

	berlin, _ := time.LoadLocation("Europe/Berlin")
	// ask submits the preview form at the clock's time and returns the
	// answer once the page shows the one of that time.
	ask := func(at time.Time) string {
		t.Helper()
		w.clock.set(at)
		must(t, "asking", chromedp.Do(mumTab,
			chromedp.SetValue(chromedp.ID("preview-user"), w.emma.ID),
			chromedp.SetValue(chromedp.ID("preview-action"), "use"),
			chromedp.SetValue(chromedp.ID("preview-thing"), w.speaker.ID),
			chromedp.Click(chromedp.ID("ask"))))
		clock := at.Format("15:04")
		for {
			answer, err := chromedp.Run(mumTab, chromedp.Evaluate[string](`document.getElementById('preview-result')?.textContent ?? ''`))
			if err == nil && strings.Contains(answer, clock) {
				return strings.Join(strings.Fields(answer), " ")
			}
			if mumTab.Err() != nil {
				t.Fatalf("no answer for %s: %q %v", clock, answer, err)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if a := ask(time.Date(2025, 3, 17, 19, 30, 0, 0, berlin)); !strings.Contains(a, "Yes. Allowed: Emma may use the things in Kids' room from 07:00 to 20:00") {
		t.Errorf("at 19:30: %q", a)
	}
	if a := ask(time.Date(2025, 3, 17, 20, 30, 0, 0, berlin)); !strings.Contains(a, "No. Outside the allowed times: Emma may use the things in Kids' room from 07:00 to 20:00") {
		t.Errorf("at 20:30: %q", a)
	}

	// Emma reads the rule on her page, without a form to change it.
	must(t, "emma reloads", chromedp.Do(emmaTab, chromedp.Navigate(household.String()), chromedp.WaitVisible(chromedp.ID("rules"))))
	forms, err := chromedp.Run(emmaTab, chromedp.Evaluate[int](`document.querySelectorAll('#rule, #invite, #preview-user').length`))
	if err != nil || forms != 0 {
		t.Errorf("emma sees %d of the guardians' forms (%v)", forms, err)
	}
}

// browserSignIn signs name in on the sign-in page that path sends it to,
// and checks the browser comes back to path.
func browserSignIn(t *testing.T, tab context.Context, base, path, name string) {
	t.Helper()
	must(t, name+" opens "+path, chromedp.Do(tab, chromedp.Navigate(base+path), chromedp.WaitVisible(chromedp.ID("userName"))))
	resp, err := chromedp.RunResponse(tab,
		chromedp.SendKeys(chromedp.ID("userName"), name),
		chromedp.SendKeys(chromedp.ID("password"), umaPW),
		chromedp.Submit(chromedp.ID("password")))
	if err != nil || resp.Status != 200 {
		t.Fatalf("%s signing in: %v %v", name, resp, err)
	}
	if u, _ := url.Parse(resp.URL); u == nil || u.Path != path {
		t.Fatalf("%s is on %s after signing in, want %s", name, resp.URL, path)
	}
}

// submitForm runs actions that send a form and returns the notice of the
// page the browser lands on.
func submitForm(t *testing.T, tab context.Context, what string, actions ...chromedp.Action[chromedp.Void]) string {
	t.Helper()
	resp, err := chromedp.RunResponse(tab, actions...)
	if err != nil || resp.Status != 200 {
		body, _ := chromedp.Run(tab, chromedp.Text(chromedp.CSS("main")))
		t.Fatalf("%s: %v %v\n%s", what, resp, err, body)
	}
	notice, err := chromedp.Run(tab, chromedp.Text(chromedp.ID("notice")))
	if err != nil {
		t.Fatalf("%s: no notice: %v", what, err)
	}
	return notice
}
