package uma

import (
	"embed"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// The owners' pages: /account/sharing (my resources, who has them, the
// pending requests) and /account/shared (what others share with me). They
// work without JavaScript: POST forms with a CSRF token, redirect after a
// success with a fixed notice, the page again with the error at its field
// after a failure. They call the functions of sharing.go, as the JSON API
// does.

//go:embed templates/*.html
var templateFS embed.FS

const (
	// assetPrefix is where this component serves the ui stylesheet.
	assetPrefix = "/assets/uma/"
	pathShared  = "/account/shared"
	// maxPageForm bounds a posted form: 64 scopes of 200 bytes fit.
	maxPageForm = 16 << 10
	timeLayout  = "2006-01-02 15:04 MST"
)

type pages struct {
	sharing, shared, message, claims *ui.Page
}

func parsePages(kit ui.Kit) pages {
	page := func(name string) *ui.Page { return kit.Page(templateFS, "templates/"+name) }
	return pages{sharing: page("sharing.html"), shared: page("shared.html"), message: page("message.html"), claims: page("claims.html")}
}

// registerPages mounts the pages; every route refuses cross-site requests.
func (s *Server) registerPages(mux routes.Mux) {
	cop := ui.CrossOrigin(s.issuer, http.HandlerFunc(s.crossOriginPage))
	page := func(h http.HandlerFunc) http.Handler { return ui.SecurityHeaders(cop.Handler(h)) }
	mux.Handle("GET "+pathSharing, page(s.showSharing))
	mux.Handle("POST "+pathSharing+"/shares", page(s.submitShare))
	mux.Handle("POST "+pathSharing+"/shares/{id}/revoke", page(s.submitRevoke))
	mux.Handle("POST "+pathSharing+"/requests/{id}/approve", page(s.submitApprove))
	mux.Handle("POST "+pathSharing+"/requests/{id}/deny", page(s.submitDeny))
	mux.Handle("GET "+pathShared, page(s.showShared))
	mux.Handle("GET "+assetPrefix, s.kit.Assets())
}

type messagePage struct {
	Title, Text, Link, LinkText string
}

func (s *Server) message(w http.ResponseWriter, r *http.Request, status int, title, text string) {
	s.kit.Render(w, r, status, s.pages.message, messagePage{Title: title, Text: text, Link: pathSharing, LinkText: "Sharing"})
}

func (s *Server) crossOriginPage(w http.ResponseWriter, r *http.Request) {
	s.message(w, r, http.StatusForbidden, "Request refused", "The form did not come from this site. Open the page again and resubmit.")
}

func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("uma: sharing page", "path", r.URL.Path, "err", err)
	s.message(w, r, http.StatusInternalServerError, "Something went wrong", "Try again in a moment.")
}

// sharingPath is the sharing page, focused on resource when not empty. It
// is built from our path and an escaped id only, so that a redirect to it
// cannot point anywhere else.
func sharingPath(resource, done string) string {
	q := url.Values{}
	if resource != "" {
		q.Set("resource", resource)
	}
	if done != "" {
		q.Set("done", done)
	}
	if len(q) == 0 {
		return pathSharing
	}
	return pathSharing + "?" + q.Encode()
}

// signinRedirect sends the browser to sign in and back to back.
func signinRedirect(w http.ResponseWriter, r *http.Request, back string) {
	http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(back), http.StatusSeeOther)
}

// postedForm checks a POST of the sharing page: a readable form, a
// signed-in user and a valid CSRF token. It has answered when ok is false.
func (s *Server) postedForm(w http.ResponseWriter, r *http.Request) (u *store.User, ok bool) {
	r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
	if err := r.ParseForm(); err != nil {
		s.message(w, r, http.StatusBadRequest, "Form not accepted", "The form could not be read. Open the page again and resubmit.")
		return nil, false
	}
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		signinRedirect(w, r, sharingPath(r.PostForm.Get("focus"), ""))
		return nil, false
	}
	if !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
		s.message(w, r, http.StatusForbidden, "Form expired", "The form expired or did not come from this site. Open the page again and resubmit.")
		return nil, false
	}
	return u, true
}

// --- the sharing page ---

type sharingPage struct {
	CSRF, UserName string
	Notice, Error  string
	// ErrorAt is the id of the input Error is about, "" for the page.
	ErrorAt string
	// Focus is the resource ?resource= names (the user_access_policy_uri of
	// a registered resource): the page shows it alone.
	Focus     string
	Resources []resourceCard
	Requests  []requestCard
}

type resourceCard struct {
	resourceView
	Device bool
	Server string // the name of the resource server that registered it
	Shares []shareRow
	Form   pageForm
}

