package tokens

import (
	"bytes"
	"context"
	"encoding/asn1"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"
)

// jwxAccess is the reference the lean path (verifyAccess) is held to: an
// access token parsed, verified and validated by jwx, as Inspect did before.
func (v *Verifier) jwxAccess(raw, aud string) (*Claims, error) {
	tok, _, err := v.parse(raw, typeAccessToken, accessTokenClaims, jwt.WithAudience(aud))
	if err != nil {
		return nil, err
	}
	return claimsOf(tok)
}

// claimsOf reads the validated access token into Claims.
func claimsOf(tok jwt.Token) (*Claims, error) {
	c := registeredClaims(tok)
	var scope string
	for name, dst := range map[string]*string{"client_id": &c.ClientID, "gid": &c.GrantID, "scope": &scope, "thing": &c.ThingID} {
		if !tok.Has(name) {
			continue // the required ones were checked by the validation
		}
		if err := tok.Get(name, dst); err != nil || *dst == "" {
			return nil, ErrMalformed.with(name + " must be a non-empty string")
		}
	}
	c.Scope = strings.Fields(scope)
	if tok.Has("auth_time") {
		var at float64
		if err := tok.Get("auth_time", &at); err != nil {
			return nil, ErrMalformed.with("auth_time must be a number")
		}
		c.AuthTime = time.Unix(int64(at), 0)
	}
	if tok.Has("cnf") {
		var cnf map[string]any
		if err := tok.Get("cnf", &cnf); err != nil {
			return nil, ErrMalformed.with("cnf must be an object")
		}
		c.Confirmation = &Confirmation{}
		c.Confirmation.X5TS256, _ = cnf["x5t#S256"].(string)
		c.Confirmation.JKT, _ = cnf["jkt"].(string)
	}
	if tok.Has("permissions") {
		var perms []any
		if err := tok.Get("permissions", &perms); err != nil {
			return nil, ErrMalformed.with("permissions must be an array")
		}
		c.Permissions, _ = json.Marshal(perms)
	}
	return c, nil
}

// outcome is what one path made of a token: the claims, or the reason.
type outcome struct {
	claims *Claims
	err    error
}

func (o outcome) String() string {
	if o.err != nil {
		return "refused: " + o.err.Error()
	}
	return fmt.Sprintf("accepted: %+v", *o.claims)
}

// sameAs reports whether two outcomes agree: both accepted with equal
// claims, or both refused for the same reason (or both failed on the store).
func (o outcome) sameAs(p outcome) bool {
	switch {
	case o.err == nil && p.err == nil:
		a, b := *o.claims, *p.claims
		// jwx keeps auth_time in the local zone; the instant is what counts.
		if !a.AuthTime.Equal(b.AuthTime) {
			return false
		}
		a.AuthTime, b.AuthTime = time.Time{}, time.Time{}
		return reflect.DeepEqual(a, b)
	case o.err == nil || p.err == nil:
		return false
	}
	var oe, pe *Error
	if errors.As(o.err, &oe) != errors.As(p.err, &pe) {
		return false
	}
	return oe == nil || errors.Is(oe, pe)
}

// compare runs both paths on raw.
func compare(ctx context.Context, v *Verifier, raw string) (lean, ref outcome) {
	c, _, err := v.verifyAccess(ctx, []byte(raw), testAudience)
	lean = outcome{c, err}
	c, err = v.jwxAccess(raw, testAudience)
	return lean, outcome{c, err}
}

// diffCase is a token for both paths, and what is expected of them.
type diffCase struct {
	name  string
	token string
	want  agreement
}

type agreement int

const (
	// same: both accept with the same claims, or refuse for the same reason.
	same agreement = iota
	// accepts: both accept with the same claims, or both refuse, perhaps
	// for different reasons: jwx calls a malformed header, or an encoding it
	// cannot decode, "invalid signature"; the lean path says what it is.
	accepts
	// stricter: the lean path refuses by design what jwx may accept (see
	// compact.go).
	stricter
)

