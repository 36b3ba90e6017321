package server

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
	"github.com/thingid/thingid/internal/uma"
)

// The owners' pages /account/sharing and /account/shared, over real HTTP
// with real sessions, forms and tokens.

// sharingWorld is a umaWorld where alice owns a playlist (registered by the
// trusted music service) and a speaker (a thing), carol owns an album, bob
// is in the group "friends", dave has a verified e-mail address and erin an
// unverified one.
type sharingWorld struct {
	*umaWorld
	musicPAT                  string
	playlist, album, speaker  string // resource ids
	speakerThing              *store.Thing
	friends                   *store.Group
	dave, erin                *store.User
	alicePage, bobPage, carol *pageClient
}

func newSharingWorld(t *testing.T) *sharingWorld {
	w := &sharingWorld{umaWorld: newUMAWorld(t)}
	ctx := context.Background()
	id := w.r.p.Identity
	w.musicPAT = w.pat(t, w.music)
	w.playlist = w.registerFor(t, "Road trip", "alice", "read", "play", "edit")
	w.album = w.registerFor(t, "Holiday album", "carol", "view")
	var err error
	if w.speakerThing, err = id.CreateThing(ctx, "test", &store.Thing{DisplayName: "Living room speaker", Type: store.ThingDevice}); err != nil {
		t.Fatal(err)
	}
	if err := id.AddRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner,
		From: store.Ref{Kind: store.KindUser, ID: w.alice.ID}, To: store.Ref{Kind: store.KindThing, ID: w.speakerThing.ID}}); err != nil {
		t.Fatal(err)
	}
	w.speaker = uma.ThingResourceID(w.speakerThing.ID)
	if w.friends, err = id.CreateGroup(ctx, "test", &store.Group{DisplayName: "friends", Members: []store.Ref{{Kind: store.KindUser, ID: w.bob.ID}}}); err != nil {
		t.Fatal(err)
	}
	if w.dave, err = id.CreateUser(ctx, "test", &store.User{UserName: "dave", Emails: []store.MultiValue{{Value: "dave@example.org", Primary: true}}, EmailVerified: true}, umaPW); err != nil {
		t.Fatal(err)
	}
	if w.erin, err = id.CreateUser(ctx, "test", &store.User{UserName: "erin", Emails: []store.MultiValue{{Value: "erin@example.org", Primary: true}}}, umaPW); err != nil {
		t.Fatal(err)
	}
	w.alicePage, w.bobPage, w.carol = w.pageClient(t, "alice"), w.pageClient(t, "bob"), w.pageClient(t, "carol")
	return w
}

// registerFor registers a resource of owner with the music service's PAT.
func (w *sharingWorld) registerFor(t *testing.T, name, owner string, scopes ...string) string {
	t.Helper()
	code, out := w.register(t, w.musicPAT, `{"name":`+jsonQuote(name)+`,"resource_scopes":`+toJSON(scopes)+`,"owner":`+jsonQuote(owner)+`}`)
	if code != 201 {
		t.Fatalf("register %s: %d %v", name, code, out)
	}
	return out["_id"].(string)
}

// requestAccess has requester's client ask for scopes of resource as a UMA
// client does, so that the owner gets a pending request, and returns its id.
func (w *sharingWorld) requestAccess(t *testing.T, resource string, requester *store.User, scopes ...string) string {
	t.Helper()
	ticket := w.ticket(t, w.musicPAT, `{"resource_id":`+jsonQuote(resource)+`,"resource_scopes":`+toJSON(scopes)+`}`)
	code, out := w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {w.userToken(t, w.app.id, requester, nil)}, "claim_token_format": {uma.FormatAccessToken}})
	if code != 403 || out["error"] != "request_submitted" {
		t.Fatalf("asking for %s: %d %v", resource, code, out)
	}
	reqs, err := w.r.p.Store.ListUMARequests(context.Background(), store.UMARequestFilter{ResourceID: resource, RequesterID: requester.ID, Status: store.UMAPending})
	if err != nil || len(reqs) != 1 {
		t.Fatalf("pending requests: %v %v", reqs, err)
	}
	return reqs[0].ID
}

