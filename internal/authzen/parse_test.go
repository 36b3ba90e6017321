package authzen

import (
	"errors"
	"testing"

	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/refusal"
)

func TestParseEvaluationsDefaults(t *testing.T) {
	reqs, semantic, err := ParseEvaluations([]byte(`{
		"subject": {"type": "user", "id": "emma"},
		"action": {"name": "use"},
		"context": {"time": "1985-10-26T01:22-07:00"},
		"evaluations": [
			{"resource": {"type": "thing", "id": "a"}},
			{"resource": {"type": "thing", "id": "b"}, "subject": {"type": "user", "id": "mum"}},
			{"resource": {"type": "thing", "id": "c"}, "action": {"name": "gateway", "properties": {"scope": "playlists:read"}}}
		]}`))
	if err != nil || semantic != ExecuteAll {
		t.Fatal(semantic, err)
	}
	want := []policy.Request{
		{UserID: "emma", ThingID: "a", Action: policy.Use},
		{UserID: "mum", ThingID: "b", Action: policy.Use},
		{UserID: "emma", ThingID: "c", Action: policy.Gateway, Scope: "playlists:read"},
	}
	for i := range want {
		if reqs[i] != want[i] {
			t.Errorf("evaluations[%d]: %+v, want %+v", i, reqs[i], want[i])
		}
	}
}

// FuzzParse: any body is a list of requests or a refusal.FieldError, never a panic,
// and what parses names a user, a thing and an action of the schema.
func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"subject":{"type":"user","id":"u"},"resource":{"type":"thing","id":"t"},"action":{"name":"use"},"context":{"time":"x"}}`))
	f.Add([]byte(`{"subject":{"type":"user","id":"u"},"action":{"name":"gateway","properties":{"scope":"s"}},"options":{"evaluations_semantic":"deny_on_first_deny"},"evaluations":[{"resource":{"type":"thing","id":"t"}}]}`))
	f.Add([]byte(`{"evaluations":[{"subject":null,"resource":{"type":"thing","id":"t"}}],"options":null}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(reqs []policy.Request, err error) {
			var fe *refusal.FieldError
			if err != nil {
				if !errors.As(err, &fe) || fe.Field == "" {
					t.Fatalf("not a field error: %v", err)
				}
				return
			}
			for _, r := range reqs {
				if r.UserID == "" || r.ThingID == "" || !r.Action.Valid() || (r.Scope != "" && r.Action != policy.Gateway) {
					t.Fatalf("parsed into %+v", r)
				}
			}
		}
		r, err := ParseEvaluation(body)
		check([]policy.Request{r}, err)
		reqs, _, err := ParseEvaluations(body)
		check(reqs, err)
	})
}
