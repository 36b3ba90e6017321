package ui

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"

	"golang.org/x/text/language"
)

//go:embed messages/*.json
var messageFS embed.FS

// Site is what every page of one server shares: the brand (product name,
// logo, colours, footer links), the operator's template overrides and the
// message catalogues. Components get it through their options and put it in
// their Kit; a nil *Site is the built-in look, in the built-in languages.
type Site struct {
	brand    Brand
	logo     []byte
	logoType string
	css      []byte

	// overrides is the operator's template directory (nil: none); used
	// records which of its pages some component parsed, so that an
	// override naming no page is reported.
	overrides fs.FS
	mu        sync.Mutex
	used      map[string]bool
	errs      []error

	// catalogs translate English source text, by language; English has
	// none (the source is the text).
	catalogs map[string]map[string]string
	langs    []language.Tag // supported, the default first
	matcher  language.Matcher
}

// Brand is a manufacturer's identity on every page.
type Brand struct {
	ProductName string
	// LogoFile is a PNG, SVG, JPEG or WebP file shown in every page's header.
	LogoFile string
	// Accent and Error are colours "#rrggbb" (empty: the built-in ones).
	Accent, Error string
	FooterLinks   []Link
}

// Link is a footer link.
type Link struct{ Text, URL string }

// SiteOptions configure a Site.
type SiteOptions struct {
	Brand Brand
	// Templates is a directory whose files replace the built-in ones:
	// layout.html, COMPONENT/PAGE.html (for example authn/signin.html), and
	// messages/LANG.json (catalogues that add to or replace the built-in
	// ones, or add a language). Empty: none.
	Templates string
	// DefaultLanguage is the language of a browser that asks for none the
	// site has (empty: en).
	DefaultLanguage string
}

// defaultSite is the built-in look, for a Kit without a Site.
var defaultSite = func() *Site {
	s, err := NewSite(SiteOptions{})
	if err != nil {
		panic(err) // the embedded catalogues are broken: caught by any test
	}
	return s
}()

var colour = regexp.MustCompile(`^#[0-9a-fA-F]{6}$`)

// NewSite checks the options and loads the logo, the catalogues and the
// overrides. An error names the file (and line) at fault.
func NewSite(o SiteOptions) (*Site, error) {
	if o.Brand.ProductName == "" {
		o.Brand.ProductName = "thingid"
	}
	s := &Site{brand: o.Brand, used: map[string]bool{}, catalogs: map[string]map[string]string{}}
	for _, c := range []struct{ name, v string }{{"accent", o.Brand.Accent}, {"error", o.Brand.Error}} {
		if c.v != "" && !colour.MatchString(c.v) {
			return nil, fmt.Errorf("colors.%s: %q is not a colour like #1d5fbf", c.name, c.v)
		}
	}
	for i, l := range o.Brand.FooterLinks {
		if err := checkLink(l); err != nil {
			return nil, fmt.Errorf("footerLinks[%d]: %w", i, err)
		}
	}
	if o.Brand.LogoFile != "" {
		if err := s.loadLogo(o.Brand.LogoFile); err != nil {
			return nil, err
		}
	}
	s.css = brandCSS(o.Brand)
	if err := s.loadCatalogs(messageFS, "messages", "built-in"); err != nil {
		return nil, err
	}
	if o.Templates != "" {
		if fi, err := os.Stat(o.Templates); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("templates: %s is not a directory", o.Templates)
		}
		s.overrides = os.DirFS(o.Templates)
		if err := s.loadCatalogs(s.overrides, "messages", o.Templates); err != nil {
			return nil, err
		}
		if err := s.checkOverrides(o.Templates); err != nil {
			return nil, err
		}
	}
	def := language.English
	if o.DefaultLanguage != "" {
		t, err := language.Parse(o.DefaultLanguage)
		if err != nil || (t != language.English && s.catalogs[t.String()] == nil) {
			return nil, fmt.Errorf("defaultLanguage: %q is not a language the site has (en, %s)", o.DefaultLanguage, strings.Join(sortedKeys(s.catalogs), ", "))
		}
		def = t
	}
	s.langs = []language.Tag{def}
	for _, name := range append([]string{"en"}, sortedKeys(s.catalogs)...) {
		if t := language.Make(name); !slices.Contains(s.langs, t) {
			s.langs = append(s.langs, t)
		}
	}
	s.matcher = language.NewMatcher(s.langs)
	return s, nil
}

func checkLink(l Link) error {
	if strings.TrimSpace(l.Text) == "" {
		return errors.New("text: empty")
	}
	u, err := url.Parse(l.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "mailto" && !(u.Scheme == "" && strings.HasPrefix(l.URL, "/") && !strings.HasPrefix(l.URL, "//"))) {
		return fmt.Errorf("url: %q is not an http(s) or mailto URL or a path on this site", l.URL)
	}
	return nil
}