// platformSigned signs exactly header and payload with the node's signing
// key, as a platform that signed anything would.
func platformSigned(t testing.TB, e *env, header, payload []byte) string {
	t.Helper()
	input := b64(header) + "." + b64(payload)
	sig, err := signature(e.keys.current().signing, []byte(input))
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

func jsonOf(t testing.TB, v any) []byte {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// diffCases are valid tokens of the node's issuer and mutations of them:
// every claim set to values of every JSON type, headers, raw JSON the
// encoders would not write, and the bytes of the compact form.
func diffCases(t testing.TB, e *env, now time.Time) []diffCase {
	sk := e.keys.current().signing
	hdr := map[string]any{"alg": sk.alg.String(), "kid": sk.kid, "typ": "at+jwt"}
	good := with(wireClaims(now), "thing", "thing-1", "auth_time", now.Add(-time.Minute).Unix())
	var cases []diffCase
	add := func(name, token string, want agreement) { cases = append(cases, diffCase{name, token, want}) }

	// What the issuer signs.
	base := accessClaims(now)
	issued := map[string]func(c *Claims){
		"plain":      func(*Claims) {},
		"mTLS bound": func(c *Claims) { c.Confirmation = &Confirmation{X5TS256: "x5t"} },
		"DPoP bound": func(c *Claims) { c.Confirmation = &Confirmation{JKT: "jkt"} },
		"both bound": func(c *Claims) { c.Confirmation = &Confirmation{X5TS256: "x5t", JKT: "jkt"} },
		"RPT": func(c *Claims) {
			c.Permissions = json.RawMessage(`[{"resource_id":"r","resource_scopes":["play"],"exp":1767225600}]`)
		},
		"two audiences":  func(c *Claims) { c.Audience = []string{"https://other.example", testAudience} },
		"no scope":       func(c *Claims) { c.Scope = nil },
		"no thing":       func(c *Claims) { c.ThingID = "" },
		"no auth_time":   func(c *Claims) { c.AuthTime = time.Time{} },
		"unicode":        func(c *Claims) { c.Subject = "zoë \u2028 \"quoted\" <tag>" },
		"other audience": func(c *Claims) { c.Audience = []string{"https://other.example"} },
	}
	for name, change := range issued {
		c := base
		change(&c)
		add("issued: "+name, e.accessToken(t, c), accepts)
	}

	// Every claim with values of every type, signed by the platform's key.
	unix := now.Unix()
	values := []any{
		json.RawMessage("null"), 0, 7, -7, 1.5, json.RawMessage("1e9"), json.RawMessage("1767225600.0"), 1e20, true, false,
		"", " ", "x", "7", fmt.Sprint(unix + 300), now.Format(time.RFC3339), testIssuer, testAudience, testIssuer + "/",
		[]any{}, []any{"x"}, []any{testAudience}, []any{testAudience, 7}, []any{testAudience, nil}, []any{[]any{testAudience}},
		map[string]any{}, map[string]any{"jkt": "a"}, map[string]any{"x5t#S256": 5}, map[string]any{"jwk": map[string]any{}},
		unix, unix + 29, unix + 30, unix + 31, unix - 29, unix - 30, unix - 31, unix + 3600,
	}
	numericDates := map[string]bool{"iat": true, "exp": true, "nbf": true}
	for _, name := range []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "client_id", "gid", "scope", "thing", "auth_time", "cnf", "permissions", "ISS", "Exp", "Aud", "private"} {
		add("without "+name, platformSigned(t, e, jsonOf(t, hdr), jsonOf(t, with(good, name, nil))), same)
		for _, val := range values {
			raw := string(jsonOf(t, val))
			want := same
			if numericDates[name] {
				// jwx also takes fractions, exponents, negative numbers
				// and strings (numbers, RFC 3339) as a NumericDate.
				if _, integer := numericDate(json.RawMessage(raw)); !integer && raw != "null" && raw != "true" && raw != "false" && raw[0] != '[' && raw[0] != '{' {
					want = stricter
				}
			}
			if raw == "null" && (name == "iss" || name == "sub" || name == "jti") {
				want = stricter // jwx takes a null sub or jti as an empty one
			}
			add(fmt.Sprintf("%s %s", name, raw), platformSigned(t, e, jsonOf(t, hdr), jsonOf(t, with(good, name, val))), want)
		}
	}

	// JSON the encoders would not write.
	goodJSON := string(jsonOf(t, good))
	body := goodJSON[1 : len(goodJSON)-1]
	for name, payload := range map[string]string{
		"iss twice":             `{` + body + `,"iss":"https://evil.example.com"}`,
		"iss twice, same value": `{` + body + `,"iss":"` + testIssuer + `"}`,
		"sub twice":             `{"sub":"admin",` + body + `}`,
		"exp twice":             `{` + body + `,"exp":` + fmt.Sprint(unix+3600) + `}`,
	} {
		add("payload: "+name, platformSigned(t, e, jsonOf(t, hdr), []byte(payload)), stricter)
	}
	for name, payload := range map[string]string{
		"whitespace":         " \n{ " + body + " }\t",
		"escaped names":      `{` + strings.Replace(body, `"iss"`, `"\u0069ss"`, 1) + `}`,
		"trailing comma":     `{` + body + `,}`,
		"array":              `[` + goodJSON + `]`,
		"string":             `"x"`,
		"null":               `null`,
		"empty":              ``,
		"not JSON":           `not json`,
		"byte order mark":    "\ufeff" + goodJSON,
		"invalid UTF-8":      `{` + body + `,"note":"` + "\xff\xfe" + `"}`,
		"NUL in a claim":     `{` + body + `,"note":"a\u0000b"}`,
		"deep private claim": `{` + body + `,"deep":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`,
		"unterminated":       `{` + body,
	} {
		add("payload: "+name, platformSigned(t, e, jsonOf(t, hdr), []byte(payload)), accepts)
	}

	// Headers.
	payload := []byte(goodJSON)
	for _, kv := range [][]any{
		{"alg", "none"}, {"alg", "HS256"}, {"alg", "ES384"}, {"alg", "RS256"}, {"alg", "EdDSA"}, {"alg", "PS256"},
		{"alg", strings.ToLower(sk.alg.String())}, {"alg", ""}, {"alg", nil}, {"alg", 5}, {"alg", json.RawMessage("null")},
		{"kid", ""}, {"kid", nil}, {"kid", 5}, {"kid", json.RawMessage("null")}, {"kid", sk.kid + " "},
		{"typ", "AT+JWT"}, {"typ", "application/at+jwt"}, {"typ", "JWT"}, {"typ", ""}, {"typ", nil}, {"typ", 5},
		{"typ", "at+jwt "}, {"typ", "application/AT+JWT"}, {"typ", json.RawMessage("null")},
		{"jku", "https://evil.example/jwks"}, {"jwk", map[string]any{"kty": "oct", "k": "AA"}}, {"x5u", "https://evil.example/c"},
		{"x5c", []string{"AA"}}, {"x5t", "AA"}, {"crit", []string{"exp"}}, {"cty", "JWT"}, {"b64", false}, {"zip", "DEF"},
		{"enc", "A128GCM"}, {"Alg", "none"}, {"KID", "x"}, {"private", "x"},
	} {
		add(fmt.Sprintf("header %s %s", kv[0], jsonOf(t, kv[1])), platformSigned(t, e, jsonOf(t, with(hdr, kv...)), payload), accepts)
	}
	hdrJSON := string(jsonOf(t, hdr))
	hbody := hdrJSON[1 : len(hdrJSON)-1]
	for name, h := range map[string]string{
		"alg twice":       `{` + hbody + `,"alg":"none"}`,
		"alg twice, same": `{` + hbody + `,"alg":"` + sk.alg.String() + `"}`,
		"typ twice":       `{"typ":"JWT",` + hbody + `}`,
		"kid twice":       `{` + hbody + `,"kid":"` + sk.kid + `"}`,
	} {
		add("header: "+name, platformSigned(t, e, []byte(h), payload), stricter)
	}
	for name, h := range map[string]string{
		"trailing data":  hdrJSON + "x",
		"array":          `[` + hdrJSON + `]`,
		"empty":          ``,
		"empty object":   `{}`,
		"whitespace":     " {" + hbody + "} ",
		"leading space":  " " + hdrJSON,
		"trailing space": hdrJSON + " ",
		"inner space":    "{ " + strings.ReplaceAll(hbody, ",", " , ") + " }",
		"newlines":       "{\n" + strings.ReplaceAll(hbody, ",", ",\n") + "\n}",
	} {
		add("header: "+name, platformSigned(t, e, []byte(h), payload), accepts)
	}

	// The bytes of the compact form.
	tok := platformSigned(t, e, jsonOf(t, hdr), payload)
	parts := strings.Split(tok, ".")
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := len(parts[0]) + 1; i < len(tok); i += 5 {
		if tok[i] == '.' {
			continue
		}
		c := alphabet[(strings.IndexByte(alphabet, tok[i])+17)%64]
		add(fmt.Sprintf("byte %d changed", i), tok[:i]+string(c)+tok[i+1:], accepts)
	}
	for p := range parts {
		// A last character with bits beyond the data set: the same bytes,
		// another encoding (RFC 4648 §3.5).
		if n := len(parts[p]); n%4 == 2 || n%4 == 3 {
			q := append([]string(nil), parts...)
			last := strings.IndexByte(alphabet, q[p][n-1])
			q[p] = q[p][:n-1] + string(alphabet[last^1])
			add(fmt.Sprintf("part %d non-canonical base64url", p), strings.Join(q, "."), stricter)
		}
		q := append([]string(nil), parts...)
		q[p] += "="
		add(fmt.Sprintf("part %d padded", p), strings.Join(q, "."), accepts)
		q[p] = strings.NewReplacer("-", "+", "_", "/").Replace(parts[p])
		add(fmt.Sprintf("part %d standard base64", p), strings.Join(q, "."), accepts)
		q[p] = parts[p][:len(parts[p])-1]
		add(fmt.Sprintf("part %d cut by one", p), strings.Join(q, "."), accepts)
		q[p] = ""
		add(fmt.Sprintf("part %d empty", p), strings.Join(q, "."), accepts)
	}
	add("parts swapped", parts[1]+"."+parts[0]+"."+parts[2], accepts)
	add("four parts", tok+".", accepts)
	add("JWE-like", tok+"."+parts[2]+"."+parts[2], accepts)
	add("leading space", " "+tok, accepts)
	add("trailing newline", tok+"\n", accepts)
	add("signature of another token", parts[0]+"."+parts[1]+"."+strings.Split(e.accessToken(t, base), ".")[2], accepts)
	add("huge", parts[0]+"."+strings.Repeat("A", maxTokenSize)+"."+parts[2], accepts)
	add("huge claim", platformSigned(t, e, jsonOf(t, hdr), jsonOf(t, with(good, "pad", strings.Repeat("x", maxTokenSize)))), accepts)
	return cases
}

// The lean path accepts exactly the tokens jwx accepted, with the same
// claims, and refuses the others for the same reason; the few it refuses
// where jwx accepted are marked stricter.
func TestLeanMatchesJWX(t *testing.T) {
	for _, alg := range []string{ES256, EdDSA, RS256} {
		t.Run(alg, func(t *testing.T) {
			clk := newClock()
			e := newEnv(t, &memStore{}, masterKey(), nil, clk, alg)
			cases := diffCases(t, e, clk.Now())
			accepted, wider := 0, []string(nil)
			for _, c := range cases {
				lean, ref := compare(context.Background(), e.v, c.token)
				switch {
				case c.want == stricter && lean.err == nil:
					t.Errorf("%s: lean path %s; it must refuse", c.name, lean)
				case c.want == stricter && !errors.As(lean.err, new(*Error)):
					t.Errorf("%s: lean path %v is not a refusal", c.name, lean.err)
				case c.want == accepts && (lean.err == nil) != (ref.err == nil),
					c.want == accepts && lean.err == nil && !lean.sameAs(ref),
					c.want == same && !lean.sameAs(ref):
					t.Errorf("%s:\n lean %s\n jwx  %s", c.name, lean, ref)
				}
				if lean.err == nil {
					accepted++
				}
				if c.want == stricter && ref.err == nil {
					wider = append(wider, c.name)
				}
			}
			if accepted < 20 {
				t.Fatalf("only %d of %d cases accepted: the mutations hide the valid tokens", accepted, len(cases))
			}
			t.Logf("%d cases, %d accepted by both; jwx also accepted %q", len(cases), accepted, wider)
		})
	}
}

// asn1Reference is the DER that ecdsa.Verify builds from R and S as
// math/big integers, which asn1Signature must equal.
func asn1Reference(rs []byte) []byte {
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:32]), new(big.Int).SetBytes(rs[32:])})
	if err != nil {
		panic(err)
	}
	return der
}

