package selfservice

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

func (e *accountEnv) changeEmail(t *testing.T, to string) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"email": to})
	return e.send(t, http.MethodPost, "/api/v1/account/email", string(b))
}

// emailLink returns the one change link mailed to `to`, as a path.
func (e *accountEnv) emailLink(t *testing.T, to string) string {
	t.Helper()
	var links []string
	for _, m := range e.mails(t, to) {
		if l := emailLinkRE.FindString(m.Body); l != "" {
			links = append(links, strings.TrimPrefix(l, e.srv.URL))
		}
	}
	if len(links) != 1 {
		t.Fatalf("%d change links mailed to %s, want 1", len(links), to)
	}
	return links[0]
}

// TestChangeEmail: the new address counts only once its link is followed,
// then verified; the old address is told at once; the link is out of date
// once another change went through.
func TestChangeEmail(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	e.signIn(t, "alice")
	if resp, body := e.changeEmail(t, "alice.new@example.org"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("change: %d %s", resp.StatusCode, body)
	}
	old := e.mails(t, "alice@example.org")
	if len(old) != 1 || !strings.Contains(old[0].Body, "alice.new@example.org") || emailLinkRE.MatchString(old[0].Body) {
		t.Fatalf("the old address was told %+v; want a notice naming the new address, without the link", old)
	}
	if u, _ := e.store.GetUser(context.Background(), alice.ID); u.PrimaryEmail() != "alice@example.org" || !u.EmailVerified {
		t.Fatalf("before the link: %v verified=%v, want the old address, verified", u.Emails, u.EmailVerified)
	}
	link := e.emailLink(t, "alice.new@example.org")
	resp, page := e.get(t, link)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(page), "E-mail address changed") {
		t.Fatalf("link: %d\n%s", resp.StatusCode, page)
	}
	u, _ := e.store.GetUser(context.Background(), alice.ID)
	if u.PrimaryEmail() != "alice.new@example.org" || !u.EmailVerified || len(u.Emails) != 1 {
		t.Fatalf("after the link: %v verified=%v", u.Emails, u.EmailVerified)
	}
	if _, err := e.store.GetUserByVerifiedEmail(context.Background(), "alice@example.org"); err == nil {
		t.Fatal("the old address still identifies the user")
	}
	if got := auditActions(t, e.store, alice.ID); got["user.email-change"] != 1 {
		t.Fatalf("audit %v", got)
	}
	// Following it again changes nothing; a link of an earlier request is
	// out of date.
	if resp, _ := e.get(t, link); resp.StatusCode != http.StatusOK {
		t.Fatalf("second use: %d", resp.StatusCode)
	}
	stale := e.h.sign(purposeEmail, emailClaims{UserID: alice.ID, From: "alice@example.org", To: "other@example.org", Expires: e.clock.now().Add(time.Hour).Unix()})
	if resp, _ := e.get(t, "/account/email/confirm?token="+stale); resp.StatusCode != http.StatusConflict {
		t.Fatalf("a link from the old address: %d, want 409", resp.StatusCode)
	}
}

