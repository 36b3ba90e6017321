package uma

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// The parsers of what clients and resource servers send must answer an
// error, never panic, and what they accept must hold to their rules.

func FuzzParseDescription(f *testing.F) {
	for _, s := range []string{`{"name":"n","resource_scopes":["a","b"]}`, `{"resource_scopes":[]}`, `{"name":{"x":1}}`, `[[[[`, `{"icon_uri":"https://x/y"}`, `"x"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDescription(strings.NewReader(s))
		if err != nil {
			return
		}
		if len(d.Scopes) == 0 || len(d.Scopes) > maxScopes || len(d.Name) > maxName {
			t.Fatalf("accepted %q: %+v", s, d)
		}
		for _, sc := range d.Scopes {
			if !ValidScope(sc) {
				t.Fatalf("accepted scope %q", sc)
			}
		}
	})
}

func FuzzParsePermissions(f *testing.F) {
	for _, s := range []string{`{"resource_id":"r","resource_scopes":["a"]}`, `[{"resource_id":"r","resource_scopes":[]}]`, `[]`, `[{}]`, `{"resource_id":1}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ps, err := ParsePermissions(strings.NewReader(s))
		if err != nil {
			return
		}
		if len(ps) == 0 || len(ps) > maxPermissions {
			t.Fatalf("accepted %d permissions", len(ps))
		}
		for _, p := range ps {
			if p.ResourceID == "" || p.Scopes == nil {
				t.Fatalf("accepted %+v", p)
			}
		}
	})
}

func FuzzParseClaimToken(f *testing.F) {
	f.Add("a.b.c", FormatAccessToken)
	f.Add("eyJhbGciOiJub25lIn0.e30.", FormatIDToken)
	f.Add("", "")
	f.Add("x", "urn:other")
	f.Fuzz(func(t *testing.T, tok, format string) {
		ct, err := ParseClaimToken(tok, format)
		if err != nil || ct == nil {
			return
		}
		if !compactJWS(ct.Token) || len(ct.Token) > maxClaimToken || (ct.Format != FormatIDToken && ct.Format != FormatAccessToken) {
			t.Fatalf("accepted %q %q", tok, format)
		}
	})
}

func FuzzValidTicket(f *testing.F) {
	f.Add("umt_ABCDEFGHIJKLMNOPQRSTUVWXYZ")
	f.Add("umt_")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		if ValidTicket(s) && (len(s) != len(ticketPrefix)+26 || !strings.HasPrefix(s, ticketPrefix)) {
			t.Fatalf("accepted %q", s)
		}
	})
}

func FuzzParseInteraction(f *testing.F) {
	f.Add("client_id=c&ticket=umt_AAAAAAAAAAAAAAAAAAAAAAAAAA&claims_redirect_uri=https%3A%2F%2Fa%2Fb&state=s")
	f.Add("client_id=c&client_id=d")
	f.Add("ticket=t")
	f.Add("client_id=%zz")
	f.Fuzz(func(t *testing.T, raw string) {
		q, err := url.ParseQuery(raw)
		if err != nil {
			return
		}
		req, err := parseInteraction(q)
		if err != nil {
			return
		}
		if req.ClientID == "" || len(req.ClientID) > maxInteractionClientID || len(req.Ticket) > maxInteractionParam ||
			len(req.RedirectURI) > maxInteractionParam || len(req.State) > maxInteractionParam {
			t.Fatalf("accepted %q: %+v", raw, req)
		}
		for _, p := range interactionParams {
			if len(q[p]) > 1 {
				t.Fatalf("accepted %s twice in %q", p, raw)
			}
		}
	})
}

func TestDepth(t *testing.T) {
	for s, want := range map[string]int{`{}`: 1, `[[1]]`: 2, `{"a":"[[[["}`: 1, `{"a":"\"[["}`: 1, `1`: 0} {
		if got := depth([]byte(s)); got != want {
			t.Errorf("depth(%s) = %d, want %d", s, got, want)
		}
	}
}

func FuzzShareForm(f *testing.F) {
	for _, s := range []string{"kind=user&grantee=bob&scope=play&expiresAt=2030-01-31", "kind=group&grantee=friends", "kind=email&grantee=a%40b&expiresAt=31.01.2030",
		"kind=robot&grantee=x", "grantee=%20", "kind=user&grantee=bob&expiresAt=0000-01-01", "kind=user&grantee=bob&expiresAt=9999-12-31"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		form, err := url.ParseQuery(s)
		if err != nil {
			return
		}
		req, err := shareRequestFromForm(form)
		if err != nil {
			var pe *problemError
			if !errors.As(err, &pe) || pe.status != http.StatusBadRequest || formField(pe.field) == "" {
				t.Fatalf("%q: %v is not a refusal naming an input", s, err)
			}
			return
		}
		named := 0
		for _, v := range []string{req.User, req.Email, req.Group} {
			if v != "" {
				named++
			}
		}
		if named != 1 || len(req.User+req.Email+req.Group) > maxGrantee {
			t.Fatalf("%q: accepted %+v", s, req)
		}
		if e := req.ExpiresAt; e != nil && (e.Location() != time.UTC || e.Hour() != 23 || e.Minute() != 59 || e.Second() != 59) {
			t.Fatalf("%q: end %v is not the end of a day, UTC", s, e)
		}
	})
}

// FuzzConditions: an owner's conditions are refused naming a field of
// "conditions", or stored as JSON that reads back and compiles.
func FuzzConditions(f *testing.F) {
	for _, s := range []string{`{"zone":"Europe/Berlin","days":["mon","fri"],"start":"22:00","end":"02:00"}`, `{"zone":"UTC"}`,
		`{"zone":"Local","lastDate":"2030-01-01"}`, `{"zone":"UTC","start":"07:00\"); permit(principal,action,resource);//","end":"x"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var c Conditions
		if readJSON(strings.NewReader(s), &c) != nil {
			return
		}
		raw, err := c.check()
		var pe *problemError
		switch {
		case errors.As(err, &pe):
			if pe.status != http.StatusBadRequest || !strings.HasPrefix(pe.field, "conditions.") {
				t.Fatalf("%s: refused as %d %q", s, pe.status, pe.field)
			}
		case err != nil:
			t.Fatalf("%s: %v", s, err)
		case raw != nil:
			if _, _, err := conditionsOf(&store.UMAShare{ID: "s", Conditions: raw}); err != nil {
				t.Fatalf("%s: stored %s does not read back: %v", s, raw, err)
			}
		}
	})
}
