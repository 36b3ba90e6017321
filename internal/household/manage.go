package household

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
)

// Error is a refusal: the HTTP status the API answers, the input at fault
// and what to do.
type Error struct {
	Status int
	Field  string
	Detail string
	// format and args make Detail; the pages translate them.
	format string
	args   []any
}

func (e *Error) Error() string { return e.Detail }

// In is Detail as a sentence in the language of tr (ui.Kit.Translator).
func (e *Error) In(tr func(string, ...any) string) string { return sentence(tr(e.format, e.args...)) }

// refuse is an Error; format is English page text too (the catalogues
// translate it), so that the pages say what the API says.
func refuse(status int, field, format string, args ...any) error {
	return &Error{Status: status, Field: field, Detail: fmt.Sprintf(format, args...), format: format, args: args}
}

// notFound hides from non-members that a household exists at all.
func notFound(id string) error {
	return refuse(http.StatusNotFound, "", "no household %s among yours", clip(id))
}

func actor(u *store.User) string { return "user:" + u.ID }

// write runs fn in one transaction after checking, inside it, that u has
// one of the roles in need (none: any member) in household id; it appends
// the audit record of action and, after commit, publishes EventChanged.
func (s *Service) write(ctx context.Context, u *store.User, id, action string, detail map[string]string, need []policy.Role,
	fn func(tx *identity.Tx) error) error {
	var before *lent
	if releasing[action] {
		var err error
		if before, err = s.lentBy(ctx, id, detail["thing"]); err != nil {
			return err
		}
	}
	err := s.ids.WithTx(ctx, actor(u), func(tx *identity.Tx) error {
		if err := requireRole(ctx, tx.Store, u, id, need); err != nil {
			return err
		}
		if err := fn(tx); err != nil {
			return err
		}
		return audit(ctx, tx.Store, u, id, action, detail)
	})
	if err != nil {
		return err
	}
	s.changed(u, id, action, detail["thing"])
	if before != nil {
		s.release(ctx, actor(u), before)
	}
	return nil
}

// changed drops what was compiled of household id and publishes
// EventChanged; thing names the thing the change placed or took out, if
// any, for doors that cache decisions per thing (Watch).
func (s *Service) changed(u *store.User, id, action, thing string) {
	s.mu.Lock()
	s.gen++
	delete(s.compiled, id)
	clear(s.placed)
	s.mu.Unlock()
	details := map[string]string{"action": action}
	if thing != "" {
		details["thing"] = thing
	}
	s.bus.Publish(events.Event{Type: EventChanged, Kind: "household", ID: id, Actor: actor(u), Details: details})
}

// requireRole checks u's role in household id, in the transaction tx.
func requireRole(ctx context.Context, tx store.Tx, u *store.User, id string, need []policy.Role) error {
	members, err := tx.ListHouseholdMembers(ctx, id)
	if err != nil {
		return err
	}
	for _, m := range members {
		if m.UserID != u.ID {
			continue
		}
		if len(need) == 0 {
			return nil
		}
		for _, r := range need {
			if policy.Role(m.Role) == r {
				return nil
			}
		}
		return refuse(http.StatusForbidden, "", "only the household's guardians may do this; you are a %s", m.Role)
	}
	return notFound(id)
}

var guardians = []policy.Role{policy.Guardian}

func audit(ctx context.Context, tx store.Tx, u *store.User, id, action string, detail map[string]string) error {
	rec := store.AuditRecord{Time: time.Now().UTC(), Actor: actor(u), Action: action, Target: store.Ref{Kind: store.KindGroup, ID: id}}
	if len(detail) > 0 {
		rec.Detail, _ = json.Marshal(detail)
	}
	return tx.AppendAudit(ctx, rec)
}

