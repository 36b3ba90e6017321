package server

// Attacks on administrator authentication of /scim/v2, through the real server
// over HTTPS. Every test tries to break one rule and stays as a regression test.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

const scimProbe = "/scim/v2/ServiceProviderConfig"

// oneTimePassword is the first administrator's password from the bootstrap.
func oneTimePassword(t *testing.T, r *running) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.p.Config.Home, AdminPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// adminPassword is the first administrator's own password: on first use it
// signs in with the one-time password and changes it over the HTTP API, as an
// operator must before Basic authentication works.
func adminPassword(t *testing.T, r *running) string {
	t.Helper()
	if r.adminPW != "" {
		return r.adminPW
	}
	once := oneTimePassword(t, r)
	c := r.browser()
	if code, body := r.postWith(t, c, "/api/v1/signin", `{"userName":"admin","password":`+jsonQuote(once)+`}`); code != 200 || !strings.Contains(body, `"mustChangePassword":true`) {
		t.Fatalf("sign-in with the one-time password: %d %s", code, body)
	}
	r.adminPW = once + " made my own"
	if code, body := r.postWith(t, c, "/api/v1/password", `{"currentPassword":`+jsonQuote(once)+`,"newPassword":`+jsonQuote(r.adminPW)+`}`); code != 204 {
		t.Fatalf("changing the one-time password: %d %s", code, body)
	}
	return r.adminPW
}

// newAdmin creates a second administrator with a password, returning its ID.
func newAdmin(t *testing.T, r *running, name, pw string) string {
	t.Helper()
	ctx := context.Background()
	u, err := r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: name}, pw)
	if err != nil {
		t.Fatal(err)
	}
	setAdmin(t, r, u.ID, true)
	return u.ID
}

