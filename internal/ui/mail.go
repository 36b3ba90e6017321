package ui

import (
	"bytes"
	"fmt"
	"io/fs"
	"strings"
	"text/template"
	"time"

	"golang.org/x/text/language"
)

// Mail is an e-mail template parsed once per language of the site, in the
// built-in version and, when the operator's directory has one
// (COMPONENT/NAME.txt), theirs. A mail template is text/template source
// that defines "subject" and "body"; it may call {{t "English text"
// args...}} for text in the reader's language, {{duration .D}} for a
// duration in words ("24 hours"), and {{brand}}.
type Mail struct {
	name     string
	builtIn  map[string]*template.Template
	operator map[string]*template.Template // nil: no override
}

// Mail parses the e-mail template file of fsys. Like Page, it panics on a
// broken built-in template; a broken override was refused by NewSite.
func (k Kit) Mail(fsys fs.FS, file string) *Mail {
	s := k.site()
	m := &Mail{name: k.override(file), builtIn: map[string]*template.Template{}}
	over := s.overrides != nil && exists(s.overrides, m.name)
	if over {
		m.operator = map[string]*template.Template{}
	}
	for _, lang := range s.Languages() {
		m.builtIn[lang] = template.Must(template.New(file).Funcs(s.mailFuncs(lang)).ParseFS(fsys, file))
		if !over {
			continue
		}
		t, err := parseMail(s, lang, s.overrides, m.name)
		if err != nil {
			s.mu.Lock()
			s.errs = append(s.errs, fmt.Errorf("template %s: %w", m.name, err))
			s.mu.Unlock()
			m.operator = nil
			break
		}
		m.operator[lang] = t
	}
	if over {
		s.mu.Lock()
		s.used[m.name] = true
		s.mu.Unlock()
	}
	return m
}

// parseMail parses the mail template name of fsys for lang and checks that
// it defines a subject and a body.
func parseMail(s *Site, lang string, fsys fs.FS, name string) (*template.Template, error) {
	t, err := template.New(name).Funcs(s.mailFuncs(lang)).ParseFS(fsys, name)
	if err != nil {
		return nil, err
	}
	for _, part := range []string{"subject", "body"} {
		if t.Lookup(part) == nil {
			return nil, fmt.Errorf("defines no %q (an e-mail template defines \"subject\" and \"body\")", part)
		}
	}
	return t, nil
}

// RenderMail returns the subject and body of m in lang (a language of the
// site; others get the default one) for data. An operator's template that
// fails is logged and the built-in one used instead.
func (k Kit) RenderMail(m *Mail, lang string, data any) (subject, body string, err error) {
	if _, ok := m.builtIn[lang]; !ok {
		lang = k.site().Languages()[0]
	}
	if t := m.operator[lang]; t != nil {
		if subject, body, err = execMail(t, data); err == nil {
			return subject, body, nil
		}
		k.log().Error("ui: the operator's e-mail template failed; sending the built-in one", "mail", m.name, "err", err)
	}
	return execMail(m.builtIn[lang], data)
}

func execMail(t *template.Template, data any) (subject, body string, err error) {
	var s, b bytes.Buffer
	if err := t.ExecuteTemplate(&s, "subject", data); err != nil {
		return "", "", err
	}
	if err := t.ExecuteTemplate(&b, "body", data); err != nil {
		return "", "", err
	}
	// A subject is one line: header injection is not possible through it.
	return strings.Join(strings.Fields(s.String()), " "), b.String(), nil
}

// MailLanguage is the language of e-mails to a user whose locale is locale
// (a BCP 47 tag, possibly empty): the site's best match, else its default.
func (s *Site) MailLanguage(locale string) string {
	if s == nil {
		s = defaultSite
	}
	if t, err := language.Parse(locale); err == nil && locale != "" && len(locale) <= 64 {
		if _, i, conf := s.matcher.Match(t); conf != language.No {
			return s.langs[i].String()
		}
	}
	return s.langs[0].String()
}

// mailFuncs are the functions every e-mail template may call, for one language.
func (s *Site) mailFuncs(lang string) template.FuncMap {
	return template.FuncMap{
		"t":        func(src string, args ...any) string { return s.translate(lang, src, args...) },
		"brand":    func() Brand { return s.brand },
		"lang":     func() string { return lang },
		"duration": func(d time.Duration) string { return s.duration(lang, d) },
	}
}

// duration says d the way people do ("24 hours", "30 minutes"), in lang.
func (s *Site) duration(lang string, d time.Duration) string {
	switch {
	case d == time.Hour:
		return s.translate(lang, "1 hour")
	case d%time.Hour == 0:
		return s.translate(lang, "%s hours", fmt.Sprint(int64(d/time.Hour)))
	case d%time.Minute == 0:
		return s.translate(lang, "%s minutes", fmt.Sprint(int64(d/time.Minute)))
	}
	return d.String()
}