// Create makes a household named name in zone; u becomes its guardian.
func (s *Service) Create(ctx context.Context, u *store.User, name, zone string) (string, error) {
	if _, err := loadZone(zone); err != nil {
		return "", err
	}
	var id string
	err := s.ids.WithTx(ctx, actor(u), func(tx *identity.Tx) error {
		g := &store.Group{DisplayName: name, Members: []store.Ref{{Kind: store.KindUser, ID: u.ID}}}
		if err := tx.CreateGroup(ctx, g); err != nil {
			var ve *identity.ValidationError
			if errors.As(err, &ve) {
				return refuse(http.StatusBadRequest, "name", "%s", ve.Reason())
			}
			if errors.Is(err, store.ErrConflict) {
				return refuse(http.StatusConflict, "name", "a group or household is named %q already; choose another name", clip(name))
			}
			return err
		}
		id = g.ID
		if err := tx.Store.CreateHousehold(ctx, &store.Household{ID: id, TimeZone: zone}); err != nil {
			return err
		}
		if err := tx.Store.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: id, UserID: u.ID, Role: string(policy.Guardian)}); err != nil {
			return err
		}
		return audit(ctx, tx.Store, u, id, "household.create", map[string]string{"timeZone": zone})
	})
	if err != nil {
		return "", err
	}
	s.changed(u, id, "household.create", "")
	return id, nil
}

// loadZone accepts an IANA time zone name.
func loadZone(zone string) (*time.Location, error) {
	loc, err := policy.LoadZone(zone)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "timeZone", "%v", err)
	}
	return loc, nil
}

// SetTimeZone changes the household's zone (guardians).
func (s *Service) SetTimeZone(ctx context.Context, u *store.User, id, zone string) error {
	if _, err := loadZone(zone); err != nil {
		return err
	}
	return s.write(ctx, u, id, "household.timezone", map[string]string{"timeZone": zone}, guardians, func(tx *identity.Tx) error {
		_, err := tx.Store.UpdateHousehold(ctx, id, 0, func(h *store.Household) error { h.TimeZone = zone; return nil })
		return err
	})
}

// maxPending bounds the invitations waiting in one household.
const maxPending = 100

// Invite asks whoever holds a user name, or has verified an e-mail address,
// to join with role (guardians). No account is looked up: an invitation to a
// name nobody holds waits exactly like one to a name somebody holds, so
// that inviting tells the guardian nothing about which accounts exist. It
// is the invitee who finds it, under the name or address they hold when
// they look.
func (s *Service) Invite(ctx context.Context, u *store.User, id, userName, email string, role policy.Role) (*store.Invitation, error) {
	if !role.Valid() {
		return nil, refuse(http.StatusBadRequest, "role", "%q is not one of guardian, dependant, guest", clip(string(role)))
	}
	inv := &store.Invitation{HouseholdID: id, Role: string(role), InvitedBy: u.ID, ExpiresAt: time.Now().Add(s.invite)}
	field := "userName"
	switch {
	case (userName == "") == (email == ""):
		return nil, refuse(http.StatusBadRequest, "userName", "name the invitee by userName or by email, not both")
	case userName != "":
		inv.UserName = identity.NormalizeUserName(userName)
		if inv.UserName == "" || len(inv.UserName) > 256 || !utf8.ValidString(inv.UserName) || strings.ContainsFunc(inv.UserName, isControl) {
			return nil, refuse(http.StatusBadRequest, "userName", "a user name is 1 to 256 printable characters")
		}
	default:
		field = "email"
		addr, err := mail.ParseAddress(strings.TrimSpace(email))
		if err != nil || addr.Name != "" || addr.Address != strings.TrimSpace(email) || len(addr.Address) > 254 {
			return nil, refuse(http.StatusBadRequest, "email", "%q is not an e-mail address", clip(email))
		}
		inv.Email = addr.Address
	}
	detail := map[string]string{field: inv.UserName + inv.Email, "role": string(role)}
	err := s.write(ctx, u, id, "household.invite", detail, guardians, func(tx *identity.Tx) error {
		pending, err := tx.Store.ListInvitations(ctx, store.InvitationFilter{HouseholdID: id})
		if err != nil {
			return err
		}
		waiting := 0
		for _, p := range pending {
			switch {
			case time.Now().After(p.ExpiresAt):
				if err := tx.Store.DeleteInvitation(ctx, p.ID); err != nil {
					return err
				}
			case strings.EqualFold(p.UserName, inv.UserName) && strings.EqualFold(p.Email, inv.Email):
				return refuse(http.StatusConflict, field, "an invitation for %s is waiting already; withdraw it to invite again", clip(inv.UserName+inv.Email))
			default:
				waiting++
			}
		}
		if waiting >= maxPending {
			return refuse(http.StatusConflict, field, "%d invitations are waiting already; withdraw some first", waiting)
		}
		return tx.Store.CreateInvitation(ctx, inv)
	})
	return inv, err
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) }