func setAdmin(t *testing.T, r *running, id string, admin bool) {
	t.Helper()
	ctx := context.Background()
	gs, _, err := r.p.Identity.ListGroups(ctx, store.Query{Filter: store.Compare{Field: "displayName", Op: store.OpEq, Value: authn.AdminGroup}, Limit: 1})
	if err != nil || len(gs) != 1 {
		t.Fatalf("administrators group: %v %v", gs, err)
	}
	if _, err := r.p.Identity.UpdateGroup(ctx, "test", gs[0].ID, 0, func(g *store.Group) error {
		ref := store.Ref{Kind: store.KindUser, ID: id}
		g.Members = slices.DeleteFunc(g.Members, func(m store.Ref) bool { return m == ref })
		if admin {
			g.Members = append(g.Members, ref)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

func wantStatus(t *testing.T, r *running, what string, auth func(*http.Request), want int) {
	t.Helper()
	if code, body := r.get(t, scimProbe, auth); code != want {
		t.Errorf("%s: status %d, want %d: %.200s", what, code, want, body)
	}
}

// TestAttackBasicCacheHonoursRevocation: the 30 s cache of verified Basic
// credentials only saves argon2id; a disabled, demoted, deleted or renamed
// administrator, or a changed password, is refused on the very next request.
func TestAttackBasicCacheHonoursRevocation(t *testing.T) {
	r := serve(t)
	ctx := context.Background()
	const pw = "a long enough passphrase for ops"
	for _, tc := range []struct {
		name   string
		revoke func(id string)
		// creds after the revocation that must fail (name, password)
		user, pass string
	}{
		{"disabled", func(id string) {
			if _, err := r.p.Identity.UpdateUser(ctx, "test", id, 0, func(u *store.User) error { u.Status = store.StatusDisabled; return nil }); err != nil {
				t.Fatal(err)
			}
		}, "ops-disabled", pw},
		{"removed from the group", func(id string) { setAdmin(t, r, id, false) }, "ops-removed", pw},
		{"deleted", func(id string) {
			if err := r.p.Identity.DeleteUser(ctx, "test", id, 0); err != nil {
				t.Fatal(err)
			}
		}, "ops-deleted", pw},
		{"password changed", func(id string) {
			if _, err := r.p.Identity.UpdateUser(ctx, "test", id, 0, func(u *store.User) error {
				h, err := r.p.Identity.HashPassword("another long enough passphrase", u)
				u.PasswordHash = h
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}, "ops-password", pw},
		{"renamed", func(id string) {
			if _, err := r.p.Identity.UpdateUser(ctx, "test", id, 0, func(u *store.User) error { u.UserName = "ops-renamed-new"; return nil }); err != nil {
				t.Fatal(err)
			}
		}, "ops-renamed", pw},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := newAdmin(t, r, tc.user, pw)
			wantStatus(t, r, "before", basic(tc.user, pw), 200)
			wantStatus(t, r, "cached", basic(tc.user, pw), 200)
			tc.revoke(id)
			wantStatus(t, r, "after "+tc.name, basic(tc.user, tc.pass), 401)
		})
	}
	// A deleted user re-created under the same name is a new identity: the
	// cached verification of the old one does not carry over.
	id := newAdmin(t, r, "ops-again", pw)
	wantStatus(t, r, "before", basic("ops-again", pw), 200)
	if err := r.p.Identity.DeleteUser(ctx, "test", id, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: "ops-again"}, pw); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, r, "re-created non-admin", basic("ops-again", pw), 401)
}

// TestAttackAdminTokens: tokens act only for an existing, active member of the
// administrators group, whatever the header looks like.
func TestAttackAdminTokens(t *testing.T) {
	r := serve(t)
	ctx := context.Background()
	id := newAdmin(t, r, "ops", "a long enough passphrase for ops")
	token, hash := authn.NewToken(r.p.TokenKey())
	if err := r.p.Store.CreateAPIToken(ctx, &store.APIToken{Name: "t", Hash: hash, UserID: id}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"Bearer " + token, "bearer " + token, "BEARER   " + token + "  "} {
		wantStatus(t, r, h[:8], func(q *http.Request) { q.Header.Set("Authorization", h) }, 200)
	}
	for _, h := range []string{
		"Bearer " + strings.ToUpper(token), "Bearer " + token + "x", "Bearer " + token[:len(token)-1],
		"Bearer " + token + " " + token, "Token " + token, token, "Bearer", "Bearer ", "Basic " + token,
		"Bearer " + authn.TokenPrefix,
	} {
		wantStatus(t, r, strings.ReplaceAll(h, token, "<token>"), func(q *http.Request) { q.Header.Set("Authorization", h) }, 401)
	}
	// A token minted with another key (another installation) is worthless here.
	foreign, _ := authn.NewToken([]byte("another installation's key......"))
	wantStatus(t, r, "foreign token", bearer(foreign), 401)
	// Demoted: refused; promoted again: accepted; deleted: refused for good,
	// even when a new administrator takes the same name.
	setAdmin(t, r, id, false)
	wantStatus(t, r, "demoted", bearer(token), 401)
	setAdmin(t, r, id, true)
	wantStatus(t, r, "promoted", bearer(token), 200)
	if err := r.p.Identity.DeleteUser(ctx, "test", id, 0); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, r, "deleted", bearer(token), 401)
	newAdmin(t, r, "ops", "a long enough passphrase for ops")
	wantStatus(t, r, "deleted, name re-used", bearer(token), 401)
}

// TestAttackAdminLookalikes: names that look like "admin" (case, full-width
// forms, invisible characters) are either the administrator itself (same
// password needed) or refused at registration; none is another account that
// authenticates as or passes for the administrator.
func TestAttackAdminLookalikes(t *testing.T) {
	r := serve(t)
	adminPW := adminPassword(t, r)
	const pw = "a long enough passphrase for mallory"
	// Four attempts stay within the registration burst; selfservice's own
	// attack tests try many more forms.
	for _, name := range []string{"Admin ", "ＡＤＭＩＮ", "admin\u200b", "\u202eadmin"} {
		code, body := r.post(t, "/api/v1/register", `{"userName":`+jsonQuote(name)+`,"email":"m@example.com","password":"`+pw+`"}`)
		if code != 409 && code != 422 {
			t.Errorf("register %q: status %d, want 409 or 422: %s", name, code, body)
		}
		wantStatus(t, r, "basic "+name+" with mallory's password", basic(name, pw), 401)
	}
	// Other spellings of the administrator's own name still need its password.
	for _, name := range []string{"ADMIN", "Admin", "ＡＤＭＩＮ"} {
		wantStatus(t, r, "basic "+name+" with a wrong password", basic(name, adminPW+"x"), 401)
	}
	// The administrators group cannot be shadowed by a look-alike group.
	ctx := context.Background()
	mallory, err := r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: "mallory"}, pw)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []string{"Administrators", " administrators"} {
		if _, err := r.p.Identity.CreateGroup(ctx, "test", &store.Group{DisplayName: g, Members: []store.Ref{{Kind: store.KindUser, ID: mallory.ID}}}); err == nil {
			t.Errorf("a second group %q was created", g)
		}
	}
	if _, err := r.p.Identity.CreateGroup(ctx, "test", &store.Group{DisplayName: "ａｄｍｉｎｉｓｔｒａｔｏｒｓ", Members: []store.Ref{{Kind: store.KindUser, ID: mallory.ID}}}); err == nil {
		wantStatus(t, r, "member of a full-width administrators group", basic("mallory", pw), 401)
	}
	wantStatus(t, r, "mallory", basic("mallory", pw), 401)
}

