package server

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/browsertest"
)

// TestUMAClaimsInteractionInBrowser plays the requesting party in Chromium:
// the client sends bob to the claims-interaction endpoint; he signs in on
// the platform's page, reads who asks for what, continues, and lands on the
// client's page with a new ticket and the state; alice shared the playlist
// with him already, so the client's token request with that ticket alone
// gets bob's RPT.
func TestUMAClaimsInteractionInBrowser(t *testing.T) {
	ctx := browsertest.New(t)
	got := make(chan url.Values, 1)
	client := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.URL.Query():
		default:
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write([]byte(`<!doctype html><title>Photo frame</title><p id="done">Back at the photo frame</p>`))
	}))
	defer client.Close()

	w := newClaimsWorld(t)
	cb := client.URL + "/uma/back"
	frame := w.webClient(t, "Photo frame", cb)
	alice := w.signin(t, "alice")
	if code, out := w.call(t, alice, "POST", "/api/v1/uma/shares", jsonHdr(""), `{"resourceId":`+jsonQuote(w.playlist)+`,"user":"bob","scopes":["play"]}`); code != 201 {
		t.Fatalf("alice shares: %d %v", code, out)
	}
	ticket := w.needInfoTicket(t, frame)

	target := w.claimsURL(map[string]string{"client_id": frame.id, "ticket": ticket, "claims_redirect_uri": cb, "state": "st-browser"})
	err := chromedp.Do(ctx,
		chromedp.Navigate(target),
		chromedp.WaitVisible(chromedp.ID("userName")),
		chromedp.SendKeys(chromedp.ID("userName"), "bob"),
		chromedp.SendKeys(chromedp.ID("password"), umaPW),
		chromedp.Submit(chromedp.ID("password")),
		chromedp.WaitVisible(chromedp.ID("allow")),
	)
	if err != nil {
		t.Fatalf("sign-in and back to the confirmation page: %v", err)
	}
	page, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("main")))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Photo frame asks who you are", "signed in as bob", "Road trip of alice: play", strings.TrimPrefix(client.URL, "http://")} {
		if !strings.Contains(page, want) {
			t.Errorf("confirmation page lacks %q:\n%s", want, page)
		}
	}
	if err := chromedp.Do(ctx, chromedp.Click(chromedp.ID("allow")), chromedp.WaitVisible(chromedp.ID("done"))); err != nil {
		t.Fatalf("continue: %v", err)
	}
	var q url.Values
	select {
	case q = <-got:
	default:
		t.Fatal("the client's claims redirection URI was not visited")
	}
	if q.Get("state") != "st-browser" || q.Get("ticket") == "" || q.Get("ticket") == ticket {
		t.Fatalf("back at the client with %v", q)
	}
	code, out := w.token(t, frame, url.Values{"ticket": {q.Get("ticket")}})
	if code != 200 {
		t.Fatalf("RPT with the bound ticket: %d %v", code, out)
	}
	if in := w.introspect(t, w.music, out["access_token"].(string)); in["active"] != true || in["sub"] != w.bob.ID {
		t.Fatalf("introspection: %v", in)
	}
}
