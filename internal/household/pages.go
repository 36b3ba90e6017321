package household

import (
	"context"
	"embed"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// The pages /account/household (the user's households, invitations for
// them, a new household) and /account/household/{id} (one household: its
// members, invitations, time zone, rooms, things, rules in words, the
// rule form and the "would this be allowed?" preview). They work without
// JavaScript: POST forms with a CSRF token, a redirect with a fixed notice
// after a success, the page again with the error at its field after a
// failure. They call the functions the JSON API calls.

//go:embed templates/*.html
var templateFS embed.FS

const (
	pathPages = "/account/household"
	// assetPrefix is where this component serves the ui stylesheet.
	assetPrefix = "/assets/household/"
	// maxPageForm bounds a posted form: a rule with 32 scopes fits.
	maxPageForm = 16 << 10
)

type pages struct {
	list, household, message *ui.Page
}

func parsePages(kit ui.Kit) pages {
	page := func(name string) *ui.Page { return kit.Page(templateFS, "templates/"+name) }
	return pages{list: page("households.html"), household: page("household.html"), message: page("message.html")}
}

// registerPages mounts the pages; every route refuses cross-site requests.
func (s *Service) registerPages(mux routes.Mux, sessions SignedIn, baseURL string, csrfKey []byte) {
	s.kit = ui.Kit{AssetPrefix: assetPrefix, Log: s.log, Site: s.site}
	s.csrf = ui.NewCSRF(csrfKey, strings.HasPrefix(baseURL, "https:"))
	s.pages = parsePages(s.kit)
	cop := ui.CrossOrigin(baseURL, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.message(w, r, http.StatusForbidden, "Request refused", "The form did not come from this site. Open the page again and resubmit.")
	}))
	show := func(h func(w http.ResponseWriter, r *http.Request, u *store.User)) http.Handler {
		return ui.SecurityHeaders(cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, err := sessions.User(r)
			if err != nil {
				signinRedirect(w, r, householdPath(r.PathValue("id"), ""))
				return
			}
			h(w, r, u)
		})))
	}
	submit := func(h func(w http.ResponseWriter, r *http.Request, u *store.User)) http.Handler {
		return show(func(w http.ResponseWriter, r *http.Request, u *store.User) {
			r.Body = http.MaxBytesReader(w, r.Body, maxPageForm)
			if err := r.ParseForm(); err != nil {
				s.message(w, r, http.StatusBadRequest, "Form not accepted", "The form could not be read. Open the page again and resubmit.")
				return
			}
			if !s.csrf.Valid(r, r.PostForm.Get("csrf")) {
				s.message(w, r, http.StatusForbidden, "Form expired", "The form expired or did not come from this site. Open the page again and resubmit.")
				return
			}
			h(w, r, u)
		})
	}
	const one = pathPages + "/{id}"
	mux.Handle("GET "+pathPages, show(s.showList))
	mux.Handle("POST "+pathPages, submit(s.submitCreate))
	mux.Handle("POST "+pathPages+"/invitations/{inv}/accept", submit(s.submitAccept))
	mux.Handle("POST "+pathPages+"/invitations/{inv}/decline", submit(s.submitDecline))
	mux.Handle("GET "+one, show(s.showHousehold))
	mux.Handle("POST "+one+"/timezone", submit(s.submitTimeZone))
	mux.Handle("POST "+one+"/invitations", submit(s.submitInvite))
	mux.Handle("POST "+one+"/invitations/{inv}/withdraw", submit(s.submitWithdraw))
	mux.Handle("POST "+one+"/members/{userId}/role", submit(s.submitRole))
	mux.Handle("POST "+one+"/members/{userId}/remove", submit(s.submitRemove))
	mux.Handle("POST "+one+"/rooms", submit(s.submitRoom))
	mux.Handle("POST "+one+"/rooms/{roomId}/delete", submit(s.submitDeleteRoom))
	mux.Handle("POST "+one+"/things", submit(s.submitPlace))
	mux.Handle("POST "+one+"/things/{thingId}/remove", submit(s.submitUnplace))
	mux.Handle("POST "+one+"/rules", submit(s.submitRule))
	mux.Handle("POST "+one+"/rules/{ruleId}/delete", submit(s.submitDeleteRule))
	mux.Handle("GET "+assetPrefix, s.kit.Assets())
}