// invitedIs reports whether inv names u: by u's user name, or by the
// address u has verified.
func invitedIs(inv *store.Invitation, u *store.User) bool {
	if inv.UserName != "" {
		return inv.UserName == strings.ToLower(u.UserName)
	}
	return inv.Email == u.VerifiedEmail()
}

// invitationFor reads invitation invID when it names u; another's and a
// missing one look alike.
func (s *Service) invitationFor(ctx context.Context, u *store.User, invID string) (*store.Invitation, error) {
	inv, err := s.st.GetInvitation(ctx, invID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !invitedIs(inv, u)) {
		return nil, refuse(http.StatusNotFound, "", "no invitation %s for you", clip(invID))
	}
	return inv, err
}

// Invitations lists the invitations naming u, expired ones included (they
// say so when accepted).
func (s *Service) Invitations(ctx context.Context, u *store.User) ([]store.Invitation, error) {
	return s.st.ListInvitations(ctx, store.InvitationFilter{UserName: u.UserName, Email: u.VerifiedEmail()})
}

// Accept makes u a member with the invitation's role; only the invitee may,
// before it expires, and not a member already (whose role is the
// guardians' to change).
func (s *Service) Accept(ctx context.Context, u *store.User, invID string) error {
	inv, err := s.invitationFor(ctx, u, invID)
	if err != nil {
		return err
	}
	if time.Now().After(inv.ExpiresAt) {
		return refuse(http.StatusGone, "", "the invitation expired on %s; ask for a new one", inv.ExpiresAt.Format(time.RFC3339))
	}
	err = s.ids.WithTx(ctx, actor(u), func(tx *identity.Tx) error {
		members, err := tx.Store.ListHouseholdMembers(ctx, inv.HouseholdID)
		if err != nil {
			return err
		}
		for _, m := range members {
			if m.UserID == u.ID {
				return refuse(http.StatusConflict, "", "you are a member of this household already; decline the invitation")
			}
		}
		// Deleting first makes a second, concurrent accept find nothing.
		if err := tx.Store.DeleteInvitation(ctx, invID); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return refuse(http.StatusNotFound, "", "no invitation %s for you", clip(invID))
			}
			return err
		}
		if err := tx.Store.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: inv.HouseholdID, UserID: u.ID, Role: inv.Role}); err != nil {
			return err
		}
		err = tx.AddRelationship(ctx, store.Relationship{Kind: store.RelMember, From: store.Ref{Kind: store.KindUser, ID: u.ID},
			To: store.Ref{Kind: store.KindGroup, ID: inv.HouseholdID}})
		if err != nil && !errors.Is(err, store.ErrConflict) {
			return err
		}
		return audit(ctx, tx.Store, u, inv.HouseholdID, "household.join", map[string]string{"role": inv.Role})
	})
	if err != nil {
		return err
	}
	s.changed(u, inv.HouseholdID, "household.join", "")
	return nil
}

