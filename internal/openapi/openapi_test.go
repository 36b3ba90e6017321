package openapi

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	"github.com/pb33f/libopenapi-validator/schema_validation"
)

// TestDocumentIsOpenAPI31 checks the document against the OpenAPI 3.1
// schema (libopenapi-validator), has libopenapi build its model (which
// resolves every reference), and checks what the schema cannot: every
// reference resolves, every path parameter is declared where the path names
// it, and every operation has a summary, responses and its security.
func TestDocumentIsOpenAPI31(t *testing.T) {
	b, err := Document()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := libopenapi.NewDocument(b)
	if err != nil {
		t.Fatal(err)
	}
	if v := doc.GetVersion(); v != "3.1.0" {
		t.Fatalf("openapi: %q, want 3.1.0", v)
	}
	if ok, errs := schema_validation.ValidateOpenAPIDocument(doc); !ok {
		for _, e := range errs {
			t.Errorf("%s (line %d): %s", e.Message, e.SpecLine, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s: %s", se.FieldPath, se.Reason)
			}
		}
	}
	if _, err := doc.BuildV3Model(); err != nil {
		t.Errorf("building the model: %v", err)
	}
	for _, err := range check(t, b) {
		t.Error(err)
	}
}

// TestCheckFindsFaults breaks the document in each way check looks for and
// expects check to say so: the checks are not empty.
func TestCheckFindsFaults(t *testing.T) {
	b, err := Document()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, old, new, want string
	}{
		{"a dangling reference", `"#/components/schemas/Grant"`, `"#/components/schemas/Grants"`, "does not resolve"},
		{"an undeclared path parameter", `"/api/v1/grants/{id}"`, `"/api/v1/grants/{grantId}"`, "grantId"},
		{"a description split at a comma", `"description":"a user id, for kind member"`, `"description":"a user id","for kind member":null`, "quote it"},
		{"an operation without security", `"security":[{"sessionCookie":[]}],"summary":"List one's own browser sessions"`, `"summary":"List one's own browser sessions"`, "security"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Fatal(err)
			}
			compact, _ := json.Marshal(v) // keys sorted, no spaces
			broken := strings.Replace(string(compact), c.old, c.new, 1)
			if broken == string(compact) {
				t.Fatalf("%s is not in the document", c.old)
			}
			errs := check(t, []byte(broken))
			if !slices.ContainsFunc(errs, func(e error) bool { return strings.Contains(e.Error(), c.want) }) {
				t.Errorf("check found %v, want an error mentioning %q", errs, c.want)
			}
		})
	}
}

var methods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

var pathParam = regexp.MustCompile(`\{([^}]+)\}`)

// check is what the OpenAPI schema does not check.
func check(t *testing.T, b []byte) []error {
	t.Helper()
	var root map[string]any
	if err := json.Unmarshal(b, &root); err != nil {
		t.Fatal(err)
	}
	var errs []error
	walkKeys(root, func(key string) {
		if strings.Contains(key, " ") {
			errs = append(errs, fmt.Errorf("key %q: a description split at a comma in YAML flow style? quote it", key))
		}
	})
	walkRefs(root, func(ref string) {
		if _, ok := resolve(root, ref); !ok {
			errs = append(errs, fmt.Errorf("$ref %s does not resolve", ref))
		}
	})
	paths, _ := root["paths"].(map[string]any)
	for path, v := range paths {
		item, _ := v.(map[string]any)
		named := map[string]bool{}
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			named[m[1]] = true
		}
		common := pathParams(root, item["parameters"])
		for _, method := range methods {
			op, ok := item[method].(map[string]any)
			if !ok {
				continue
			}
			where := strings.ToUpper(method) + " " + path
			declared := map[string]bool{}
			for n := range common {
				declared[n] = true
			}
			for n := range pathParams(root, op["parameters"]) {
				declared[n] = true
			}
			for n := range named {
				if !declared[n] {
					errs = append(errs, fmt.Errorf("%s: path parameter %s is not declared", where, n))
				}
			}
			for n := range declared {
				if !named[n] {
					errs = append(errs, fmt.Errorf("%s: declares path parameter %s that the path does not name", where, n))
				}
			}
			if s, _ := op["summary"].(string); s == "" {
				errs = append(errs, fmt.Errorf("%s: no summary", where))
			}
			if _, ok := op["security"]; !ok {
				errs = append(errs, fmt.Errorf("%s: no security (say [] for none)", where))
			}
			if r, _ := op["responses"].(map[string]any); len(r) == 0 {
				errs = append(errs, fmt.Errorf("%s: no responses", where))
			}
		}
	}
	return errs
}

// pathParams are the names of the path parameters in list (a parameters
// array, references resolved).
func pathParams(root map[string]any, list any) map[string]bool {
	out := map[string]bool{}
	l, _ := list.([]any)
	for _, p := range l {
		m, _ := p.(map[string]any)
		if ref, ok := m["$ref"].(string); ok {
			r, _ := resolve(root, ref)
			m, _ = r.(map[string]any)
		}
		if m["in"] == "path" {
			out[m["name"].(string)] = true
		}
	}
	return out
}

func walkKeys(v any, f func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			f(k)
			walkKeys(e, f)
		}
	case []any:
		for _, e := range v {
			walkKeys(e, f)
		}
	}
}

func walkRefs(v any, f func(string)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			if s, ok := e.(string); ok && k == "$ref" {
				f(s)
				continue
			}
			walkRefs(e, f)
		}
	case []any:
		for _, e := range v {
			walkRefs(e, f)
		}
	}
}

// resolve follows a local reference (RFC 6901 pointer after "#").
func resolve(root map[string]any, ref string) (any, bool) {
	p, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil, false
	}
	var cur any = root
	for _, tok := range strings.Split(p, "/") {
		tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[tok]; !ok {
			return nil, false
		}
	}
	return cur, true
}
