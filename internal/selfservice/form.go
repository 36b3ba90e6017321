package selfservice

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/thingid/thingid/internal/refusal"
)

// formField is one input of the registration form.
type formField struct {
	Name, Label, Type, Autocomplete, Hint string
	Required                              bool
	Value, DescribedBy                    string
	Error                                 any // an input's refusal, without its field
}

// summaryItem is one line of the error summary at the top of the form: the
// field's label (or name) and the error, each translated on the page.
type summaryItem struct {
	Field, Label string
	Text         any
}

// formPage is a page with at most one form: its title, what it says before
// the form, the form (none without Action) and links after it.
type formPage struct {
	Title   string
	Notice  string   // a success, announced politely
	Intro   []string // paragraphs
	List    []string // a list after them
	Action  string   // where the form posts; "": no form
	Submit  string   // the button's text
	CSRF    string
	Hidden  []hiddenField
	Fields  []formField
	Summary []summaryItem
	Links   []link
}

type hiddenField struct{ Name, Value string }

type link struct{ Href, Text, ID string }

// formFields lists the inputs in order; autocomplete tokens after the HTML
// standard let password managers fill and generate the right values.
func formFields() []formField {
	return []formField{
		{Name: "userName", Label: "User name", Type: "text", Autocomplete: "username", Required: true,
			Hint: "You sign in with it. Upper and lower case count as the same."},
		{Name: "email", Label: "E-mail address", Type: "email", Autocomplete: "email", Required: true},
		{Name: "displayName", Label: "Display name", Type: "text", Autocomplete: "name",
			Hint: "How you want to be called."},
		{Name: "password", Label: "Password", Type: "password", Autocomplete: "new-password", Required: true,
			Hint: "Use a long passphrase of several unrelated words. Common or guessable passwords are refused."},
		{Name: "passwordConfirm", Label: "Password again", Type: "password", Autocomplete: "new-password", Required: true},
	}
}

func (h *Handler) showForm(w http.ResponseWriter, r *http.Request) {
	h.renderForm(w, r, http.StatusOK, registration{}, nil, "")
}

// renderForm shows the registration form with what the user typed (never
// the password), an error next to each wrong field and a summary linking to
// them.
func (h *Handler) renderForm(w http.ResponseWriter, r *http.Request, status int, reg registration, errs []*refusal.FieldError, formError string) {
	page := formPage{Title: "Create an account", Action: "/register", Submit: "Create account", Fields: formFields(),
		Links: []link{{Href: "/signin", Text: "Sign in to an account you have"}}}
	h.renderPage(w, r, status, page, map[string]string{"userName": reg.UserName, "email": reg.Email, "displayName": reg.DisplayName}, errs, formError)
}

// renderPage fills page's fields with values, puts each error next to its
// field and in the summary, with formError first, and renders it with a
// fresh CSRF token.
func (h *Handler) renderPage(w http.ResponseWriter, r *http.Request, status int, page formPage, values map[string]string, errs []*refusal.FieldError, formError string) {
	page.CSRF = h.csrfToken(w, r)
	if formError != "" {
		page.Summary = append(page.Summary, summaryItem{Text: formError})
	}
	byField := map[string]*refusal.FieldError{}
	for _, e := range errs {
		byField[e.Field] = e.At("")
	}
	placed := map[string]bool{}
	for i := range page.Fields {
		f := &page.Fields[i]
		f.Value = values[f.Name]
		if f.Hint != "" {
			f.DescribedBy = f.Name + "-hint"
		}
		if msg, ok := byField[f.Name]; ok {
			f.Error = msg
			f.DescribedBy = strings.TrimSpace(f.DescribedBy + " " + f.Name + "-error")
			page.Summary = append(page.Summary, summaryItem{Field: f.Name, Label: f.Label, Text: msg})
			placed[f.Name] = true
		}
	}
	for _, e := range errs {
		if !placed[e.Field] { // a rule on a field the form does not show
			page.Summary = append(page.Summary, summaryItem{Label: e.Field, Text: e.At("")})
		}
	}
	h.render(w, r, status, h.pages.form, page)
}

func (h *Handler) submitForm(w http.ResponseWriter, r *http.Request) {
	if !h.parseForm(w, r, "/register") {
		return
	}
	reg := registration{
		UserName:    r.PostForm.Get("userName"),
		Email:       r.PostForm.Get("email"),
		DisplayName: r.PostForm.Get("displayName"),
		Password:    r.PostForm.Get("password"),
	}
	if !h.csrfValid(r, r.PostForm.Get("csrf")) {
		h.renderForm(w, r, http.StatusForbidden, reg, nil,
			"The form expired or did not come from this site. Check your entries, enter the password again and submit.")
		return
	}
	if reg.Password != "" && reg.Password != r.PostForm.Get("passwordConfirm") {
		h.renderForm(w, r, http.StatusUnprocessableEntity, reg,
			[]*refusal.FieldError{refusal.New("passwordConfirm", "the passwords do not match; type the same password in both fields")}, "")
		return
	}
	_, err := h.register(r.Context(), reg)
	if ie := (*inputError)(nil); errors.As(err, &ie) {
		h.renderForm(w, r, ie.status, reg, ie.fields, "")
		return
	}
	if err != nil {
		h.log.Error("selfservice: registration failed", "err", err)
		h.render(w, r, http.StatusInternalServerError, h.pages.message, messagePage{
			Title: "Something went wrong", Text: "Your account could not be created because of a problem on our side. Please try again later.", Link: "/register"})
		return
	}
	// Post/Redirect/Get: reloading the confirmation does not submit again.
	http.Redirect(w, r, "/register/done", http.StatusSeeOther)
}

func (h *Handler) showDone(w http.ResponseWriter, r *http.Request) {
	h.render(w, r, http.StatusOK, h.pages.done, struct {
		EmailVerification bool
		TTL               string
	}{h.opts.EmailVerification, formatTTL(h.opts.VerificationTTL)})
}

func (h *Handler) tooManyPage(w http.ResponseWriter, r *http.Request, retryAfter int) {
	h.render(w, r, http.StatusTooManyRequests, h.pages.message, messagePage{
		Title: "Too many attempts",
		Text:  "There were too many attempts from your network. Try again in " + strconv.Itoa(retryAfter) + " seconds.",
		Link:  r.URL.Path, LinkText: "Open the page again",
	})
}

// parseForm reads a posted form of at most maxBody bytes, or answers why not
// with a link back to back and returns false.
func (h *Handler) parseForm(w http.ResponseWriter, r *http.Request, back string) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	err := r.ParseForm()
	if err == nil {
		return true
	}
	status, text := http.StatusBadRequest, "The form could not be read. Open the page again and resubmit."
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		status, text = http.StatusRequestEntityTooLarge, "The form is too large. Shorten your entries and submit it again."
	}
	h.render(w, r, status, h.pages.message, messagePage{Title: "Form not accepted", Text: text, Link: back, LinkText: "Open the page again"})
	return false
}

// serverError logs err and says that the problem is ours.
func (h *Handler) serverError(w http.ResponseWriter, r *http.Request, what string, err error) {
	h.log.Error("selfservice: "+what, "err", err)
	h.render(w, r, http.StatusInternalServerError, h.pages.message, messagePage{Title: "Something went wrong",
		Text: "This did not work because of a problem on our side. Please try again later.", Link: "/account", LinkText: "Your account"})
}