type shareRow struct {
	ID, Who string
	Group   bool
	Scopes  []string
	Until   string // empty: no end
	Ended   bool
	When    string // the conditions in words
}

type requestCard struct {
	requestView
	Client string // the name of the client that asked
	Form   pageForm
}

// pageForm is what a share or approve form shows: the values and, after a
// failed submission, the errors by input name (grantee, scopes, expires_at).
// ID prefixes the ids of its elements.
type pageForm struct {
	ID                       string
	Kind, Grantee, ExpiresAt string
	Scopes                   []checkbox
	// The conditions (share forms only): zone, days, window and dates.
	Zone, Start, End, FirstDate, LastDate string
	Days                                  []checkbox
	Errors                                map[string]string
}

// weekDays are the day checkboxes of the share form, as policy.When names them.
var weekDays = []string{"mon", "tue", "wed", "thu", "fri", "sat", "sun"}

type checkbox struct {
	Name    string
	Checked bool
}

func checkboxes(names, checked []string) []checkbox {
	out := make([]checkbox, len(names))
	for i, n := range names {
		out[i] = checkbox{Name: n, Checked: slices.Contains(checked, n)}
	}
	return out
}

var notices = map[string]string{
	"shared":   "Shared.",
	"revoked":  "Access revoked. The tokens it gave stop working now.",
	"approved": "Request approved: the resource is shared.",
	"denied":   "Request denied.",
}

// sharingPage builds the page of u, focused on focus when not empty;
// found is false when focus is not one of u's resources.
func (s *Server) sharingPage(w http.ResponseWriter, r *http.Request, u *store.User, focus string) (p *sharingPage, found bool, err error) {
	ctx := r.Context()
	owned, err := s.resourcesOf(ctx, u.ID)
	if err != nil {
		return nil, false, err
	}
	reqs, err := s.requestsOf(ctx, u.ID, store.UMAPending)
	if err != nil {
		return nil, false, err
	}
	p = &sharingPage{CSRF: s.csrf.Token(w, r), UserName: u.UserName, Focus: focus}
	zone, err := s.defaultZone(ctx, u.ID)
	if err != nil {
		return nil, false, err
	}
	now, tr := s.now(), s.kit.Translator(r)
	clients := map[string]string{}
	clientName := func(id string) string {
		if _, ok := clients[id]; !ok {
			clients[id] = id
			if cl, err := s.st.GetClient(ctx, id); err == nil && cl.Name != "" {
				clients[id] = cl.Name
			}
		}
		return clients[id]
	}
	for _, o := range owned {
		if focus != "" && o.ID != focus {
			continue
		}
		c := resourceCard{resourceView: o.resourceView, Device: o.Type == ThingResourceType,
			Form: pageForm{ID: fmt.Sprintf("res-%d", len(p.Resources)), Kind: kindUser, Scopes: checkboxes(o.Scopes, nil), Zone: zone, Days: checkboxes(weekDays, nil)}}
		if o.ServerID != "" {
			c.Server = clientName(o.ServerID)
		}
		for _, sh := range o.Shares {
			row := shareRow{ID: sh.ID, Who: sh.GranteeName, Group: sh.Grantee.Kind == store.KindGroup, Scopes: sh.Scopes, When: sh.whenIn(tr)}
			if row.Who == "" {
				row.Who = sh.Grantee.ID
			}
			if sh.ExpiresAt != nil {
				row.Until, row.Ended = sh.ExpiresAt.UTC().Format(timeLayout), !now.Before(*sh.ExpiresAt)
			}
			c.Shares = append(c.Shares, row)
		}
		p.Resources = append(p.Resources, c)
	}
	for _, q := range reqs {
		if focus != "" && q.ResourceID != focus {
			continue
		}
		p.Requests = append(p.Requests, requestCard{requestView: q, Client: clientName(q.ClientID),
			Form: pageForm{ID: fmt.Sprintf("req-%d", len(p.Requests)), Scopes: checkboxes(q.Scopes, q.Scopes)}})
	}
	return p, focus == "" || len(p.Resources) == 1, nil
}

// showSharing is GET /account/sharing[?resource=id].
func (s *Server) showSharing(w http.ResponseWriter, r *http.Request) {
	focus := r.URL.Query().Get("resource")
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		signinRedirect(w, r, sharingPath(focus, ""))
		return
	}
	p, found, err := s.sharingPage(w, r, u, focus)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	status := http.StatusOK
	if !found {
		// Someone else's resource and a missing one look alike.
		status, p.Error = http.StatusNotFound, s.kit.Translator(r)("No resource with this id is yours.")
	}
	p.Notice = notices[r.URL.Query().Get("done")]
	s.kit.Render(w, r, status, s.pages.sharing, p)
}

