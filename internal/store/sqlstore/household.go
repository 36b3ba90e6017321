package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/thingid/thingid/internal/store"
)

// Household tables (migration 0012_household).

const householdColumns = "id, time_zone, rules, revision, created, modified"

// rulesArg is a household's rules for their NOT NULL column: "[]" when
// empty, refused when not JSON.
func rulesArg(r json.RawMessage) (any, error) {
	if len(r) == 0 {
		return "[]", nil
	}
	return rawArg("household rules", r)
}

func scanHousehold(s scanner) (*store.Household, error) {
	var h store.Household
	err := s.Scan(&h.ID, &h.TimeZone, rawCol{&h.Rules}, &h.Revision, timeCol{&h.Created}, timeCol{&h.Modified})
	return &h, err
}

func (t *txn) CreateHousehold(ctx context.Context, h *store.Household) error {
	if ok, err := t.exists(ctx, "groups", h.ID); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("household: group %s: %w", h.ID, store.ErrNotFound)
	}
	rules, err := rulesArg(h.Rules)
	if err != nil {
		return err
	}
	x := *h
	x.Revision = 1
	x.Created = now()
	x.Modified = x.Created
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO households ("+householdColumns+") VALUES "+t.placeholders(1, 6, 1)+
		" ON CONFLICT DO NOTHING", x.ID, x.TimeZone, rules, x.Revision, f.timeArg(x.Created), f.timeArg(x.Modified)))
	if err != nil {
		return fmt.Errorf("create household: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("household %s: %w", x.ID, store.ErrConflict)
	}
	*h = x
	return nil
}

