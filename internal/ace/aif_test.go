package ace

import (
	"bytes"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"
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
		// The same bytes as a CWT's scope claim (9) are read alike.
		var claim scopeClaim
		cerr := claim.UnmarshalCBOR(aif(t, b))
		if (cerr == nil) != (err == nil) || cerr == nil && (!claim.AIF || claim.Text != strings.Join(scopes, " ")) {
			t.Fatalf("scope claim of %x: %+v %v; parseAIF: %v %v", b, claim, cerr, scopes, err)
		}
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

// fleetAIF is the AIF scope of publishing and observing under fleet/.
var fleetAIF = []string{"mqtt:pub:fleet/#", "mqtt:sub:fleet/#"}

// A CWT issued for a request that asked in AIF carries its scope as AIF
// (RFC 9200 §5.8.4.2, RFC 9237): a byte string holding the array, which
// /authz-info reads as the text scopes and introspection answers in the
// token's form in CBOR, as text in JSON. Scopes with no AIF form keep the
// text claim, and no scopes no claim.
func TestAIFScopeClaim(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	holder := Identity{PublicKey: key.Public()}
	c := w.claims()
	c.Scope = fleetAIF
	tok, cl, err := w.srv.issue(c, &confirmation{Key: ck}, true)
	if err != nil {
		t.Fatal(err)
	}
	var payload map[any]any
	if err := cbor.Unmarshal(claimsPayload(t, w, c, &confirmation{Key: ck}), &payload); err != nil {
		t.Fatal(err)
	}
	if _, text := payload[uint64(paramScope)].(string); !text {
		t.Fatalf("a token not asked in AIF: scope %#v; want text", payload[uint64(paramScope)])
	}
	var m cose.Sign1Message
	if err := m.UnmarshalCBOR(tok); err != nil {
		t.Fatal(err)
	}
	payload = nil
	if err := cbor.Unmarshal(m.Payload, &payload); err != nil {
		t.Fatal(err)
	}
	want := aif(t, []any{[]any{"/mqtt/fleet/#", 3}})
	if got, _ := payload[uint64(paramScope)].([]byte); !bytes.Equal(got, want) || !cl.Scope.AIF {
		t.Fatalf("scope (9) of an AIF token: %#v; want the byte string %x", payload[uint64(paramScope)], want)
	}
	a, err := w.srv.AuthzInfo(context.Background(), tok, holder)
	if err != nil || !slices.Equal(a.Scopes, fleetAIF) {
		t.Fatalf("authz-info of an AIF token: %+v %v", a, err)
	}
	b, status := w.srv.Introspect(context.Background(), revocation(t, tok), holder)
	var out map[any]any
	if err := cbor.Unmarshal(b, &out); err != nil || status != http.StatusOK {
		t.Fatalf("introspection: %d %x %v", status, b, err)
	}
	if got, _ := out[uint64(paramScope)].([]byte); !bytes.Equal(got, want) {
		t.Errorf("introspection in CBOR: scope %#v; want AIF %x", out[uint64(paramScope)], want)
	}
	if got := cl.json().Scope; got != "mqtt:pub:fleet/# mqtt:sub:fleet/#" {
		t.Errorf("introspection in JSON: scope %q", got)
	}

	c.Scope = append(fleetAIF, "device")
	if _, cl, err := w.srv.issue(c, &confirmation{Key: ck}, true); err != nil || cl.Scope.AIF {
		t.Errorf("scopes with no AIF form: %+v %v; want text", cl.Scope, err)
	}
	c.Scope = nil
	_, cl, err = w.srv.issue(c, &confirmation{Key: ck}, true)
	if err != nil {
		t.Fatal(err)
	}
	payload = nil
	if err := cbor.Unmarshal(aif(t, cl), &payload); err != nil {
		t.Fatal(err)
	}
	if s, ok := payload[uint64(paramScope)]; ok {
		t.Errorf("no scope: the claims hold scope (9) %#v", s)
	}
}

// A CWT whose AIF scope is malformed, or grants what no token request
// could ask for, is refused even under the platform's own signature; one
// whose AIF scope was widened after signing is refused by the signature.
func TestAttackAIFScopeClaim(t *testing.T) {
	w := newWorld(t)
	key, ck := client(t)
	holder := Identity{PublicKey: key.Public()}
	c := w.claims()
	c.Scope = []string{"mqtt:pub:fleet/#"}
	tok, _, err := w.srv.issue(c, &confirmation{Key: ck}, true)
	if err != nil {
		t.Fatal(err)
	}
	withScope := func(scope any) func(*cose.Sign1Message) {
		return func(m *cose.Sign1Message) {
			var p map[any]any
			if err := cbor.Unmarshal(m.Payload, &p); err != nil {
				t.Fatal(err)
			}
			p[uint64(paramScope)] = scope
			m.Payload = aif(t, p)
		}
	}
	kid, _, platform := w.keys.Signer()
	for name, scope := range map[string]any{
		"not CBOR":           []byte{0xff},
		"PUT on a topic":     aif(t, []any{[]any{"/mqtt/fleet/#", 4}}),
		"another resource":   aif(t, []any{[]any{"/self", 1}}),
		"empty":              aif(t, []any{}),
		"a map":              aif(t, map[string]int{"/mqtt/fleet/#": 2}),
		"a number":           7,
		"an AIF array, bare": []any{[]any{"/mqtt/fleet/#", 2}},
	} {
		wantRefused(t, w, name, resign(t, tok, withScope(scope), platform, []byte(kid)), holder, http.StatusUnauthorized)
	}
	var m cose.Sign1Message
	if err := m.UnmarshalCBOR(tok); err != nil {
		t.Fatal(err)
	}
	withScope(aif(t, []any{[]any{"/mqtt/fleet/#", 3}}))(&m)
	widened, _ := m.MarshalCBOR()
	wantRefused(t, w, "widened to GET after signing", widened, holder, http.StatusUnauthorized)
	if _, err := w.srv.AuthzInfo(context.Background(), resign(t, tok, withScope(aif(t, []any{[]any{"/mqtt/fleet/#", 2}})), platform, []byte(kid)), holder); err != nil {
		t.Errorf("the same AIF scope signed again: %v", err)
	}
}
