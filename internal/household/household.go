// Package household owns households: a group of a new kind whose guardians
// invite members, define rooms, place their things in them and write the
// rules internal/policy compiles; its JSON API lives under
// /api/v1/households and its pages under /account/household. It also keeps
// the administrators' platform-wide Cedar policy set
// (/api/v1/admin/policies), and audits every refusal any door is given. It
// changes identities only through internal/identity, decides nothing itself
// (internal/policy does) and serves no other door.
package household

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/ui"
)

// EventChanged is published (Kind "household", ID the household) after any
// change of a household, so that every node drops what it compiled of it.
const EventChanged = "household.change"

// Identities is how households change and read identities
// (*identity.Service).
type Identities interface {
	WithTx(ctx context.Context, actor string, fn func(tx *identity.Tx) error) error
	GetUser(ctx context.Context, id string) (*store.User, error)
	GetThing(ctx context.Context, id string) (*store.Thing, error)
	ListRelationships(ctx context.Context, f store.RelFilter) ([]store.Relationship, error)
}

// Options configures New. Store, Identities and Engine are required.
type Options struct {
	// Site is the pages' brand and languages (nil: the built-in ones).
	Site       *ui.Site
	Store      store.Store
	Identities Identities
	Engine     *policy.Engine
	// Bus carries EventChanged between nodes; nil drops it (one process).
	Bus *events.Bus
	// Grants revokes the grants of a thing acting for a member once no
	// household holds it for them (release.go); nil revokes none (they are
	// refused at their next token request all the same).
	Grants Grants
	// InvitationLifetime is how long an invitation waits; default 7 days.
	InvitationLifetime time.Duration
	// DenialWindow is how long identical refusals after an audited one are
	// counted rather than written (deny.go); default one minute.
	DenialWindow time.Duration
	Logger       *slog.Logger
}

// Service manages households and answers decisions about their things.
type Service struct {
	st     store.Store
	ids    Identities
	engine *policy.Engine
	bus    *events.Bus
	grants Grants
	invite time.Duration
	log    *slog.Logger
	deny   denials

	// The pages' kit, CSRF tokens and templates (pages.go), set by Register.
	site  *ui.Site
	kit   ui.Kit
	csrf  *ui.CSRF
	pages pages

	mu       sync.Mutex
	compiled map[string]*policy.Set // household id → its compiled rules
	// placed remembers which household a thing is placed in ("" for none),
	// so that a decision reads no store; dropped with every household
	// event and every change of identities.
	placed map[string]string
	none   *policy.Set // for things in no household
	// gen counts invalidations: a set compiled from a read that began
	// before one is not cached (it may predate the change).
	gen uint64
	// platformRev is the stored revision of the platform set in force.
	platformRev int64
	watchers    map[*func(events.Event)]struct{}
}

// New returns the service, following the bus for as long as the bus lives.
func New(o Options) (*Service, error) {
	if o.Store == nil || o.Identities == nil || o.Engine == nil {
		return nil, errors.New("household: Store, Identities and Engine are required")
	}
	s := &Service{st: o.Store, ids: o.Identities, engine: o.Engine, bus: o.Bus, grants: o.Grants, invite: o.InvitationLifetime, log: o.Logger, site: o.Site,
		compiled: map[string]*policy.Set{}, placed: map[string]string{}, watchers: map[*func(events.Event)]struct{}{},
		deny: denials{window: o.DenialWindow, repeats: map[denialKey]int{}}}
	var err error
	if s.none, err = policy.Compile(&policy.Household{}); err != nil {
		return nil, err
	}
	if s.invite <= 0 {
		s.invite = 7 * 24 * time.Hour
	}
	if s.deny.window <= 0 {
		s.deny.window = time.Minute
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	if err := s.loadPlatform(context.Background()); err != nil {
		return nil, err
	}
	if o.Bus != nil {
		o.Bus.Subscribe(s.forget)
	}
	return s, nil
}

// forget drops compiled households an event may have changed: the household
// itself, or, for a change of users, things, groups or relationships (a
// member renamed or deleted, a thing unlinked from its owner), all of them.
// A new identity changes no household.
func (s *Service) forget(e events.Event) {
	s.mu.Lock()
	s.gen++
	applied := true
	switch {
	case e.Type == EventPlatform:
		go s.reloadPlatform(e)
		applied = false // reloadPlatform tells the watchers
	case e.Type == events.Resync: // anything may have changed
		clear(s.compiled)
		clear(s.placed)
		go s.reloadPlatform(e)
		applied = false
	case e.Kind == "household":
		delete(s.compiled, e.ID)
		clear(s.placed)
	case strings.HasSuffix(e.Type, ".create"):
		applied = false
	case e.Kind == string(store.KindUser), e.Kind == string(store.KindThing), e.Kind == string(store.KindGroup),
		strings.HasPrefix(e.Type, "relationship."):
		clear(s.compiled)
		clear(s.placed)
	default:
		applied = false
	}
	s.mu.Unlock()
	if applied {
		s.notify(e)
	}
}

// Watch calls fn with each event that may change decisions (EventChanged,
// EventPlatform, changes of users, things, groups and relationships) once
// the service has applied it: the households it concerns dropped, a new
// platform set in force. A door that caches decisions decides again there,
// on what is current. fn runs on the bus's goroutine (or the platform
// reload's) and must not block; stop ends the watch. Without a bus nothing
// is watched.
func (s *Service) Watch(fn func(events.Event)) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := &fn
	s.watchers[key] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers, key)
	}
}

func (s *Service) notify(e events.Event) {
	s.mu.Lock()
	fns := make([]func(events.Event), 0, len(s.watchers))
	for fn := range s.watchers {
		fns = append(fns, *fn)
	}
	s.mu.Unlock()
	for _, fn := range fns {
		fn(e)
	}
}