// TestAttackChangeEmail: forged, expired and other users' links, an address
// another account verified, bad input, no session, the throttle.
func TestAttackChangeEmail(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	e.user(t, "bob", true)
	e.signIn(t, "alice")
	// bob@example.org is bob's, verified: asking answers as for any
	// address, and the link cannot take it.
	if resp, _ := e.changeEmail(t, "bob@example.org"); resp.StatusCode != http.StatusAccepted {
		t.Fatalf("asking for a taken address: %d, want 202 as for any", resp.StatusCode)
	}
	if resp, _ := e.get(t, e.emailLink(t, "bob@example.org")); resp.StatusCode != http.StatusConflict {
		t.Fatalf("taking bob's address: %d, want 409", resp.StatusCode)
	}
	e.changeEmail(t, "alice2@example.org")
	link := e.emailLink(t, "alice2@example.org")
	i := strings.LastIndexByte(link, '.') + 2
	forged := link[:i] + string("AB"[boolIndex(link[i] == 'A')]) + link[i+1:]
	if resp, _ := e.get(t, forged); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("forged link: %d, want 400", resp.StatusCode)
	}
	// A link made with another key, for alice: nobody without the key makes one.
	other := newAccountEnv(t, func(o *Options) { o.SigningKey = []byte(strings.Repeat("k", 32)) })
	mine := other.h.sign(purposeEmail, emailClaims{UserID: alice.ID, From: "alice@example.org", To: "evil@example.org", Expires: time.Now().Add(time.Hour).Unix()})
	if resp, _ := e.get(t, "/account/email/confirm?token="+mine); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("link signed with another key: %d, want 400", resp.StatusCode)
	}
	// A verification link of registration is no change link.
	verify := e.h.verifyToken(verifyClaims{UserID: alice.ID, Email: "evil@example.org", Expires: time.Now().Add(time.Hour).Unix()})
	if resp, _ := e.get(t, "/account/email/confirm?token="+verify); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("a verification token as change link: %d, want 400", resp.StatusCode)
	}
	e.clock.add(24 * time.Hour)
	if resp, page := e.get(t, link); resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(page), "Link expired") {
		t.Fatalf("expired link: %d\n%s", resp.StatusCode, page)
	}
	if u, _ := e.store.GetUser(context.Background(), alice.ID); u.PrimaryEmail() != "alice@example.org" {
		t.Fatalf("a refused link changed the address to %s", u.PrimaryEmail())
	}
	for _, bad := range []string{"", "not an address", "Alice <a@example.org>", "alice@example.org", "a@b\r\nBcc: x@example.org", strings.Repeat("a", 250) + "@example.org"} {
		resp, body := e.changeEmail(t, bad)
		if p := decodeProblem(t, resp, body); resp.StatusCode != http.StatusUnprocessableEntity || p.Errors[0].Field != "email" {
			t.Errorf("address %q: %d %s, want 422 naming email", bad, resp.StatusCode, body)
		}
	}
	resp, body := e.send(t, http.MethodPost, "/api/v1/account/email", `{"email":"x@example.org","emailVerified":true}`)
	if p := decodeProblem(t, resp, body); resp.StatusCode != http.StatusBadRequest || p.Errors[0].Field != "emailVerified" {
		t.Errorf("unknown member: %d %s", resp.StatusCode, body)
	}
	// A day later the account may be sent three again, not four.
	for _, to := range []string{"alice3@example.org", "alice4@example.org", "alice5@example.org"} {
		if resp, _ := e.changeEmail(t, to); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("change to %s: %d", to, resp.StatusCode)
		}
	}
	if resp, _ := e.changeEmail(t, "alice6@example.org"); resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("fourth change this hour: %d, want 429 with Retry-After", resp.StatusCode)
	}
	anon := newAccountEnv(t)
	if resp, _ := anon.changeEmail(t, "x@example.org"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a session: %d, want 401", resp.StatusCode)
	}
	if resp, _ := anon.get(t, "/account/email"); resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/signin?return_to=") {
		t.Fatalf("the page without a session: %d %s, want a redirect to sign in", resp.StatusCode, resp.Header.Get("Location"))
	}
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// owned gives u a thing, a grant for it, another grant and a UMA share.
func (e *accountEnv) owned(t *testing.T, u *store.User) (thing *store.Thing, grants []string, share string) {
	t.Helper()
	ctx := context.Background()
	thing, err := e.ids.CreateThing(ctx, "test", &store.Thing{DisplayName: "Speaker", Type: store.ThingDevice, SerialNumber: "SN-" + u.UserName, Manufacturer: "Acme", Model: "S1",
		Certificates: []store.CertRef{{FingerprintSHA256: strings.Repeat("ab", 32)}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ids.AddRelationship(ctx, "test", store.Relationship{Kind: store.RelOwner, From: store.Ref{Kind: store.KindUser, ID: u.ID}, To: store.Ref{Kind: store.KindThing, ID: thing.ID}}); err != nil {
		t.Fatal(err)
	}
	c := &store.Client{Name: "music", Type: store.ClientConfidential, SecretHash: []byte("client-secret-hash")}
	if err := e.store.CreateClient(ctx, c); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*store.Grant{{UserID: u.ID, ClientID: c.ID, ThingID: thing.ID, Scopes: []string{"device"}}, {UserID: u.ID, ClientID: c.ID, Scopes: []string{"profile"}}} {
		if err := e.store.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		grants = append(grants, g.ID)
	}
	if err := e.store.PutConsent(ctx, &store.Consent{UserID: u.ID, ClientID: c.ID, Scopes: []string{"profile"}}); err != nil {
		t.Fatal(err)
	}
	r := &store.UMAResource{OwnerID: u.ID, ClientID: c.ID, Name: "Playlist", Scopes: []string{"play"}}
	if err := e.store.CreateUMAResource(ctx, r); err != nil {
		t.Fatal(err)
	}
	s := &store.UMAShare{ResourceID: r.ID, OwnerID: u.ID, Grantee: store.Ref{Kind: store.KindUser, ID: u.ID + "-friend"}, Scopes: []string{"play"}}
	if err := e.store.CreateUMAShare(ctx, s); err != nil {
		t.Fatal(err)
	}
	return thing, grants, s.ID
}

// household makes a household of members (the first a guardian, the
// others of the roles given).
func (e *accountEnv) household(t *testing.T, name string, members map[string]string) string {
	t.Helper()
	ctx := context.Background()
	g := &store.Group{DisplayName: name}
	if err := e.store.CreateGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	if err := e.store.CreateHousehold(ctx, &store.Household{ID: g.ID, TimeZone: "Europe/Berlin"}); err != nil {
		t.Fatal(err)
	}
	for id, role := range members {
		if err := e.store.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: g.ID, UserID: id, Role: role}); err != nil {
			t.Fatal(err)
		}
	}
	return g.ID
}

func (e *accountEnv) deleteAccount(t *testing.T, pw string) (*http.Response, []byte) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"password": pw})
	return e.send(t, http.MethodDelete, "/api/v1/account", string(b))
}

