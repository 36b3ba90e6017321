package server

import (
	"context"
	"encoding/csv"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/console"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// xss is what an attacker stores in every field the console shows.
const xss = `<script>alert(1)</script>"'><img src=x onerror=alert(2)>`

// consoleWorld is a platform with an administrator (ada), support staff
// (sam), a normal user (nora) and olivia, who owns a speaker with a
// certificate, a grant for it and a hostile name in every field.
type consoleWorld struct {
	r                     *running
	ada, sam, nora, olive *store.User
	speaker, lamp         *store.Thing
	batch                 *store.FactoryBatch // holds the speaker and the lamp
	grant                 *store.Grant
	fingerprint           string
}

func newConsoleWorld(t *testing.T, tweak ...func(*config.Config)) *consoleWorld {
	w := &consoleWorld{fingerprint: strings.Repeat("ab", 32)}
	ctx := context.Background()
	w.r = serveWith(t, func(p *Platform) {
		mk := func(name, display string) *store.User {
			u, err := p.Identity.CreateUser(ctx, "test", &store.User{UserName: name, DisplayName: display,
				Emails: []store.MultiValue{{Value: name + "@example.org", Primary: true}}}, umaPW)
			if err != nil {
				t.Fatal(err)
			}
			return u
		}
		w.ada, w.sam, w.nora, w.olive = mk("ada", "Ada"), mk("sam", "Sam"), mk("nora", "Nora"), mk("olivia", xss)
		var err error
		w.speaker, err = p.Identity.CreateThing(ctx, "test", &store.Thing{DisplayName: "Speaker " + xss, Type: store.ThingDevice,
			Manufacturer: "Acme", Model: "Echo 3", SerialNumber: "SN-0001", MACAddresses: []string{"00:1a:2b:3c:4d:5e"},
			Status: store.StatusActive, Attributes: map[string]any{"colour": xss}})
		if err != nil {
			t.Fatal(err)
		}
		w.lamp, err = p.Identity.CreateThing(ctx, "test", &store.Thing{DisplayName: "Lamp", Type: store.ThingDevice,
			Manufacturer: "Acme", Model: "Glow 1", SerialNumber: "SN-0002", Status: store.StatusDisabled})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Identity.AddCertificate(ctx, "test", w.speaker.ID, store.CertRef{FingerprintSHA256: w.fingerprint,
			Subject: "CN=" + xss, SerialNumber: "1f", NotAfter: time.Now().Add(24 * time.Hour)}); err != nil {
			t.Fatal(err)
		}
		w.batch = &store.FactoryBatch{Model: "Echo 3", Manufacturer: "Acme", Count: 2, Actor: xss, FirstSerial: "SN-0001", LastSerial: "SN-0002"}
		if err := p.Store.PutFactoryBatch(ctx, w.batch); err != nil {
			t.Fatal(err)
		}
		if err := p.Store.AddFactoryBatchThings(ctx, w.batch.ID, []string{w.speaker.ID, w.lamp.ID}); err != nil {
			t.Fatal(err)
		}
		if err := p.Identity.AddRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner,
			From: store.Ref{Kind: store.KindUser, ID: w.olive.ID}, To: store.Ref{Kind: store.KindThing, ID: w.speaker.ID}}); err != nil {
			t.Fatal(err)
		}
		srv, cleanup, err := p.OAuthAdmin(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		cl, _, err := srv.CreateClient(ctx, "test", oauth.ClientSpec{Name: "Music " + xss, GrantTypes: []string{"client_credentials"}, Scopes: []string{"profile"}})
		if err != nil {
			t.Fatal(err)
		}
		w.grant = &store.Grant{UserID: w.olive.ID, ClientID: cl.ID, ThingID: w.speaker.ID, Scopes: []string{"profile"},
			Created: time.Now(), LastUsed: time.Now()}
		if err := p.Store.CreateGrant(ctx, w.grant); err != nil {
			t.Fatal(err)
		}
		if err := p.Store.AppendAudit(ctx, store.AuditRecord{Time: time.Now(), Actor: "=HYPERLINK(\"http://evil\")", Action: "test.xss",
			Target: store.Ref{Kind: store.KindThing, ID: w.speaker.ID}, Detail: []byte(`{"note":"` + strings.ReplaceAll(xss, `"`, `\"`) + `"}`)}); err != nil {
			t.Fatal(err)
		}
	}, tweak...)
	setAdmin(t, w.r, w.ada.ID, true)
	if _, err := w.r.p.Identity.CreateGroup(ctx, "test", &store.Group{DisplayName: authn.SupportGroup,
		Members: []store.Ref{{Kind: store.KindUser, ID: w.sam.ID}}}); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *consoleWorld) client(t *testing.T, name string) *pageClient {
	return (&umaWorld{r: w.r}).pageClient(t, name)
}