// TestAttackAdminMemberKind: membership of the administrators group counts
// only for the user itself, not for another identity that happens to carry
// the same id (a thing or a group).
func TestAttackAdminMemberKind(t *testing.T) {
	r := serve(t)
	ctx := context.Background()
	const pw = "a long enough passphrase for mallory"
	mallory, err := r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: "mallory"}, pw)
	if err != nil {
		t.Fatal(err)
	}
	// The store lets a caller choose ids; a thing sharing mallory's id is
	// put in the administrators group.
	if err := r.p.Store.CreateThing(ctx, &store.Thing{Meta: store.Meta{ID: mallory.ID}, DisplayName: "twin"}); err != nil {
		t.Fatal(err)
	}
	gs, _, err := r.p.Identity.ListGroups(ctx, store.Query{Filter: store.Compare{Field: "displayName", Op: store.OpEq, Value: authn.AdminGroup}, Limit: 1})
	if err != nil || len(gs) != 1 {
		t.Fatal(gs, err)
	}
	if _, err := r.p.Identity.UpdateGroup(ctx, "test", gs[0].ID, 0, func(g *store.Group) error {
		g.Members = append(g.Members, store.Ref{Kind: store.KindThing, ID: mallory.ID})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, r, "user whose id a member thing shares", basic("mallory", pw), 401)
	token, hash := authn.NewToken(r.p.TokenKey())
	if err := r.p.Store.CreateAPIToken(ctx, &store.APIToken{Name: "t", Hash: hash, UserID: mallory.ID}); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, r, "token of that user", bearer(token), 401)
}

// TestAttackBasicOddCredentials: malformed or ambiguous Basic credentials are
// refused, and never confused with the administrator's cached verification.
func TestAttackBasicOddCredentials(t *testing.T) {
	r := serve(t)
	adminPW := adminPassword(t, r)
	wantStatus(t, r, "admin", basic("admin", adminPW), 200) // now cached
	for _, tc := range []struct{ what, header string }{
		{"split at the NUL of the cache key", "Basic " + b64("admin\x00"+adminPW[:5]+":"+adminPW[5:])},
		{"name with NUL", "Basic " + b64("admin\x00:"+adminPW)},
		{"password with suffix", "Basic " + b64("admin:"+adminPW+"\x00")},
		{"no colon", "Basic " + b64("admin"+adminPW)},
		{"not base64", "Basic %%%"},
		{"empty", "Basic "},
		{"empty name", "Basic " + b64(":"+adminPW)},
	} {
		wantStatus(t, r, tc.what, func(q *http.Request) { q.Header.Set("Authorization", tc.header) }, 401)
	}
}

func (r *running) post(t *testing.T, path, body string) (int, string) {
	t.Helper()
	return r.postWith(t, r.client, path, body)
}

// browser is a client of r that keeps cookies.
func (r *running) browser() *http.Client {
	jar, _ := cookiejar.New(nil)
	c := *r.client
	c.Jar = jar
	return &c
}

