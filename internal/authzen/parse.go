package authzen

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/refusal"
)

// The types thingid decides on (AuthZEN §5: a subject and a resource are a
// type and an id scoped to it).
const (
	SubjectType  = "user"
	ResourceType = "thing"
)

// MaxEvaluations bounds a batch (AuthZEN §13: a PDP protects itself from
// large payloads).
const MaxEvaluations = 100

// Semantics of a batch (AuthZEN §7.1.2.1).
const (
	ExecuteAll          = "execute_all"
	DenyOnFirstDeny     = "deny_on_first_deny"
	PermitOnFirstPermit = "permit_on_first_permit"
)

// tuple is the 4-tuple of an evaluation as sent: nil members are absent.
// The context is read as raw JSON and never looked into: the decision's
// clock is the server's, in the household's zone, whatever a client says
// the time is.
type tuple struct {
	Subject  *entity         `json:"subject"`
	Action   *action         `json:"action"`
	Resource *entity         `json:"resource"`
	Context  json.RawMessage `json:"context"`
}

type entity struct {
	Type       *string         `json:"type"`
	ID         *string         `json:"id"`
	Properties json.RawMessage `json:"properties"`
}

type action struct {
	Name       *string         `json:"name"`
	Properties json.RawMessage `json:"properties"`
}

// batch is an Access Evaluations request: defaults, evaluations, options.
type batch struct {
	tuple
	Evaluations []json.RawMessage `json:"evaluations"`
	Options     json.RawMessage   `json:"options"`
}

// ParseEvaluation reads an Access Evaluation request (AuthZEN §6.1). A
// malformed one is a *refusal.FieldError naming the member at fault (a JSON
// path such as "evaluations[2].action.name").
func ParseEvaluation(body []byte) (policy.Request, error) {
	var t tuple
	if err := decodeObject(body, &t, ""); err != nil {
		return policy.Request{}, err
	}
	return t.request("")
}

// ParseEvaluations reads an Access Evaluations request (AuthZEN §7.1): each
// evaluation completed with the top-level defaults, and the semantic. A
// request without evaluations is one evaluation of its top-level tuple.
func ParseEvaluations(body []byte) ([]policy.Request, string, error) {
	var b batch
	if err := decodeObject(body, &b, ""); err != nil {
		return nil, "", err
	}
	semantic := ExecuteAll
	if len(b.Options) > 0 && !isNull(b.Options) {
		var opts struct {
			Semantic *string `json:"evaluations_semantic"`
		}
		if err := decodeObject(b.Options, &opts, "options."); err != nil {
			return nil, "", err
		}
		if opts.Semantic != nil {
			switch *opts.Semantic {
			case ExecuteAll, DenyOnFirstDeny, PermitOnFirstPermit:
				semantic = *opts.Semantic
			default:
				return nil, "", refusal.New("options.evaluations_semantic", "%q is not one of execute_all, deny_on_first_deny, permit_on_first_permit", clip(*opts.Semantic))
			}
		}
	}
	if b.Evaluations == nil {
		r, err := b.tuple.request("")
		if err != nil {
			return nil, "", err
		}
		return []policy.Request{r}, semantic, nil
	}
	if len(b.Evaluations) == 0 {
		return nil, "", refusal.New("evaluations", "an empty array asks nothing; send at least one evaluation or leave evaluations out")
	}
	if len(b.Evaluations) > MaxEvaluations {
		return nil, "", refusal.New("evaluations", "at most %d evaluations in one request", MaxEvaluations)
	}
	out := make([]policy.Request, len(b.Evaluations))
	for i, raw := range b.Evaluations {
		prefix := fmt.Sprintf("evaluations[%d].", i)
		var t tuple
		if err := decodeObject(raw, &t, prefix); err != nil {
			return nil, "", err
		}
		// AuthZEN §7.1.1: a member of the evaluation wins over the default.
		if t.Subject == nil {
			t.Subject = b.Subject
		}
		if t.Action == nil {
			t.Action = b.Action
		}
		if t.Resource == nil {
			t.Resource = b.Resource
		}
		r, err := t.request(prefix)
		if err != nil {
			return nil, "", err
		}
		out[i] = r
	}
	return out, semantic, nil
}

// request checks the tuple and turns it into the engine's request.
func (t *tuple) request(prefix string) (policy.Request, error) {
	if err := t.Subject.check(prefix+"subject", SubjectType); err != nil {
		return policy.Request{}, err
	}
	if err := t.Resource.check(prefix+"resource", ResourceType); err != nil {
		return policy.Request{}, err
	}
	if t.Action == nil {
		return policy.Request{}, refusal.New(prefix+"action", "missing: an object with a name")
	}
	if t.Action.Name == nil || *t.Action.Name == "" {
		return policy.Request{}, refusal.New(prefix+"action.name", "missing")
	}
	name := policy.Action(*t.Action.Name)
	if !name.Valid() {
		return policy.Request{}, refusal.New(prefix+"action.name", "%q is not one of use, configure, pair, mqtt.publish, mqtt.subscribe, gateway", clip(string(name)))
	}
	r := policy.Request{UserID: *t.Subject.ID, ThingID: *t.Resource.ID, Action: name}
	if len(t.Action.Properties) > 0 && !isNull(t.Action.Properties) {
		var props struct {
			Scope *string `json:"scope"`
		}
		if err := decodeObject(t.Action.Properties, &props, prefix+"action.properties."); err != nil {
			return policy.Request{}, err
		}
		if props.Scope != nil {
			if name != policy.Gateway {
				return policy.Request{}, refusal.New(prefix+"action.properties.scope", "only the gateway action takes a scope")
			}
			r.Scope = *props.Scope
		}
	}
	if len(t.Context) > 0 && !isNull(t.Context) && !isObject(t.Context) {
		return policy.Request{}, refusal.New(prefix+"context", "must be a JSON object")
	}
	return r, nil
}

// check requires an entity of type typ with a non-empty id; properties, when
// present, must be an object (thingid reads none of them).
func (e *entity) check(field, typ string) error {
	switch {
	case e == nil:
		return refusal.New(field, "missing: an object with type and id")
	case e.Type == nil || *e.Type == "":
		return refusal.New(field+".type", "missing")
	case *e.Type != typ:
		return refusal.New(field+".type", "thingid decides for %s type %q, not %q", strings.TrimPrefix(field[strings.LastIndex(field, ".")+1:], "."), typ, clip(*e.Type))
	case e.ID == nil || *e.ID == "":
		return refusal.New(field+".id", "missing")
	case len(e.Properties) > 0 && !isNull(e.Properties) && !isObject(e.Properties):
		return refusal.New(field+".properties", "must be a JSON object")
	}
	return nil
}

// decodeObject decodes one JSON object into v; a member of the wrong type
// is named with prefix.
func decodeObject(data []byte, v any, prefix string) error {
	field := strings.TrimSuffix(prefix, ".")
	if field == "" {
		field = "body"
	}
	if !isObject(data) {
		return refusal.New(field, "must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(v)
	var te *json.UnmarshalTypeError
	switch {
	case err == nil:
		if dec.More() {
			return refusal.New(field, "must hold exactly one JSON object")
		}
		return nil
	case errors.As(err, &te) && te.Field != "":
		return refusal.New(prefix+te.Field, "must be a JSON %s", jsonKind(te.Type.Kind().String()))
	}
	return refusal.New(field, "not valid JSON: %v", err)
}

func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

func isNull(b []byte) bool { return string(bytes.TrimSpace(b)) == "null" }

func jsonKind(goKind string) string {
	switch goKind {
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	case "ptr", "string":
		return "string"
	}
	return goKind
}

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