// consoleToken is the console's CSRF token for the seed cookie c holds, as
// the server computes it: support staff's pages carry no form, and the
// test must show that a valid token opens no change to them.
func (w *consoleWorld) consoleToken(t *testing.T, c *pageClient) string {
	t.Helper()
	csrf := ui.NewCSRF(w.r.p.derivedKey(consoleCSRFPurpose), true)
	u, _ := url.Parse(w.r.base)
	req := httptest.NewRequest("GET", w.r.base+"/admin", nil)
	for _, ck := range c.c.Jar.Cookies(u) {
		req.AddCookie(ck)
	}
	if _, err := req.Cookie(csrf.CookieName()); err != nil {
		t.Fatal("no CSRF seed cookie yet")
	}
	return csrf.Token(httptest.NewRecorder(), req)
}

// consolePosts are the console's POST routes from the route table, with
// the path values of w filled in.
func (w *consoleWorld) consolePosts(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, rt := range w.r.p.table.Load().Routes() {
		path, ok := strings.CutPrefix(rt.Pattern, "POST ")
		if !ok || !strings.HasPrefix(path, "/admin") {
			continue
		}
		path = strings.ReplaceAll(path, "/things/{id}", "/things/"+w.speaker.ID)
		path = strings.ReplaceAll(path, "/users/{id}", "/users/"+w.nora.ID)
		path = strings.ReplaceAll(path, "/clients/{id}", "/clients/"+w.grant.ClientID)
		path = strings.ReplaceAll(path, "/batches/{id}", "/batches/"+w.batch.ID)
		if strings.Contains(path, "{") {
			t.Fatalf("console route %q has a path value the test does not fill in", rt.Pattern)
		}
		out = append(out, path)
	}
	if len(out) < 10 {
		t.Fatalf("only %d console POST routes in the table: %v", len(out), out)
	}
	return out
}

// A normal user gets a bare 403; someone signed out is sent to sign in;
// support staff read every page and change nothing.
func TestConsoleAccess(t *testing.T) {
	w := newConsoleWorld(t)
	pages := []string{"/admin", "/admin/things?serial=SN-0001", "/admin/things/" + w.speaker.ID, "/admin/users?q=o",
		"/admin/users/" + w.olive.ID, "/admin/audit", "/admin/audit.csv", "/admin/clients", "/admin/platform",
		"/admin/batches", "/admin/batches/" + w.batch.ID, "/admin/cas"}

	nora := w.client(t, "nora")
	leaks := func(body string) bool {
		for _, s := range []string{"SN-0001", "olivia", "Speaker", "/admin/", "support", "administrator"} {
			if strings.Contains(body, s) {
				return true
			}
		}
		return false
	}
	for _, p := range pages {
		if r := nora.get(p); r.status != http.StatusForbidden || leaks(r.body) {
			t.Errorf("a normal user GET %s: %d %.500s", p, r.status, r.body)
		}
	}
	for _, p := range w.consolePosts(t) {
		if r := nora.post(p, url.Values{"csrf": {"x"}}); r.status != http.StatusForbidden || leaks(r.body) {
			t.Errorf("a normal user POST %s: %d %.500s", p, r.status, r.body)
		}
	}

	anon := &pageClient{t: t, base: w.r.base, c: w.r.browser()}
	anon.c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if r := anon.get("/admin/things?serial=SN-0001"); r.status != http.StatusSeeOther ||
		r.location != "/signin?return_to="+url.QueryEscape("/admin/things?serial=SN-0001") {
		t.Errorf("signed out: %d %q", r.status, r.location)
	}

	sam := w.client(t, "sam")
	sam.get("/admin/users") // the page sets the CSRF seed cookie
	for _, p := range pages {
		if r := sam.get(p); r.status != http.StatusOK {
			t.Errorf("support staff GET %s: %d %.300s", p, r.status, r.body)
		}
	}
	if r := sam.get("/admin/things/" + w.speaker.ID); strings.Contains(r.body, `method="post"`) {
		t.Errorf("support staff are shown forms that change: %.3000s", r.body)
	}
	csrf := w.consoleToken(t, sam)
	for _, p := range w.consolePosts(t) {
		form := url.Values{"csrf": {csrf}, "confirm": {"yes"}, "fingerprint": {w.fingerprint}, "grant": {w.grant.ID},
			"user": {w.olive.ID}, "userName": {"mallory"}, "password": {umaPW}, "reason": {"keyCompromise"}}
		if r := sam.post(p, form); r.status != http.StatusForbidden || !strings.Contains(r.body, "Support staff can read the console but change nothing") {
			t.Errorf("support staff POST %s: %d %.300s", p, r.status, r.body)
		}
	}
	ctx := context.Background()
	if th, _ := w.r.p.Identity.GetThing(ctx, w.speaker.ID); th.Status != store.StatusActive {
		t.Error("support staff changed the thing")
	}
	if _, err := w.r.p.Identity.GetUserByName(ctx, "mallory"); err == nil {
		t.Error("support staff created a user")
	}
	// Support staff's reads of the audit log are recorded, as the API records them.
	recs, err := w.r.p.Store.ListAudit(ctx, store.AuditQuery{Actor: store.TextMatch{Value: "support:" + w.sam.ID}, Action: store.TextMatch{Value: "audit.read"}})
	if err != nil || len(recs) == 0 {
		t.Errorf("support staff's reads not recorded: %v %v", recs, err)
	}
}