type messagePage struct {
	Title, Text, Link, LinkText string
}

// message shows a page of title and text, English source text the template
// translates.
func (s *Service) message(w http.ResponseWriter, r *http.Request, status int, title, text string) {
	s.kit.Render(w, r, status, s.pages.message, messagePage{Title: title, Text: text, Link: pathPages, LinkText: "Your households"})
}

func (s *Service) pageError(w http.ResponseWriter, r *http.Request, err error) {
	s.log.Error("household: page", "path", r.URL.Path, "err", err)
	s.message(w, r, http.StatusInternalServerError, "Something went wrong", "Try again in a moment.")
}

// householdPath is the page of household id ("": the list) with a notice.
// It is built from our path and an escaped id only, so that a redirect to
// it cannot point anywhere else.
func householdPath(id, done string) string {
	p := pathPages
	if id != "" {
		p += "/" + url.PathEscape(id)
	}
	if done != "" {
		p += "?done=" + url.QueryEscape(done)
	}
	return p
}

// signinRedirect sends the browser to sign in and back to back.
func signinRedirect(w http.ResponseWriter, r *http.Request, back string) {
	http.Redirect(w, r, "/signin?return_to="+url.QueryEscape(back), http.StatusSeeOther)
}

var notices = map[string]string{
	"created":     "Household created. You are its guardian.",
	"joined":      "You are a member of this household now.",
	"declined":    "Invitation declined.",
	"left":        "You left the household.",
	"invited":     "Invitation made. It waits for whoever holds that user name, or has verified that address, to accept it.",
	"withdrawn":   "Invitation withdrawn.",
	"role":        "Role changed.",
	"removed":     "Member removed. The things they placed left the household with them.",
	"timezone":    "Time zone changed. The rules follow the new clock from now on.",
	"room":        "Room added.",
	"roomdeleted": "Room deleted. Its things left the household.",
	"placed":      "Thing placed.",
	"unplaced":    "Thing taken out of the household.",
	"rule":        "Rule added. It applies from the next request.",
	"ruledeleted": "Rule deleted.",
}

// form is what one form of a page shows again after a refused submission:
// the values sent and the error by input name. The zero form is empty.
type form struct {
	values url.Values
	errors map[string]string
}

// Get is the value sent for input name.
func (f *form) Get(name string) string {
	if f == nil {
		return ""
	}
	return f.values.Get(name)
}

// Has reports whether value was sent for input name (checkboxes, options).
func (f *form) Has(name, value string) bool {
	return f != nil && slices.Contains(f.values[name], value)
}

// Error is the error about input name, "" for none.
func (f *form) Error(name string) string {
	if f == nil {
		return ""
	}
	return f.errors[name]
}

// pageState is what both pages share: the form token, the notice after a
// success, the error after a failure and the form it is about.
type pageState struct {
	CSRF, UserName string
	Notice, Error  string
	// ErrorAt is the id of the input Error is about, "" for the page.
	ErrorAt string
	forms   map[string]*form
}

// Form is the form named name, as submitted when it was refused.
func (p *pageState) Form(name string) *form { return p.forms[name] }

// failed sets the error of a refused submission of form name: at its
// input when field names one (fields maps the service's field names to
// the form's inputs), else at the top of the page.
func (p *pageState) failed(e *Error, tr func(string, ...any) string, name string, values url.Values, fields func(string) string) {
	p.Error = e.In(tr)
	input := ""
	if fields != nil {
		input = fields(e.Field)
	}
	if input == "" {
		return
	}
	p.forms = map[string]*form{name: {values: values, errors: map[string]string{input: p.Error}}}
	p.ErrorAt = name + "-" + input
}

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

// --- the list of households ---

type listPage struct {
	pageState
	Households  []summary
	Invitations []invitationCard
}

type invitationCard struct {
	invitationView
	Expired bool
}