// Decline deletes an invitation: its invitee declines, or a guardian of its
// household withdraws it.
func (s *Service) Decline(ctx context.Context, u *store.User, invID string) error {
	inv, err := s.st.GetInvitation(ctx, invID)
	if errors.Is(err, store.ErrNotFound) {
		return refuse(http.StatusNotFound, "", "no invitation %s", clip(invID))
	}
	if err != nil {
		return err
	}
	if invitedIs(inv, u) {
		return s.ids.WithTx(ctx, actor(u), func(tx *identity.Tx) error {
			if err := tx.Store.DeleteInvitation(ctx, invID); err != nil {
				return err
			}
			return audit(ctx, tx.Store, u, inv.HouseholdID, "household.invite.decline", nil)
		})
	}
	err = s.write(ctx, u, inv.HouseholdID, "household.invite.withdraw", map[string]string{"invitation": inv.ID}, guardians,
		func(tx *identity.Tx) error { return tx.Store.DeleteInvitation(ctx, invID) })
	var e *Error
	if errors.As(err, &e) && e.Status == http.StatusNotFound {
		return refuse(http.StatusNotFound, "", "no invitation %s", clip(invID))
	}
	return err
}

// SetRole changes a member's role (guardians); the last guardian stays one.
func (s *Service) SetRole(ctx context.Context, u *store.User, id, userID string, role policy.Role) error {
	if !role.Valid() {
		return refuse(http.StatusBadRequest, "role", "%q is not one of guardian, dependant, guest", clip(string(role)))
	}
	return s.write(ctx, u, id, "household.role", map[string]string{"member": userID, "role": string(role)}, guardians, func(tx *identity.Tx) error {
		if err := keepAGuardian(ctx, tx.Store, id, userID, role); err != nil {
			return err
		}
		return tx.Store.PutHouseholdMember(ctx, &store.HouseholdMember{HouseholdID: id, UserID: userID, Role: string(role)})
	})
}

// keepAGuardian refuses to leave the household without a guardian, and
// refuses a user who is not a member (SetRole does not add members:
// invitations do). role "" means userID leaves.
func keepAGuardian(ctx context.Context, tx store.Tx, id, userID string, role policy.Role) error {
	members, err := tx.ListHouseholdMembers(ctx, id)
	if err != nil {
		return err
	}
	found, others := false, 0
	for _, m := range members {
		if m.UserID == userID {
			found = true
		} else if m.Role == string(policy.Guardian) {
			others++
		}
	}
	if !found {
		return refuse(http.StatusNotFound, "userId", "%s is not a member of this household; invite them", clip(userID))
	}
	if role != policy.Guardian && others == 0 {
		return refuse(http.StatusConflict, "role", "a household keeps at least one guardian; make another member guardian first")
	}
	return nil
}

// RemoveMember takes userID out of the household: a guardian removes
// anybody, any member removes themself. The things they placed leave with
// them (they are no longer a member's things).
func (s *Service) RemoveMember(ctx context.Context, u *store.User, id, userID string) error {
	var need []policy.Role
	if userID != u.ID {
		need = guardians
	}
	return s.write(ctx, u, id, "household.leave", map[string]string{"member": userID}, need, func(tx *identity.Tx) error {
		if err := keepAGuardian(ctx, tx.Store, id, userID, ""); err != nil {
			return err
		}
		if err := tx.Store.RemoveHouseholdMember(ctx, id, userID); err != nil {
			return err
		}
		placements, err := tx.Store.ListPlacements(ctx, id)
		if err != nil {
			return err
		}
		for _, p := range placements {
			if p.OwnerID == userID {
				if err := tx.Store.RemovePlacement(ctx, p.ThingID); err != nil {
					return err
				}
			}
		}
		err = tx.RemoveRelationship(ctx, store.Relationship{Kind: store.RelMember, From: store.Ref{Kind: store.KindUser, ID: userID},
			To: store.Ref{Kind: store.KindGroup, ID: id}})
		if errors.Is(err, store.ErrNotFound) { // an administrator took it out of the group already
			return nil
		}
		return err
	})
}

const maxRoomName = 64