// Every console form needs the CSRF token: each POST route of the table,
// sent by an administrator with everything but a valid token, is refused
// and changes nothing.
func TestConsoleCSRFOnEveryForm(t *testing.T) {
	w := newConsoleWorld(t)
	ada := w.client(t, "ada")
	other := w.client(t, "nora").formToken("/account") // a real token of another page and cookie
	for _, p := range w.consolePosts(t) {
		for name, token := range map[string]string{"none": "", "forged": "AAAA", "another session's": other} {
			form := url.Values{"confirm": {"yes"}, "fingerprint": {w.fingerprint}, "grant": {w.grant.ID}, "user": {w.olive.ID},
				"userName": {"mallory"}, "password": {umaPW}, "reason": {"keyCompromise"}}
			if token != "" {
				form.Set("csrf", token)
			}
			if r := ada.post(p, form); r.status != http.StatusForbidden || !strings.Contains(r.body, "Form expired") {
				t.Errorf("POST %s with %s token: %d %.300s", p, name, r.status, r.body)
			}
		}
		// A cross-site form is refused before anything else.
		if r := ada.postFrom("https://evil.example", p, url.Values{"csrf": {ada.formToken("/admin/users")}}); r.status != http.StatusForbidden {
			t.Errorf("cross-site POST %s: %d", p, r.status)
		}
	}
	ctx := context.Background()
	th, _ := w.r.p.Identity.GetThing(ctx, w.speaker.ID)
	if th.Status != store.StatusActive {
		t.Error("a forged form disabled the thing")
	}
	if _, err := w.r.p.Identity.GetUserByName(ctx, "mallory"); err == nil {
		t.Error("a forged form created a user")
	}
}

var scriptTag = regexp.MustCompile(`(?i)<script|<img`)

// Everything an attacker stores (user names, display names, thing
// attributes, client names, audit details) is escaped on every page.
func TestConsoleEscapesStoredXSS(t *testing.T) {
	w := newConsoleWorld(t)
	ada := w.client(t, "ada")
	for _, p := range []string{"/admin/things?model=Echo+3", "/admin/things/" + w.speaker.ID, "/admin/users?q=o", "/admin/clients",
		"/admin/batches", "/admin/batches/" + w.batch.ID,
		"/admin/users/" + w.olive.ID, "/admin/audit", "/admin/things?owner=" + url.QueryEscape(xss)} {
		r := ada.get(p)
		if r.status != http.StatusOK || scriptTag.MatchString(r.body) {
			t.Errorf("%s: %d, unescaped markup: %v\n%.4000s", p, r.status, scriptTag.FindAllString(r.body, -1), r.body)
		}
		if !strings.Contains(r.body, "&lt;script&gt;") {
			t.Errorf("%s does not show the stored text escaped", p)
		}
	}
}