func (s *Service) listPage(w http.ResponseWriter, r *http.Request, u *store.User) (*listPage, error) {
	ctx := r.Context()
	p := &listPage{pageState: pageState{CSRF: s.csrf.Token(w, r), UserName: u.UserName}}
	var err error
	if p.Households, err = s.summaries(ctx, u); err != nil {
		return nil, err
	}
	invs, err := s.invitationViews(ctx, u)
	if err != nil {
		return nil, err
	}
	for _, iv := range invs {
		p.Invitations = append(p.Invitations, invitationCard{invitationView: iv, Expired: time.Now().After(iv.ExpiresAt)})
	}
	return p, nil
}

// showList is GET /account/household.
func (s *Service) showList(w http.ResponseWriter, r *http.Request, u *store.User) {
	p, err := s.listPage(w, r, u)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p.Notice = notices[r.URL.Query().Get("done")]
	s.kit.Render(w, r, http.StatusOK, s.pages.list, p)
}

// listFailed shows the list again after a refused submission.
func (s *Service) listFailed(w http.ResponseWriter, r *http.Request, u *store.User, err error, name string, fields func(string) string) {
	var e *Error
	if !errors.As(err, &e) {
		s.pageError(w, r, err)
		return
	}
	p, lerr := s.listPage(w, r, u)
	if lerr != nil {
		s.pageError(w, r, lerr)
		return
	}
	p.failed(e, s.kit.Translator(r), name, r.PostForm, fields)
	s.kit.Render(w, r, e.Status, s.pages.list, p)
}

// submitCreate is POST /account/household: name and timeZone.
func (s *Service) submitCreate(w http.ResponseWriter, r *http.Request, u *store.User) {
	id, err := s.Create(r.Context(), u, strings.TrimSpace(r.PostForm.Get("name")), strings.TrimSpace(r.PostForm.Get("timeZone")))
	if err != nil {
		s.listFailed(w, r, u, err, "create", sameField("name", "timeZone"))
		return
	}
	http.Redirect(w, r, householdPath(id, "created"), http.StatusSeeOther)
}

// sameField maps each of names to the input of that name.
func sameField(names ...string) func(string) string {
	return func(f string) string {
		if slices.Contains(names, f) {
			return f
		}
		return ""
	}
}

// submitAccept is POST /account/household/invitations/{inv}/accept.
func (s *Service) submitAccept(w http.ResponseWriter, r *http.Request, u *store.User) {
	inv, err := s.invitationFor(r.Context(), u, r.PathValue("inv"))
	if err == nil {
		err = s.Accept(r.Context(), u, inv.ID)
	}
	if err != nil {
		s.listFailed(w, r, u, err, "", nil)
		return
	}
	http.Redirect(w, r, householdPath(inv.HouseholdID, "joined"), http.StatusSeeOther)
}

// submitDecline is POST /account/household/invitations/{inv}/decline.
func (s *Service) submitDecline(w http.ResponseWriter, r *http.Request, u *store.User) {
	inv, err := s.invitationFor(r.Context(), u, r.PathValue("inv"))
	if err == nil {
		err = s.Decline(r.Context(), u, inv.ID)
	}
	if err != nil {
		s.listFailed(w, r, u, err, "", nil)
		return
	}
	http.Redirect(w, r, householdPath("", "declined"), http.StatusSeeOther)
}

// --- one household ---

type householdPage struct {
	pageState
	details
	Me       string // the user's id
	Guardian bool
	// RoomCards are the rooms with their things.
	RoomCards []roomCard
	// Mine are the things the user owns, which a guardian may place.
	Mine []thingOption
	// Choices of the forms.
	Roles                    []policy.Role
	WhoChoices, ThingChoices []option
	Actions, Days            []option
	// Preview is the answer of the preview form, when asked.
	Preview *decisionView
}

type roomCard struct {
	roomView
	Things []thingView
}

type thingOption struct {
	ID, Name string
}

// option is a choice of a select or a checkbox: the value sent and the
// words shown.
type option struct {
	Value string
	Label ui.Message
}

