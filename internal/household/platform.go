package household

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
)

// EventPlatform is published after the platform's policy set changed; every
// node reloads it from the store.
const EventPlatform = "policy.platform"

// loadPlatform puts the stored platform set in force. A stored set that no
// longer validates (a schema changed by an upgrade) is logged and not used:
// administrators see why at GET /api/v1/admin/policies and store a new one.
func (s *Service) loadPlatform(ctx context.Context) error {
	p, err := s.st.GetPlatformPolicies(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	parsed, err := policy.ParsePlatform([]byte(p.Source))
	if err != nil {
		s.log.Error("household: the stored platform policy set is refused; deciding without it", "revision", p.Revision, "err", err)
		return nil
	}
	s.usePlatform(parsed, p.Revision)
	return nil
}

// usePlatform puts p, stored as revision rev, in force unless a later
// revision is already (reloads race with each other and with PUT).
func (s *Service) usePlatform(p *policy.Platform, rev int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rev < s.platformRev {
		return
	}
	s.platformRev = rev
	s.engine.UsePlatform(p)
}

// reloadPlatform follows EventPlatform e, off the bus's goroutine, and
// then tells the watchers.
func (s *Service) reloadPlatform(e events.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.loadPlatform(ctx); err != nil {
		s.log.Error("household: reloading the platform policy set", "err", err)
	}
	s.notify(e)
}

// RegisterAdmin mounts GET and PUT /api/v1/admin/policies behind admin
// (administrators only); actor names the administrator of a request.
func (s *Service) RegisterAdmin(mux routes.Mux, admin func(http.Handler) http.Handler, actor func(*http.Request) string) {
	mux.Handle("GET /api/v1/admin/policies", admin(http.HandlerFunc(s.apiGetPlatform)))
	mux.Handle("PUT /api/v1/admin/policies", admin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.apiPutPlatform(w, r, actor(r))
	})))
}

// platformView is the platform's set as the admin API shows it.
type platformView struct {
	Cedar    string     `json:"cedar"`
	Revision int64      `json:"revision"`
	Policies int        `json:"policies"` // in force
	Modified *time.Time `json:"modified,omitempty"`
	By       string     `json:"modifiedBy,omitempty"`
	// Refused says why the stored set is not in force, when it is not.
	Refused []policyErrorView `json:"refused,omitempty"`
}

func (s *Service) apiGetPlatform(w http.ResponseWriter, r *http.Request) {
	v := platformView{Policies: s.engine.Platform().Len()}
	p, err := s.st.GetPlatformPolicies(r.Context())
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		s.apiError(w, r, err)
		return
	default:
		v.Cedar, v.Revision, v.Modified, v.By = p.Source, p.Revision, &p.Modified, p.ModifiedBy
		var pe policy.PolicyErrors
		if _, err := policy.ParsePlatform([]byte(p.Source)); errors.As(err, &pe) {
			v.Refused = errorViews(pe)
		}
	}
	_ = writeJSON(w, http.StatusOK, v)
}

// refusedSet is a problem details object with the faults of a refused set.
type refusedSet struct {
	problem.Details
	Errors []policyErrorView `json:"errors"`
}

type policyErrorView struct {
	Line   int    `json:"line,omitempty"`
	Column int    `json:"column,omitempty"`
	Reason string `json:"reason"`
}

func (s *Service) apiPutPlatform(w http.ResponseWriter, r *http.Request, actor string) {
	var in struct {
		Cedar    *string `json:"cedar"`
		Revision int64   `json:"revision"` // the revision replaced; 0: whatever is stored
	}
	if err := decode(r, &in); err != nil {
		s.apiError(w, r, err)
		return
	}
	if in.Cedar == nil {
		problem.Write(w, http.StatusBadRequest, "cedar", "cedar is missing: the policy set as Cedar text (\"\" for none)")
		return
	}
	p, err := policy.ParsePlatform([]byte(*in.Cedar))
	var pe policy.PolicyErrors
	if errors.As(err, &pe) {
		out := refusedSet{Details: problem.Details{Type: "about:blank", Title: "Bad Request", Status: http.StatusBadRequest,
			Detail: pe.Error() + "; the policy set in force stays", Field: "cedar"}}
		out.Errors = errorViews(pe)
		w.Header().Set("Content-Type", "application/problem+json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(out)
		return
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	rec := &store.PlatformPolicies{Source: *in.Cedar, ModifiedBy: actor}
	err = s.st.WithTx(r.Context(), func(tx store.Tx) error {
		if err := tx.PutPlatformPolicies(r.Context(), rec, in.Revision); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]any{"revision": rec.Revision, "policies": p.Len()})
		return tx.AppendAudit(r.Context(), store.AuditRecord{Time: time.Now().UTC(), Actor: actor, Action: "policy.platform.update",
			Target: store.Ref{Kind: "policy", ID: "platform"}, Detail: detail})
	})
	if errors.Is(err, store.ErrStale) {
		problem.Write(w, http.StatusConflict, "revision", "the stored policy set is not revision "+jsonNumber(in.Revision)+" any more; read it again")
		return
	}
	if err != nil {
		s.apiError(w, r, err)
		return
	}
	s.usePlatform(p, rec.Revision)
	s.bus.Publish(events.Event{Type: EventPlatform, Kind: "policy", ID: "platform", Actor: actor})
	_ = writeJSON(w, http.StatusOK, platformView{Cedar: rec.Source, Revision: rec.Revision, Policies: p.Len(), Modified: &rec.Modified, By: actor})
}

func errorViews(pe policy.PolicyErrors) []policyErrorView {
	out := make([]policyErrorView, len(pe))
	for i, e := range pe {
		out[i] = policyErrorView(e)
	}
	return out
}

func jsonNumber(n int64) string { b, _ := json.Marshal(n); return string(b) }
