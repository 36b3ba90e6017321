// Package identity is the only way users, things, groups and their relationships
// change: it validates and normalizes, writes the change and its audit record in one
// transaction, and publishes an event after commit. It never touches HTTP or SQL.
package identity

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/password"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// ValidationError names the field that is wrong and why: Error() in
// English (the APIs' answer), which a page translates (ui.Refusal).
type ValidationError struct{ refusal.FieldError }

func invalid(field, format string, args ...any) error {
	return &ValidationError{refusal.FieldError{Field: field, Src: format, Args: args}}
}

// PasswordPolicy checks a new password; userInputs are words the password must not
// be built from (user name, e-mail address). Implemented by password.Policy.
type PasswordPolicy interface {
	Check(pw string, userInputs ...string) error
}

// Service changes identities. It is safe for concurrent use.
type Service struct {
	store  store.Store
	bus    *events.Bus
	policy PasswordPolicy
}

// New returns a Service writing to st and publishing to bus (which may be nil).
func New(st store.Store, bus *events.Bus, policy PasswordPolicy) *Service {
	return &Service{store: st, bus: bus, policy: policy}
}

// HashPassword checks pw against the policy and returns its argon2id hash. To change
// a password, set the result as PasswordHash inside an UpdateUser function.
func (s *Service) HashPassword(pw string, u *store.User) (string, error) {
	inputs := []string{u.UserName}
	for _, e := range u.Emails {
		inputs = append(inputs, e.Value)
	}
	if err := s.policy.Check(pw, inputs...); err != nil {
		if pe, ok := errors.AsType[*password.PolicyError](err); ok {
			return "", invalid("password", pe.Src, pe.Args...)
		}
		return "", invalid("password", "%s", err.Error())
	}
	return password.Hash(pw)
}

// localActions concern no other process, so relays do not carry them
// (events.Event.Local): nothing there can hold a token, session or
// connection of an identity that did not exist, and a bulk import creates a
// million.
var localActions = map[string]bool{"user.create": true, "group.create": true, "thing.create": true, "user.password-reset-request": true, EventPSKIssue: true}

// change is one audited modification, published once the transaction committed.
type change struct {
	action string
	target store.Ref
	detail map[string]string
}

// write runs fn in a transaction, appends one audit record per change and
// publishes the events after commit.
func (s *Service) write(ctx context.Context, actor string, fn func(tx store.Tx) ([]change, error)) error {
	var changes []change
	err := s.store.WithTx(ctx, func(tx store.Tx) error {
		var err error
		if changes, err = fn(tx); err != nil {
			return err
		}
		if len(changes) == 0 {
			return nil
		}
		now := time.Now().UTC()
		recs := make([]store.AuditRecord, len(changes))
		for i, c := range changes {
			recs[i] = store.AuditRecord{Time: now, Actor: actor, Action: c.action, Target: c.target}
			if len(c.detail) > 0 {
				recs[i].Detail, _ = json.Marshal(c.detail)
			}
		}
		return tx.AppendAudit(ctx, recs...)
	})
	if err != nil {
		return err
	}
	for _, c := range changes {
		s.bus.Publish(events.Event{Type: c.action, Kind: string(c.target.Kind), ID: c.target.ID, Actor: actor, Details: c.detail,
			Local: localActions[c.action]})
	}
	return nil
}

// statusChange names the event for a status transition, or "" when there is none.
func statusChange(kind store.Kind, before, after store.Status) string {
	switch {
	case before == after:
		return ""
	case after == store.StatusDisabled:
		return string(kind) + ".disable"
	default:
		return string(kind) + ".enable"
	}
}

// Tx is a transaction in which a caller changes identities beside records of its
// own: the authorization server linking a device to its owner as it creates the
// grant. Identity changes made through Tx are validated, audited and published
// exactly as the Service's own methods do. Store is the same transaction, for
// the caller's other records only.
type Tx struct {
	Store   store.Tx
	changes []change
}

