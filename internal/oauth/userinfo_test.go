package oauth

import (
	"net/http"
	"strings"
	"testing"

	"golang.org/x/oauth2"

	"github.com/thingid/thingid/internal/store"
)

func TestUserinfo(t *testing.T) {
	e := newEnv(t)
	c := e.webClient(t)
	code, v := e.codeFor(t, c, "openid", "speaker:play")
	tok, err := e.oauthConfig(c).Exchange(e.ctx(), code, oauth2.VerifierOption(v))
	if err != nil {
		t.Fatal(err)
	}
	resp, body := e.do(t, e.srv.Client(), http.MethodGet, pathUserinfo, "", "", "Authorization", "Bearer "+tok.AccessToken)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"sub":"`+e.alice.ID+`"`) || strings.Contains(body, "email") {
		t.Fatalf("userinfo: %d %s", resp.StatusCode, body)
	}
	resp, _ = e.do(t, e.srv.Client(), http.MethodGet, pathUserinfo, "", "")
	if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Bearer realm="thingid"` {
		t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, _ = e.do(t, e.srv.Client(), http.MethodGet, pathUserinfo, "", "", "Authorization", "Bearer x.y.z")
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("bad token: %d", resp.StatusCode)
	}
	// Without openid: insufficient_scope.
	code, v = e.codeFor(t, c, "speaker:play")
	tok2, _ := e.oauthConfig(c).Exchange(e.ctx(), code, oauth2.VerifierOption(v))
	resp, _ = e.do(t, e.srv.Client(), http.MethodGet, pathUserinfo, "", "", "Authorization", "Bearer "+tok2.AccessToken)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "insufficient_scope") {
		t.Fatalf("no openid: %d", resp.StatusCode)
	}
	// A disabled user: 401.
	if _, err := e.st.UpdateUser(e.ctx(), e.alice.ID, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	resp, _ = e.do(t, e.srv.Client(), http.MethodGet, pathUserinfo, "", "", "Authorization", "Bearer "+tok.AccessToken)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("disabled user: %d", resp.StatusCode)
	}
}

func TestUserClaimsByScope(t *testing.T) {
	u := &store.User{Meta: store.Meta{ID: "u1"}, UserName: "alice", Locale: "en-GB", Timezone: "Europe/London",
		Emails: []store.MultiValue{{Value: "a@x"}, {Value: "p@x", Primary: true}}, EmailVerified: true}
	got := userClaims(u, []string{"openid", "profile", "email"})
	if got["preferred_username"] != "alice" || got["zoneinfo"] != "Europe/London" || got["email"] != "p@x" || got["email_verified"] != true {
		t.Fatalf("%v", got)
	}
	if got := userClaims(u, []string{"openid"}); len(got) != 1 {
		t.Fatalf("openid only: %v", got)
	}
}