// An administrator finds the speaker by each search field, opens it, and
// acts: disable (confirmed), enable, revoke its grant, revoke its
// certificate and unlink it; each change is in the thing's audit trail.
func TestConsoleThings(t *testing.T) {
	w := newConsoleWorld(t)
	ada := w.client(t, "ada")
	for _, q := range []string{"serial=SN-0001", "mac=00-1A-2B-3C-4D-5E", "model=Echo+3", "owner=olivia", "status=active&model=Echo+3"} {
		r := ada.get("/admin/things?" + q)
		if r.status != 200 || !strings.Contains(r.body, "/admin/things/"+w.speaker.ID) || strings.Contains(r.body, w.lamp.ID) ||
			!strings.Contains(r.body, "Things 1–1 of 1.") {
			t.Errorf("search %s: %d %.2000s", q, r.status, r.body)
		}
	}
	if r := ada.get("/admin/things?status=disabled"); !strings.Contains(r.body, w.lamp.ID) || strings.Contains(r.body, w.speaker.ID) {
		t.Errorf("search by status: %.2000s", r.body)
	}
	for q, field := range map[string]string{"mac=zz": "mac", "status=gone": "status", "page=0&model=x": "page",
		"serial=" + strings.Repeat("9", 300): "serial"} {
		if r := ada.get("/admin/things?" + q); r.status != 400 || !strings.Contains(r.body, `id="search-error">`+field+":") {
			t.Errorf("bad search %s: %d %.1500s", q, r.status, r.body)
		}
	}
	if r := ada.get("/admin/things?owner=nobody"); r.status != 200 || !strings.Contains(r.body, "No user has the user name nobody") {
		t.Errorf("unknown owner: %d %.1000s", r.status, r.body)
	}
	if r := ada.get("/admin/things/no-such-id"); r.status != 404 {
		t.Errorf("unknown thing: %d", r.status)
	}

	page := "/admin/things/" + w.speaker.ID
	r := ada.get(page)
	for _, want := range []string{"SN-0001", "olivia", w.fingerprint, w.grant.ID, "Not connected.", "test.xss", "Echo 3",
		`<td id="batches"><a href="/admin/batches/` + w.batch.ID + `">Acme Echo 3 · `} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the thing's page lacks %q", want)
		}
	}
	post := func(path string, form url.Values, wantConfirm bool, done string) {
		t.Helper()
		form.Set("csrf", ada.formToken(page))
		if wantConfirm {
			r := ada.post(path, form)
			if r.status != 200 || !strings.Contains(r.body, `name="confirm" value="yes"`) || !strings.Contains(r.body, `href="`+page+`"`) {
				t.Fatalf("POST %s without confirmation: %d %.1500s", path, r.status, r.body)
			}
			form.Set("confirm", "yes")
		}
		r := ada.post(path, form)
		if r.status != 303 || r.location != page+"?done="+done {
			t.Fatalf("POST %s: %d %q %.1500s", path, r.status, r.location, r.body)
		}
	}
	ctx := context.Background()
	post(page+"/disable", url.Values{}, true, "disabled")
	if th, _ := w.r.p.Identity.GetThing(ctx, w.speaker.ID); th.Status != store.StatusDisabled {
		t.Fatal("not disabled")
	}
	post(page+"/enable", url.Values{}, false, "enabled")
	post(page+"/grants/revoke", url.Values{"grant": {w.grant.ID}}, true, "grant")
	if g, _ := w.r.p.Store.GetGrant(ctx, w.grant.ID); g.RevokedAt.IsZero() {
		t.Fatal("grant not revoked")
	}
	post(page+"/certificates/revoke", url.Values{"fingerprint": {w.fingerprint}}, true, "revoked")
	if r := ada.get(page); !strings.Contains(r.body, ">revoked<") {
		t.Errorf("the certificate is not shown revoked: %.3000s", r.body)
	}
	post(page+"/unlink", url.Values{"user": {w.olive.ID}}, true, "unlinked")
	if rels, _ := w.r.p.Identity.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &store.Ref{Kind: store.KindThing, ID: w.speaker.ID}}); len(rels) != 0 {
		t.Fatal("still linked")
	}
	recs, err := w.r.p.Store.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: w.speaker.ID}, Actor: store.TextMatch{Value: "admin:" + w.ada.ID}})
	var actions []string
	for _, rec := range recs {
		actions = append(actions, rec.Action)
	}
	for _, want := range []string{"thing.disable", "thing.enable", certauth.EventCertRevoke, "thing.unlink"} {
		if err != nil || !strings.Contains(strings.Join(actions, " "), want) {
			t.Errorf("no %s by ada in the thing's audit trail: %v %v", want, actions, err)
		}
	}

	// Bad input names its field, never a 500.
	for path, form := range map[string]url.Values{
		page + "/certificates/revoke": {"fingerprint": {"00"}},
		page + "/grants/revoke":       {"grant": {"nope"}},
		page + "/disconnect":          {"client": {"nope"}},
		page + "/unlink":              {"user": {w.nora.ID}},
		"/admin/things/nope/disable":  {},
	} {
		form.Set("csrf", ada.formToken(page))
		form.Set("confirm", "yes")
		if r := ada.post(path, form); r.status != 400 && r.status != 404 {
			t.Errorf("POST %s %v: %d %.500s", path, form, r.status, r.body)
		}
	}
}