var actionLabels = []option{
	{string(policy.Use), ui.Msg("use: stream, play, read")},
	{string(policy.Configure), ui.Msg("configure")},
	{string(policy.Pair), ui.Msg("pair: have it act for them")},
	{string(policy.Publish), ui.Msg("publish over MQTT")},
	{string(policy.Subscribe), ui.Msg("subscribe over MQTT")},
	{string(policy.Gateway), ui.Msg("call APIs through the gateway")},
}

var dayLabels = []option{{"mon", ui.Msg("Monday")}, {"tue", ui.Msg("Tuesday")}, {"wed", ui.Msg("Wednesday")}, {"thu", ui.Msg("Thursday")},
	{"fri", ui.Msg("Friday")}, {"sat", ui.Msg("Saturday")}, {"sun", ui.Msg("Sunday")}}

func (s *Service) householdPage(w http.ResponseWriter, r *http.Request, u *store.User, id string) (*householdPage, error) {
	ctx := r.Context()
	d, err := s.details(ctx, u, id, s.kit.Translator(r))
	if err != nil {
		return nil, err
	}
	p := &householdPage{pageState: pageState{CSRF: s.csrf.Token(w, r), UserName: u.UserName}, details: *d, Me: u.ID,
		Guardian: d.Role == string(policy.Guardian), Roles: []policy.Role{policy.Guardian, policy.Dependant, policy.Guest},
		Actions: actionLabels, Days: dayLabels}
	for _, rm := range d.Rooms {
		c := roomCard{roomView: rm}
		for _, t := range d.Things {
			if t.RoomID == rm.ID {
				c.Things = append(c.Things, t)
			}
		}
		p.RoomCards = append(p.RoomCards, c)
	}
	if !p.Guardian {
		return p, nil
	}
	if p.Mine, err = s.ownedThings(ctx, u); err != nil {
		return nil, err
	}
	p.WhoChoices, p.ThingChoices = choices(d)
	return p, nil
}

// choices are the values of the rule form's who and things: the members,
// the kinds of members; every thing, the rooms, the things, their models.
func choices(d *details) (who, things []option) {
	for _, m := range d.Members {
		who = append(who, option{"member:" + m.UserID, ui.Msg("%s (%s)", m.Name, ui.Msg(m.Role))})
	}
	who = append(who, option{"dependants", ui.Msg("all dependants")}, option{"guests", ui.Msg("all guests")},
		option{"guardians", ui.Msg("all guardians")}, option{"everyone", ui.Msg("every member")})
	things = append(things, option{"all", ui.Msg("every thing of the household")})
	for _, rm := range d.Rooms {
		things = append(things, option{"room:" + rm.ID, ui.Msg("the things in %s", rm.Name)})
	}
	var models []string
	for _, t := range d.Things {
		things = append(things, option{"thing:" + t.ID, ui.Msg("%s", t.Name)})
		if t.Model != "" && !slices.Contains(models, t.Model) {
			models = append(models, t.Model)
		}
	}
	for _, m := range models {
		things = append(things, option{"model:" + m, ui.Msg("the things of model %s", m)})
	}
	return who, things
}

// ownedThings are the things u owns.
func (s *Service) ownedThings(ctx context.Context, u *store.User) ([]thingOption, error) {
	rels, err := s.ids.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, From: &store.Ref{Kind: store.KindUser, ID: u.ID}})
	if err != nil {
		return nil, err
	}
	var out []thingOption
	for _, rel := range rels {
		if rel.To.Kind != store.KindThing {
			continue
		}
		th, err := s.ids.GetThing(ctx, rel.To.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, thingOption{ID: th.ID, Name: thingName(th)})
	}
	return out, nil
}

