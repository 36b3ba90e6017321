package demo

import (
	"strings"
	"testing"
)

const consentPage = `<h1>Allow this device?</h1>
<form method="post" action="/device/decision">
<input type="hidden" name="csrf" value="tok&amp;en">
<table><tr><th scope="row">Model</th><td id="device-model">Speaker-1</td></tr>
<tr><th scope="row">Serial number</th><td id="device-serial">SN &lt;1&gt;</td></tr></table>
<p id="message"><strong>Device</strong> connected</p>`

func TestPageParsers(t *testing.T) {
	if tok, err := pageCSRF(consentPage); err != nil || tok != "tok&en" {
		t.Errorf("csrf %q %v", tok, err)
	}
	if _, err := pageCSRF("<h1>Code not valid</h1>"); err == nil || !strings.Contains(err.Error(), "Code not valid") {
		t.Errorf("a page without a form: %v", err)
	}
	for id, want := range map[string]string{"device-model": "Speaker-1", "device-serial": "SN <1>", "message": "Device connected", "missing": ""} {
		if got := pageText(consentPage, id); got != want {
			t.Errorf("%s: %q, want %q", id, got, want)
		}
	}
	if h := pageHeading(consentPage); h != "Allow this device?" {
		t.Errorf("heading %q", h)
	}
	for body, want := range map[string]string{
		`{"title":"Unprocessable Entity","detail":"not accepted","errors":[{"field":"password","detail":"too short"}]}`: "not accepted; password too short",
		`{"title":"Unauthorized"}`: "Unauthorized",
		`not json`:                 "not json",
	} {
		if got := problemDetail([]byte(body)); got != want {
			t.Errorf("problem %s: %q, want %q", body, got, want)
		}
	}
}

// The page and problem parsers read what a server sent: nothing it sends
// makes them fail.
func FuzzPageParsers(f *testing.F) {
	f.Add(consentPage, "device-serial")
	f.Add(`<p id="message">`, "message")
	f.Add(`<h1>`, "")
	f.Add(`{"detail":"x","errors":[{"field":"a"}]}`, "a")
	f.Fuzz(func(t *testing.T, page, id string) {
		pageCSRF(page)
		pageText(page, id)
		pageHeading(page)
		if d := problemDetail([]byte(page)); len([]rune(d)) > 201 && !strings.HasPrefix(strings.TrimSpace(page), "{") {
			t.Errorf("an unreadable body is not clipped: %d runes", len([]rune(d)))
		}
	})
}