// AddRoom creates a room (guardians).
func (s *Service) AddRoom(ctx context.Context, u *store.User, id, name string) (*store.Room, error) {
	name = strings.TrimSpace(name)
	if name == "" || utf8.RuneCountInString(name) > maxRoomName || !utf8.ValidString(name) || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, refuse(http.StatusBadRequest, "name", "a room's name is 1 to %d printable characters", maxRoomName)
	}
	r := &store.Room{HouseholdID: id, Name: name}
	err := s.write(ctx, u, id, "household.room.add", map[string]string{"name": name}, guardians, func(tx *identity.Tx) error {
		err := tx.Store.CreateRoom(ctx, r)
		if errors.Is(err, store.ErrConflict) {
			return refuse(http.StatusConflict, "name", "the household has a room named %q already", name)
		}
		return err
	})
	return r, err
}

// DeleteRoom deletes a room and takes its things out (guardians).
func (s *Service) DeleteRoom(ctx context.Context, u *store.User, id, roomID string) error {
	return s.write(ctx, u, id, "household.room.delete", map[string]string{"room": roomID}, guardians, func(tx *identity.Tx) error {
		err := tx.Store.DeleteRoom(ctx, id, roomID)
		if errors.Is(err, store.ErrNotFound) {
			return refuse(http.StatusNotFound, "roomId", "no room %s in this household", clip(roomID))
		}
		return err
	})
}

// Place puts a thing u owns in a room of the household (guardians).
func (s *Service) Place(ctx context.Context, u *store.User, id, thingID, roomID string) error {
	return s.write(ctx, u, id, "household.thing.place", map[string]string{"thing": thingID, "room": roomID}, guardians, func(tx *identity.Tx) error {
		rels, err := tx.Store.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner,
			From: &store.Ref{Kind: store.KindUser, ID: u.ID}, To: &store.Ref{Kind: store.KindThing, ID: thingID}})
		if err != nil {
			return err
		}
		if len(rels) == 0 {
			return refuse(http.StatusForbidden, "thingId", "you own no thing %s; pair it first", clip(thingID))
		}
		err = tx.Store.PlaceThing(ctx, &store.Placement{ThingID: thingID, HouseholdID: id, RoomID: roomID, OwnerID: u.ID})
		if errors.Is(err, store.ErrNotFound) {
			return refuse(http.StatusNotFound, "roomId", "no room %s in this household", clip(roomID))
		}
		return err
	})
}

// Unplace takes a thing out of the household (guardians).
func (s *Service) Unplace(ctx context.Context, u *store.User, id, thingID string) error {
	return s.write(ctx, u, id, "household.thing.remove", map[string]string{"thing": thingID}, guardians, func(tx *identity.Tx) error {
		p, err := tx.Store.GetPlacement(ctx, thingID)
		if errors.Is(err, store.ErrNotFound) || (err == nil && p.HouseholdID != id) {
			return refuse(http.StatusNotFound, "thingId", "no thing %s in this household", clip(thingID))
		}
		if err != nil {
			return err
		}
		return tx.Store.RemovePlacement(ctx, thingID)
	})
}

// SetRules replaces the household's rules (guardians). Each rule is checked
// against the household as it is: a rule naming a member, room, thing or
// model that is not the household's is refused, naming it. Rules without
// an id get one.
func (s *Service) SetRules(ctx context.Context, u *store.User, id string, rules []policy.Rule) ([]policy.Rule, error) {
	if len(rules) > policy.MaxRules {
		return nil, refuse(http.StatusBadRequest, "rules", "at most %d rules", policy.MaxRules)
	}
	return s.changeRules(ctx, u, id, "household.rules", func([]policy.Rule) ([]policy.Rule, error) { return rules, nil })
}

// AddRule adds r to the household's rules (guardians), checked as SetRules
// checks them; errors name r's inputs ("when.start"). It returns r with
// its id.
func (s *Service) AddRule(ctx context.Context, u *store.User, id string, r policy.Rule) (policy.Rule, error) {
	at := -1
	rules, err := s.changeRules(ctx, u, id, "household.rule.add", func(cur []policy.Rule) ([]policy.Rule, error) {
		if len(cur) >= policy.MaxRules {
			return nil, refuse(http.StatusConflict, "", "the household has %d rules, the most it may have; delete one first", len(cur))
		}
		at = len(cur)
		return append(slices.Clone(cur), r), nil
	})
	var e *Error
	if errors.As(err, &e) && at >= 0 { // "rules[3].when.start" is r's "when.start"
		e.Field = strings.TrimPrefix(e.Field, fmt.Sprintf("rules[%d].", at))
	}
	if err != nil {
		return policy.Rule{}, err
	}
	return rules[at], nil
}

