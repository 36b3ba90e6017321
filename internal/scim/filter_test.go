package scim

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseFilter(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{`userName eq "bjensen"`, `userName eq "bjensen"`},
		{`userName EQ "bjensen"`, `userName eq "bjensen"`},
		{`name.familyName co "O'Malley"`, `name.familyName co "O'Malley"`},
		{`userName sw "J"`, `userName sw "J"`},
		{`urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"`, `urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J"`},
		{`title pr`, `title pr`},
		{`meta.lastModified gt "2011-05-13T04:42:34Z"`, `meta.lastModified gt "2011-05-13T04:42:34Z"`},
		{`meta.lastModified ge "2011-05-13T04:42:34Z"`, `meta.lastModified ge "2011-05-13T04:42:34Z"`},
		{`meta.lastModified lt "2011-05-13T04:42:34Z"`, `meta.lastModified lt "2011-05-13T04:42:34Z"`},
		{`meta.lastModified le "2011-05-13T04:42:34Z"`, `meta.lastModified le "2011-05-13T04:42:34Z"`},
		{`title pr and userType eq "Employee"`, `title pr and userType eq "Employee"`},
		{`title pr or userType eq "Intern"`, `title pr or userType eq "Intern"`},
		{`schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"`, `schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"`},
		// RFC 7644 §3.4.2.2: "and" binds tighter than "or".
		{`a pr or b pr and c pr`, `a pr or b pr and c pr`},
		{`(a pr or b pr) and c pr`, `(a pr or b pr) and c pr`},
		{`a pr and (b pr and c pr)`, `a pr and (b pr and c pr)`},
		{`((a pr))`, `a pr`},
		{`userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")`,
			`userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")`},
		{`userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")`,
			`userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")`},
		{`not(a pr)`, `not (a pr)`},
		{`emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]`,
			`emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]`},
		{`userType eq "Employee" and emails[type eq "work" and value co "@example.com"]`,
			`userType eq "Employee" and emails[type eq "work" and value co "@example.com"]`},
		{`active eq TRUE`, `active eq true`},
		{`primary ne false`, `primary ne false`},
		{`x eq null`, `x eq null`},
		{`n gt -1.5e3`, `n gt -1.5e3`},
		{`s eq "a\"b\\c\u00e9\n"`, `s eq "a\"b\\cé\n"`},
		{`s eq "<&>"`, `s eq "<&>"`},
		{`members.$ref pr`, `members.$ref pr`},
		// "not" is an attribute name unless "(" follows.
		{`not eq "x"`, `not eq "x"`},
	}
	for _, tt := range tests {
		f, err := parseFilter(tt.in)
		if err != nil {
			t.Errorf("parseFilter(%q): %v", tt.in, err)
			continue
		}
		if got := f.String(); got != tt.want {
			t.Errorf("parseFilter(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestParseFilterTree(t *testing.T) {
	f, err := parseFilter(`a pr or b pr and not (c eq 1)`)
	if err != nil {
		t.Fatal(err)
	}
	want := logicalExpr{Op: "or",
		Left: presentExpr{attrPath{Name: "a"}},
		Right: logicalExpr{Op: "and",
			Left:  presentExpr{attrPath{Name: "b"}},
			Right: notExpr{compareExpr{Path: attrPath{Name: "c"}, Op: "eq", Value: json.Number("1")}}}}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("got %#v\nwant %#v", f, want)
	}
}

func TestParseFilterErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, "expected an attribute name"},
		{`userName`, "expected an operator"},
		{`userName xx "a"`, "expected an operator"},
		{`userName eq`, "expected a value"},
		{`userName eq bjensen`, "expected a value"},
		{`userName eq "bjensen`, "unterminated string"},
		{`userName eq "\q"`, "invalid string literal"},
		{`(userName pr`, `expected ")"`},
		{`userName pr)`, `unexpected ")"`},
		{`emails[type eq "work"`, `expected "]"`},
		{`emails[type[value eq "x"] pr]`, "value paths cannot nest"},
		{`emails.value[type eq "x"]`, "not to sub-attribute"},
		{`1abc pr`, "not an attribute name"},
		{`a.b.c pr`, "not a sub-attribute name"},
		{`http://x:a pr`, "must be a URN"},
		{`a pr and`, "expected an attribute name"},
		{`not (a pr`, `expected ")"`},
		{strings.Repeat("(", 40) + "a pr" + strings.Repeat(")", 40), "nested deeper"},
		{strings.Repeat("not (", 40) + "a pr" + strings.Repeat(")", 40), "nested deeper"},
		{`a eq "` + strings.Repeat("x", maxFilterLen) + `"`, "longer than"},
	}
	for _, tt := range tests {
		_, err := parseFilter(tt.in)
		var se *Error
		if !errors.As(err, &se) || se.ScimType != typeInvalidFilter || !strings.Contains(se.Detail, tt.want) {
			t.Errorf("parseFilter(%.60q) = %v, want invalidFilter containing %q", tt.in, err, tt.want)
		}
	}
}

func FuzzParseFilter(f *testing.F) {
	for _, s := range []string{
		`userName eq "bjensen"`,
		`emails[type eq "work" and value co "@example.com"] or not (active eq false)`,
		`a pr or b pr and (c gt 1.5 or d le "x")`,
		`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "B\u00e9"`,
		`meta.created ge "2024-01-01T00:00:00Z" and x eq null`,
		`members[value eq "1" or type ne "User"]`,
		`not eq "x" and and pr`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ast, err := parseFilter(s)
		if err != nil {
			var se *Error
			if !errors.As(err, &se) || se.Status != 400 {
				t.Fatalf("parseFilter(%q): error %v is not a SCIM 400", s, err)
			}
			return
		}
		out := ast.String()
		if len(out) > maxFilterLen {
			return // escapes such as \ufffd for invalid UTF-8 may lengthen it
		}
		again, err := parseFilter(out)
		if err != nil {
			t.Fatalf("parseFilter(%q) = %q, which does not parse: %v", s, out, err)
		}
		if !reflect.DeepEqual(ast, again) {
			t.Fatalf("round trip changed the tree:\n%q\n%#v\n%#v", out, ast, again)
		}
	})
}