// AddRelationship records an edge after checking its kinds make sense.
func (t *Tx) AddRelationship(ctx context.Context, r store.Relationship) error {
	if err := validateRelationship(r); err != nil {
		return err
	}
	if err := t.Store.AddRelationship(ctx, r); err != nil {
		return err
	}
	t.changes = append(t.changes, relChange("relationship.add", r))
	return nil
}

// CreateGroup validates g and stores it with its members (a household
// creates its group in the transaction that stores the household).
func (t *Tx) CreateGroup(ctx context.Context, g *store.Group) error {
	if err := normalizeGroup(g); err != nil {
		return err
	}
	if err := t.Store.CreateGroup(ctx, g); err != nil {
		return err
	}
	t.changes = append(t.changes, change{action: "group.create", target: store.Ref{Kind: store.KindGroup, ID: g.ID}})
	return nil
}

// RemoveRelationship deletes an edge; removing an owner edge is how a thing is unlinked.
func (t *Tx) RemoveRelationship(ctx context.Context, r store.Relationship) error {
	if err := t.Store.RemoveRelationship(ctx, r); err != nil {
		return err
	}
	t.changes = append(t.changes, relChange("relationship.remove", r))
	return nil
}

// WithTx runs fn in one transaction, committed when fn returns nil; the events of
// the identity changes made through the Tx are published after the commit.
func (s *Service) WithTx(ctx context.Context, actor string, fn func(tx *Tx) error) error {
	return s.write(ctx, actor, func(st store.Tx) ([]change, error) {
		t := &Tx{Store: st}
		if err := fn(t); err != nil {
			return nil, err
		}
		return t.changes, nil
	})
}

// AddRelationship records an edge after checking its kinds make sense.
func (s *Service) AddRelationship(ctx context.Context, actor string, r store.Relationship) error {
	return s.WithTx(ctx, actor, func(tx *Tx) error { return tx.AddRelationship(ctx, r) })
}

// RemoveRelationship deletes an edge; removing an owner edge is how a thing is unlinked.
func (s *Service) RemoveRelationship(ctx context.Context, actor string, r store.Relationship) error {
	return s.WithTx(ctx, actor, func(tx *Tx) error { return tx.RemoveRelationship(ctx, r) })
}

// ListRelationships reads edges.
func (s *Service) ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error) {
	return s.store.ListRelationships(ctx, f)
}

func relChange(action string, r store.Relationship) change {
	return change{action: action, target: r.To, detail: map[string]string{
		"relation": string(r.Kind), "fromKind": string(r.From.Kind), "fromId": r.From.ID,
	}}
}

func validateRelationship(r store.Relationship) error {
	want := map[store.RelKind][2]store.Kind{
		store.RelOwner:    {store.KindUser, store.KindThing},
		store.RelGuardian: {store.KindUser, store.KindUser},
	}
	if r.From.ID == "" {
		return invalid("from", "is required")
	}
	if r.To.ID == "" {
		return invalid("to", "is required")
	}
	switch r.Kind {
	case store.RelOwner, store.RelGuardian:
		k := want[r.Kind]
		if r.From.Kind != k[0] || r.To.Kind != k[1] {
			return invalid("kind", "%s relates a %s to a %s", r.Kind, k[0], k[1])
		}
	case store.RelMember:
		if r.To.Kind != store.KindGroup {
			return invalid("to", "members belong to a group")
		}
		if !validKind(r.From.Kind) {
			return invalid("from", "unknown kind %q", r.From.Kind)
		}
	default:
		return invalid("kind", "unknown relationship %q (want owner, member or guardian)", r.Kind)
	}
	if r.From == r.To {
		return invalid("to", "an identity cannot relate to itself")
	}
	return nil
}

func validKind(k store.Kind) bool {
	return k == store.KindUser || k == store.KindThing || k == store.KindGroup
}
