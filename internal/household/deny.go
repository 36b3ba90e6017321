package household

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/store"
)

// Every refusal of Decide is audited here, for every door at once: one
// record "policy.deny" whose actor is the user refused and whose target is
// the thing (or the UMA resource of a share whose conditions refused:
// DecideShare), with the rule that decided and its reason as a guardian
// (or the share's owner) reads it. A thing retrying a refused request every second would otherwise
// write as fast as it retries: identical refusals (same door, user, thing,
// action, scope, rule) within DenialWindow after a record are counted, and
// the count is written as one more record ("repeats") when the window ends.

// maxOpenDenials bounds the refusals counted at once; past it, each
// refusal is written on its own.
const maxOpenDenials = 10000

type denialKey struct {
	door, user, household string
	target                store.Ref
	action                policy.Action
	scope, rule, reason   string
}

// denials counts, per refusal written in the current window, the
// identical ones that followed it.
type denials struct {
	mu      sync.Mutex
	window  time.Duration
	repeats map[denialKey]int
}

// denied audits d, a refusal of req about target in household ("" for
// none).
func (s *Service) denied(ctx context.Context, target store.Ref, req policy.Request, d policy.Decision, household string) {
	k := denialKey{door: req.Door, user: req.UserID, target: target, household: household, action: req.Action,
		scope: req.Scope, rule: d.Rule, reason: d.Reason}
	s.deny.mu.Lock()
	if _, open := s.deny.repeats[k]; open {
		s.deny.repeats[k]++
		s.deny.mu.Unlock()
		return
	}
	counted := len(s.deny.repeats) < maxOpenDenials
	if counted {
		s.deny.repeats[k] = 0
	}
	s.deny.mu.Unlock()
	// The refusal is the caller's answer already; the record must not
	// depend on the caller waiting for it.
	s.writeDenial(context.WithoutCancel(ctx), k, d.Local, 0)
	if counted {
		time.AfterFunc(s.deny.window, func() {
			s.deny.mu.Lock()
			n := s.deny.repeats[k]
			delete(s.deny.repeats, k)
			s.deny.mu.Unlock()
			if n > 0 {
				s.writeDenial(context.Background(), k, time.Time{}, n)
			}
		})
	}
}

// writeDenial appends the record of refusal k, decided at local (the
// household's clock; zero for a count), or of repeats more of it.
func (s *Service) writeDenial(ctx context.Context, k denialKey, local time.Time, repeats int) {
	detail := map[string]any{"action": k.action, "rule": k.rule, "reason": k.reason}
	for name, v := range map[string]string{"door": k.door, "scope": k.scope, "household": k.household} {
		if v != "" {
			detail[name] = v
		}
	}
	if k.rule == "" {
		detail["rule"] = "default" // no rule allowed it
	}
	if !local.IsZero() {
		detail["localTime"] = local.Format(time.RFC3339)
	}
	if repeats > 0 {
		detail["repeats"] = repeats
		detail["window"] = s.deny.window.String()
	}
	raw, _ := json.Marshal(detail) // strings and numbers only
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	err := s.st.AppendAudit(ctx, store.AuditRecord{Time: time.Now().UTC(), Actor: "user:" + k.user, Action: "policy.deny",
		Target: k.target, Detail: raw})
	if err != nil {
		s.log.Error("household: auditing a refusal", "user", k.user, "target", k.target.Kind, "id", k.target.ID, "rule", k.rule, "err", err)
		return
	}
	if repeats == 0 {
		s.log.Info("household: refused by policy", "door", k.door, "user", k.user, "target", k.target.Kind, "id", k.target.ID, "action", k.action, "rule", k.rule, "reason", k.reason)
	}
}