// submitShare is POST /account/sharing/shares: the share form of a resource.
func (s *Server) submitShare(w http.ResponseWriter, r *http.Request) {
	u, ok := s.postedForm(w, r)
	if !ok {
		return
	}
	f := r.PostForm
	req, err := shareRequestFromForm(f)
	if err == nil {
		_, err = s.share(r.Context(), u, req)
	}
	if err != nil {
		s.formFailed(w, r, u, err, func(p *sharingPage) *pageForm {
			for i := range p.Resources {
				if c := &p.Resources[i]; c.ID == f.Get("resourceId") {
					c.Form.Kind, c.Form.Grantee, c.Form.ExpiresAt = f.Get("kind"), f.Get("grantee"), f.Get("expiresAt")
					c.Form.Scopes = checkboxes(c.Scopes, f["scope"])
					c.Form.Zone, c.Form.Start, c.Form.End = f.Get("zone"), f.Get("start"), f.Get("end")
					c.Form.FirstDate, c.Form.LastDate, c.Form.Days = f.Get("firstDate"), f.Get("lastDate"), checkboxes(weekDays, f["day"])
					return &c.Form
				}
			}
			return nil
		})
		return
	}
	http.Redirect(w, r, sharingPath(f.Get("focus"), "shared"), http.StatusSeeOther)
}

// submitRevoke is POST /account/sharing/shares/{id}/revoke.
func (s *Server) submitRevoke(w http.ResponseWriter, r *http.Request) {
	u, ok := s.postedForm(w, r)
	if !ok {
		return
	}
	if err := s.RevokeShare(r.Context(), "user:"+u.ID, u.ID, r.PathValue("id")); err != nil {
		s.formFailed(w, r, u, err, nil)
		return
	}
	http.Redirect(w, r, sharingPath(r.PostForm.Get("focus"), "revoked"), http.StatusSeeOther)
}

// submitApprove is POST /account/sharing/requests/{id}/approve: the
// checked scopes (none checked approves nothing), an optional end date.
func (s *Server) submitApprove(w http.ResponseWriter, r *http.Request) {
	u, ok := s.postedForm(w, r)
	if !ok {
		return
	}
	f, id := r.PostForm, r.PathValue("id")
	exp, err := parseEndDate(f.Get("expiresAt"))
	if err == nil {
		// Not nil: an empty list must not mean "all requested scopes".
		d := decision{Scopes: append([]string{}, f["scope"]...), ExpiresAt: exp}
		_, err = s.approve(r.Context(), u, id, d)
	}
	if err != nil {
		s.formFailed(w, r, u, err, func(p *sharingPage) *pageForm {
			for i := range p.Requests {
				if c := &p.Requests[i]; c.ID == id {
					c.Form.ExpiresAt, c.Form.Scopes = f.Get("expiresAt"), checkboxes(c.Scopes, f["scope"])
					return &c.Form
				}
			}
			return nil
		})
		return
	}
	http.Redirect(w, r, sharingPath(f.Get("focus"), "approved"), http.StatusSeeOther)
}

// submitDeny is POST /account/sharing/requests/{id}/deny.
func (s *Server) submitDeny(w http.ResponseWriter, r *http.Request) {
	u, ok := s.postedForm(w, r)
	if !ok {
		return
	}
	if err := s.deny(r.Context(), u, r.PathValue("id")); err != nil {
		s.formFailed(w, r, u, err, nil)
		return
	}
	http.Redirect(w, r, sharingPath(r.PostForm.Get("focus"), "denied"), http.StatusSeeOther)
}

// formFailed shows the sharing page again after a refused submission: the
// error at the top, linked to its field of the form that form (when not
// nil) finds on the page, which shows what was submitted; or only at the top
// when it is about no field of a form (a share or request that is not the
// user's).
func (s *Server) formFailed(w http.ResponseWriter, r *http.Request, u *store.User, err error, form func(*sharingPage) *pageForm) {
	var pe *problemError
	if !errors.As(err, &pe) {
		s.pageError(w, r, err)
		return
	}
	p, _, lerr := s.sharingPage(w, r, u, r.PostForm.Get("focus"))
	if lerr != nil {
		s.pageError(w, r, lerr)
		return
	}
	tr := s.kit.Translator(r)
	detail := tr(pe.detail)
	p.Error = sentence(detail)
	if field := formField(pe.field); field != "" && form != nil {
		if pf := form(p); pf != nil {
			pf.Errors = map[string]string{field: p.Error}
			p.Error, p.ErrorAt = tr(fieldLabels[field])+": "+strings.TrimSuffix(detail, ".")+".", pf.ID+"-"+field
		}
	}
	s.kit.Render(w, r, pe.status, s.pages.sharing, p)
}

