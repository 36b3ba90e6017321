package scim

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParsePath(t *testing.T) {
	tests := []struct {
		in   string
		want patchPath
	}{
		{`userName`, patchPath{Attr: attrPath{Name: "userName"}}},
		{`name.familyName`, patchPath{Attr: attrPath{Name: "name", Sub: "familyName"}}},
		{`urn:thingid:params:scim:schemas:extension:thing:2.0:Device:attributes.color`,
			patchPath{Attr: attrPath{URI: thingExtURN, Name: "attributes", Sub: "color"}}},
		{`members[value eq "2819c223"]`, patchPath{Attr: attrPath{Name: "members"},
			Filter: compareExpr{Path: attrPath{Name: "value"}, Op: "eq", Value: "2819c223"}}},
		{`emails[type eq "work"].value`, patchPath{Attr: attrPath{Name: "emails"},
			Filter: compareExpr{Path: attrPath{Name: "type"}, Op: "eq", Value: "work"}, ValueSub: "value"}},
		{`addresses[type eq "work" and primary eq true].streetAddress`, patchPath{Attr: attrPath{Name: "addresses"},
			Filter: logicalExpr{Op: "and",
				Left:  compareExpr{Path: attrPath{Name: "type"}, Op: "eq", Value: "work"},
				Right: compareExpr{Path: attrPath{Name: "primary"}, Op: "eq", Value: true}},
			ValueSub: "streetAddress"}},
	}
	for _, tt := range tests {
		got, err := parsePath(tt.in)
		if err != nil {
			t.Errorf("parsePath(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePath(%q) = %#v, want %#v", tt.in, got, tt.want)
		}
		if got.String() != tt.in {
			t.Errorf("parsePath(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestParsePathErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, "must start with an attribute name"},
		{`[type eq "x"]`, "must start with an attribute name"},
		{`emails[type eq "work"`, `expected "]"`},
		{`emails[type eq]`, "expected a value"},
		{`emails.value[type eq "x"]`, "not to sub-attribute"},
		{`emails[type eq "work"].1x`, "not a sub-attribute name"},
		{`emails[type eq "work"] extra`, "unexpected"},
		{`userName extra`, "unexpected"},
		{`a.b.c`, "not a sub-attribute name"},
	}
	for _, tt := range tests {
		_, err := parsePath(tt.in)
		var se *Error
		if !errors.As(err, &se) || se.ScimType != typeInvalidPath || !strings.Contains(se.Detail, tt.want) {
			t.Errorf("parsePath(%q) = %v, want invalidPath containing %q", tt.in, err, tt.want)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{
		`userName`, `name.familyName`, `members[value eq "2819c223"]`,
		`emails[type eq "work" and not (primary eq true)].value`,
		`urn:ietf:params:scim:schemas:core:2.0:User:emails[value ew "@x.org"].display`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parsePath(s)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("parsePath(%q): error %v is not a SCIM 400", s, err)
			}
			return
		}
		out := p.String()
		if len(out) > maxFilterLen {
			return
		}
		again, err := parsePath(out)
		if err != nil {
			t.Fatalf("parsePath(%q) = %q, which does not parse: %v", s, out, err)
		}
		if !reflect.DeepEqual(p, again) {
			t.Fatalf("round trip changed the path:\n%q\n%#v\n%#v", out, p, again)
		}
	})
}
