package ace

import (
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

func aif(t testing.TB, v any) []byte {
	t.Helper()
	b, err := cbor.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// An AIF scope is the text scopes of the gateway's resources it names,
// and the granted text scopes answer as AIF again.
func TestAIFScopes(t *testing.T) {
	got, err := parseAIF(aif(t, []any{[]any{"/mqtt/fleet/#", 2}, []any{"/mqtt/things/t1/commands/+", 3}}))
	want := []string{"mqtt:pub:fleet/#", "mqtt:pub:things/t1/commands/+", "mqtt:sub:things/t1/commands/+"}
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("parseAIF: %v, %v; want %v", got, err, want)
	}
	back, err2 := aifOf(append(got, "device"))
	if err2 != nil {
		t.Fatal(err2)
	}
	again, err := parseAIF(back)
	if err != nil || !slices.Equal(again, want) {
		t.Fatalf("aifOf then parseAIF: %v, %v", again, err)
	}
	req, perr := parseRequest(aif(t, map[int]any{33: 2, 9: aif(t, []any{[]any{"/mqtt/fleet/a", 2}})}))
	if perr != nil || !req.aif || req.form.Get("scope") != "mqtt:pub:fleet/a" {
		t.Fatalf("a token request with an AIF scope: %+v %v", req, perr)
	}
}

// AIF scopes refused, each naming what is wrong.
func TestAttackAIFScopes(t *testing.T) {
	for _, c := range []struct {
		name, want string
		b          []byte
	}{
		{"not CBOR", "AIF array", []byte{0xff}},
		{"a map", "AIF array", aif(t, map[string]int{"/mqtt/a": 2})},
		{"empty", "1 to 16 entries", aif(t, []any{})},
		{"too many", "1 to 16 entries", aif(t, slices.Repeat([]any{[]any{"/mqtt/a", 2}}, 17))},
		{"another resource", `"/self" is not a resource of this gateway`, aif(t, []any{[]any{"/self", 1}})},
		{"no topic", `"/mqtt/" is not a resource`, aif(t, []any{[]any{"/mqtt/", 2}})},
		{"PUT", "methods 4", aif(t, []any{[]any{"/mqtt/a", 4}})},
		{"no method", "methods 0", aif(t, []any{[]any{"/mqtt/a", 0}})},
		{"a space", "holds a space", aif(t, []any{[]any{"/mqtt/a b", 2}})},
		{"three items", "AIF array", aif(t, []any{[]any{"/mqtt/a", 2, 1}})},
		{"the path a number", "AIF array", aif(t, []any{[]any{7, 2}})},
	} {
		_, err := parseAIF(c.b)
		if err == nil || err.Code != "invalid_scope" || err.Status != http.StatusBadRequest || !strings.Contains(err.Description, c.want) {
			t.Errorf("%s: %v; want invalid_scope naming %q", c.name, err, c.want)
		}
	}
}

func FuzzAIF(f *testing.F) {
	f.Add(aif(f, []any{[]any{"/mqtt/fleet/#", 3}}))
	f.Add([]byte{0x81, 0x82, 0x67, '/', 'm', 'q', 't', 't', '/', 'a', 0x02})
	f.Add([]byte{0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		scopes, err := parseAIF(b)
		if err != nil {
			if err.Code != "invalid_scope" || err.Description == "" {
				t.Fatalf("refusal %+v", err)
			}
			return
		}
		for _, s := range scopes {
			if !strings.HasPrefix(s, "mqtt:pub:") && !strings.HasPrefix(s, "mqtt:sub:") || strings.ContainsAny(s, " \"\\") {
				t.Fatalf("scope %q from %x", s, b)
			}
		}
		back, aerr := aifOf(scopes)
		again, err := parseAIF(back)
		if aerr != nil || err != nil || !slices.Equal(slices.Sorted(slices.Values(again)), slices.Compact(slices.Sorted(slices.Values(scopes)))) {
			t.Fatalf("round trip of %x: %v → %x → %v (%v, %v)", b, scopes, back, again, aerr, err)
		}
	})
}
