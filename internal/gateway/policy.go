package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/thingid/thingid/internal/policy"
)

// Decider answers whether a user may act on a thing (*household.Service):
// the households' rules and the platform's, on the server's clock. It
// audits its refusals.
type Decider interface {
	Decide(ctx context.Context, req policy.Request) (policy.Decision, error)
}

// policyFilter asks the decision engine about every request of a thing
// acting for a user: the subject is the token's user, the resource the
// calling thing, the action the one the route names for the method. It
// comes after oauth2; a token of no thing, or of a thing acting for nobody
// but itself, is refused (the route is for things used by people).
type policyFilter struct {
	g *Gateway
	// actions per method, "*" for the others.
	actions map[string]policy.Action
	scope   string
}

type policyConfig struct {
	// Actions maps a method (or "*") to an action: use, configure, pair,
	// gateway. Default: GET and HEAD use, any other configure.
	Actions map[string]policy.Action `json:"actions"`
	// Scope is the API scope asked for the gateway action.
	Scope string `json:"scope"`
}

func newPolicyFilter(g *Gateway, _ *route, raw json.RawMessage, authenticated bool) (Filter, error) {
	var c policyConfig
	if err := decodeConfig(raw, &c); err != nil {
		return nil, err
	}
	switch {
	case !authenticated:
		return nil, errors.New("the policy filter needs an oauth2 filter before it: it decides for the token's user and thing")
	case g.opts.Decider == nil:
		return nil, errors.New("this gateway has no decision engine")
	}
	f := &policyFilter{g: g, actions: map[string]policy.Action{http.MethodGet: policy.Use, http.MethodHead: policy.Use, "*": policy.Configure}, scope: c.Scope}
	if len(c.Actions) > 0 {
		f.actions = map[string]policy.Action{}
	}
	gateway := false
	for m, a := range c.Actions {
		if m != "*" && (m == "" || strings.ToUpper(m) != m || strings.ContainsAny(m, " \t")) {
			return nil, fmt.Errorf("actions: %q is not an HTTP method in upper case or *", m)
		}
		switch a {
		case policy.Use, policy.Configure, policy.Pair, policy.Gateway:
		default:
			return nil, fmt.Errorf("actions.%s: %q is not one of use, configure, pair, gateway", m, a)
		}
		gateway = gateway || a == policy.Gateway
		f.actions[m] = a
	}
	if c.Scope != "" && !validScope(c.Scope) {
		return nil, fmt.Errorf("scope: %q is not a scope token (RFC 6749 §3.3)", c.Scope)
	}
	if c.Scope != "" && !gateway {
		return nil, errors.New("scope: only the gateway action takes a scope")
	}
	return f, nil
}

func (f *policyFilter) action(method string) (policy.Action, bool) {
	if a, ok := f.actions[method]; ok {
		return a, true
	}
	a, ok := f.actions["*"]
	return a, ok
}

func (f *policyFilter) Handle(w http.ResponseWriter, r *http.Request, next http.Handler) error {
	cl := exchangeOf(r).id.claims
	if cl.ThingID == "" || cl.Subject == "" || cl.Subject == cl.ThingID {
		return &Denial{Status: http.StatusForbidden, Code: "policy_denied", Reason: "policy",
			Detail: "this route serves things acting for a user: the token names no thing, or no user"}
	}
	a, ok := f.action(r.Method)
	if !ok {
		return &Denial{Status: http.StatusForbidden, Code: "policy_denied", Reason: "policy",
			Detail: "the route's policy names no action for " + r.Method}
	}
	req := policy.Request{UserID: cl.Subject, ThingID: cl.ThingID, Action: a, Door: "gateway"}
	if a == policy.Gateway {
		req.Scope = f.scope
	}
	d, err := f.g.opts.Decider.Decide(r.Context(), req)
	if err != nil {
		return err
	}
	if !d.Allowed { // the Decider audited it
		return &Denial{Status: http.StatusForbidden, Code: "policy_denied", Reason: "policy", Detail: d.Reason}
	}
	next.ServeHTTP(w, r)
	return nil
}

var _ Filter = (*policyFilter)(nil)