func (r *running) postWith(t *testing.T, c *http.Client, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", r.base+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func jsonQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// A full-width spelling of the administrator's name is the same name (NFKC), at
// sign-in as at registration.
func TestBasicLoginNormalizesUserName(t *testing.T) {
	r := serve(t)
	pw := adminPassword(t, r)
	if code, body := r.get(t, "/scim/v2/ServiceProviderConfig", basic("\uff41\uff44\uff4d\uff49\uff4e", pw)); code != 200 {
		t.Errorf("full-width admin name: %d %s", code, body)
	}
}

// A token that acts for a user opens SCIM only while that user is an
// administrator: a user consenting to a client with scim:write gains nothing.
func TestDelegatedAccessTokenNeedsAnAdministrator(t *testing.T) {
	r := serve(t)
	ctx := context.Background()
	keys, err := tokens.NewKeys(ctx, r.p.Store, tokens.KeysConfig{MasterKey: r.p.Key, Alg: tokens.ES256, MaxTokenLifetime: 10 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	iss, err := tokens.NewIssuer(keys, r.p.Config.HTTP.PublicURL)
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: "mallory2"}, "")
	if err != nil {
		t.Fatal(err)
	}
	// Tokens acting for an administrator who still has the one-time
	// password are refused like Basic; this one chose a password.
	adminPassword(t, r)
	admin, err := r.p.Identity.GetUserByName(ctx, "admin")
	if err != nil {
		t.Fatal(err)
	}
	app := &store.Client{Name: "app", Type: store.ClientConfidential, TokenEndpointAuthMethod: "client_secret_basic", GrantTypes: []string{"client_credentials"}}
	if err := r.p.Store.CreateClient(ctx, app); err != nil {
		t.Fatal(err)
	}
	grant := func(sub string) *store.Grant {
		g := &store.Grant{ClientID: app.ID, Created: time.Now()}
		if sub != app.ID {
			g.UserID = sub
		}
		if err := r.p.Store.CreateGrant(ctx, g); err != nil {
			t.Fatal(err)
		}
		return g
	}
	tokenFor := func(g *store.Grant, sub string, scope ...string) string {
		now := time.Now()
		tok, err := iss.AccessToken(tokens.Claims{Subject: sub, ClientID: app.ID, Audience: []string{r.p.Config.HTTP.PublicURL},
			Scope: scope, IssuedAt: now, ExpiresAt: now.Add(5 * time.Minute), GrantID: g.ID})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	token := func(sub, _ string, scope ...string) string { return tokenFor(grant(sub), sub, scope...) }
	// A grant revoked while no verifier heard of it (a restarted node) still
	// stops its tokens: the stored grant is checked.
	revoked := grant(app.ID)
	revokedToken := tokenFor(revoked, app.ID, authn.ScopeSCIMRead)
	if err := r.p.Store.RevokeGrant(ctx, revoked.ID, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		tok  string
		want int
	}{
		{"client's own token", token(app.ID, "app", authn.ScopeSCIMRead), 200},
		{"revoked grant, no event seen", revokedToken, 401},
		{"grant that does not exist", tokenFor(&store.Grant{ID: "nope"}, app.ID, authn.ScopeSCIMRead), 401},
		{"for an ordinary user", token(mallory.ID, "app", authn.ScopeSCIMWrite), 403},
		{"for an ordinary user with admin scope", token(mallory.ID, "app", authn.ScopeAdmin), 403},
		{"for the administrator", token(admin.ID, "app", authn.ScopeSCIMRead), 200},
		{"for a user that does not exist", token("ghost", "app", authn.ScopeSCIMRead), 401},
		{"without a SCIM scope", token(app.ID, "app", "openid"), 403},
	} {
		if code, body := r.get(t, "/scim/v2/Users", bearer(tc.tok)); code != tc.want {
			t.Errorf("%s: %d, want %d (%s)", tc.name, code, tc.want, body)
		}
	}
}

// TestOneTimePasswordFileDeletedOnceChanged: the bootstrap's password file
// lives only as long as the password in it opens anything.
func TestOneTimePasswordFileDeletedOnceChanged(t *testing.T) {
	r := serve(t)
	path := filepath.Join(r.p.Config.Home, AdminPasswordFile)
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the one-time password file before the change: %v %v, want mode 0600", fi, err)
	}
	adminPassword(t, r)
	for i := 0; ; i++ {
		_, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			break
		}
		if i == 100 {
			t.Fatalf("%s still exists after the password was changed (%v)", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// A restart does not bring it back.
	var again bytes.Buffer
	if err := r.p.bootstrapAdmin(context.Background(), &again); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("bootstrap recreated %s: %v", path, err)
	}
}
