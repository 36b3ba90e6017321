package server

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/config"
)

// The manufacturer's brand and words reach every component's pages, in the
// reader's language; a template that does not parse stops the start, naming
// its file and line, and one that replaces no page is refused as a typo.
func TestBrandingOnEveryComponent(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "messages"), 0o755))
	must(os.WriteFile(filepath.Join(dir, "messages", "fr.json"), []byte(`{"Sign in": "Se connecter", "Connect a device": "Connecter un appareil", "Create an account": "Créer un compte"}`), 0o644))
	r := serve(t, func(c *config.Config) {
		c.UI = config.UI{ProductName: "Acme Home", Colors: config.UIColors{Accent: "#0a7d32"}, Templates: dir,
			FooterLinks: []config.UILink{{Text: "Privacy", URL: "https://acme.example/privacy"}}}
		c.Registration.Enabled = true
	})
	for path, want := range map[string]string{
		"/signin":   "<title>Se connecter · Acme Home</title>",
		"/":         "<h1>Acme Home</h1>",
		"/register": "<title>Créer un compte · Acme Home</title>",
		"/device":   "", // a redirect to sign in first
	} {
		code, body := r.get(t, path, func(req *http.Request) { req.Header.Set("Accept-Language", "fr-CA, en;q=0.5") })
		if code != http.StatusOK || !strings.Contains(body, want) || !strings.Contains(body, `<a href="https://acme.example/privacy">Privacy</a>`) {
			t.Errorf("%s: %d, want %q and the footer:\n%.1500s", path, code, want, body)
		}
	}
	if code, body := r.get(t, "/assets/authn/brand.css", nil); code != http.StatusOK || !strings.Contains(body, "--accent: #0a7d32;") {
		t.Errorf("brand.css: %d %s", code, body)
	}

	for name, tc := range map[string]struct{ file, text, want string }{
		"broken":  {"authn/signin.html", "{{define \"title\"}}x{{end}}\n{{define \"content\"}}{{if}}{{end}}", "signin.html:2"},
		"no page": {"authn/signon.html", `{{define "title"}}x{{end}}{{define "content"}}x{{end}}`, "authn/signon.html replaces no page"},
	} {
		dir := t.TempDir()
		must(os.MkdirAll(filepath.Join(dir, "authn"), 0o755))
		must(os.WriteFile(filepath.Join(dir, tc.file), []byte(tc.text), 0o644))
		cfg := config.Default()
		cfg.Home, cfg.MQTT.Enabled, cfg.Gateway.Enabled = t.TempDir(), false, false
		cfg.UI.Templates = dir
		must(cfg.Validate())
		p, err := Open(context.Background(), cfg)
		must(err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(err)
		err = p.Serve(context.Background(), ln, slog.New(slog.NewTextHandler(io.Discard, nil)), io.Discard)
		p.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Serve = %v, want an error naming %s", name, err, tc.want)
		}
	}
}