// showHousehold is GET /account/household/{id}, with the preview's answer
// when ?preview asks one.
func (s *Service) showHousehold(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	p, err := s.householdPage(w, r, u, id)
	var e *Error
	if errors.As(err, &e) {
		s.message(w, r, e.Status, "Household not found", e.In(s.kit.Translator(r)))
		return
	}
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p.Notice = notices[r.URL.Query().Get("done")]
	status := http.StatusOK
	if q := r.URL.Query(); q.Has("preview") {
		req := policy.Request{UserID: q.Get("user"), ThingID: q.Get("thing"), Action: policy.Action(q.Get("action")), Scope: strings.TrimSpace(q.Get("scope"))}
		d, err := s.Preview(r.Context(), u, id, req)
		var fe *policy.FieldError
		if errors.As(err, &fe) {
			_, src, args := fe.Refusal()
			err = refuse(http.StatusBadRequest, previewField(fe.Field), src, args...)
		}
		switch {
		case errors.As(err, &e):
			status = e.Status
			p.failed(e, s.kit.Translator(r), "preview", q, previewInput)
		case err != nil:
			s.pageError(w, r, err)
			return
		default:
			p.forms = map[string]*form{"preview": {values: q}}
			p.Preview = &decisionView{Allowed: d.Allowed, Rule: d.Rule, Reason: sentence(d.ReasonIn(s.kit.Translator(r))), Local: s.kit.Translator(r)(d.Local.Weekday().String()) + d.Local.Format(" 2006-01-02 15:04 MST")}
		}
	}
	s.kit.Render(w, r, status, s.pages.household, p)
}

// previewInput maps the preview's fields (as the JSON API names them) to
// the inputs of its form.
func previewInput(field string) string {
	return map[string]string{"userId": "user", "thingId": "thing", "action": "action", "scope": "scope"}[field]
}

// done answers a successful submission about household id: back to its
// page with the notice.
func done(w http.ResponseWriter, r *http.Request, id, notice string) {
	http.Redirect(w, r, householdPath(id, notice), http.StatusSeeOther)
}

// failed shows the household again after a refused submission of form
// name (fields maps the service's field names to its inputs).
func (s *Service) failed(w http.ResponseWriter, r *http.Request, u *store.User, err error, name string, fields func(string) string) {
	var e *Error
	if !errors.As(err, &e) {
		s.pageError(w, r, err)
		return
	}
	p, lerr := s.householdPage(w, r, u, r.PathValue("id"))
	var le *Error
	if errors.As(lerr, &le) {
		// Not a household of the user's (any more): say only that.
		s.message(w, r, le.Status, "Household not found", le.In(s.kit.Translator(r)))
		return
	}
	if lerr != nil {
		s.pageError(w, r, lerr)
		return
	}
	p.failed(e, s.kit.Translator(r), name, r.PostForm, fields)
	s.kit.Render(w, r, e.Status, s.pages.household, p)
}

// submitTimeZone is POST /account/household/{id}/timezone.
func (s *Service) submitTimeZone(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	if err := s.SetTimeZone(r.Context(), u, id, strings.TrimSpace(r.PostForm.Get("timeZone"))); err != nil {
		s.failed(w, r, u, err, "timezone", sameField("timeZone"))
		return
	}
	done(w, r, id, "timezone")
}

// submitInvite is POST /account/household/{id}/invitations: kind (userName
// or email), invitee, role.
func (s *Service) submitInvite(w http.ResponseWriter, r *http.Request, u *store.User) {
	id, f := r.PathValue("id"), r.PostForm
	invitee := strings.TrimSpace(f.Get("invitee"))
	var err error
	switch kind := f.Get("kind"); {
	case invitee == "":
		err = refuse(http.StatusBadRequest, "kind", "enter a user name or an e-mail address")
	case kind == "userName":
		_, err = s.Invite(r.Context(), u, id, invitee, "", policy.Role(f.Get("role")))
	case kind == "email":
		_, err = s.Invite(r.Context(), u, id, "", invitee, policy.Role(f.Get("role")))
	default:
		err = refuse(http.StatusBadRequest, "kind", "choose whether you name a user name or an e-mail address")
	}
	if err != nil {
		s.failed(w, r, u, err, "invite", func(field string) string {
			switch field {
			case "userName", "email", "kind":
				return "invitee"
			case "role":
				return "role"
			}
			return ""
		})
		return
	}
	done(w, r, id, "invited")
}