func (t *txn) GetHousehold(ctx context.Context, id string) (*store.Household, error) {
	h, err := scanHousehold(t.q.QueryRowContext(ctx, "SELECT "+householdColumns+" FROM households WHERE id = "+t.ph(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("household %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get household %s: %w", id, err)
	}
	return h, nil
}

func (t *txn) UpdateHousehold(ctx context.Context, id string, ifRevision int64, fn func(*store.Household) error) (*store.Household, error) {
	for attempt := 1; ; attempt++ {
		h, err := t.GetHousehold(ctx, id)
		if err != nil {
			return nil, err
		}
		prev := *h
		if ifRevision != 0 && prev.Revision != ifRevision {
			return nil, fmt.Errorf("household %s: stored revision %d, expected %d: %w", id, prev.Revision, ifRevision, store.ErrStale)
		}
		if err := fn(h); err != nil {
			return nil, err
		}
		h.ID, h.Created, h.Revision, h.Modified = prev.ID, prev.Created, prev.Revision+1, now()
		rules, err := rulesArg(h.Rules)
		if err != nil {
			return nil, err
		}
		n, err := rowsAffected(t.q.ExecContext(ctx, "UPDATE households SET time_zone = "+t.ph(1)+", rules = "+t.ph(2)+
			", revision = "+t.ph(3)+", modified = "+t.ph(4)+" WHERE id = "+t.ph(5)+" AND revision = "+t.ph(6),
			h.TimeZone, rules, h.Revision, t.flavor().timeArg(h.Modified), id, prev.Revision))
		if err != nil {
			return nil, fmt.Errorf("update household %s: %w", id, err)
		}
		if n == 1 {
			return h, nil
		}
		if ifRevision != 0 || attempt == maxUpdateAttempts {
			return nil, fmt.Errorf("household %s: changed concurrently: %w", id, store.ErrStale)
		}
	}
}

func (t *txn) PutHouseholdMember(ctx context.Context, m *store.HouseholdMember) error {
	for table, id := range map[string]string{"households": m.HouseholdID, "users": m.UserID} {
		if ok, err := t.exists(ctx, table, id); err != nil {
			return err
		} else if !ok {
			return fmt.Errorf("household member: %s %s: %w", strings.TrimSuffix(table, "s"), id, store.ErrNotFound)
		}
	}
	x := *m
	x.Created = orNow(m.Created)
	_, err := t.q.ExecContext(ctx, "INSERT INTO household_members (household_id, user_id, role, created) VALUES "+t.placeholders(1, 4, 1)+
		" ON CONFLICT (household_id, user_id) DO UPDATE SET role = excluded.role",
		x.HouseholdID, x.UserID, x.Role, t.flavor().timeArg(x.Created))
	if err != nil {
		return fmt.Errorf("put household member: %w", err)
	}
	*m = x
	return nil
}

func (t *txn) RemoveHouseholdMember(ctx context.Context, householdID, userID string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM household_members WHERE household_id = "+t.ph(1)+" AND user_id = "+t.ph(2), householdID, userID))
	if err != nil {
		return fmt.Errorf("remove household member: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("household %s member %s: %w", householdID, userID, store.ErrNotFound)
	}
	return nil
}

func (t *txn) listMembers(ctx context.Context, column, id string) ([]store.HouseholdMember, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT household_id, user_id, role, created FROM household_members WHERE "+column+" = "+t.ph(1)+
		" ORDER BY created, user_id", id)
	if err != nil {
		return nil, fmt.Errorf("list household members: %w", err)
	}
	defer rows.Close()
	var out []store.HouseholdMember
	for rows.Next() {
		var m store.HouseholdMember
		if err := rows.Scan(&m.HouseholdID, &m.UserID, &m.Role, timeCol{&m.Created}); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, rows.Err()
}

func (t *txn) ListHouseholdMembers(ctx context.Context, householdID string) ([]store.HouseholdMember, error) {
	return t.listMembers(ctx, "household_id", householdID)
}

func (t *txn) ListMemberships(ctx context.Context, userID string) ([]store.HouseholdMember, error) {
	return t.listMembers(ctx, "user_id", userID)
}

func (t *txn) CreateRoom(ctx context.Context, r *store.Room) error {
	if ok, err := t.exists(ctx, "households", r.HouseholdID); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("room: household %s: %w", r.HouseholdID, store.ErrNotFound)
	}
	x := *r
	if x.ID == "" {
		x.ID = newID()
	}
	x.Created = orNow(r.Created)
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO household_rooms (id, household_id, name, name_lower, created) VALUES "+
		t.placeholders(1, 5, 1)+" ON CONFLICT DO NOTHING", x.ID, x.HouseholdID, x.Name, strings.ToLower(x.Name), t.flavor().timeArg(x.Created)))
	if err != nil {
		return fmt.Errorf("create room: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("room %q: %w", x.Name, store.ErrConflict)
	}
	*r = x
	return nil
}

func (t *txn) DeleteRoom(ctx context.Context, householdID, roomID string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM household_rooms WHERE household_id = "+t.ph(1)+" AND id = "+t.ph(2), householdID, roomID))
	if err != nil {
		return fmt.Errorf("delete room: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("household %s room %s: %w", householdID, roomID, store.ErrNotFound)
	}
	return nil
}

func (t *txn) ListRooms(ctx context.Context, householdID string) ([]store.Room, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT id, household_id, name, created FROM household_rooms WHERE household_id = "+t.ph(1)+
		" ORDER BY name_lower", householdID)
	if err != nil {
		return nil, fmt.Errorf("list rooms: %w", err)
	}
	defer rows.Close()
	var out []store.Room
	for rows.Next() {
		var r store.Room
		if err := rows.Scan(&r.ID, &r.HouseholdID, &r.Name, timeCol{&r.Created}); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

const placementColumns = "thing_id, household_id, room_id, owner_id, created"

func scanPlacement(s scanner) (store.Placement, error) {
	var p store.Placement
	err := s.Scan(&p.ThingID, &p.HouseholdID, &p.RoomID, &p.OwnerID, timeCol{&p.Created})
	return p, err
}

func (t *txn) PlaceThing(ctx context.Context, p *store.Placement) error {
	if ok, err := t.exists(ctx, "things", p.ThingID); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("placement: thing %s: %w", p.ThingID, store.ErrNotFound)
	}
	var one int
	err := t.q.QueryRowContext(ctx, "SELECT 1 FROM household_rooms WHERE id = "+t.ph(1)+" AND household_id = "+t.ph(2), p.RoomID, p.HouseholdID).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("placement: household %s room %s: %w", p.HouseholdID, p.RoomID, store.ErrNotFound)
	}
	if err != nil {
		return err
	}
	x := *p
	x.Created = orNow(p.Created)
	_, err = t.q.ExecContext(ctx, "INSERT INTO household_things ("+placementColumns+") VALUES "+t.placeholders(1, 5, 1)+
		" ON CONFLICT (thing_id) DO UPDATE SET household_id = excluded.household_id, room_id = excluded.room_id, owner_id = excluded.owner_id, created = excluded.created",
		x.ThingID, x.HouseholdID, x.RoomID, x.OwnerID, t.flavor().timeArg(x.Created))
	if err != nil {
		return fmt.Errorf("place thing: %w", err)
	}
	*p = x
	return nil
}

func (t *txn) RemovePlacement(ctx context.Context, thingID string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM household_things WHERE thing_id = "+t.ph(1), thingID))
	if err != nil {
		return fmt.Errorf("remove placement: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("placement of thing %s: %w", thingID, store.ErrNotFound)
	}
	return nil
}

func (t *txn) GetPlacement(ctx context.Context, thingID string) (*store.Placement, error) {
	p, err := scanPlacement(t.q.QueryRowContext(ctx, "SELECT "+placementColumns+" FROM household_things WHERE thing_id = "+t.ph(1), thingID))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("placement of thing %s: %w", thingID, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get placement: %w", err)
	}
	return &p, nil
}

func (t *txn) ListPlacements(ctx context.Context, householdID string) ([]store.Placement, error) {
	rows, err := t.q.QueryContext(ctx, "SELECT "+placementColumns+" FROM household_things WHERE household_id = "+t.ph(1)+" ORDER BY created, thing_id", householdID)
	if err != nil {
		return nil, fmt.Errorf("list placements: %w", err)
	}
	defer rows.Close()
	var out []store.Placement
	for rows.Next() {
		p, err := scanPlacement(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

const invitationColumns = "id, household_id, invitee_name, invitee_email, role, invited_by, created, expires_at"

func scanInvitation(s scanner) (store.Invitation, error) {
	var i store.Invitation
	err := s.Scan(&i.ID, &i.HouseholdID, &i.UserName, &i.Email, &i.Role, &i.InvitedBy, timeCol{&i.Created}, timeCol{&i.ExpiresAt})
	return i, err
}

func (t *txn) CreateInvitation(ctx context.Context, inv *store.Invitation) error {
	if (inv.UserName == "") == (inv.Email == "") {
		return errors.New("create invitation: name the invitee by user name or by e-mail address, one of them")
	}
	if ok, err := t.exists(ctx, "households", inv.HouseholdID); err != nil {
		return err
	} else if !ok {
		return fmt.Errorf("invitation: household %s: %w", inv.HouseholdID, store.ErrNotFound)
	}
	x := *inv
	if x.ID == "" {
		x.ID = newID()
	}
	// Lower-cased in Go, as users.user_name_lower and users.verified_email are.
	x.UserName, x.Email = strings.ToLower(x.UserName), strings.ToLower(x.Email)
	x.Created = orNow(inv.Created)
	f := t.flavor()
	n, err := rowsAffected(t.q.ExecContext(ctx, "INSERT INTO household_invitations ("+invitationColumns+") VALUES "+t.placeholders(1, 8, 1)+
		" ON CONFLICT DO NOTHING", x.ID, x.HouseholdID, x.UserName, x.Email, x.Role, x.InvitedBy, f.timeArg(x.Created), f.timeArg(normTime(x.ExpiresAt))))
	if err != nil {
		return fmt.Errorf("create invitation: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("invitation %s: %w", x.ID, store.ErrConflict)
	}
	x.ExpiresAt = normTime(x.ExpiresAt)
	*inv = x
	return nil
}

func (t *txn) GetInvitation(ctx context.Context, id string) (*store.Invitation, error) {
	i, err := scanInvitation(t.q.QueryRowContext(ctx, "SELECT "+invitationColumns+" FROM household_invitations WHERE id = "+t.ph(1), id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("invitation %s: %w", id, store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get invitation: %w", err)
	}
	return &i, nil
}

func (t *txn) DeleteInvitation(ctx context.Context, id string) error {
	n, err := rowsAffected(t.q.ExecContext(ctx, "DELETE FROM household_invitations WHERE id = "+t.ph(1), id))
	if err != nil {
		return fmt.Errorf("delete invitation: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("invitation %s: %w", id, store.ErrNotFound)
	}
	return nil
}

func (t *txn) ListInvitations(ctx context.Context, f store.InvitationFilter) ([]store.Invitation, error) {
	q, args := "SELECT "+invitationColumns+" FROM household_invitations WHERE 1 = 1", []any{}
	if f.HouseholdID != "" {
		args = append(args, f.HouseholdID)
		q += " AND household_id = " + t.ph(len(args))
	}
	if f.UserName != "" || f.Email != "" {
		// "" never matches: the column holds "" for the other kind.
		args = append(args, strings.ToLower(f.UserName), strings.ToLower(f.Email))
		q += " AND ((invitee_name <> '' AND invitee_name = " + t.ph(len(args)-1) + ") OR (invitee_email <> '' AND invitee_email = " + t.ph(len(args)) + "))"
	}
	rows, err := t.q.QueryContext(ctx, q+" ORDER BY created, id", args...)
	if err != nil {
		return nil, fmt.Errorf("list invitations: %w", err)
	}
	defer rows.Close()
	var out []store.Invitation
	for rows.Next() {
		i, err := scanInvitation(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, i)
	}
	return out, rows.Err()
}

func (t *txn) GetPlatformPolicies(ctx context.Context) (*store.PlatformPolicies, error) {
	var p store.PlatformPolicies
	err := t.q.QueryRowContext(ctx, "SELECT source, revision, modified, modified_by FROM platform_policies WHERE id = 1").
		Scan(&p.Source, &p.Revision, timeCol{&p.Modified}, &p.ModifiedBy)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("platform policies: %w", store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get platform policies: %w", err)
	}
	return &p, nil
}

func (t *txn) PutPlatformPolicies(ctx context.Context, p *store.PlatformPolicies, ifRevision int64) error {
	var prev int64
	switch cur, err := t.GetPlatformPolicies(ctx); {
	case err == nil:
		prev = cur.Revision
	case !errors.Is(err, store.ErrNotFound):
		return err
	}
	if ifRevision != 0 && ifRevision != prev {
		return fmt.Errorf("platform policies: stored revision %d, expected %d: %w", prev, ifRevision, store.ErrStale)
	}
	x := *p
	x.Revision, x.Modified = prev+1, now()
	mod := t.flavor().timeArg(x.Modified)
	var n int64
	var err error
	if prev == 0 {
		n, err = rowsAffected(t.q.ExecContext(ctx, "INSERT INTO platform_policies (id, source, revision, modified, modified_by) VALUES (1, "+
			t.ph(1)+", "+t.ph(2)+", "+t.ph(3)+", "+t.ph(4)+") ON CONFLICT DO NOTHING", x.Source, x.Revision, mod, x.ModifiedBy))
	} else {
		n, err = rowsAffected(t.q.ExecContext(ctx, "UPDATE platform_policies SET source = "+t.ph(1)+", revision = "+t.ph(2)+", modified = "+t.ph(3)+
			", modified_by = "+t.ph(4)+" WHERE id = 1 AND revision = "+t.ph(5), x.Source, x.Revision, mod, x.ModifiedBy, prev))
	}
	if err != nil {
		return fmt.Errorf("put platform policies: %w", err)
	}
	if n == 0 {
		return fmt.Errorf("platform policies: changed concurrently: %w", store.ErrStale)
	}
	*p = x
	return nil
}

// The Store's own calls, each in its transaction.

func (s *Store) GetPlatformPolicies(ctx context.Context) (*store.PlatformPolicies, error) {
	return s.single().GetPlatformPolicies(ctx)
}

func (s *Store) PutPlatformPolicies(ctx context.Context, p *store.PlatformPolicies, ifRevision int64) error {
	return s.withTx(ctx, func(t *txn) error { return t.PutPlatformPolicies(ctx, p, ifRevision) })
}

func (s *Store) CreateHousehold(ctx context.Context, h *store.Household) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateHousehold(ctx, h) })
}

func (s *Store) GetHousehold(ctx context.Context, id string) (*store.Household, error) {
	return s.single().GetHousehold(ctx, id)
}

func (s *Store) UpdateHousehold(ctx context.Context, id string, ifRevision int64, fn func(*store.Household) error) (h *store.Household, err error) {
	err = s.withTx(ctx, func(t *txn) error { h, err = t.UpdateHousehold(ctx, id, ifRevision, fn); return err })
	return h, err
}

func (s *Store) PutHouseholdMember(ctx context.Context, m *store.HouseholdMember) error {
	return s.withTx(ctx, func(t *txn) error { return t.PutHouseholdMember(ctx, m) })
}

func (s *Store) RemoveHouseholdMember(ctx context.Context, householdID, userID string) error {
	return s.withTx(ctx, func(t *txn) error { return t.RemoveHouseholdMember(ctx, householdID, userID) })
}

func (s *Store) ListHouseholdMembers(ctx context.Context, householdID string) ([]store.HouseholdMember, error) {
	return s.single().ListHouseholdMembers(ctx, householdID)
}

func (s *Store) ListMemberships(ctx context.Context, userID string) ([]store.HouseholdMember, error) {
	return s.single().ListMemberships(ctx, userID)
}

func (s *Store) CreateRoom(ctx context.Context, r *store.Room) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateRoom(ctx, r) })
}

func (s *Store) DeleteRoom(ctx context.Context, householdID, roomID string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteRoom(ctx, householdID, roomID) })
}

func (s *Store) ListRooms(ctx context.Context, householdID string) ([]store.Room, error) {
	return s.single().ListRooms(ctx, householdID)
}

func (s *Store) PlaceThing(ctx context.Context, p *store.Placement) error {
	return s.withTx(ctx, func(t *txn) error { return t.PlaceThing(ctx, p) })
}

func (s *Store) RemovePlacement(ctx context.Context, thingID string) error {
	return s.withTx(ctx, func(t *txn) error { return t.RemovePlacement(ctx, thingID) })
}

func (s *Store) GetPlacement(ctx context.Context, thingID string) (*store.Placement, error) {
	return s.single().GetPlacement(ctx, thingID)
}

func (s *Store) ListPlacements(ctx context.Context, householdID string) ([]store.Placement, error) {
	return s.single().ListPlacements(ctx, householdID)
}

func (s *Store) CreateInvitation(ctx context.Context, inv *store.Invitation) error {
	return s.withTx(ctx, func(t *txn) error { return t.CreateInvitation(ctx, inv) })
}

func (s *Store) GetInvitation(ctx context.Context, id string) (*store.Invitation, error) {
	return s.single().GetInvitation(ctx, id)
}

func (s *Store) DeleteInvitation(ctx context.Context, id string) error {
	return s.withTx(ctx, func(t *txn) error { return t.DeleteInvitation(ctx, id) })
}

func (s *Store) ListInvitations(ctx context.Context, f store.InvitationFilter) ([]store.Invitation, error) {
	return s.single().ListInvitations(ctx, f)
}