// An administrator finds, creates, disables and enables users and ends
// their sessions.
func TestConsoleUsers(t *testing.T) {
	w := newConsoleWorld(t)
	ada := w.client(t, "ada")
	nora := w.client(t, "nora")
	if r := ada.get("/admin/users?q=nor"); r.status != 200 || !strings.Contains(r.body, "/admin/users/"+w.nora.ID) || strings.Contains(r.body, w.olive.ID) {
		t.Errorf("search: %d %.1500s", r.status, r.body)
	}
	if r := ada.get("/admin/users/" + w.olive.ID); !strings.Contains(r.body, "/admin/things/"+w.speaker.ID) || !strings.Contains(r.body, w.grant.ID) {
		t.Errorf("olivia's things and grants: %.3000s", r.body)
	}
	csrf := ada.formToken("/admin/users")
	r := ada.post("/admin/users", url.Values{"csrf": {csrf}, "userName": {"nora"}})
	if r.status != 400 || !strings.Contains(r.body, `id="create-error">userName: &#34;nora&#34; is taken already`) {
		t.Errorf("a taken user name: %d %.1500s", r.status, r.body)
	}
	r = ada.post("/admin/users", url.Values{"csrf": {csrf}, "userName": {"pat"}, "password": {"short"}})
	if r.status != 400 || !strings.Contains(r.body, "password:") || !strings.Contains(r.body, `value="pat"`) {
		t.Errorf("a weak password: %d %.1500s", r.status, r.body)
	}
	r = ada.post("/admin/users", url.Values{"csrf": {csrf}, "userName": {"pat"}, "displayName": {"Pat"}, "password": {umaPW + " one time"}})
	if r.status != 303 || !strings.HasSuffix(r.location, "?done=created") {
		t.Fatalf("create: %d %q %.1500s", r.status, r.location, r.body)
	}
	pat, err := w.r.p.Identity.GetUserByName(context.Background(), "pat")
	if err != nil || !pat.MustChangePassword {
		t.Fatalf("pat: %+v %v", pat, err)
	}

	page := "/admin/users/" + w.nora.ID
	confirmAndPost := func(path string) {
		t.Helper()
		form := url.Values{"csrf": {ada.formToken(page)}}
		if r := ada.post(path, form); r.status != 200 || !strings.Contains(r.body, `name="confirm"`) {
			t.Fatalf("POST %s without confirmation: %d", path, r.status)
		}
		form.Set("confirm", "yes")
		if r := ada.post(path, form); r.status != 303 {
			t.Fatalf("POST %s: %d %.1000s", path, r.status, r.body)
		}
	}
	confirmAndPost(page + "/sessions/end")
	if r := nora.get("/account"); r.status != http.StatusSeeOther {
		t.Errorf("nora still signed in after her sessions were ended: %d", r.status)
	}
	// A forced reset: nora's password opens only the page to choose a new
	// one, and the forgot-password link goes to her verified address if
	// she has one.
	form := url.Values{"csrf": {ada.formToken(page)}, "confirm": {"yes"}}
	want := page + "?done=resetNoMail"
	if w.nora.VerifiedEmail() != "" {
		want = page + "?done=reset"
	}
	if r := ada.post(page+"/password/reset", form); r.status != 303 || r.location != want {
		t.Fatalf("forcing a password reset: %d %q, want %q", r.status, r.location, want)
	}
	if u, _ := w.r.p.Identity.GetUser(context.Background(), w.nora.ID); !u.MustChangePassword {
		t.Error("nora's password still opens everything after a forced reset")
	}
	if r := ada.post("/admin/users/"+w.ada.ID+"/password/reset", form); r.status != 400 {
		t.Errorf("forcing one's own reset: %d", r.status)
	}
	confirmAndPost(page + "/disable")
	if u, _ := w.r.p.Identity.GetUser(context.Background(), w.nora.ID); u.Status != store.StatusDisabled {
		t.Error("not disabled")
	}
	if r := ada.post(page+"/enable", url.Values{"csrf": {ada.formToken(page)}}); r.status != 303 {
		t.Errorf("enable: %d", r.status)
	}
	self := "/admin/users/" + w.ada.ID + "/disable"
	if r := ada.post(self, url.Values{"csrf": {ada.formToken(page)}, "confirm": {"yes"}}); r.status != 400 {
		t.Errorf("disabling oneself: %d", r.status)
	}
	olive := "/admin/users/" + w.olive.ID
	form = url.Values{"csrf": {ada.formToken(olive)}, "grant": {w.grant.ID}, "confirm": {"yes"}}
	if r := ada.post(olive+"/grants/revoke", form); r.status != 303 || r.location != olive+"?done=grant" {
		t.Fatalf("revoking olivia's grant: %d %q", r.status, r.location)
	}
	if g, _ := w.r.p.Store.GetGrant(context.Background(), w.grant.ID); g.RevokedAt.IsZero() {
		t.Fatal("the grant is not revoked")
	}
	if r := ada.post("/admin/users/"+w.nora.ID+"/grants/revoke", form); r.status != 404 {
		t.Errorf("revoking a grant through another user's page: %d", r.status)
	}
	if r := ada.get("/admin/users?status=maybe"); r.status != 400 || !strings.Contains(r.body, "status:") {
		t.Errorf("a bad status: %d", r.status)
	}
}