// TestASN1Signature: the edges of DER's integers (zero, leading zero
// bytes, the top bit set) in R and in S.
func TestASN1Signature(t *testing.T) {
	edges := [][]byte{make([]byte, 32), bytes.Repeat([]byte{0xff}, 32), append(make([]byte, 31), 1), append(make([]byte, 31), 0x80),
		append([]byte{0x80}, make([]byte, 31)...), append([]byte{0, 0x7f}, bytes.Repeat([]byte{0xff}, 30)...), append([]byte{0, 0x80}, make([]byte, 30)...)}
	for _, r := range edges {
		for _, s := range edges {
			rs := append(slices.Clone(r), s...)
			if got, want := asn1Signature(rs), asn1Reference(rs); !bytes.Equal(got, want) {
				t.Errorf("R %x S %x:\n got %x\nwant %x", r, s, got, want)
			}
		}
	}
}

// FuzzASN1Signature holds asn1Signature to encoding/asn1 on any R and S.
func FuzzASN1Signature(f *testing.F) {
	f.Add(make([]byte, 64))
	f.Add(bytes.Repeat([]byte{0x80}, 64))
	f.Fuzz(func(t *testing.T, rs []byte) {
		if len(rs) != 64 {
			return
		}
		if got, want := asn1Signature(rs), asn1Reference(rs); !bytes.Equal(got, want) {
			t.Fatalf("%x:\n got %x\nwant %x", rs, got, want)
		}
	})
}