// TestDeleteAccount: with the password, the user's things are unlinked and
// their grants, other grants and shares revoked (through the Revoker), the
// household the user is alone in goes, and then the user.
func TestDeleteAccount(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	bob := e.user(t, "bob", true)
	thing, grants, share := e.owned(t, alice)
	alone := e.household(t, "Alice's flat", map[string]string{alice.ID: "guardian"})
	shared := e.household(t, "Bob's house", map[string]string{bob.ID: "guardian", alice.ID: "guest"})
	e.signIn(t, "alice")

	resp, body := e.deleteAccount(t, "wrong password entirely")
	if p := decodeProblem(t, resp, body); resp.StatusCode != http.StatusUnprocessableEntity || p.Errors[0].Field != "password" {
		t.Fatalf("wrong password: %d %s", resp.StatusCode, body)
	}
	if resp, body := e.deleteAccount(t, goodPassword); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.StatusCode, body)
	}
	ctx := context.Background()
	if _, err := e.store.GetUser(ctx, alice.ID); err == nil {
		t.Fatal("the user is still there")
	}
	want := []string{"unlink " + thing.ID, "share " + share, "revoke " + grants[1]}
	if !slices.Equal(e.revoker.calls, want) {
		t.Fatalf("revoker calls %v, want %v", e.revoker.calls, want)
	}
	for _, id := range grants {
		if g, _ := e.store.GetGrant(ctx, id); g.RevokedAt.IsZero() {
			t.Errorf("grant %s not revoked", id)
		}
	}
	if rels, _ := e.store.ListRelationships(ctx, store.RelFilter{To: &store.Ref{Kind: store.KindThing, ID: thing.ID}}); len(rels) != 0 {
		t.Fatalf("the thing keeps relationships %v", rels)
	}
	if _, err := e.store.GetThing(ctx, thing.ID); err != nil {
		t.Fatalf("the thing itself went: %v", err)
	}
	if _, err := e.store.GetHousehold(ctx, alone); err == nil {
		t.Fatal("the household alice was alone in is still there")
	}
	if m, _ := e.store.ListHouseholdMembers(ctx, shared); len(m) != 1 || m[0].UserID != bob.ID {
		t.Fatalf("bob's household has members %v, want bob alone", m)
	}
	recs, _ := e.store.ListAudit(ctx, store.AuditQuery{Action: store.TextMatch{Value: "user.delete"}})
	if len(recs) != 1 || recs[0].Actor != "user:"+alice.ID {
		t.Fatalf("audit %+v, want user.delete by the user", recs)
	}
	if resp, _ := e.send(t, http.MethodGet, "/api/v1/account/data", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("the deleted user's session: %d, want 401", resp.StatusCode)
	}
}

// TestAttackDeleteAccountRefused: the last administrator, and the only
// guardian of a household with other members, cannot delete themselves;
// nothing is revoked then. Wrong passwords are throttled as sign-in is.
func TestAttackDeleteAccountRefused(t *testing.T) {
	e := newAccountEnv(t)
	admin := e.user(t, "root", true)
	ctx := context.Background()
	g := &store.Group{DisplayName: "administrators", Members: []store.Ref{{Kind: store.KindUser, ID: admin.ID}}}
	if err := e.store.CreateGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	e.signIn(t, "root")
	resp, body := e.deleteAccount(t, goodPassword)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), "last administrator") {
		t.Fatalf("last administrator: %d %s", resp.StatusCode, body)
	}
	// With another active administrator it may go.
	other := e.user(t, "root2", true)
	if _, err := e.store.UpdateGroup(ctx, g.ID, 0, func(g *store.Group) error {
		g.Members = append(g.Members, store.Ref{Kind: store.KindUser, ID: other.ID})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	kid := e.user(t, "kid", false)
	hh := e.household(t, "Home", map[string]string{admin.ID: "guardian", kid.ID: "dependant"})
	resp, body = e.deleteAccount(t, goodPassword)
	if resp.StatusCode != http.StatusConflict || !strings.Contains(string(body), `only guardian of the household \"Home\"`) {
		t.Fatalf("only guardian: %d %s", resp.StatusCode, body)
	}
	if len(e.revoker.calls) != 0 {
		t.Fatalf("a refused deletion revoked %v", e.revoker.calls)
	}
	if err := e.store.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: hh, UserID: other.ID, Role: "guardian"}); err != nil {
		t.Fatal(err)
	}
	// Wrong passwords: the free failures are answered as wrong, then the
	// account waits. The wait doubles with every further failure (1 s, 2 s,
	// 4 s, ...); on a loaded machine one attempt may come after a short
	// wait has passed, never after all of them.
	for i := range 5 {
		if resp, _ := e.deleteAccount(t, "not the password at all"); resp.StatusCode != http.StatusUnprocessableEntity {
			t.Fatalf("wrong password %d of the free ones: %d, want 422", i+1, resp.StatusCode)
		}
	}
	throttled := false
	for range 7 {
		resp, _ := e.deleteAccount(t, "not the password at all")
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") != "" {
			throttled = true
			break
		}
	}
	if !throttled {
		t.Fatal("12 wrong passwords in a row and the account never had to wait (429 with Retry-After)")
	}
	if _, err := e.store.GetUser(ctx, admin.ID); err != nil {
		t.Fatalf("deleted: %v", err)
	}
}