// maxLogo bounds the logo file.
const maxLogo = 256 << 10

func (s *Site) loadLogo(file string) error {
	types := map[string]string{".png": "image/png", ".svg": "image/svg+xml", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
	ct, ok := types[strings.ToLower(filepath.Ext(file))]
	if !ok {
		return fmt.Errorf("logoFile: %s is not a .png, .svg, .jpg or .webp file", file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("logoFile: %w", err)
	}
	if len(b) > maxLogo {
		return fmt.Errorf("logoFile: %s is larger than %d KiB", file, maxLogo>>10)
	}
	s.logo, s.logoType = b, ct
	return nil
}

// brandCSS sets the stylesheet's colour variables to the brand's.
func brandCSS(b Brand) []byte {
	var sb strings.Builder
	sb.WriteString(":root {")
	if b.Accent != "" {
		sb.WriteString(" --accent: " + b.Accent + ";")
	}
	if b.Error != "" {
		sb.WriteString(" --error: " + b.Error + ";")
	}
	sb.WriteString(" }\n")
	return []byte(sb.String())
}

// loadCatalogs reads dir/LANG.json files of fsys (source text → translation)
// into the site's catalogues, later files replacing earlier entries.
func (s *Site) loadCatalogs(fsys fs.FS, dir, origin string) error {
	files, err := fs.Glob(fsys, dir+"/*.json")
	if err != nil {
		return err
	}
	for _, f := range files {
		name := strings.TrimSuffix(path.Base(f), ".json")
		t, err := language.Parse(name)
		if err != nil {
			return fmt.Errorf("%s/%s: %q is not a language tag (BCP 47, like de or pt-BR)", origin, f, name)
		}
		b, err := fs.ReadFile(fsys, f)
		if err != nil {
			return err
		}
		var m map[string]string
		if err := json.Unmarshal(b, &m); err != nil {
			return fmt.Errorf("%s/%s: %w", origin, f, err)
		}
		for src, tr := range m {
			if verbs(src) != verbs(tr) {
				return fmt.Errorf("%s/%s: the translation of %q must keep its %d %%s", origin, f, src, verbs(src))
			}
		}
		if t == language.English {
			continue // English is the source text itself
		}
		cat := s.catalogs[t.String()]
		if cat == nil {
			cat = map[string]string{}
			s.catalogs[t.String()] = cat
		}
		for src, tr := range m {
			cat[src] = tr
		}
	}
	return nil
}

var verb = regexp.MustCompile(`%(\[[0-9]+\])?[-+# 0-9.]*[a-zA-Z]`)

// verbs counts the verbs (%s, %q, %[2]s) a message takes.
func verbs(msg string) int { return len(verb.FindAllString(strings.ReplaceAll(msg, "%%", ""), -1)) }

// checkOverrides parses every page and e-mail the directory holds, so that
// a broken one stops the start with its file and line.
func (s *Site) checkOverrides(dir string) error {
	return fs.WalkDir(s.overrides, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && path.Ext(p) == ".txt" {
			if _, err := parseMail(s, "en", s.overrides, p); err != nil {
				return fmt.Errorf("template %s: %w", filepath.Join(dir, p), err)
			}
			return nil
		}
		if d.IsDir() || path.Ext(p) != ".html" {
			return nil
		}
		t := template.New("layout").Funcs(s.funcs("", "en"))
		if p != "layout.html" {
			if _, err := t.ParseFS(layoutFS, "templates/layout.html"); err != nil {
				return err
			}
		}
		if _, err := t.ParseFS(s.overrides, p); err != nil {
			return fmt.Errorf("template %s: %w", filepath.Join(dir, p), err)
		}
		return nil
	})
}

// Languages lists the tags of the languages the site has, the default first.
func (s *Site) Languages() []string {
	if s == nil {
		s = defaultSite
	}
	out := make([]string, 0, len(s.langs))
	for _, t := range s.langs {
		out = append(out, t.String())
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Err reports the overrides that name no page any component has: checked
// once every component has parsed its pages, before the server starts.
func (s *Site) Err() error {
	if s == nil || s.overrides == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	errs := slices.Clone(s.errs)
	_ = fs.WalkDir(s.overrides, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && path.Ext(p) == ".html" && p != "layout.html" && !s.used[p] {
			errs = append(errs, fmt.Errorf("template %s replaces no page (pages are named COMPONENT/PAGE.html, like authn/signin.html)", p))
		}
		if err == nil && !d.IsDir() && path.Ext(p) == ".txt" && !s.used[p] {
			errs = append(errs, fmt.Errorf("template %s replaces no e-mail (e-mails are named COMPONENT/NAME.txt, like selfservice/password_reset.txt)", p))
		}
		return nil
	})
	return errors.Join(errs...)
}

// LanguageCookie holds a browser's chosen language.
const LanguageCookie = "lang"

// Language is the language of the pages answering r: the browser's chosen
// one (LanguageCookie), else the best match of Accept-Language, else the
// site's default.
func (s *Site) Language(r *http.Request) string {
	if s == nil {
		return defaultSite.Language(r)
	}
	if c, err := r.Cookie(LanguageCookie); err == nil {
		if t, err := language.Parse(c.Value); err == nil && slices.Contains(s.langs, t) {
			return t.String()
		}
	}
	if al := r.Header.Get("Accept-Language"); al != "" && len(al) <= 256 {
		if tags, _, err := language.ParseAcceptLanguage(al); err == nil && len(tags) > 0 {
			_, i, conf := s.matcher.Match(tags...)
			if conf != language.No {
				return s.langs[i].String()
			}
		}
	}
	return s.langs[0].String()
}

// SetLanguage makes lang the language of this browser's pages (a tag the
// site has; anything else is ignored). It returns whether it was set.
func (s *Site) SetLanguage(w http.ResponseWriter, lang string) bool {
	if s == nil {
		return defaultSite.SetLanguage(w, lang)
	}
	t, err := language.Parse(lang)
	if err != nil || !slices.Contains(s.langs, t) {
		return false
	}
	http.SetCookie(w, &http.Cookie{Name: LanguageCookie, Value: t.String(), Path: "/", MaxAge: 400 * 24 * 3600,
		Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode})
	return true
}

// Message is page text composed in Go: English source text and the
// arguments of its verbs, translated when a template prints it with
// {{t .Message}}. Arguments that are Messages are translated too.
type Message struct {
	Src  string
	Args []any
}

// Msg is the message src with args.
func Msg(src string, args ...any) Message { return Message{Src: src, Args: args} }

// String is the message in English.
func (m Message) String() string { return defaultSite.translateAny("en", m) }

// IsZero reports whether m is no message.
func (m Message) IsZero() bool { return m.Src == "" }

// Refusal is a refused input whose reason keeps its English source text
// and the arguments of its verbs: the validators' errors (a
// refusal.FieldError, alone or in a type of identity, the authorization
// server's clients, the store's filters and conflicts, a password policy)
// implement it without importing ui, so that a page says them in its
// reader's language ({{t .Err}}) while the APIs answer Error() in
// English. field is "" when the reason names none.
type Refusal interface {
	error
	Refusal() (field, src string, args []any)
}

// translateAny translates src, a string (or a string type, like a role),
// a Message, an error (a Refusal in the language, any other in English)
// or a fmt.Stringer, with args in place of its verbs.
func (s *Site) translateAny(lang string, src any, args ...any) string {
	switch v := src.(type) {
	case Message:
		if v.Src == "" {
			return ""
		}
		return s.translateAny(lang, v.Src, v.Args...)
	case error:
		rf, ok := errors.AsType[Refusal](v)
		if !ok {
			return v.Error()
		}
		field, reason, rargs := rf.Refusal()
		// The validator's own verbs (%d, %q) with its own arguments.
		reason = s.translate(lang, reason, rargs...)
		if field == "" {
			return reason
		}
		return field + ": " + reason
	case string:
		// Templates write %s for every argument: numbers too.
		args = slices.Clone(args) // a Message's own arguments stay as they are
		for i, a := range args {
			switch a := a.(type) {
			case Message, error:
				args[i] = s.translateAny(lang, a)
			case string:
			default:
				args[i] = fmt.Sprint(a)
			}
		}
		return s.translate(lang, v, args...)
	case fmt.Stringer:
		return s.translateAny(lang, v.String(), args...)
	}
	if rv := reflect.ValueOf(src); rv.Kind() == reflect.String {
		return s.translateAny(lang, rv.String(), args...)
	}
	return fmt.Sprint(src)
}

// translate is the catalogue's translation of src into lang, with args in
// place of its %s; the source text when there is none.
func (s *Site) translate(lang, src string, args ...any) string {
	msg := src
	if tr, ok := s.catalogs[lang][src]; ok {
		msg = tr
	}
	if len(args) == 0 {
		return msg
	}
	return fmt.Sprintf(msg, args...)
}

// brandAssets serves brand.css and the logo under a Kit's asset prefix.
func (s *Site) brandAssets(name string, w http.ResponseWriter) bool {
	switch name {
	case "brand.css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
		_, _ = w.Write(s.css)
	case "logo":
		if s.logo == nil {
			http.NotFound(w, nil)
			return true
		}
		w.Header().Set("Content-Type", s.logoType)
		if s.logoType == "image/svg+xml" {
			// An SVG is shown as an image only, never run as a document.
			w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
		}
		_, _ = w.Write(s.logo)
	default:
		return false
	}
	w.Header().Set("Cache-Control", "public, max-age=300")
	return true
}