// The audit log page filters and pages by the audit log's cursor; its CSV
// export is escaped against formula injection.
func TestConsoleAuditLog(t *testing.T) {
	w := newConsoleWorld(t)
	ctx := context.Background()
	for i := range 60 {
		if err := w.r.p.Store.AppendAudit(ctx, store.AuditRecord{Time: time.Now(), Actor: "test", Action: "test.filler",
			Detail: []byte(`{"n":` + strconv.Itoa(i) + `}`)}); err != nil {
			t.Fatal(err)
		}
	}
	ada := w.client(t, "ada")
	r := ada.get("/admin/audit?action=test.x*")
	if r.status != 200 || !strings.Contains(r.body, `data-action="test.xss"`) || strings.Contains(r.body, `data-action="user.create"`) {
		t.Errorf("filter by action: %d %.2000s", r.status, r.body)
	}
	if r := ada.get("/admin/audit?since=yesterday"); r.status != 400 || !strings.Contains(r.body, "since:") {
		t.Errorf("a bad time: %d %.1000s", r.status, r.body)
	}
	if r := ada.get("/admin/audit?cursor=forged"); r.status != 400 || !strings.Contains(r.body, "cursor:") {
		t.Errorf("a forged cursor: %d", r.status)
	}
	// Paging: 50 a page, older records behind the cursor link.
	r = ada.get("/admin/audit")
	next := regexp.MustCompile(`href="(/admin/audit\?cursor=[^"]+)" rel="next"`).FindStringSubmatch(r.body)
	if next == nil {
		t.Fatalf("no link to older records: %.3000s", r.body)
	}
	if r := ada.get(strings.ReplaceAll(next[1], "&amp;", "&")); r.status != 200 || strings.Count(r.body, "<tr data-action=") == 0 {
		t.Errorf("the older page: %d", r.status)
	}

	resp, err := ada.c.Get(w.r.base + "/admin/audit.csv?subject=" + w.speaker.ID)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	rows, err := csv.NewReader(resp.Body).ReadAll()
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") || len(rows) < 3 {
		t.Fatalf("export: %d %q %v %v", resp.StatusCode, resp.Header.Get("Content-Type"), rows, err)
	}
	found := false
	for _, row := range rows[1:] {
		if row[3] == "test.xss" {
			found = true
			if row[2] != `'=HYPERLINK("http://evil")` {
				t.Errorf("a formula actor exported as %q", row[2])
			}
		}
		if row[5] != w.speaker.ID {
			t.Errorf("a record of another subject exported: %v", row)
		}
	}
	if !found {
		t.Errorf("the record is not exported: %v", rows)
	}
}

// The dashboard counts from the store and the broker, and draws the
// history of the process's own counters as inline SVG.
func TestConsoleDashboard(t *testing.T) {
	w := newConsoleWorld(t)
	ada := w.client(t, "ada")
	// The totals come from the metrics of the listener and the broker.
	reg := newRegistry()
	totals := dashboardTotals(reg, slog.New(slog.DiscardHandler))
	m := newHTTPMetrics(reg)
	m.requests.WithLabelValues("POST /api/v1/signin", "POST", "401").Add(2)
	m.requests.WithLabelValues(oauth.PathToken, "POST", "200").Add(5)
	m.requests.WithLabelValues(oauth.PathToken, "POST", "400").Add(7)
	m.requests.WithLabelValues("GET /healthz", "GET", "200").Add(11)
	got := totals()
	if got[console.SeriesTokens] != 5 || got[console.SeriesAuthFailures] != 2 {
		t.Fatalf("totals %v", got)
	}
	// What the sampler would observe a minute apart.
	now := time.Now()
	w.r.p.history.Observe(now, map[string]float64{console.SeriesTokens: 0, console.SeriesAuthFailures: 0})
	w.r.p.history.Observe(now, map[string]float64{console.SeriesTokens: 3, console.SeriesAuthFailures: 1})

	r := ada.get("/admin")
	for _, want := range []string{"<th scope=\"row\">Things</th><td>2</td>", "<th scope=\"row\">Users</th><td>", "1 (50 %)",
		`id="mqtt-now">0<`, "3 in the last hour, 3 in the last day", "1 in the last hour", "<svg role=\"img\"", "<rect ",
		`id="expiring-summary">Recorded on things and not revoked: 1.`, w.fingerprint} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the dashboard lacks %q:\n%.4000s", want, r.body)
		}
	}
}

