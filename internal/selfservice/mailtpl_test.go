package selfservice

import (
	"context"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// decodedSubject is a mail's subject with RFC 2047 words decoded.
func decodedSubject(t *testing.T, m sent) string {
	t.Helper()
	s, err := new(mime.WordDecoder).DecodeHeader(m.Subject)
	if err != nil {
		t.Fatalf("subject %q: %v", m.Subject, err)
	}
	return s
}

// A user whose locale is German gets the reset e-mail in German (subject,
// body, the link's lifetime in words); another in English.
func TestMailInTheUsersLanguage(t *testing.T) {
	e := newAccountEnv(t)
	hans := e.user(t, "hans", true)
	if _, err := e.ids.UpdateUser(context.Background(), "test", hans.ID, 0, func(u *store.User) error { u.Locale = "de-AT"; return nil }); err != nil {
		t.Fatal(err)
	}
	e.user(t, "alice", true)
	for _, name := range []string{"hans", "alice"} {
		if resp, body := e.forgot(t, name); resp.StatusCode != http.StatusAccepted {
			t.Fatalf("forgot %s: %d %s", name, resp.StatusCode, body)
		}
	}
	de := e.mails(t, "hans@example.org")
	if len(de) != 1 || decodedSubject(t, de[0]) != "Setzen Sie Ihr Passwort zurück" ||
		!strings.Contains(de[0].Body, "Hallo hans,") || !strings.Contains(de[0].Body, "innerhalb von 30 Minuten") ||
		resetLinkRE.FindStringSubmatch(de[0].Body) == nil {
		t.Fatalf("German mail: %+v", de)
	}
	en := e.mails(t, "alice@example.org")
	if len(en) != 1 || en[0].Subject != "Reset your password" || !strings.Contains(en[0].Body, "within 30 minutes") {
		t.Fatalf("English mail: %+v", en)
	}
}

// An operator's template (ui.templates: selfservice/password_reset.txt)
// replaces the built-in e-mail, with the brand and the link.
func TestMailOverride(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "selfservice"), 0o755)
	os.WriteFile(filepath.Join(dir, "selfservice", "password_reset.txt"), []byte(
		`{{define "subject"}}{{brand.ProductName}}: new password for {{.UserName}}{{end}}
{{define "body"}}Dear {{.Name}}, follow {{.Link}} (valid {{duration .Within}}).{{end}}`), 0o644)
	site, err := ui.NewSite(ui.SiteOptions{Brand: ui.Brand{ProductName: "Acme Home"}, Templates: dir})
	if err != nil {
		t.Fatal(err)
	}
	e := newAccountEnv(t, func(o *Options) { o.Site = site })
	e.user(t, "alice", true)
	e.forgot(t, "alice")
	got := e.mails(t, "alice@example.org")
	if len(got) != 1 || got[0].Subject != "Acme Home: new password for alice" ||
		!strings.HasPrefix(got[0].Body, "Dear alice, follow ") || !strings.HasSuffix(got[0].Body, "(valid 30 minutes).") {
		t.Fatalf("overridden mail: %+v", got)
	}
	if resetLinkRE.FindStringSubmatch(got[0].Body) == nil {
		t.Fatalf("no reset link in %q", got[0].Body)
	}
	if err := site.Err(); err != nil {
		t.Fatalf("the override was used, yet: %v", err)
	}
}
