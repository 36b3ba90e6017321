package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"

	"github.com/thingid/thingid/internal/openapi"
)

// openapiMethods are the operations of an OpenAPI path item.
var openapiMethods = []string{"get", "put", "post", "delete", "patch", "head", "options", "trace"}

// servedDocument is the document as GET /api/v1/openapi.json serves it,
// without credentials.
func servedDocument(t *testing.T, r *running) []byte {
	t.Helper()
	resp, body := r.do(t, nil, "GET", openapi.Path, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s without credentials: %d %.300s", openapi.Path, resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("GET %s: Content-Type %q, want application/json", openapi.Path, ct)
	}
	return []byte(body)
}

// TestOpenAPICoversRoutes walks the HTTPS listener's route table: every
// route that openapi.Covers counts as a JSON API must be an operation of
// the served document (method and path, wildcard names included), and
// every operation of the document must be a route of the table that the
// listener's mux picks for a request to it. A route without a method is
// allowed only as the 405 answer of a path mounted with methods too.
func TestOpenAPICoversRoutes(t *testing.T) {
	r := serve(t)
	var doc struct {
		Paths map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(servedDocument(t, r), &doc); err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for path, item := range doc.Paths {
		for m := range item {
			if slices.Contains(openapiMethods, m) {
				documented[strings.ToUpper(m)+" "+path] = true
			}
		}
	}
	if len(documented) < 70 {
		t.Fatalf("the document describes %d operations; thingid serves more JSON APIs", len(documented))
	}

	table := r.p.table.Load()
	served := map[string]bool{}
	withMethod, without := map[string]bool{}, map[string]bool{}
	for _, rt := range table.Routes() {
		method, path, ok := strings.Cut(rt.Pattern, " ")
		if !ok {
			method, path = "", rt.Pattern
		}
		if !openapi.Covers(path) {
			continue
		}
		if method == "" {
			without[path] = true
			continue
		}
		served[method+" "+path] = true
		withMethod[path] = true
	}
	for path := range without {
		if !withMethod[path] {
			t.Errorf("%s: a JSON API route mounted without a method; mount each method of it on its own, so that the document can describe it", path)
		}
	}
	for op := range served {
		if !documented[op] {
			t.Errorf("%s is served but not described in %s (internal/openapi/openapi.yaml)", op, openapi.Path)
		}
	}
	for op := range documented {
		method, path, _ := strings.Cut(op, " ")
		switch {
		case !openapi.Covers(path):
			t.Errorf("%s is described, but openapi.Covers does not count it as a JSON API", op)
		case !served[op]:
			t.Errorf("%s is described in %s but not served", op, openapi.Path)
		default:
			_, pattern := table.Handler(httptest.NewRequest(method, probePath(path), nil))
			if pattern != op {
				t.Errorf("%s: a request to it reaches %q", op, pattern)
			}
		}
	}
}

// probePath fills in the wildcards of a path template.
func probePath(template string) string {
	for strings.Contains(template, "{") {
		i := strings.IndexByte(template, '{')
		j := strings.IndexByte(template[i:], '}')
		template = template[:i] + "x" + template[i+j+1:]
	}
	return template
}

// TestOpenAPIAnswers checks real answers of the listener, successes and
// problems, against the schemas of the served document.
func TestOpenAPIAnswers(t *testing.T) {
	r := serve(t)
	doc, err := libopenapi.NewDocument(servedDocument(t, r))
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	admin := basic("admin", adminPassword(t, r))
	check := func(req *http.Request, resp *http.Response, body string) {
		t.Helper()
		resp.Body = io.NopCloser(strings.NewReader(body))
		if ok, errs := v.ValidateHttpResponse(req, resp); !ok {
			for _, e := range errs {
				t.Errorf("%s %s (%d): %s: %s", req.Method, req.URL.RequestURI(), resp.StatusCode, e.Message, e.Reason)
				for _, se := range e.SchemaValidationErrors {
					t.Errorf("  %s: %s", se.FieldPath, se.Reason)
				}
			}
		}
	}

	// A client to list, made through the API.
	spec := `{"client_name":"Music service","redirect_uris":["https://music.example/cb"],"grant_types":["authorization_code","refresh_token"],"scopes":["openid","profile"]}`
	req, _ := http.NewRequest("POST", r.base+"/api/v1/admin/clients", strings.NewReader(spec))
	req.Header.Set("Content-Type", "application/json")
	admin(req)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("creating a client: %d %s", resp.StatusCode, b)
	}
	check(httptest.NewRequest("POST", "https://localhost:8443/api/v1/admin/clients", nil), resp, string(b))
	var created struct {
		ID string `json:"client_id"`
	}
	if err := json.Unmarshal(b, &created); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		path string
		auth func(*http.Request)
		want int
	}{
		{openapi.Path, nil, 200},
		{"/.well-known/uma2-configuration", nil, 200},
		{"/.well-known/authzen-configuration", nil, 200},
		{"/api/v1/admin/clients", admin, 200},
		{"/api/v1/admin/clients", nil, 401},
		{"/api/v1/admin/clients?limit=5000", admin, 400},
		{"/api/v1/admin/clients/nosuchclient", admin, 404},
		{"/api/v1/admin/clients/" + created.ID, admin, 200},
		{"/api/v1/admin/audit?order=oldest&limit=5", admin, 200},
		{"/api/v1/admin/audit?since=yesterday", admin, 400},
		{"/api/v1/admin/policies", admin, 200},
		{"/api/v1/admin/cas", admin, 200},
		{"/api/v1/admin/mqtt/clients", admin, 200},
		{"/api/v1/households", nil, 401},
	} {
		resp, body := r.do(t, nil, "GET", c.path, c.auth)
		if resp.StatusCode != c.want {
			t.Errorf("GET %s: %d, want %d: %.300s", c.path, resp.StatusCode, c.want, body)
			continue
		}
		check(httptest.NewRequest("GET", "https://localhost:8443"+c.path, nil), resp, body)
	}
}
