package scim

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// baseUser is the representation PATCH cases start from.
const baseUser = `{
	"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
	"id": "u1",
	"userName": "bjensen",
	"name": {"givenName": "Barbara", "familyName": "Jensen"},
	"emails": [
		{"value": "bjensen@example.com", "type": "work", "primary": true},
		{"value": "babs@home.example", "type": "home"}
	],
	"active": true
}`

func decodeMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := decodeJSON([]byte(s), &m, false); err != nil {
		t.Fatalf("decode %s: %v", s, err)
	}
	return m
}

func ops(t *testing.T, s string) []patchOp {
	t.Helper()
	o, err := decodePatch(decodeMap(t, `{"schemas":["`+patchURN+`"],"Operations":`+s+`}`))
	if err != nil {
		t.Fatalf("decodePatch %s: %v", s, err)
	}
	return o
}

func TestApplyPatch(t *testing.T) {
	tests := []struct {
		name, ops string
		check     string // JSON the listed top-level attributes must equal
	}{
		{"replace simple", `[{"op":"replace","path":"userName","value":"babs"}]`, `{"userName":"babs"}`},
		{"op is case-insensitive", `[{"op":"Replace","path":"USERNAME","value":"babs"}]`, `{"userName":"babs"}`},
		{"replace sub", `[{"op":"replace","path":"name.givenName","value":"Babs"}]`,
			`{"name":{"givenName":"Babs","familyName":"Jensen"}}`},
		{"replace complex merges", `[{"op":"replace","path":"name","value":{"middleName":"J"}}]`,
			`{"name":{"givenName":"Barbara","familyName":"Jensen","middleName":"J"}}`},
		{"remove sub", `[{"op":"remove","path":"name.familyName"}]`, `{"name":{"givenName":"Barbara"}}`},
		{"add no path", `[{"op":"add","value":{"displayName":"Babs","nAME.honorificPrefix":"Ms."}}]`,
			`{"displayName":"Babs","name":{"givenName":"Barbara","familyName":"Jensen","honorificPrefix":"Ms."}}`},
		{"replace no path", `[{"op":"replace","value":{"active":false}}]`, `{"active":false}`},
		{"add to multi", `[{"op":"add","path":"emails","value":[{"value":"b@other.example","type":"other"}]}]`,
			`{"emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"babs@home.example","type":"home"},{"value":"b@other.example","type":"other"}]}`},
		{"add present value merges", `[{"op":"add","path":"emails","value":[{"value":"BABS@home.example","display":"home"}]}]`,
			`{"emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"BABS@home.example","type":"home","display":"home"}]}`},
		{"new primary takes over", `[{"op":"add","path":"emails","value":{"value":"n@x.example","primary":true}}]`,
			`{"emails":[{"value":"bjensen@example.com","type":"work"},{"value":"babs@home.example","type":"home"},{"value":"n@x.example","primary":true}]}`},
		{"replace filtered sub", `[{"op":"replace","path":"emails[type eq \"work\"].value","value":"bj@example.com"}]`,
			`{"emails":[{"value":"bj@example.com","type":"work","primary":true},{"value":"babs@home.example","type":"home"}]}`},
		{"replace filtered element", `[{"op":"replace","path":"emails[type eq \"home\"]","value":{"value":"h@x.example","type":"home"}}]`,
			`{"emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"h@x.example","type":"home"}]}`},
		{"remove filtered", `[{"op":"remove","path":"emails[value ew \"example.com\"]"}]`,
			`{"emails":[{"value":"babs@home.example","type":"home"}]}`},
		{"remove filtered sub", `[{"op":"remove","path":"emails[type eq \"work\"].primary"}]`,
			`{"emails":[{"value":"bjensen@example.com","type":"work"},{"value":"babs@home.example","type":"home"}]}`},
		{"add creates element from filter", `[{"op":"add","path":"emails[type eq \"other\"].value","value":"o@x.example"}]`,
			`{"emails":[{"value":"bjensen@example.com","type":"work","primary":true},{"value":"babs@home.example","type":"home"},{"type":"other","value":"o@x.example"}]}`},
		{"filtered primary moves", `[{"op":"replace","path":"emails[type eq \"home\"].primary","value":true}]`,
			`{"emails":[{"value":"bjensen@example.com","type":"work"},{"value":"babs@home.example","type":"home","primary":true}]}`},
		{"remove with value list", `[{"op":"remove","path":"emails","value":[{"value":"babs@home.example"}]}]`,
			`{"emails":[{"value":"bjensen@example.com","type":"work","primary":true}]}`},
		{"remove whole", `[{"op":"remove","path":"emails"}]`, `{"emails":null}`},
		{"replace with null", `[{"op":"replace","path":"displayName","value":null}]`, `{"displayName":null}`},
		{"several ops in order", `[{"op":"add","path":"locale","value":"en-US"},{"op":"replace","path":"locale","value":"de-DE"}]`,
			`{"locale":"de-DE"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decodeMap(t, baseUser)
			if err := applyPatch(userType, obj, ops(t, tt.ops)); err != nil {
				t.Fatal(err)
			}
			for k, want := range decodeMap(t, tt.check) {
				got, _ := json.Marshal(obj[k])
				w, _ := json.Marshal(want)
				var g, wv any
				_ = json.Unmarshal(got, &g)
				_ = json.Unmarshal(w, &wv)
				if !reflect.DeepEqual(g, wv) {
					t.Errorf("%s = %s, want %s", k, got, w)
				}
			}
		})
	}
}

func TestApplyPatchErrors(t *testing.T) {
	tests := []struct {
		name, ops, scimType, detail string
	}{
		{"unknown attribute", `[{"op":"replace","path":"title","value":"x"}]`, typeInvalidPath, "title"},
		{"unknown sub", `[{"op":"replace","path":"name.nickName","value":"x"}]`, typeInvalidPath, "name.nickName"},
		{"id is read-only", `[{"op":"replace","path":"id","value":"x"}]`, typeMutability, "id"},
		{"meta is read-only", `[{"op":"replace","path":"meta.created","value":"2020-01-01T00:00:00Z"}]`, typeMutability, "meta"},
		{"groups are read-only", `[{"op":"add","path":"groups","value":[{"value":"g"}]}]`, typeMutability, "groups"},
		{"read-only in no-path value", `[{"op":"replace","value":{"id":"x"}}]`, typeMutability, "id"},
		{"wrong type", `[{"op":"replace","path":"active","value":"yes"}]`, typeInvalidValue, "active"},
		{"wrong sub type", `[{"op":"replace","path":"emails[type eq \"work\"].primary","value":"x"}]`, typeInvalidValue, "primary"},
		{"unknown sub in value", `[{"op":"add","path":"emails","value":[{"value":"a@b.c","kind":"x"}]}]`, typeInvalidSyntax, "emails.kind"},
		{"no match", `[{"op":"replace","path":"emails[type eq \"fax\"].value","value":"x"}]`, typeNoTarget, "emails"},
		{"remove no match", `[{"op":"remove","path":"emails[type eq \"fax\"]"}]`, typeNoTarget, "emails"},
		{"filter on singular", `[{"op":"remove","path":"userName[value eq \"x\"]"}]`, typeInvalidPath, "userName"},
		{"filter names unknown sub", `[{"op":"remove","path":"emails[kind eq \"x\"]"}]`, typeInvalidPath, "emails.kind"},
		{"required removed", `[{"op":"remove","path":"userName"}]`, typeInvalidValue, "userName"},
		{"no-path value not object", `[{"op":"add","value":"x"}]`, typeInvalidValue, "value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			obj := decodeMap(t, baseUser)
			err := applyPatch(userType, obj, ops(t, tt.ops))
			var se *Error
			if !errors.As(err, &se) || se.ScimType != tt.scimType || !strings.Contains(se.Detail, tt.detail) {
				t.Errorf("got %v, want %s naming %q", err, tt.scimType, tt.detail)
			}
		})
	}
}

func TestDecodePatchErrors(t *testing.T) {
	tests := []struct{ body, scimType, detail string }{
		{`{"Operations":[{"op":"add","path":"x","value":1}]}`, typeInvalidValue, "schemas"},
		{`{"schemas":["` + patchURN + `"]}`, typeInvalidValue, "Operations"},
		{`{"schemas":["` + patchURN + `"],"Operations":[]}`, typeInvalidValue, "Operations"},
		{`{"schemas":["` + patchURN + `"],"Operations":{}}`, typeInvalidValue, "Operations"},
		{`{"schemas":["` + patchURN + `"],"Operations":[{"op":"move","path":"x"}]}`, typeInvalidValue, "Operations[0].op"},
		{`{"schemas":["` + patchURN + `"],"Operations":[{"op":"remove"}]}`, typeNoTarget, "remove needs a path"},
		{`{"schemas":["` + patchURN + `"],"Operations":[{"op":"add","path":"x"}]}`, typeInvalidValue, "Operations[0].value"},
		{`{"schemas":["` + patchURN + `"],"Operations":[{"op":"add","path":"a[","value":1}]}`, typeInvalidPath, "a["},
		{`{"schemas":["` + patchURN + `"],"Operations":[{"op":"add","path":7,"value":1}]}`, typeInvalidPath, "path"},
		{`{"schemas":["` + patchURN + `"],"Operations":[{"op":"add","value":1,"extra":1}]}`, typeInvalidSyntax, "extra"},
		{`{"schemas":["` + patchURN + `"],"Operations":[],"x":1}`, typeInvalidSyntax, `"x"`},
	}
	for _, tt := range tests {
		var m map[string]any
		if err := decodeJSON([]byte(tt.body), &m, false); err != nil {
			t.Fatal(err)
		}
		_, err := decodePatch(m)
		var se *Error
		if !errors.As(err, &se) || se.ScimType != tt.scimType || !strings.Contains(se.Detail, tt.detail) {
			t.Errorf("%s: got %v, want %s naming %q", tt.body, err, tt.scimType, tt.detail)
		}
	}
}