// An administrator creates a client (its secret shown once works at the
// token endpoint), rotates the secret (the old one stops working), and
// deletes the client; a bad client names its field.
func TestConsoleClients(t *testing.T) {
	w := newConsoleWorld(t)
	ada := w.client(t, "ada")
	csrf := ada.formToken("/admin/clients")
	r := ada.post("/admin/clients", url.Values{"csrf": {csrf}, "name": {"Backend"}, "grantTypes": {"client_credentials"},
		"redirectURIs": {"http://evil.example/cb"}})
	if r.status != 400 || !strings.Contains(r.body, `id="create-error">redirect_uris`) || !strings.Contains(r.body, `value="Backend"`) {
		t.Fatalf("a bad client: %d %.2000s", r.status, r.body)
	}
	r = ada.post("/admin/clients", url.Values{"csrf": {csrf}, "name": {"Backend"}, "grantTypes": {"client_credentials"}, "scopes": {"profile"}})
	secretOf := regexp.MustCompile(`<span class="mono">([^<]+)</span>: copy the secret now[\s\S]*id="secret">([^<]+)<`)
	m := secretOf.FindStringSubmatch(r.body)
	if r.status != 200 || m == nil {
		t.Fatalf("create: %d %.3000s", r.status, r.body)
	}
	id, secret := m[1], m[2]
	token := func(secret string) int {
		t.Helper()
		req, _ := http.NewRequest("POST", w.r.base+oauth.PathToken, strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth(id, secret)
		resp, err := w.r.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := token(secret); code != 200 {
		t.Fatalf("the new client's token request: %d", code)
	}
	if again := ada.get("/admin/clients"); strings.Contains(again.body, secret) {
		t.Fatal("the secret is shown again")
	}
	form := url.Values{"csrf": {csrf}}
	if r := ada.post("/admin/clients/"+id+"/secret", form); r.status != 200 || !strings.Contains(r.body, `name="confirm"`) {
		t.Fatalf("rotate without confirmation: %d", r.status)
	}
	form.Set("confirm", "yes")
	r = ada.post("/admin/clients/"+id+"/secret", form)
	m = secretOf.FindStringSubmatch(r.body)
	if r.status != 200 || m == nil || m[2] == secret {
		t.Fatalf("rotate: %d %.2000s", r.status, r.body)
	}
	if code := token(secret); code != 401 {
		t.Errorf("the old secret after rotation: %d", code)
	}
	if code := token(m[2]); code != 200 {
		t.Errorf("the rotated secret: %d", code)
	}
	if r := ada.post("/admin/clients/"+id+"/delete", form); r.status != 303 || r.location != "/admin/clients?done=clientDeleted" {
		t.Fatalf("delete: %d %q", r.status, r.location)
	}
	if code := token(m[2]); code != 401 {
		t.Errorf("a deleted client's token request: %d", code)
	}
	if r := ada.post("/admin/clients/nope/secret", form); r.status != 404 {
		t.Errorf("rotating an unknown client: %d", r.status)
	}
	recs, _ := w.r.p.Store.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: "client", ID: id}})
	var actions []string
	for _, rec := range recs {
		actions = append(actions, rec.Action+" by "+rec.Actor)
	}
	for _, want := range []string{"client.create", "client.secret-rotate", "client.delete"} {
		if !strings.Contains(strings.Join(actions, ","), want+" by admin:"+w.ada.ID) {
			t.Errorf("no %s by ada: %v", want, actions)
		}
	}
}

