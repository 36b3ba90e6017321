package household

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// SignedIn returns the signed-in user of a request (*authn.Sessions).
type SignedIn interface {
	User(r *http.Request) (*store.User, error)
}

// Register mounts, for signed-in users (session cookie), the JSON API, with
// cross-site requests refused as on every /api/v1 endpoint and errors as
// RFC 9457 problem details naming the field, and the pages (pages.go),
// whose CSRF tokens csrfKey keys (at least 32 bytes, the same on every
// node).
func (s *Service) Register(mux routes.Mux, sessions SignedIn, baseURL string, csrfKey []byte) {
	s.registerPages(mux, sessions, baseURL, csrfKey)
	cop := ui.CrossOrigin(baseURL, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		problem.Write(w, http.StatusForbidden, "", "cross-origin request refused: call this API from this site or without a browser")
	}))
	api := func(h func(w http.ResponseWriter, r *http.Request, u *store.User) error) http.Handler {
		return cop.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, err := sessions.User(r)
			if err != nil {
				problem.Write(w, http.StatusUnauthorized, "", "sign in first: POST /api/v1/signin, then send the session cookie")
				return
			}
			if err := h(w, r, u); err != nil {
				s.apiError(w, r, err)
			}
		}))
	}
	const base = "/api/v1/households"
	mux.Handle("GET "+base, api(s.apiList))
	mux.Handle("POST "+base, api(s.apiCreate))
	mux.Handle("GET "+base+"/invitations", api(s.apiInvitations))
	mux.Handle("POST "+base+"/invitations/{inv}/accept", api(s.apiAccept))
	mux.Handle("DELETE "+base+"/invitations/{inv}", api(s.apiDecline))
	mux.Handle("GET "+base+"/{id}", api(s.apiGet))
	mux.Handle("PATCH "+base+"/{id}", api(s.apiPatch))
	mux.Handle("POST "+base+"/{id}/invitations", api(s.apiInvite))
	mux.Handle("PUT "+base+"/{id}/members/{userId}", api(s.apiSetRole))
	mux.Handle("DELETE "+base+"/{id}/members/{userId}", api(s.apiRemoveMember))
	mux.Handle("POST "+base+"/{id}/rooms", api(s.apiAddRoom))
	mux.Handle("DELETE "+base+"/{id}/rooms/{roomId}", api(s.apiDeleteRoom))
	mux.Handle("PUT "+base+"/{id}/things/{thingId}", api(s.apiPlace))
	mux.Handle("DELETE "+base+"/{id}/things/{thingId}", api(s.apiUnplace))
	mux.Handle("PUT "+base+"/{id}/rules", api(s.apiSetRules))
	mux.Handle("POST "+base+"/{id}/rules", api(s.apiAddRule))
	mux.Handle("DELETE "+base+"/{id}/rules/{ruleId}", api(s.apiDeleteRule))
	mux.Handle("POST "+base+"/{id}/decisions", api(s.apiPreview))
}

func (s *Service) apiError(w http.ResponseWriter, r *http.Request, err error) {
	var e *Error
	switch {
	case errors.As(err, &e):
		problem.Write(w, e.Status, e.Field, e.Detail)
	case errors.Is(err, store.ErrStale):
		problem.Write(w, http.StatusConflict, "", "the household changed meanwhile; read it again and retry")
	default:
		s.log.Error("household: API", "method", r.Method, "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	return json.NewEncoder(w).Encode(v)
}

// decode reads exactly one JSON object into v, with no member v lacks; a
// wrong member is named.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		return refuse(http.StatusBadRequest, "", "the body must hold exactly one JSON object")
	}
	var te *json.UnmarshalTypeError
	var mbe *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &mbe):
		return refuse(http.StatusRequestEntityTooLarge, "", "the body must not be larger than %d bytes", mbe.Limit)
	case errors.As(err, &te):
		return refuse(http.StatusBadRequest, te.Field, "%s must be a JSON %s", te.Field, jsonKind(te.Type.Kind().String()))
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return refuse(http.StatusBadRequest, field, "no member %q here", clip(field))
	}
	return refuse(http.StatusBadRequest, "", "the body must be a JSON object: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	case "int", "int64", "float64":
		return "number"
	case "bool":
		return "boolean"
	}
	return goKind
}

// summary is one of the user's households.
type summary struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Role     string `json:"role"`
	TimeZone string `json:"timeZone"`
}

func (s *Service) apiList(w http.ResponseWriter, r *http.Request, u *store.User) error {
	out, err := s.summaries(r.Context(), u)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"households": out})
}

// summaries are u's households.
func (s *Service) summaries(ctx context.Context, u *store.User) ([]summary, error) {
	ms, err := s.st.ListMemberships(ctx, u.ID)
	if err != nil {
		return nil, err
	}
	out := []summary{}
	for _, m := range ms {
		v, err := s.load(ctx, m.HouseholdID)
		if err != nil {
			return nil, err
		}
		out = append(out, summary{ID: m.HouseholdID, Name: v.group.DisplayName, Role: m.Role, TimeZone: v.rec.TimeZone})
	}
	return out, nil
}