// TestDownloadData: everything about the user, nothing secret.
func TestDownloadData(t *testing.T) {
	e := newAccountEnv(t)
	alice := e.user(t, "alice", true)
	thing, grants, share := e.owned(t, alice)
	ctx := context.Background()
	g := &store.Group{DisplayName: "beta testers", Members: []store.Ref{{Kind: store.KindUser, ID: alice.ID}}}
	if err := e.store.CreateGroup(ctx, g); err != nil {
		t.Fatal(err)
	}
	hh := e.household(t, "Home", map[string]string{alice.ID: "guardian"})
	e.signIn(t, "alice")
	e.forgot(t, "alice") // an outstanding reset: its hash must not show

	resp, body := e.send(t, http.MethodGet, "/api/v1/account/data", "")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Disposition"), "attachment") {
		t.Fatalf("download: %d %v", resp.StatusCode, resp.Header)
	}
	var x export
	if err := json.Unmarshal(body, &x); err != nil {
		t.Fatal(err)
	}
	switch {
	case x.Profile.ID != alice.ID || !x.Profile.HasPassword || len(x.Profile.Emails) != 1:
		t.Errorf("profile %+v", x.Profile)
	case len(x.Groups) != 1 || x.Groups[0].DisplayName != "beta testers":
		t.Errorf("groups %+v", x.Groups)
	case len(x.Things) != 1 || x.Things[0].ID != thing.ID || x.Things[0].SerialNumber != "SN-alice":
		t.Errorf("things %+v", x.Things)
	case len(x.Grants) != 2 || len(x.Consents) != 1:
		t.Errorf("grants %+v consents %+v", x.Grants, x.Consents)
	case len(x.Households) != 1 || x.Households[0].ID != hh || x.Households[0].TimeZone != "Europe/Berlin":
		t.Errorf("households %+v", x.Households)
	case len(x.UMA.Resources) != 1 || len(x.UMA.SharesGiven) != 1 || x.UMA.SharesGiven[0].ID != share:
		t.Errorf("UMA %+v", x.UMA)
	case len(x.Sessions) != 1:
		t.Errorf("sessions %+v", x.Sessions)
	case len(x.Audit) == 0:
		t.Error("no audit records")
	}
	_ = grants
	actions := map[string]bool{}
	for _, a := range x.Audit {
		actions[a.Action] = true
	}
	for _, want := range []string{"user.create", "user.update", "session.signin"} {
		if !actions[want] {
			t.Errorf("audit has no %s: %v", want, actions)
		}
	}
	u, _ := e.store.GetUser(ctx, alice.ID)
	sessions, _ := e.store.ListSessions(ctx, alice.ID)
	for name, secret := range map[string]string{
		"password hash": u.PasswordHash, "argon2": "argon2id", "session hash": hex.EncodeToString(sessions[0].Hash),
		"client secret hash": "client-secret-hash", "session hash (base64)": b64.EncodeToString(sessions[0].Hash),
	} {
		if strings.Contains(string(body), secret) {
			t.Errorf("the download holds the %s", name)
		}
	}
	if strings.Contains(strings.ToLower(string(body)), "hash") {
		t.Errorf("the download names a hash:\n%s", body)
	}
	// The page's button posts its form and gets the same document.
	_, page := e.get(t, "/account/data")
	tok := csrfFieldRE.FindSubmatch(page)
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/account/data", strings.NewReader("csrf="+string(tok[1])))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, body := e.do(t, req); resp.StatusCode != http.StatusOK || !json.Valid(body) {
		t.Fatalf("the page's button: %d", resp.StatusCode)
	}
	anon := newAccountEnv(t)
	if resp, _ := anon.send(t, http.MethodGet, "/api/v1/account/data", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("without a session: %d, want 401", resp.StatusCode)
	}
}