// DeleteRule deletes the rule ruleID (guardians).
func (s *Service) DeleteRule(ctx context.Context, u *store.User, id, ruleID string) error {
	_, err := s.changeRules(ctx, u, id, "household.rule.delete", func(cur []policy.Rule) ([]policy.Rule, error) {
		i := slices.IndexFunc(cur, func(r policy.Rule) bool { return r.ID == ruleID })
		if i < 0 {
			return nil, refuse(http.StatusNotFound, "ruleId", "no rule %s in this household", clip(ruleID))
		}
		return slices.Delete(slices.Clone(cur), i, i+1), nil
	})
	return err
}

// changeRules stores change(the household's rules) after checking them
// against the household as read after the role check, in one transaction;
// rules without an id get one.
func (s *Service) changeRules(ctx context.Context, u *store.User, id, action string, change func([]policy.Rule) ([]policy.Rule, error)) ([]policy.Rule, error) {
	var rules []policy.Rule
	detail := map[string]string{}
	err := s.write(ctx, u, id, action, detail, guardians, func(tx *identity.Tx) error {
		v, err := s.load(ctx, id)
		if err != nil {
			return err
		}
		if rules, err = change(v.policy.Rules); err != nil {
			return err
		}
		seen := map[string]bool{}
		for i := range rules {
			if rules[i].ID == "" {
				rules[i].ID = newRuleID()
			}
			if seen[rules[i].ID] {
				return refuse(http.StatusBadRequest, fmt.Sprintf("rules[%d].id", i), "%q is the id of an earlier rule", clip(rules[i].ID))
			}
			seen[rules[i].ID] = true
		}
		if err := v.policy.CheckRules(rules); err != nil {
			var fe *policy.FieldError
			if errors.As(err, &fe) {
				_, src, args := fe.Refusal()
				return refuse(http.StatusBadRequest, fe.Field, src, args...)
			}
			return err
		}
		body, err := json.Marshal(rules)
		if err != nil {
			return err
		}
		detail["rules"] = fmt.Sprint(len(rules))
		_, err = tx.Store.UpdateHousehold(ctx, id, 0, func(h *store.Household) error { h.Rules = body; return nil })
		return err
	})
	if err != nil {
		return nil, err
	}
	return rules, nil
}

func newRuleID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // crypto/rand never fails (Go 1.24)
	return hex.EncodeToString(b)
}

// Preview answers "would this be allowed now?" for a thing of the household
// (guardians).
func (s *Service) Preview(ctx context.Context, u *store.User, id string, req policy.Request) (policy.Decision, error) {
	v, err := s.load(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return policy.Decision{}, notFound(id)
	}
	if err != nil {
		return policy.Decision{}, err
	}
	switch v.role(u.ID) {
	case "":
		return policy.Decision{}, notFound(id)
	case policy.Guardian:
	default:
		return policy.Decision{}, refuse(http.StatusForbidden, "", "only the household's guardians may preview decisions")
	}
	p, err := s.st.GetPlacement(ctx, req.ThingID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && p.HouseholdID != id) {
		return policy.Decision{}, refuse(http.StatusNotFound, "thingId", "no thing %s in this household", clip(req.ThingID))
	}
	if err != nil {
		return policy.Decision{}, err
	}
	set, err := s.compile(ctx, id)
	if err != nil {
		return policy.Decision{}, err
	}
	return s.engine.Decide(set, req)
}

// clip bounds user input echoed in a message.
func clip(s string) string {
	if len(s) <= 64 {
		return s
	}
	cut := 64
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