func (s *Service) apiCreate(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in struct {
		Name     string `json:"name"`
		TimeZone string `json:"timeZone"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	id, err := s.Create(r.Context(), u, in.Name, in.TimeZone)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/households/"+id)
	return s.writeDetails(w, r, u, id, http.StatusCreated)
}

// details is a household as its members see it.
type details struct {
	ID       string        `json:"id"`
	Name     string        `json:"name"`
	TimeZone string        `json:"timeZone"`
	Revision int64         `json:"revision"`
	Role     string        `json:"role"` // the caller's
	Members  []memberView  `json:"members"`
	Rooms    []roomView    `json:"rooms"`
	Things   []thingView   `json:"things"`
	Rules    []ruleView    `json:"rules"`
	Pending  []inviteeView `json:"invitations,omitempty"` // guardians only
}

type memberView struct {
	UserID string `json:"userId"`
	Name   string `json:"name"`
	Role   string `json:"role"`
}

type roomView struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

type thingView struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Model  string `json:"model,omitempty"`
	RoomID string `json:"roomId"`
}

type ruleView struct {
	policy.Rule
	Text string `json:"text"` // as a guardian reads it
}

// inviteeView is a waiting invitation as its household's guardians see it:
// whom they named, never whether anybody holds that name.
type inviteeView struct {
	ID        string    `json:"id"`
	UserName  string    `json:"userName,omitempty"`
	Email     string    `json:"email,omitempty"`
	Role      string    `json:"role"`
	ExpiresAt time.Time `json:"expiresAt"`
}

func inviteeOf(inv *store.Invitation) inviteeView {
	return inviteeView{ID: inv.ID, UserName: inv.UserName, Email: inv.Email, Role: inv.Role, ExpiresAt: inv.ExpiresAt}
}

func (s *Service) writeDetails(w http.ResponseWriter, r *http.Request, u *store.User, id string, status int) error {
	d, err := s.details(r.Context(), u, id, policy.English)
	if err != nil {
		return err
	}
	return writeJSON(w, status, d)
}

// details is household id as its member u sees it, the rules in the words
// of tr.
func (s *Service) details(ctx context.Context, u *store.User, id string, tr policy.Translate) (*details, error) {
	v, err := s.load(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, notFound(id)
	}
	if err != nil {
		return nil, err
	}
	role := v.role(u.ID)
	if role == "" {
		return nil, notFound(id)
	}
	d := &details{ID: id, Name: v.group.DisplayName, TimeZone: v.rec.TimeZone, Revision: v.rec.Revision, Role: string(role),
		Members: []memberView{}, Rooms: []roomView{}, Things: []thingView{}, Rules: []ruleView{}}
	for _, m := range v.policy.Members {
		d.Members = append(d.Members, memberView{UserID: m.UserID, Name: m.Name, Role: string(m.Role)})
	}
	for _, rm := range v.policy.Rooms {
		d.Rooms = append(d.Rooms, roomView(rm))
	}
	for _, t := range v.policy.Things {
		d.Things = append(d.Things, thingView(t))
	}
	for i := range v.policy.Rules {
		d.Rules = append(d.Rules, ruleView{Rule: v.policy.Rules[i], Text: v.policy.DescribeIn(&v.policy.Rules[i], tr)})
	}
	if role == policy.Guardian {
		invs, err := s.st.ListInvitations(ctx, store.InvitationFilter{HouseholdID: id})
		if err != nil {
			return nil, err
		}
		for i := range invs {
			d.Pending = append(d.Pending, inviteeOf(&invs[i]))
		}
	}
	return d, nil
}

func (s *Service) apiGet(w http.ResponseWriter, r *http.Request, u *store.User) error {
	return s.writeDetails(w, r, u, r.PathValue("id"), http.StatusOK)
}

func (s *Service) apiPatch(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in struct {
		TimeZone string `json:"timeZone"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if err := s.SetTimeZone(r.Context(), u, r.PathValue("id"), in.TimeZone); err != nil {
		return err
	}
	return s.writeDetails(w, r, u, r.PathValue("id"), http.StatusOK)
}

func (s *Service) apiInvite(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in struct {
		UserName string      `json:"userName"`
		Email    string      `json:"email"`
		Role     policy.Role `json:"role"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	inv, err := s.Invite(r.Context(), u, r.PathValue("id"), in.UserName, in.Email, in.Role)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, inviteeOf(inv))
}

// invitationView is an invitation as its invitee sees it.
type invitationView struct {
	ID          string    `json:"id"`
	HouseholdID string    `json:"householdId"`
	Household   string    `json:"household"`
	Role        string    `json:"role"`
	InvitedBy   string    `json:"invitedBy"`
	ExpiresAt   time.Time `json:"expiresAt"`
}

func (s *Service) apiInvitations(w http.ResponseWriter, r *http.Request, u *store.User) error {
	out, err := s.invitationViews(r.Context(), u)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]any{"invitations": out})
}

// invitationViews are the invitations naming u, with the names of their
// households and of who invited.
func (s *Service) invitationViews(ctx context.Context, u *store.User) ([]invitationView, error) {
	invs, err := s.Invitations(ctx, u)
	if err != nil {
		return nil, err
	}
	out := []invitationView{}
	for _, inv := range invs {
		iv := invitationView{ID: inv.ID, HouseholdID: inv.HouseholdID, Role: inv.Role, InvitedBy: inv.InvitedBy, ExpiresAt: inv.ExpiresAt}
		if g, err := s.st.GetGroup(ctx, inv.HouseholdID); err == nil {
			iv.Household = g.DisplayName
		}
		if by, err := s.ids.GetUser(ctx, inv.InvitedBy); err == nil {
			iv.InvitedBy = displayName(by)
		}
		out = append(out, iv)
	}
	return out, nil
}

func (s *Service) apiAccept(w http.ResponseWriter, r *http.Request, u *store.User) error {
	if err := s.Accept(r.Context(), u, r.PathValue("inv")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) apiDecline(w http.ResponseWriter, r *http.Request, u *store.User) error {
	if err := s.Decline(r.Context(), u, r.PathValue("inv")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) apiSetRole(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in struct {
		Role policy.Role `json:"role"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if err := s.SetRole(r.Context(), u, r.PathValue("id"), r.PathValue("userId"), in.Role); err != nil {
		return err
	}
	return s.writeDetails(w, r, u, r.PathValue("id"), http.StatusOK)
}

func (s *Service) apiRemoveMember(w http.ResponseWriter, r *http.Request, u *store.User) error {
	if err := s.RemoveMember(r.Context(), u, r.PathValue("id"), r.PathValue("userId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) apiAddRoom(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in struct {
		Name string `json:"name"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	room, err := s.AddRoom(r.Context(), u, r.PathValue("id"), in.Name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, roomView{ID: room.ID, Name: room.Name})
}

func (s *Service) apiDeleteRoom(w http.ResponseWriter, r *http.Request, u *store.User) error {
	if err := s.DeleteRoom(r.Context(), u, r.PathValue("id"), r.PathValue("roomId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) apiPlace(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in struct {
		RoomID string `json:"roomId"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if err := s.Place(r.Context(), u, r.PathValue("id"), r.PathValue("thingId"), in.RoomID); err != nil {
		return err
	}
	return s.writeDetails(w, r, u, r.PathValue("id"), http.StatusOK)
}

func (s *Service) apiUnplace(w http.ResponseWriter, r *http.Request, u *store.User) error {
	if err := s.Unplace(r.Context(), u, r.PathValue("id"), r.PathValue("thingId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Service) apiSetRules(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in struct {
		Rules []policy.Rule `json:"rules"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	if in.Rules == nil {
		return refuse(http.StatusBadRequest, "rules", "rules is missing; send [] to remove every rule")
	}
	if _, err := s.SetRules(r.Context(), u, r.PathValue("id"), in.Rules); err != nil {
		return err
	}
	return s.writeDetails(w, r, u, r.PathValue("id"), http.StatusOK)
}

func (s *Service) apiAddRule(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in policy.Rule
	if err := decode(r, &in); err != nil {
		return err
	}
	if _, err := s.AddRule(r.Context(), u, r.PathValue("id"), in); err != nil {
		return err
	}
	return s.writeDetails(w, r, u, r.PathValue("id"), http.StatusCreated)
}

func (s *Service) apiDeleteRule(w http.ResponseWriter, r *http.Request, u *store.User) error {
	if err := s.DeleteRule(r.Context(), u, r.PathValue("id"), r.PathValue("ruleId")); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// decisionView is a decision as the preview answers it.
type decisionView struct {
	Allowed bool   `json:"allowed"`
	Rule    string `json:"rule,omitempty"`
	Reason  string `json:"reason"`
	Local   string `json:"localTime"` // the household's clock, RFC 3339 with its offset
}

func (s *Service) apiPreview(w http.ResponseWriter, r *http.Request, u *store.User) error {
	var in struct {
		UserID  string        `json:"userId"`
		ThingID string        `json:"thingId"`
		Action  policy.Action `json:"action"`
		Scope   string        `json:"scope"`
	}
	if err := decode(r, &in); err != nil {
		return err
	}
	d, err := s.Preview(r.Context(), u, r.PathValue("id"), policy.Request{UserID: in.UserID, ThingID: in.ThingID, Action: in.Action, Scope: in.Scope})
	var fe *policy.FieldError
	if errors.As(err, &fe) {
		_, src, args := fe.Refusal()
		return refuse(http.StatusBadRequest, previewField(fe.Field), src, args...)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, decisionView{Allowed: d.Allowed, Rule: d.Rule, Reason: d.Reason, Local: d.Local.Format(time.RFC3339)})
}

// previewField names the preview's members for the engine's request fields.
func previewField(f string) string {
	return map[string]string{"subject.id": "userId", "resource.id": "thingId", "action.name": "action", "action.properties.scope": "scope"}[f]
}