// formField is the input of the page's forms that an error field of
// sharing.go is about; "" for none (the error is the page's).
func formField(field string) string {
	switch {
	case field == "kind", field == "grantee", field == "user", field == "email", field == "group":
		return "grantee"
	case field == "scopes", strings.HasPrefix(field, "scopes["):
		return "scopes"
	case field == "expiresAt":
		return "expiresAt"
	case strings.HasPrefix(field, "conditions."):
		return "conditions"
	}
	return ""
}

// fieldLabels name the inputs of formField in the error summary.
var fieldLabels = map[string]string{"grantee": "With whom", "scopes": "Scopes", "expiresAt": "Until", "conditions": "When"}

// sentence capitalizes detail and ends it with a full stop.
func sentence(detail string) string {
	if detail == "" {
		return ""
	}
	r, n := utf8.DecodeRuneInString(detail)
	detail = string(unicode.ToUpper(r)) + detail[n:]
	if !strings.HasSuffix(detail, ".") {
		detail += "."
	}
	return detail
}

// The kinds of grantee of the share form.
const (
	kindUser  = "user"
	kindEmail = "email"
	kindGroup = "group"
)

// maxGrantee bounds the name typed in the share form.
const maxGrantee = 256

// shareRequestFromForm reads the share form: resource_id, kind (user, email
// or group) and grantee (the user name, e-mail address or group), the
// checked scopes (scope, repeated) and an optional end date (expires_at,
// YYYY-MM-DD). Errors name the input.
func shareRequestFromForm(f url.Values) (ShareRequest, error) {
	req := ShareRequest{ResourceID: f.Get("resourceId"), Scopes: f["scope"]}
	who := strings.TrimSpace(f.Get("grantee"))
	switch {
	case who == "":
		return req, refuse(http.StatusBadRequest, "grantee", "enter a user name, an e-mail address or a group")
	case len(who) > maxGrantee:
		return req, refuse(http.StatusBadRequest, "grantee", "longer than 256 bytes: no user or group has such a name")
	}
	switch f.Get("kind") {
	case kindUser:
		req.User = who
	case kindEmail:
		req.Email = who
	case kindGroup:
		req.Group = who
	default:
		return req, refuse(http.StatusBadRequest, "kind", "choose whether you name a user, an e-mail address or a group")
	}
	c := Conditions{Zone: strings.TrimSpace(f.Get("zone")), Days: f["day"], Start: f.Get("start"), End: f.Get("end"),
		FirstDate: f.Get("firstDate"), LastDate: f.Get("lastDate")}
	if !c.when().IsZero() {
		req.Conditions = &c
	}
	exp, err := parseEndDate(f.Get("expiresAt"))
	req.ExpiresAt = exp
	return req, err
}

// parseEndDate reads the optional end date of a form, as <input type="date">
// sends it (YYYY-MM-DD): the share lasts until the end of that day, UTC.
// Empty is no end (nil).
func parseEndDate(v string) (*time.Time, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return nil, nil
	}
	d, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "expiresAt", "enter the end date as YYYY-MM-DD")
	}
	end := d.Add(24*time.Hour - time.Second)
	return &end, nil
}

// --- the shared-with-me page ---

type sharedRow struct {
	Name, Owner, Via, Until, When string
	Device                        bool
	Scopes                        []string
}

// showShared is GET /account/shared: what others share with me.
func (s *Server) showShared(w http.ResponseWriter, r *http.Request) {
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		signinRedirect(w, r, pathShared)
		return
	}
	entries, err := s.sharedWith(r.Context(), u.ID)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	rows := make([]sharedRow, 0, len(entries))
	for _, e := range entries {
		row := sharedRow{Name: e.Resource.Name, Owner: e.Resource.Owner, Scopes: e.Scopes, When: e.whenIn(s.kit.Translator(r)),
			Device: e.Resource.Type == ThingResourceType}
		if e.Grantee.Kind == store.KindGroup {
			row.Via = e.GranteeName
		}
		if e.ExpiresAt != nil {
			row.Until = e.ExpiresAt.UTC().Format(timeLayout)
		}
		rows = append(rows, row)
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.shared, struct {
		UserName string
		Shared   []sharedRow
	}{u.UserName, rows})
}
