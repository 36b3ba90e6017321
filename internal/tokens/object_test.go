package tokens

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

// decoderMembers is the reference parseObject is held to: encoding/json's
// Decoder reading the object token by token, as the lean path did before.
func decoderMembers(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errNotObject
	}
	m := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errNotObject
		}
		name := t.(string)
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("member %q twice", name)
		}
		var val json.RawMessage
		if err := dec.Decode(&val); err != nil {
			return nil, errNotObject
		}
		m[name] = val
	}
	if t, err := dec.Token(); err != nil || t != json.Delim('}') {
		return nil, errNotObject
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("data after the JSON object")
	}
	return m, nil
}

// sameMembers runs both readers on data and says how they differ, "" when
// they do not: both refuse, or both read the same members.
func sameMembers(data []byte) string {
	o, err := parseObject(data)
	ref, refErr := decoderMembers(data)
	switch {
	case err != nil && refErr != nil:
		return ""
	case err != nil || refErr != nil:
		return fmt.Sprintf("parseObject: %v, Decoder: %v", err, refErr)
	case len(o) != len(ref):
		return fmt.Sprintf("%d members, Decoder %d", len(o), len(ref))
	}
	for _, m := range o {
		if want, ok := ref[m.name]; !ok || !bytes.Equal(m.value, want) {
			return fmt.Sprintf("member %q = %q, Decoder %q", m.name, m.value, want)
		}
		if got, ok := o.get(m.name); !ok || !bytes.Equal(got, m.value) {
			return fmt.Sprintf("get(%q) does not find it", m.name)
		}
	}
	return ""
}

var objectSeeds = []string{
	`{}`, ` { } `, `{"a":1}`, `{"a":1,"b":"x","c":[1,{"d":"}"}],"e":{"f":null}}`,
	`{"iss":"https://id.example.com","aud":["a","b"],"exp":1796590704,"sub":"user-1"}`,
	`{"a":1,"a":2}`, `{"sub":"admin","x":0,"sub":"user"}`, `{"\u0073ub":"a","sub":"b"}`,
	`{"a":"\"}\\"}`, `{"a":"é","b":"\u00e9","c":"` + "\xff" + `"}`, `{"` + "\xff" + `":1,"` + "\xfe" + `":2}`,
	`{"a":1}{"b":2}`, `{"a":1} x`, `{"a":1}}`, `{"a":1`, `{"a"}`, `{"a":}`, `{"a":1,}`, `{,}`,
	`{"a":01}`, `{"a":-0.5e+3}`, `{"a":tru}`, `{"a":true,"b":false,"c":null}`, `[1]`, `"x"`, ` `, ``,
	"{\"a\":\"\x01\"}", `{"a":[[[[]]]],"b":[]}`, `{"a" : 1 , "b" : [ "x" , "y" ] }`, "{\"a\":1}\n",
}

func TestParseObjectMatchesDecoder(t *testing.T) {
	for _, s := range objectSeeds {
		if d := sameMembers([]byte(s)); d != "" {
			t.Errorf("%q: %s", s, d)
		}
	}
	for s, want := range map[string]string{
		`{"a":1,"b":2,"a":3}`: `member "a" twice`,
		`{"a":1} {}`:          "data after the JSON object",
		`{"a":1`:              "not a JSON object",
	} {
		if _, err := parseObject([]byte(s)); err == nil || err.Error() != want {
			t.Errorf("%q: %v, want %q", s, err, want)
		}
	}
	// A header of many members costs a sort, not a comparison of each pair.
	var b strings.Builder
	b.WriteString("{")
	for i := range 1500 {
		fmt.Fprintf(&b, `"m%d":0,`, i)
	}
	b.WriteString(`"m0":1}`)
	if _, err := parseObject([]byte(b.String())); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("1,501 members with one name twice: %v", err)
	}
}

func TestStringsOf(t *testing.T) {
	for s, want := range map[string][]string{
		`[]`: {}, `[ ]`: {}, `["a"]`: {"a"}, `[ "a" , "b\u0063" ]`: {"a", "bc"},
	} {
		got, ok := stringsOf([]byte(s))
		if !ok || fmt.Sprint(got) != fmt.Sprint(want) || got == nil {
			t.Errorf("%s: %q %v, want %q", s, got, ok, want)
		}
	}
	for _, s := range []string{`[1]`, `["a",null]`, `[["a"]]`, `null`, `"a"`, `[`} {
		if got, ok := stringsOf([]byte(s)); ok {
			t.Errorf("%s: %q, want a refusal", s, got)
		}
	}
}

// FuzzParseObject holds parseObject to encoding/json's Decoder on any input.
//
//	go test -run '^$' -fuzz FuzzParseObject -fuzztime 20s ./internal/tokens/
func FuzzParseObject(f *testing.F) {
	for _, s := range objectSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if d := sameMembers(data); d != "" {
			t.Fatalf("%q: %s", data, d)
		}
		if o, err := parseObject(data); err == nil {
			for _, m := range o {
				if _, ok := stringOf(m.value); ok != (m.value[0] == '"') {
					t.Fatalf("%q: stringOf(%q) = %v", data, m.value, ok)
				}
				want, err := audienceReference(m.value)
				got, ok := audienceValue(m.value)
				if ok != (err == nil) || fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want) {
					t.Fatalf("%q: audienceValue(%q) = %q %v, encoding/json %q %v", data, m.value, got, ok, want, err)
				}
			}
		}
	})
}

// audienceReference reads aud with encoding/json: a string, or an array of
// strings (never null).
func audienceReference(val []byte) ([]string, error) {
	var one string
	if val[0] == '"' {
		err := json.Unmarshal(val, &one)
		return []string{one}, err
	}
	var raws []json.RawMessage
	if val[0] != '[' {
		return nil, errors.New("neither")
	}
	if err := json.Unmarshal(val, &raws); err != nil {
		return nil, err
	}
	many := make([]string, len(raws))
	for i, r := range raws {
		if r[0] != '"' {
			return nil, errors.New("not a string")
		}
		if err := json.Unmarshal(r, &many[i]); err != nil {
			return nil, err
		}
	}
	return many, nil
}