// submitWithdraw is POST /account/household/{id}/invitations/{inv}/withdraw.
func (s *Service) submitWithdraw(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	inv, err := s.st.GetInvitation(r.Context(), r.PathValue("inv"))
	if errors.Is(err, store.ErrNotFound) || (err == nil && inv.HouseholdID != id) {
		err = refuse(http.StatusNotFound, "", "no invitation %s in this household", clip(r.PathValue("inv")))
	}
	if err == nil {
		err = s.Decline(r.Context(), u, inv.ID)
	}
	if err != nil {
		s.failed(w, r, u, err, "", nil)
		return
	}
	done(w, r, id, "withdrawn")
}

// submitRole is POST /account/household/{id}/members/{userId}/role.
func (s *Service) submitRole(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	if err := s.SetRole(r.Context(), u, id, r.PathValue("userId"), policy.Role(r.PostForm.Get("role"))); err != nil {
		s.failed(w, r, u, err, "", nil)
		return
	}
	done(w, r, id, "role")
}

// submitRemove is POST /account/household/{id}/members/{userId}/remove: a
// guardian removes a member, or a member leaves.
func (s *Service) submitRemove(w http.ResponseWriter, r *http.Request, u *store.User) {
	id, member := r.PathValue("id"), r.PathValue("userId")
	if err := s.RemoveMember(r.Context(), u, id, member); err != nil {
		s.failed(w, r, u, err, "", nil)
		return
	}
	if member == u.ID {
		http.Redirect(w, r, householdPath("", "left"), http.StatusSeeOther)
		return
	}
	done(w, r, id, "removed")
}

// submitRoom is POST /account/household/{id}/rooms: name.
func (s *Service) submitRoom(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	if _, err := s.AddRoom(r.Context(), u, id, r.PostForm.Get("name")); err != nil {
		s.failed(w, r, u, err, "room", sameField("name"))
		return
	}
	done(w, r, id, "room")
}

// submitDeleteRoom is POST /account/household/{id}/rooms/{roomId}/delete.
func (s *Service) submitDeleteRoom(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	if err := s.DeleteRoom(r.Context(), u, id, r.PathValue("roomId")); err != nil {
		s.failed(w, r, u, err, "", nil)
		return
	}
	done(w, r, id, "roomdeleted")
}

// submitPlace is POST /account/household/{id}/things: thing, room.
func (s *Service) submitPlace(w http.ResponseWriter, r *http.Request, u *store.User) {
	id, f := r.PathValue("id"), r.PostForm
	var err error
	if f.Get("thing") == "" {
		err = refuse(http.StatusBadRequest, "thingId", "choose one of your things")
	} else {
		err = s.Place(r.Context(), u, id, f.Get("thing"), f.Get("room"))
	}
	if err != nil {
		s.failed(w, r, u, err, "place", func(field string) string {
			return map[string]string{"thingId": "thing", "roomId": "room"}[field]
		})
		return
	}
	done(w, r, id, "placed")
}

// submitUnplace is POST /account/household/{id}/things/{thingId}/remove.
func (s *Service) submitUnplace(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	if err := s.Unplace(r.Context(), u, id, r.PathValue("thingId")); err != nil {
		s.failed(w, r, u, err, "", nil)
		return
	}
	done(w, r, id, "unplaced")
}

// submitRule is POST /account/household/{id}/rules: the rule form.
func (s *Service) submitRule(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	rule, err := ruleFromForm(r.PostForm)
	if err == nil {
		_, err = s.AddRule(r.Context(), u, id, rule)
	}
	if err != nil {
		s.failed(w, r, u, err, "rule", ruleInput)
		return
	}
	done(w, r, id, "rule")
}

// submitDeleteRule is POST /account/household/{id}/rules/{ruleId}/delete.
func (s *Service) submitDeleteRule(w http.ResponseWriter, r *http.Request, u *store.User) {
	id := r.PathValue("id")
	if err := s.DeleteRule(r.Context(), u, id, r.PathValue("ruleId")); err != nil {
		s.failed(w, r, u, err, "", nil)
		return
	}
	done(w, r, id, "ruledeleted")
}
