package authn

import (
	"embed"
	"errors"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/text/language"
	"golang.org/x/text/language/display"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

//go:embed templates/*.html
var templateFS embed.FS

// assetPrefix is where this component serves the ui stylesheet.
const assetPrefix = "/assets/authn/"

type pages struct {
	signin, account, message, password *ui.Page
}

func parsePages(kit ui.Kit) pages {
	page := func(name string) *ui.Page { return kit.Page(templateFS, "templates/"+name) }
	return pages{signin: page("signin.html"), account: page("account.html"), message: page("message.html"), password: page("password.html")}
}

type messagePage struct {
	Title, Text, Link, LinkText string
}

type signinPage struct {
	CSRF, ReturnTo, UserName, Error, Hint string
}

func (s *Sessions) renderSignin(w http.ResponseWriter, r *http.Request, status int, p signinPage) {
	p.CSRF = s.csrf.Token(w, r)
	s.kit.Render(w, r, status, s.pages.signin, p)
}

// showSignin is GET /signin. A user who must change the password is sent on
// to the password page: the pages that need a signed-in user send everyone
// who is not fully signed in here.
func (s *Sessions) showSignin(w http.ResponseWriter, r *http.Request) {
	if _, u, err := s.current(r); err == nil && u.MustChangePassword {
		http.Redirect(w, r, passwordPage(r.URL.Query().Get("return_to")), http.StatusSeeOther)
		return
	}
	s.renderSignin(w, r, http.StatusOK, signinPage{ReturnTo: safeReturnTo(r.URL.Query().Get("return_to"))})
}

// submitSignin is POST /signin: the form. Success redirects (303) to the
// return_to path or the signed-in page.
func (s *Sessions) submitSignin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	if err := r.ParseForm(); err != nil {
		s.kit.Render(w, r, http.StatusBadRequest, s.pages.message, messagePage{Title: "Form not accepted",
			Text: "The form could not be read. Open the sign-in page again and resubmit.", Link: "/signin", LinkText: "Sign in"})
		return
	}
	p := signinPage{UserName: r.PostForm.Get("userName"), ReturnTo: safeReturnTo(r.PostForm.Get("return_to"))}
	if !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		// Also refuses login CSRF: signing a victim into the attacker's account.
		p.Error = "The form expired or did not come from this site. Enter your password again and sign in."
		s.renderSignin(w, r, http.StatusForbidden, p)
		return
	}
	a := s.signIn(w, r, p.UserName, r.PostForm.Get("password"))
	switch {
	case a.err == nil && a.user.MustChangePassword:
		http.Redirect(w, r, passwordPage(p.ReturnTo), http.StatusSeeOther)
	case a.err == nil:
		dest := cmp(p.ReturnTo, s.opts.SignedInPath)
		http.Redirect(w, r, dest, http.StatusSeeOther)
	case errors.Is(a.err, ErrSignInFailed):
		secs := retryAfter(w, a.retry)
		p.Error = "The user name or password is wrong."
		if secs > 0 {
			p.Hint = "There were several failed attempts. Wait " + seconds(secs) + " before you try again."
		}
		s.renderSignin(w, r, http.StatusUnauthorized, p)
	case errors.Is(a.err, ErrThrottled):
		secs := retryAfter(w, a.retry)
		p.Error = "There were too many sign-in attempts from your network."
		p.Hint = "Wait " + seconds(secs) + " before you try again."
		s.renderSignin(w, r, http.StatusTooManyRequests, p)
	default:
		s.log.Error("authn: sign-in failed", "err", a.err)
		s.kit.Render(w, r, http.StatusInternalServerError, s.pages.message, messagePage{Title: "Something went wrong",
			Text: "You could not be signed in because of a problem on our side. Please try again later.", Link: "/signin", LinkText: "Sign in"})
	}
}

func seconds(n int) string {
	return (time.Duration(n) * time.Second).String()
}

// signout is POST /signout: ends the session and clears the cookie.
func (s *Sessions) signout(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	if err := r.ParseForm(); err != nil || !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		s.kit.Render(w, r, http.StatusForbidden, s.pages.message, messagePage{Title: "Request refused",
			Text: "The sign-out form expired or did not come from this site. Open your account page and sign out from there.", Link: "/account", LinkText: "Your account"})
		return
	}
	sess, err := s.end(w, r)
	if err != nil {
		s.log.Error("authn: sign-out failed", "err", err)
		s.kit.Render(w, r, http.StatusInternalServerError, s.pages.message, messagePage{Title: "Something went wrong",
			Text: "You could not be signed out because of a problem on our side. Close the browser to end the session.", Link: "/account", LinkText: "Your account"})
		return
	}
	if sess != nil {
		s.audit(r.Context(), "user:"+sess.UserID, "session.signout", userRef(sess.UserID), map[string]string{"session": publicID(sess.Hash)})
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.message, messagePage{Title: "Signed out",
		Text: "You have signed out.", Link: "/signin", LinkText: "Sign in again"})
}

