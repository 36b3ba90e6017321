package server

import (
	"context"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/browsertest"
)

// TestBrowserPagesFollowTheLanguage: a household page and a console page
// come in English by default, in German for a browser whose Accept-Language
// asks for German, and in the language the user chose on their account page
// whatever the browser asks for, in this browser and in the next one they
// sign in with.
func TestBrowserPagesFollowTheLanguage(t *testing.T) {
	tab := browsertest.New(t)
	w := newConsoleWorld(t)
	browserSignIn(t, tab, w.r.base, "/account/household", "ada")
	submitForm(t, tab, "creating a household",
		chromedp.SendKeys(chromedp.ID("create-name"), "Lovelaces"),
		chromedp.SendKeys(chromedp.ID("create-timeZone"), "Europe/Berlin"),
		chromedp.Click(chromedp.CSS(`button[name="create"]`)))
	household, err := chromedp.Run(tab, chromedp.Location())
	must(t, "reading the household's address", err)

	// What a page says, in the words each language has for it.
	type words struct{ lang, household, console string }
	english := words{"en", "you are a guardian of this household", "Groups, CAs, broker and gateway"}
	german := words{"de", "Ihre Rolle in diesem Haushalt ist Haushaltsvorstand", "Gruppen, CAs, Broker und Gateway"}
	expect := func(tab context.Context, why string, want, not words) {
		t.Helper()
		for _, p := range []struct{ url, want, not string }{{household, want.household, not.household}, {w.r.base + "/admin", want.console, not.console}} {
			must(t, why+": opening "+p.url, chromedp.Do(tab, chromedp.Navigate(p.url), chromedp.WaitVisible(chromedp.CSS("main"))))
			text, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("main")))
			must(t, why+": reading "+p.url, err)
			lang, err := chromedp.Run(tab, chromedp.Evaluate[string](`document.documentElement.lang`))
			must(t, why+": reading the page's language", err)
			if !strings.Contains(text, p.want) || strings.Contains(text, p.not) || lang != want.lang {
				t.Errorf("%s: %s in %q, want %q and not %q:\n%s", why, p.url, lang, p.want, p.not, text)
			}
		}
	}
	acceptLanguage := func(tab context.Context, header string) {
		t.Helper()
		must(t, "sending Accept-Language: "+header, chromedp.Do(tab, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			if _, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{}); err != nil {
				return err
			}
			_, err := cdp.Call(ctx, tg, network.SetExtraHTTPHeaders, network.SetExtraHTTPHeadersParams{Headers: network.Headers{"Accept-Language": header}})
			return err
		})))
	}

	expect(tab, "by default", english, german)
	acceptLanguage(tab, "de-DE,de;q=0.9")
	expect(tab, "Accept-Language: de", german, english)
	// A German household rule reads as German: its words come from the
	// catalogue, not from the English the API gives.
	must(t, "back to the household", chromedp.Do(tab, chromedp.Navigate(household), chromedp.WaitVisible(chromedp.ID("room-name"))))
	submitForm(t, tab, "adding a room", chromedp.SendKeys(chromedp.ID("room-name"), "Küche"), chromedp.Click(chromedp.CSS(`button[name="addRoom"]`)))
	things, err := chromedp.Run(tab, chromedp.Evaluate[string](`[...document.querySelectorAll('#rule-things option')].find(o => o.text === "die Dinge in Küche").value`))
	must(t, "finding the kitchen in the German rule form", err)
	notice := submitForm(t, tab, "adding a rule in German",
		chromedp.SetValue(chromedp.ID("rule-who"), "guests"),
		chromedp.Click(chromedp.ID("rule-action-use")),
		chromedp.SetValue(chromedp.ID("rule-things"), things),
		chromedp.SetValue(chromedp.ID("rule-start"), "07:00"),
		chromedp.SetValue(chromedp.ID("rule-end"), "20:00"),
		chromedp.Click(chromedp.CSS(`button[name="addRule"]`)))
	rule, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS("#rules .rule-text")))
	if err != nil || notice != "Regel hinzugefügt. Sie gilt ab der nächsten Anfrage." || rule != "Gäste dürfen die Dinge in Küche von 07:00 bis 20:00 benutzen" {
		t.Errorf("the rule in German: notice %q, rule %q, %v", notice, rule, err)
	}

	// The user's choice wins over the browser's header.
	must(t, "choosing English on the account page", chromedp.Do(tab, chromedp.Navigate(w.r.base+"/account"),
		chromedp.SetValue(chromedp.ID("language"), "en"),
		chromedp.Submit(chromedp.ID("language")), chromedp.WaitVisible(chromedp.ID("language"))))
	expect(tab, "English chosen, Accept-Language: de", english, german)

	// And it follows the user to another browser that asks for German.
	other, cancel := chromedp.NewContext(tab, chromedp.WithNewBrowserContext())
	defer cancel()
	acceptLanguage(other, "de")
	browserSignIn(t, other, w.r.base, "/admin", "ada")
	expect(other, "another browser asking for German, after signing in", english, german)
}