// The platform page shows groups, manufacturer CAs, the broker's rules and
// the gateway's routes, and why a broken routes file was refused.
func TestConsolePlatform(t *testing.T) {
	w := newConsoleWorld(t)
	ada := w.client(t, "ada")
	dir := w.r.p.Config.Gateway.Routes
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	good := "routes:\n- name: music\n  match: {pathPrefix: /music/}\n  upstream: {url: \"http://127.0.0.1:9\"}\n  public: true\n"
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	g := w.r.p.gateway.Load()
	if g == nil {
		t.Fatal("the gateway did not start")
	}
	if err := g.Reload(); err != nil {
		t.Fatal(err)
	}
	r := ada.get("/admin/platform")
	for _, want := range []string{"administrators", ">ada<", "support", ">sam<", "things/${thing.id}/#", "music", "http://127.0.0.1:9"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the platform page lacks %q", want)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("routes:\n- name: bad\n  match: {pathPrefix: /x/}\n  upstream: {url: \"ftp://nope\"}\n  colour: red\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := g.Reload(); err == nil {
		t.Fatal("a broken routes file was accepted")
	}
	r = ada.get("/admin/platform")
	if !strings.Contains(r.body, `id="routes-error"`) || !strings.Contains(r.body, "b.yaml") || !strings.Contains(r.body, "music") {
		t.Errorf("the broken routes file: %.4000s", r.body)
	}
}

// An administrator ends a thing's MQTT session from its page: the broker
// closes the connection (MQTT 5: administrative action) and the console
// records it.
func TestConsoleDisconnect(t *testing.T) {
	w := newConsoleWorld(t, func(c *config.Config) { c.MQTT.CertificateLogin = true })
	_, dropped := connectWithCertificate(t, w.r, w.speaker)
	ada := w.client(t, "ada")
	page := "/admin/things/" + w.speaker.ID
	if r := ada.get(page); !strings.Contains(r.body, `data-client="`+w.speaker.ID+`"`) {
		t.Fatalf("the session is not on the page: %.4000s", r.body)
	}
	form := url.Values{"csrf": {ada.formToken(page)}, "client": {w.speaker.ID}, "confirm": {"yes"}}
	if r := ada.post(page+"/disconnect", form); r.status != 303 || r.location != page+"?done=disconnected" {
		t.Fatalf("disconnect: %d %q %.1000s", r.status, r.location, r.body)
	}
	select {
	case d := <-dropped:
		if d.ReasonCode != 0x98 {
			t.Errorf("DISCONNECT reason %#x, want 0x98 (administrative action)", d.ReasonCode)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("still connected")
	}
	recs, err := w.r.p.Store.ListAudit(context.Background(), store.AuditQuery{Action: store.TextMatch{Value: "mqtt.disconnect"}})
	if err != nil || len(recs) != 1 || recs[0].Actor != "admin:"+w.ada.ID || recs[0].Target.ID != w.speaker.ID {
		t.Fatalf("audit: %+v %v", recs, err)
	}
}

// TestConsoleRefusalsInGerman: what the validators beneath the console
// refuse (the store's filters, identity's conflicts and checks, the
// password policy, the authorization server's client rules, the audit
// query) reaches a German page in German, at the field it names, and a
// search the store refuses is a 400 at its field, not a 500; the JSON APIs
// keep answering in English.
func TestConsoleRefusalsInGerman(t *testing.T) {
	w := newConsoleWorld(t)
	ada := w.client(t, "ada")
	de := func(method, path string, form url.Values) pageResponse {
		t.Helper()
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, _ := http.NewRequest(method, w.r.base+path, body)
		req.Header.Set("Accept-Language", "de")
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		return ada.do(req)
	}
	for _, tc := range []struct{ path, want string }{
		{"/admin/things?serial=%00", `id="search-error">serial: der Wert enthält ein NUL-Zeichen`},
		{"/admin/things?model=%FF", `id="search-error">model: der Wert ist kein gültiges UTF-8`},
		{"/admin/things?mac=zz", `id="search-error">mac: keine MAC-Adresse`},
		{"/admin/things?status=gone", `id="search-error">status: wählen Sie active oder disabled`},
		{"/admin/users?q=a%00", `id="search-error">q: der Wert enthält ein NUL-Zeichen`},
		{"/admin/audit?since=yesterday", `id="filter-error">since: &#34;yesterday&#34; ist keine Zeit nach RFC 3339`},
	} {
		if r := de("GET", tc.path, nil); r.status != 400 || !strings.Contains(r.body, tc.want) {
			t.Errorf("GET %s: %d, want 400 with %q: %.3000s", tc.path, r.status, tc.want, r.body)
		}
	}
	csrf := ada.formToken("/admin/users")
	for _, tc := range []struct {
		path string
		form url.Values
		want string
	}{
		{"/admin/users", url.Values{"userName": {"nora"}}, `id="create-error">userName: &#34;nora&#34; ist bereits vergeben`},
		{"/admin/users", url.Values{"userName": {"pat"}, "password": {"short"}}, `id="create-error">password: verwenden Sie mindestens`},
		{"/admin/users", url.Values{"userName": {"pat\u0007"}}, `id="create-error">userName: darf keine Steuerzeichen enthalten`},
		{"/admin/clients", url.Values{"name": {"Backend"}, "grantTypes": {"client_credentials"}, "redirectURIs": {"http://evil.example/cb"}},
			`id="create-error">redirect_uris[0]: http ist nur mit einer Loopback-IP-Adresse`},
		{"/admin/clients", url.Values{"name": {"Backend"}, "grantTypes": {"client_credentials"}, "scopes": {"profile profile"}},
			`id="create-error">scopes[1]: &#34;profile&#34; ist doppelt aufgeführt`},
	} {
		tc.form.Set("csrf", csrf)
		if r := de("POST", tc.path, tc.form); r.status != 400 || !strings.Contains(r.body, tc.want) {
			t.Errorf("POST %s %v: %d, want 400 with %q: %.3000s", tc.path, tc.form, r.status, tc.want, r.body)
		}
	}
	// The admin API answers the same refusal in English, whatever the
	// browser's language.
	req, _ := http.NewRequest("POST", w.r.base+"/api/v1/admin/clients", strings.NewReader(`{"client_name":"Backend","grant_types":["client_credentials"],"redirect_uris":["http://evil.example/cb"]}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept-Language", "de")
	req.SetBasicAuth("admin", adminPassword(t, w.r))
	resp, err := w.r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 400 || !strings.Contains(string(b), "http is allowed only on a loopback IP literal") {
		t.Errorf("the admin API's refusal: %d %s", resp.StatusCode, b)
	}
}