// accountRow is one session as the account page shows it.
type accountRow struct {
	Created, LastSeen, RemoteIP, UserAgent string
	Current                                bool
}

// showAccount is GET /account: the signed-in page.
func (s *Sessions) showAccount(w http.ResponseWriter, r *http.Request) {
	sess, u, err := s.current(r)
	if errors.Is(err, ErrNoSession) {
		http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	if err == nil && u.MustChangePassword {
		http.Redirect(w, r, passwordPage(r.URL.RequestURI()), http.StatusSeeOther)
		return
	}
	if err != nil {
		s.log.Error("authn: reading the session", "err", err)
		s.kit.Render(w, r, http.StatusInternalServerError, s.pages.message, messagePage{Title: "Something went wrong",
			Text: "Your account could not be shown because of a problem on our side. Please try again later."})
		return
	}
	list, err := s.listSessions(r, u.ID, sess.Hash)
	if err != nil {
		s.log.Error("authn: listing sessions", "err", err)
	}
	rows := make([]accountRow, len(list))
	for i, l := range list {
		rows[i] = accountRow{Created: l.Created.Format(time.RFC1123), LastSeen: l.LastSeen.Format(time.RFC1123),
			RemoteIP: l.RemoteIP, UserAgent: l.UserAgent, Current: l.Current}
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.account, struct {
		UserName, CSRF string
		Sessions       []accountRow
		Languages      []languageOption
	}{u.UserName, s.csrf.Token(w, r), rows, s.languages(r)})
}

// languageOption is a language of the site, named in itself.
type languageOption struct {
	Tag, Name string
	Current   bool
}

func (s *Sessions) languages(r *http.Request) []languageOption {
	cur := s.opts.Site.Language(r)
	var out []languageOption
	for _, tag := range s.opts.Site.Languages() {
		name := tag
		if t, err := language.Parse(tag); err == nil {
			if n := display.Self.Name(t); n != "" {
				name = n
			}
		}
		out = append(out, languageOption{Tag: tag, Name: name, Current: tag == cur})
	}
	return out
}

// submitLanguage is POST /account/language: the signed-in user's language
// for the pages, kept in this browser and, as the user's locale, for the
// next sign-in anywhere.
func (s *Sessions) submitLanguage(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxSignInBody)
	_, u, err := s.current(r)
	if err != nil {
		http.Redirect(w, r, "/signin?return_to=%2Faccount", http.StatusSeeOther)
		return
	}
	if r.ParseForm() != nil || !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		s.kit.Render(w, r, http.StatusForbidden, s.pages.message, messagePage{Title: "Form not accepted",
			Text: "The form expired or did not come from this site. Open your account page and choose again.", Link: "/account", LinkText: "Your account"})
		return
	}
	lang := r.PostForm.Get("language")
	if !s.opts.Site.SetLanguage(w, lang) {
		s.kit.Render(w, r, http.StatusBadRequest, s.pages.message, messagePage{Title: "Language not available",
			Text: "Choose one of the languages listed on your account page.", Link: "/account", LinkText: "Your account"})
		return
	}
	if _, err := s.users.UpdateUser(r.Context(), "user:"+u.ID, u.ID, 0, func(u *store.User) error {
		u.Locale = lang
		return nil
	}); err != nil {
		s.log.Error("authn: saving the user's language", "err", err)
	}
	http.Redirect(w, r, "/account", http.StatusSeeOther)
}

// crossOrigin answers requests refused by http.CrossOriginProtection.
func (s *Sessions) crossOrigin(w http.ResponseWriter, r *http.Request) {
	s.log.Info("authn: cross-origin request refused", "path", r.URL.Path, "origin", r.Header.Get("Origin"), "secFetchSite", r.Header.Get("Sec-Fetch-Site"))
	if len(r.URL.Path) >= 5 && r.URL.Path[:5] == "/api/" {
		writeProblem(w, http.StatusForbidden, "cross-origin requests are not accepted; call this API from a server or from our own pages")
		return
	}
	s.kit.Render(w, r, http.StatusForbidden, s.pages.message, messagePage{Title: "Request refused",
		Text: "This form can only be sent from our own pages. Open the sign-in page again and submit it from there.", Link: "/signin", LinkText: "Sign in"})
}
