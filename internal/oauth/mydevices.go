package oauth

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// errNotLinked: the thing is not linked to the user (never was, or was
// unlinked already); unlinking twice is a 404, not a silent success.
// It is a store.ErrNotFound too, for callers outside this package.
var errNotLinked = fmt.Errorf("thing is not linked to this user: %w", store.ErrNotFound)

// deviceView is a linked thing as the JSON API and the page show it.
type deviceView struct {
	ID           string     `json:"id"`
	DisplayName  string     `json:"displayName"`
	Manufacturer string     `json:"manufacturer,omitempty"`
	Model        string     `json:"model"`
	SerialNumber string     `json:"serialNumber"`
	LinkedSince  time.Time  `json:"linkedSince"`
	LastUsed     *time.Time `json:"lastUsed,omitempty"`
}

func ownerRel(userID, thingID string) store.Relationship {
	return store.Relationship{Kind: store.RelOwner,
		From: store.Ref{Kind: store.KindUser, ID: userID}, To: store.Ref{Kind: store.KindThing, ID: thingID}}
}

// LinkedDevices lists the things userID owns, with when they were linked and
// when one of their grants last got a token.
func (s *Server) LinkedDevices(ctx context.Context, userID string) ([]deviceView, error) {
	from := store.Ref{Kind: store.KindUser, ID: userID}
	rels, err := s.st.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, From: &from})
	if err != nil {
		return nil, err
	}
	gs, err := s.st.ListGrants(ctx, store.GrantFilter{UserID: userID, IncludeRevoked: true})
	if err != nil {
		return nil, err
	}
	out := make([]deviceView, 0, len(rels))
	for _, rel := range rels {
		if rel.From != from || rel.To.Kind != store.KindThing {
			continue
		}
		t, err := s.opts.Identities.GetThing(ctx, rel.To.ID)
		if errors.Is(err, store.ErrNotFound) {
			continue // deleted meanwhile: its edges go with it
		}
		if err != nil {
			return nil, err
		}
		v := deviceView{ID: t.ID, DisplayName: t.DisplayName, Manufacturer: t.Manufacturer, Model: t.Model,
			SerialNumber: t.SerialNumber, LinkedSince: rel.Created.UTC()}
		var last time.Time
		for _, g := range gs {
			if g.ThingID == t.ID && g.UserID == userID && g.LastUsed.After(last) {
				last = g.LastUsed
			}
		}
		v.LastUsed = timePtr(last)
		out = append(out, v)
	}
	slices.SortStableFunc(out, func(a, b deviceView) int {
		return cmp.Or(b.LinkedSince.Compare(a.LinkedSince), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Unlink ends the link between a user and a thing (resale, loss): in one
// transaction it removes the owner relationship (audited and published by
// identity as relationship.remove), revokes every grant of the user for the
// thing, whether the grant names the thing or its client stands for it
// (their refresh tokens and unused codes go with them), and audits
// "thing.unlink". After commit each revoked grant is published as
// grant.revoke, so that our resource servers reject its access tokens at
// once. Afterwards the thing can be paired by a new owner.
func (s *Server) Unlink(ctx context.Context, actor, userID, thingID string) error {
	var revoked []string
	var at time.Time
	err := s.opts.Identities.WithTx(ctx, actor, func(itx *identity.Tx) error {
		revoked = nil // the store may re-run fn
		tx := itx.Store
		if userID == "" || thingID == "" {
			return errNotLinked
		}
		if err := itx.RemoveRelationship(ctx, ownerRel(userID, thingID)); errors.Is(err, store.ErrNotFound) {
			return errNotLinked
		} else if err != nil {
			return err
		}
		gs, err := tx.ListGrants(ctx, store.GrantFilter{UserID: userID})
		if err != nil {
			return err
		}
		standsFor := map[string]bool{}
		at = s.now()
		for _, g := range gs {
			if g.UserID != userID || !g.RevokedAt.IsZero() {
				continue
			}
			hit := g.ThingID == thingID
			if !hit {
				v, seen := standsFor[g.ClientID]
				if !seen {
					c, err := tx.GetClient(ctx, g.ClientID)
					if err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
					v = c != nil && c.ThingID == thingID
					standsFor[g.ClientID] = v
				}
				hit = v
			}
			if !hit {
				continue
			}
			if err := tx.RevokeGrant(ctx, g.ID, at); err != nil {
				return err
			}
			revoked = append(revoked, g.ID)
		}
		detail, _ := json.Marshal(struct {
			UserID string   `json:"userId"`
			Grants []string `json:"revokedGrants"`
		}{userID, nonNil(revoked)})
		return s.audit(ctx, tx, actor, "thing.unlink", store.Ref{Kind: store.KindThing, ID: thingID}, string(detail))
	})
	if err != nil {
		return err
	}
	for _, id := range revoked {
		s.publishRevoke(actor, id, "device unlinked", at)
	}
	return nil
}

// --- JSON API ---

func (s *Server) writeDevices(w http.ResponseWriter, r *http.Request, userID string) {
	ds, err := s.LinkedDevices(r.Context(), userID)
	if err != nil {
		s.accountProblem(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Devices []deviceView `json:"devices"`
	}{ds})
}

func (s *Server) apiListDevices(w http.ResponseWriter, r *http.Request) {
	if u, ok := s.apiUser(w, r); ok {
		s.writeDevices(w, r, u.ID)
	}
}

func (s *Server) apiUnlinkDevice(w http.ResponseWriter, r *http.Request) {
	u, ok := s.apiUser(w, r)
	if !ok {
		return
	}
	if err := s.Unlink(r.Context(), "user:"+u.ID, u.ID, r.PathValue("thingId")); err != nil {
		s.accountProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) apiAdminListDevices(w http.ResponseWriter, r *http.Request) {
	if id, ok := s.adminTarget(w, r); ok {
		s.writeDevices(w, r, id)
	}
}

func (s *Server) apiAdminUnlinkDevice(w http.ResponseWriter, r *http.Request) {
	id, ok := s.adminTarget(w, r)
	if !ok {
		return
	}
	if err := s.Unlink(r.Context(), s.opts.Actor(r), id, r.PathValue("thingId")); err != nil {
		s.accountProblem(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- page ---

type devicesPage struct {
	CSRF, UserName, Notice string
	Devices                []deviceView
}

func (s *Server) showDevices(w http.ResponseWriter, r *http.Request) {
	u, err := s.opts.Sessions.User(r)
	if err != nil {
		accountSigninRedirect(w, r, pathAccountDevices)
		return
	}
	ds, err := s.LinkedDevices(r.Context(), u.ID)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	p := devicesPage{CSRF: s.csrf.Token(w, r), UserName: u.UserName, Devices: ds}
	if r.URL.Query().Get("done") == "unlinked" {
		p.Notice = "Device unlinked. It can no longer act for you and can be paired by a new owner."
	}
	s.kit.Render(w, r, http.StatusOK, s.pages.devices, p)
}

func (s *Server) submitUnlink(w http.ResponseWriter, r *http.Request) {
	u, ok := s.accountForm(w, r, pathAccountDevices)
	if !ok {
		return
	}
	err := s.Unlink(r.Context(), "user:"+u.ID, u.ID, r.PathValue("thingId"))
	switch {
	case errors.Is(err, errNotLinked):
		s.accountMessage(w, r, http.StatusNotFound, pathAccountDevices, "Device not found", "This device was unlinked already or is not yours.")
	case err != nil:
		s.pageError(w, r, err)
	default:
		http.Redirect(w, r, pathAccountDevices+"?done=unlinked", http.StatusSeeOther)
	}
}