// Decide answers whether a user may act on a thing: within the household
// the thing is placed in, by its rules and the platform's. A thing in no
// household is decided by the platform's policies alone. Every refusal is
// audited with the rule that decided (deny.go).
func (s *Service) Decide(ctx context.Context, req policy.Request) (policy.Decision, error) {
	set, household, err := s.setOfThing(ctx, req.ThingID)
	if err != nil {
		return policy.Decision{}, err
	}
	return s.decideIn(ctx, set, household, req)
}

// setOfThing is the compiled household thingID is placed in, with its id,
// or an empty one (UTC, no members) and "" when it is in none.
func (s *Service) setOfThing(ctx context.Context, thingID string) (*policy.Set, string, error) {
	id, err := s.placement(ctx, thingID)
	if err != nil || id == "" {
		return s.none, "", err
	}
	set, err := s.compile(ctx, id)
	return set, id, err
}

// maxPlaced bounds the placements remembered; past it they are forgotten
// and read again.
const maxPlaced = 100_000

// placement is the household thingID is placed in, or "".
func (s *Service) placement(ctx context.Context, thingID string) (string, error) {
	s.mu.Lock()
	id, ok := s.placed[thingID]
	gen := s.gen
	s.mu.Unlock()
	if ok {
		return id, nil
	}
	p, err := s.st.GetPlacement(ctx, thingID)
	switch {
	case errors.Is(err, store.ErrNotFound):
		id = ""
	case err != nil:
		return "", err
	default:
		id = p.HouseholdID
	}
	s.mu.Lock()
	if s.gen == gen {
		if len(s.placed) >= maxPlaced {
			clear(s.placed)
		}
		s.placed[thingID] = id
	}
	s.mu.Unlock()
	return id, nil
}

// compile returns the household compiled, from the cache or the store.
func (s *Service) compile(ctx context.Context, id string) (*policy.Set, error) {
	s.mu.Lock()
	set, gen := s.compiled[id], s.gen
	s.mu.Unlock()
	if set != nil {
		return set, nil
	}
	v, err := s.load(ctx, id)
	if err != nil {
		return nil, err
	}
	if set, err = policy.Compile(&v.policy); err != nil {
		return nil, fmt.Errorf("household %s: compile: %w", id, err)
	}
	s.mu.Lock()
	if s.gen == gen {
		s.compiled[id] = set
	}
	s.mu.Unlock()
	return set, nil
}

// view is a household as loaded from the store: the record, and what the
// policy engine and the API show of it.
type view struct {
	rec     *store.Household
	group   *store.Group
	members []store.HouseholdMember
	rooms   []store.Room
	// policy holds the things whose placer still owns them and is still a
	// member; the others are ignored until a guardian places them again.
	policy policy.Household
}

// role of userID in v, "" for none.
func (v *view) role(userID string) policy.Role {
	for _, m := range v.members {
		if m.UserID == userID {
			return policy.Role(m.Role)
		}
	}
	return ""
}

func (s *Service) load(ctx context.Context, id string) (*view, error) {
	rec, err := s.st.GetHousehold(ctx, id)
	if err != nil {
		return nil, err
	}
	v := &view{rec: rec}
	if v.group, err = s.st.GetGroup(ctx, id); err != nil {
		return nil, err
	}
	if v.members, err = s.st.ListHouseholdMembers(ctx, id); err != nil {
		return nil, err
	}
	if v.rooms, err = s.st.ListRooms(ctx, id); err != nil {
		return nil, err
	}
	zone, err := time.LoadLocation(rec.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("household %s: stored time zone %q: %w", id, rec.TimeZone, err)
	}
	v.policy = policy.Household{ID: id, Zone: zone}
	members := map[string]bool{}
	for _, m := range v.members {
		u, err := s.ids.GetUser(ctx, m.UserID)
		if err != nil {
			return nil, err
		}
		name := displayName(u)
		members[m.UserID] = true
		v.policy.Members = append(v.policy.Members, policy.Member{UserID: m.UserID, Name: name, Role: policy.Role(m.Role)})
	}
	for _, r := range v.rooms {
		v.policy.Rooms = append(v.policy.Rooms, policy.Room{ID: r.ID, Name: r.Name})
	}
	placements, err := s.st.ListPlacements(ctx, id)
	if err != nil {
		return nil, err
	}
	for _, p := range placements {
		if !members[p.OwnerID] {
			continue
		}
		owned, err := s.owns(ctx, p.OwnerID, p.ThingID)
		if err != nil {
			return nil, err
		}
		th, err := s.ids.GetThing(ctx, p.ThingID)
		if !owned || errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		v.policy.Things = append(v.policy.Things, policy.Thing{ID: th.ID, Name: thingName(th), Model: th.Model, RoomID: p.RoomID})
	}
	if err := json.Unmarshal(rec.Rules, &v.policy.Rules); err != nil {
		return nil, fmt.Errorf("household %s: stored rules: %w", id, err)
	}
	return v, nil
}

// owns reports whether userID owns thingID (the owner relationship).
func (s *Service) owns(ctx context.Context, userID, thingID string) (bool, error) {
	rels, err := s.ids.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner,
		From: &store.Ref{Kind: store.KindUser, ID: userID}, To: &store.Ref{Kind: store.KindThing, ID: thingID}})
	return len(rels) > 0, err
}

func displayName(u *store.User) string {
	if u.DisplayName != "" {
		return u.DisplayName
	}
	return u.UserName
}

func thingName(t *store.Thing) string {
	if t.DisplayName != "" {
		return t.DisplayName
	}
	return t.ID
}