// rpt gets an RPT for requester's client for scope of resource.
func (w *sharingWorld) rpt(t *testing.T, resource string, requester *store.User, scope string) string {
	t.Helper()
	ticket := w.ticket(t, w.musicPAT, `{"resource_id":`+jsonQuote(resource)+`,"resource_scopes":[`+jsonQuote(scope)+`]}`)
	code, out := w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {w.userToken(t, w.app.id, requester, nil)}, "claim_token_format": {uma.FormatAccessToken}})
	if code != 200 {
		t.Fatalf("RPT: %d %v", code, out)
	}
	return out["access_token"].(string)
}

func (w *sharingWorld) shares(t *testing.T, resource string) []*store.UMAShare {
	t.Helper()
	sh, err := w.r.p.Store.ListUMAShares(context.Background(), store.UMAShareFilter{ResourceID: resource})
	if err != nil {
		t.Fatal(err)
	}
	return sh
}

func (w *sharingWorld) requestStatus(t *testing.T, id string) store.UMARequestStatus {
	t.Helper()
	q, err := w.r.p.Store.GetUMARequest(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return q.Status
}

// pageClient is a signed-in browser without JavaScript: cookies, forms, no
// redirects followed (the tests look at them).
type pageClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (w *umaWorld) pageClient(t *testing.T, name string) *pageClient {
	c := w.signin(t, name)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &pageClient{t: t, base: w.r.base, c: c}
}

// in is p reporting to t (a subtest).
func (p *pageClient) in(t *testing.T) *pageClient { q := *p; q.t = t; return &q }

type pageResponse struct {
	status         int
	location, body string
}

func (p *pageClient) do(req *http.Request) pageResponse {
	p.t.Helper()
	resp, err := p.c.Do(req)
	if err != nil {
		p.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return pageResponse{resp.StatusCode, resp.Header.Get("Location"), string(b)}
}

func (p *pageClient) get(path string) pageResponse {
	p.t.Helper()
	req, _ := http.NewRequest("GET", p.base+path, nil)
	return p.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the token of the sharing page's forms.
func (p *pageClient) csrf() string {
	p.t.Helper()
	return p.formToken("/account/sharing")
}

// formToken is the CSRF token of the forms of the page at path.
func (p *pageClient) formToken(path string) string {
	p.t.Helper()
	r := p.get(path)
	m := csrfField.FindStringSubmatch(r.body)
	if r.status != 200 || m == nil {
		p.t.Fatalf("%s: %d %.300s", path, r.status, r.body)
	}
	return m[1]
}

// post sends a form as the browser does from our page (Origin of the site).
func (p *pageClient) post(path string, form url.Values) pageResponse {
	p.t.Helper()
	return p.postFrom(p.base, path, form)
}

func (p *pageClient) postFrom(origin, path string, form url.Values) pageResponse {
	p.t.Helper()
	req, _ := http.NewRequest("POST", p.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", origin)
	return p.do(req)
}

// share posts the share form with a fresh token.
func (p *pageClient) share(resource, kind, grantee, expires string, scopes ...string) pageResponse {
	p.t.Helper()
	return p.post("/account/sharing/shares", url.Values{"csrf": {p.csrf()}, "resourceId": {resource}, "kind": {kind},
		"grantee": {grantee}, "scope": scopes, "expiresAt": {expires}})
}

// section is the part of the page about one resource or request.
func section(body, attr, id string) string {
	i := strings.Index(body, attr+`="`+id+`"`)
	if i < 0 {
		return ""
	}
	j := strings.Index(body[i:], "</section>")
	if j < 0 {
		return body[i:]
	}
	return body[i : i+j]
}

func tomorrow() string { return time.Now().UTC().Add(24 * time.Hour).Format(time.DateOnly) }

func TestSharingPages(t *testing.T) {
	w := newSharingWorld(t)
	alice, bob := w.alicePage, w.bobPage

	t.Run("signed-out visitors sign in and come back", func(t *testing.T) {
		anon := &pageClient{t: t, base: w.r.base, c: &http.Client{Transport: w.r.client.Transport,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
		for path, back := range map[string]string{
			"/account/sharing": "/account/sharing",
			"/account/sharing?resource=" + url.QueryEscape(w.playlist): "/account/sharing?resource=" + url.QueryEscape(w.playlist),
			"/account/shared": "/account/shared",
		} {
			r := anon.get(path)
			if r.status != 303 || r.location != "/signin?return_to="+url.QueryEscape(back) {
				t.Errorf("%s: %d %q", path, r.status, r.location)
			}
		}
		if r := anon.post("/account/sharing/shares", url.Values{"resourceId": {w.playlist}}); r.status != 303 || !strings.HasPrefix(r.location, "/signin?") {
			t.Errorf("POST signed out: %d %q", r.status, r.location)
		}
	})

	t.Run("the page lists what alice owns", func(t *testing.T) {
		alice := alice.in(t)
		r := alice.get("/account/sharing")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		for _, want := range []string{"Road trip", "Held by music", "read, play, edit", "Living room speaker", "Your device", "use, configure, telemetry:read", `href="/account/shared"`} {
			if !strings.Contains(r.body, want) {
				t.Errorf("page lacks %q", want)
			}
		}
		if strings.Contains(r.body, "Holiday album") {
			t.Error("alice's page shows carol's album")
		}
	})

	t.Run("share with a user, a group and a verified e-mail address", func(t *testing.T) {
		alice := alice.in(t)
		if r := alice.share(w.playlist, "user", "bob", tomorrow(), "play"); r.status != 303 || r.location != "/account/sharing?done=shared" {
			t.Fatalf("share with bob: %d %q %.500s", r.status, r.location, r.body)
		}
		if r := alice.share(w.speaker, "group", "friends", "", "use", "telemetry:read"); r.status != 303 {
			t.Fatalf("share with friends: %d %.500s", r.status, r.body)
		}
		if r := alice.share(w.playlist, "email", "dave@example.org", "", "read"); r.status != 303 {
			t.Fatalf("share with dave by e-mail: %d %.500s", r.status, r.body)
		}
		r := alice.get("/account/sharing?done=shared")
		playlist := section(r.body, "data-resource", w.playlist)
		if !strings.Contains(r.body, `id="notice"`) || !strings.Contains(playlist, "bob") || !strings.Contains(playlist, "dave") ||
			!strings.Contains(playlist, tomorrow()+" 23:59 UTC") {
			t.Errorf("playlist after sharing: %s", playlist)
		}
		if sp := section(r.body, "data-resource", w.speaker); !strings.Contains(sp, "Group friends") || !strings.Contains(sp, "use, telemetry:read") {
			t.Errorf("speaker after sharing: %s", sp)
		}
		// The JSON API sees the same shares: one implementation.
		code, out := w.call(t, alice.c, "GET", "/api/v1/uma/shares", nil, "")
		if code != 200 || len(out["shares"].([]any)) != 3 {
			t.Errorf("JSON shares: %d %v", code, out)
		}
		recs, err := w.r.p.Store.ListAudit(context.Background(), store.AuditQuery{Limit: 1000})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, rec := range recs {
			if rec.Action == "uma.share.create" && rec.Actor == "user:"+w.alice.ID {
				n++
			}
		}
		if n != 3 {
			t.Errorf("audited shares: %d, want 3", n)
		}
	})

	t.Run("bob sees what is shared with him", func(t *testing.T) {
		bob := bob.in(t)
		r := bob.get("/account/shared")
		if r.status != 200 {
			t.Fatalf("%d %s", r.status, r.body)
		}
		for _, want := range []string{"Road trip", "alice", "play", tomorrow() + " 23:59 UTC", "Living room speaker", "as a member of friends", "use, telemetry:read"} {
			if !strings.Contains(r.body, want) {
				t.Errorf("shared page lacks %q:\n%s", want, r.body)
			}
		}
		if r := w.carol.get("/account/shared"); !strings.Contains(r.body, `id="empty"`) {
			t.Errorf("carol's shared page: %s", r.body)
		}
		// In German, as the browser asks.
		req, _ := http.NewRequest("GET", bob.base+"/account/shared", nil)
		req.Header.Set("Accept-Language", "de-DE, de;q=0.9, en;q=0.5")
		de := bob.do(req)
		for _, want := range []string{"<h1>Mit mir geteilt</h1>", "Sie dürfen", "als Mitglied von friends", "Road trip"} {
			if de.status != 200 || !strings.Contains(de.body, want) {
				t.Errorf("German shared page lacks %q: %d\n%s", want, de.status, de.body)
			}
		}
	})

	t.Run("focus on one resource", func(t *testing.T) {
		alice := alice.in(t)
		r := alice.get("/account/sharing?resource=" + url.QueryEscape(w.playlist))
		if r.status != 200 || !strings.Contains(r.body, "Road trip") || strings.Contains(r.body, "Living room speaker") ||
			!strings.Contains(r.body, `name="focus" value="`+w.playlist+`"`) {
			t.Errorf("focused: %d %s", r.status, r.body)
		}
		// Sharing from the focused page comes back to it.
		r = alice.post("/account/sharing/shares", url.Values{"csrf": {alice.csrf()}, "resourceId": {w.playlist}, "focus": {w.playlist},
			"kind": {"user"}, "grantee": {"carol"}, "scope": {"read"}})
		back := "/account/sharing?" + url.Values{"done": {"shared"}, "resource": {w.playlist}}.Encode()
		if r.status != 303 || r.location != back {
			t.Errorf("after sharing from the focused page: %d %q", r.status, r.location)
		}
		// Carol's album is not alice's: the same answer as an unknown id.
		other, none := alice.get("/account/sharing?resource="+url.QueryEscape(w.album)), alice.get("/account/sharing?resource=nope")
		if other.status != 404 || other.body != none.body || strings.Contains(other.body, "Holiday album") {
			t.Errorf("focus on carol's album: %d %s\nunknown: %d", other.status, other.body, none.status)
		}
	})

	t.Run("errors at their field, nothing stored", func(t *testing.T) {
		alice := alice.in(t)
		before := len(w.shares(t, w.playlist))
		for _, tc := range []struct {
			name, kind, grantee, expires string
			scopes                       []string
			status                       int
			field, text                  string
		}{
			{"unknown user", "user", "mallory", "", []string{"play"}, 404, "grantee", "No active user with this name."},
			{"unverified e-mail", "email", "erin@example.org", "", []string{"play"}, 404, "grantee", "No active user with this verified e-mail address."},
			{"unknown group", "group", "enemies", "", []string{"play"}, 404, "grantee", "No group with this id or name."},
			{"no one", "user", "  ", "", []string{"play"}, 400, "grantee", "Enter a user name, an e-mail address or a group."},
			{"unknown kind", "robot", "bob", "", []string{"play"}, 400, "grantee", "Choose whether you name a user"},
			{"herself", "user", "alice", "", []string{"play"}, 400, "grantee", "You own this resource already."},
			{"scope not of the resource", "user", "bob", "", []string{"fly"}, 400, "scopes", "The resource has no scope &#34;fly&#34;."},
			{"no scope", "user", "bob", "", nil, 400, "scopes", "Name at least one scope of the resource"},
			{"date in the past", "user", "bob", "2001-01-01", []string{"play"}, 400, "expiresAt", "Must be in the future."},
			{"not a date", "user", "bob", "next friday", []string{"play"}, 400, "expiresAt", "Enter the end date as YYYY-MM-DD."},
		} {
			r := alice.share(w.playlist, tc.kind, tc.grantee, tc.expires, tc.scopes...)
			card := section(r.body, "data-resource", w.playlist)
			errP := regexp.MustCompile(`id="res-\d+-` + tc.field + `-error"><span class="visually-hidden">Error:</span> ([^<]*)</p>`).FindStringSubmatch(card)
			if r.status != tc.status || errP == nil || !strings.HasPrefix(errP[1], tc.text) {
				t.Errorf("%s: %d, error at %s %q, want %d %q\n%s", tc.name, r.status, tc.field, errP, tc.status, tc.text, card)
			}
			// The summary at the top names the field and links to it.
			if !regexp.MustCompile(`<a href="#res-\d+-` + tc.field + `">[A-Z][a-z ]+: `).MatchString(r.body) {
				t.Errorf("%s: the summary does not link to %s", tc.name, tc.field)
			}
			// What was typed stays.
			if strings.TrimSpace(tc.grantee) != "" && !strings.Contains(card, `value="`+tc.grantee+`"`) {
				t.Errorf("%s: the typed name is lost", tc.name)
			}
		}
		if after := len(w.shares(t, w.playlist)); after != before {
			t.Errorf("shares %d → %d after refused forms", before, after)
		}
	})

	t.Run("revoke on the page", func(t *testing.T) {
		alice := alice.in(t)
		var bobsShare string
		for _, sh := range w.shares(t, w.playlist) {
			if sh.Grantee.ID == w.bob.ID {
				bobsShare = sh.ID
			}
		}
		page := alice.get("/account/sharing")
		if !strings.Contains(page.body, `action="/account/sharing/shares/`+bobsShare+`/revoke"`) {
			t.Fatalf("no revoke button for bob's share")
		}
		r := alice.post("/account/sharing/shares/"+bobsShare+"/revoke", url.Values{"csrf": {alice.csrf()}})
		if r.status != 303 || r.location != "/account/sharing?done=revoked" {
			t.Fatalf("revoke: %d %q %s", r.status, r.location, r.body)
		}
		if r := bob.get("/account/shared"); strings.Contains(r.body, "Road trip") {
			t.Errorf("bob still sees the playlist: %s", r.body)
		}
		// Again: gone, the same answer as any unknown id.
		again := alice.post("/account/sharing/shares/"+bobsShare+"/revoke", url.Values{"csrf": {alice.csrf()}})
		if again.status != 404 || !strings.Contains(again.body, "No share with this id is yours.") {
			t.Errorf("revoked twice: %d %s", again.status, again.body)
		}
	})
}

// TestSharingPagesRequests: pending requests on the page, approved with
// fewer scopes and an end date, or denied; and the token endpoint agrees.
func TestSharingPagesRequests(t *testing.T) {
	w := newSharingWorld(t)
	alice := w.alicePage
	bobAsks := w.requestAccess(t, w.playlist, w.bob, "read", "play")
	daveAsks := w.requestAccess(t, w.playlist, w.dave, "edit")

	page := alice.get("/account/sharing")
	card := section(page.body, "data-request", bobAsks)
	if !strings.Contains(card, "bob asks for Road trip") || !strings.Contains(card, "through app") ||
		strings.Count(card, `type="checkbox"`) != 2 || strings.Count(card, " checked") != 2 {
		t.Fatalf("bob's request: %s", card)
	}

	// Nothing checked approves nothing (not "all that was asked").
	r := alice.post("/account/sharing/requests/"+bobAsks+"/approve", url.Values{"csrf": {alice.csrf()}})
	if r.status != 400 || !strings.Contains(section(r.body, "data-request", bobAsks), "-scopes-error") || w.requestStatus(t, bobAsks) != store.UMAPending {
		t.Fatalf("approve with no scope: %d %s", r.status, r.body)
	}
	// A scope that was not asked for.
	r = alice.post("/account/sharing/requests/"+bobAsks+"/approve", url.Values{"csrf": {alice.csrf()}, "scope": {"edit"}})
	if r.status != 400 || !strings.Contains(section(r.body, "data-request", bobAsks), "was not requested") {
		t.Fatalf("approve edit: %d %s", r.status, r.body)
	}
	r = alice.post("/account/sharing/requests/"+bobAsks+"/approve", url.Values{"csrf": {alice.csrf()}, "scope": {"play"}, "expiresAt": {tomorrow()}})
	if r.status != 303 || r.location != "/account/sharing?done=approved" {
		t.Fatalf("approve: %d %q %s", r.status, r.location, r.body)
	}
	shares := w.shares(t, w.playlist)
	if w.requestStatus(t, bobAsks) != store.UMAApproved || len(shares) != 1 || !slices.Equal(shares[0].Scopes, []string{"play"}) ||
		shares[0].ExpiresAt.UTC().Format(time.DateTime) != tomorrow()+" 23:59:59" {
		t.Fatalf("after approving: %s %+v", w.requestStatus(t, bobAsks), shares)
	}
	if r := alice.post("/account/sharing/requests/"+bobAsks+"/approve", url.Values{"csrf": {alice.csrf()}, "scope": {"play"}}); r.status != 409 {
		t.Errorf("approved twice: %d", r.status)
	}

	if r := alice.post("/account/sharing/requests/"+daveAsks+"/deny", url.Values{"csrf": {alice.csrf()}}); r.status != 303 || r.location != "/account/sharing?done=denied" {
		t.Fatalf("deny: %d %q", r.status, r.location)
	}
	ticket := w.ticket(t, w.musicPAT, `{"resource_id":`+jsonQuote(w.playlist)+`,"resource_scopes":["edit"]}`)
	if code, out := w.token(t, w.app, url.Values{"ticket": {ticket}, "claim_token": {w.userToken(t, w.app.id, w.dave, nil)}, "claim_token_format": {uma.FormatAccessToken}}); code != 403 || out["error"] != "request_denied" {
		t.Errorf("dave after the denial: %d %v", code, out)
	}
	if page := alice.get("/account/sharing"); strings.Contains(page.body, "data-request=") {
		t.Errorf("decided requests still shown: %s", page.body)
	}
}

// TestSharingPagesRevokeStopsRPT: a share revoked on the page makes the RPT
// issued under it inactive at introspection and refused by a verifier.
func TestSharingPagesRevokeStopsRPT(t *testing.T) {
	w := newSharingWorld(t)
	alice := w.alicePage
	if r := alice.share(w.playlist, "user", "bob", "", "play"); r.status != 303 {
		t.Fatalf("share: %d %s", r.status, r.body)
	}
	rpt := w.rpt(t, w.playlist, w.bob, "play")
	if in := w.introspect(t, w.musicPAT, rpt); in["active"] != true {
		t.Fatalf("RPT before revocation: %v", in)
	}
	share := w.shares(t, w.playlist)[0].ID
	if r := alice.post("/account/sharing/shares/"+share+"/revoke", url.Values{"csrf": {alice.csrf()}}); r.status != 303 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if in := w.introspect(t, w.musicPAT, rpt); in["active"] != false {
		t.Errorf("RPT after revocation on the page: %v", in)
	}
	if _, err := w.verifier.Verify(context.Background(), tokens.FromConnection(rpt, nil), tokens.VerifyOptions{Audience: w.r.p.Config.HTTP.PublicURL}); !errors.Is(err, tokens.ErrRevoked) {
		t.Errorf("verifier after revocation on the page: %v, want ErrRevoked", err)
	}
}

// TestSharingPagesAttacks tries to break the pages' rules: forms without
// the site's token or from another site, and acting on what is not yours.
func TestSharingPagesAttacks(t *testing.T) {
	w := newSharingWorld(t)
	alice, bob, carol := w.alicePage, w.bobPage, w.carol
	if r := carol.share(w.album, "user", "dave", "", "view"); r.status != 303 {
		t.Fatalf("carol shares: %d %s", r.status, r.body)
	}
	carolsShare := w.shares(t, w.album)[0].ID
	carolsRequest := w.requestAccess(t, w.album, w.bob, "view")
	bobsRequest := w.requestAccess(t, w.playlist, w.bob, "play")

	t.Run("CSRF", func(t *testing.T) {
		alice, carol := alice.in(t), carol.in(t)
		form := func(token string) url.Values {
			return url.Values{"csrf": {token}, "resourceId": {w.playlist}, "kind": {"user"}, "grantee": {"bob"}, "scope": {"play"}}
		}
		for name, r := range map[string]pageResponse{
			"no token":            alice.post("/account/sharing/shares", url.Values{"resourceId": {w.playlist}, "kind": {"user"}, "grantee": {"bob"}, "scope": {"play"}}),
			"wrong token":         alice.post("/account/sharing/shares", form("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")),
			"carol's token":       alice.post("/account/sharing/shares", form(carol.csrf())),
			"from another site":   alice.postFrom("https://evil.example", "/account/sharing/shares", form(alice.csrf())),
			"revoke, no token":    carol.post("/account/sharing/shares/"+carolsShare+"/revoke", nil),
			"approve, no token":   alice.post("/account/sharing/requests/"+bobsRequest+"/approve", url.Values{"scope": {"play"}}),
			"deny, another site":  alice.postFrom("https://evil.example", "/account/sharing/requests/"+bobsRequest+"/deny", url.Values{"csrf": {alice.csrf()}}),
			"revoke, wrong token": carol.post("/account/sharing/shares/"+carolsShare+"/revoke", url.Values{"csrf": {alice.csrf()}}),
		} {
			if r.status != 403 {
				t.Errorf("%s: %d %.300s", name, r.status, r.body)
			}
		}
		if n := len(w.shares(t, w.playlist)); n != 0 {
			t.Errorf("%d shares of the playlist after refused forms", n)
		}
		if len(w.shares(t, w.album)) != 1 || w.requestStatus(t, bobsRequest) != store.UMAPending {
			t.Error("a refused form changed something")
		}
	})

	t.Run("revoking another owner's share", func(t *testing.T) {
		alice := alice.in(t)
		theirs := alice.post("/account/sharing/shares/"+carolsShare+"/revoke", url.Values{"csrf": {alice.csrf()}})
		none := alice.post("/account/sharing/shares/no-such-share/revoke", url.Values{"csrf": {alice.csrf()}})
		if theirs.status != 404 || theirs.status != none.status || theirs.body != none.body {
			t.Errorf("carol's share: %d, unknown: %d; the answers differ:\n%s\n%s", theirs.status, none.status, theirs.body, none.body)
		}
		if len(w.shares(t, w.album)) != 1 {
			t.Error("carol's share was revoked by alice")
		}
	})

	t.Run("deciding another owner's request", func(t *testing.T) {
		alice := alice.in(t)
		for _, action := range []string{"approve", "deny"} {
			theirs := alice.post("/account/sharing/requests/"+carolsRequest+"/"+action, url.Values{"csrf": {alice.csrf()}, "scope": {"view"}})
			none := alice.post("/account/sharing/requests/no-such-request/"+action, url.Values{"csrf": {alice.csrf()}, "scope": {"view"}})
			if theirs.status != 404 || theirs.body != none.body {
				t.Errorf("%s carol's request: %d; unknown %d; the answers differ", action, theirs.status, none.status)
			}
		}
		if w.requestStatus(t, carolsRequest) != store.UMAPending {
			t.Error("alice decided carol's request")
		}
	})

	t.Run("the requesting party approves its own request", func(t *testing.T) {
		// Bob owns something too, so that his page has forms and he has
		// this component's token.
		w.registerFor(t, "Bob's mix", "bob", "play")
		bob := bob.in(t)
		own := bob.post("/account/sharing/requests/"+bobsRequest+"/approve", url.Values{"csrf": {bob.csrf()}, "scope": {"play"}})
		none := bob.post("/account/sharing/requests/no-such-request/approve", url.Values{"csrf": {bob.csrf()}, "scope": {"play"}})
		if own.status != 404 || own.body != none.body {
			t.Errorf("bob approving his request: %d %s", own.status, own.body)
		}
		if w.requestStatus(t, bobsRequest) != store.UMAPending || len(w.shares(t, w.playlist)) != 0 {
			t.Error("bob approved his own request")
		}
	})

	t.Run("sharing a resource that is not yours", func(t *testing.T) {
		alice := alice.in(t)
		theirs := alice.share(w.album, "user", "bob", "", "view")
		none := alice.share("no-such-resource", "user", "bob", "", "view")
		if theirs.status != 404 || theirs.body != none.body || !strings.Contains(theirs.body, "No resource with this id is yours.") {
			t.Errorf("sharing carol's album: %d %s", theirs.status, theirs.body)
		}
		thing := alice.share(uma.ThingResourceID("no-such-thing"), "user", "bob", "", "use")
		if thing.status != 404 || thing.body != none.body {
			t.Errorf("sharing an unknown thing: %d", thing.status)
		}
		if len(w.shares(t, w.album)) != 1 {
			t.Error("alice shared carol's album")
		}
	})

	t.Run("oversized form", func(t *testing.T) {
		alice := alice.in(t)
		r := alice.post("/account/sharing/shares", url.Values{"csrf": {alice.csrf()}, "grantee": {strings.Repeat("x", 20<<10)}})
		if r.status != 400 {
			t.Errorf("20 KiB form: %d", r.status)
		}
	})
}
