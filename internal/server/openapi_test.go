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
	liberrors "github.com/pb33f/libopenapi-validator/errors"

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

// answers checks requests and their answers against the served document.
type answers struct {
	r *running
	v validator.Validator
}

func newAnswers(t *testing.T, r *running) *answers {
	t.Helper()
	doc, err := libopenapi.NewDocument(servedDocument(t, r))
	if err != nil {
		t.Fatal(err)
	}
	v, errs := validator.NewValidator(doc)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return &answers{r: r, v: v}
}

// call sends the request (a body is JSON unless form is set), checks its
// body (when it is to succeed) and its answer against the document, and
// returns the answer's body.
func (a *answers) call(t *testing.T, c *http.Client, method, path, body string, auth func(*http.Request), want int) string {
	t.Helper()
	return a.send(t, c, method, path, "application/json", body, auth, want)
}

func (a *answers) send(t *testing.T, c *http.Client, method, path, contentType, body string, auth func(*http.Request), want int) string {
	t.Helper()
	if c == nil {
		c = a.r.client
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, _ := http.NewRequest(method, a.r.base+path, rd)
	if body != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != nil {
		auth(req)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Errorf("%s %s: %d, want %d: %.300s", method, path, resp.StatusCode, want, b)
		return string(b)
	}
	// As the document names the server: the validator matches paths
	// against it.
	doc := func() *http.Request {
		q := httptest.NewRequest(method, "https://localhost:8443"+path, strings.NewReader(body))
		q.Header = req.Header.Clone()
		return q
	}
	report := func(what string, errs []*liberrors.ValidationError) {
		for _, e := range errs {
			t.Errorf("%s %s (%d): %s: %s: %s", method, path, want, what, e.Message, e.Reason)
			for _, se := range e.SchemaValidationErrors {
				t.Errorf("  %s: %s", se.FieldPath, se.Reason)
			}
		}
	}
	if body != "" && want < 300 {
		if ok, errs := a.v.GetRequestBodyValidator().ValidateRequestBody(doc()); !ok {
			report("request", errs)
		}
	}
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	if ok, errs := a.v.ValidateHttpResponse(doc(), resp); !ok {
		report("answer", errs)
	}
	return string(b)
}

// TestOpenAPIAnswers sends requests an administrator and a signed-in
// person would, and checks the request bodies and the real answers,
// successes and problems, against the served document's schemas.
func TestOpenAPIAnswers(t *testing.T) {
	r := serve(t)
	a := newAnswers(t, r)
	pw := adminPassword(t, r)
	admin := basic("admin", pw)
	person := r.browser()
	call := func(c *http.Client, method, path, body string, auth func(*http.Request), want int) string {
		t.Helper()
		return a.call(t, c, method, path, body, auth, want)
	}
	call(nil, "GET", openapi.Path, "", nil, 200)
	call(nil, "GET", "/.well-known/uma2-configuration", "", nil, 200)
	call(nil, "GET", "/.well-known/authzen-configuration", "", nil, 200)

	// An administrator.
	created := call(nil, "POST", "/api/v1/admin/clients",
		`{"client_name":"Music service","redirect_uris":["https://music.example/cb"],"grant_types":["authorization_code","refresh_token"],"scopes":["openid","profile"]}`,
		admin, 201)
	var client struct {
		ID string `json:"client_id"`
	}
	json.Unmarshal([]byte(created), &client)
	call(nil, "GET", "/api/v1/admin/clients", "", admin, 200)
	call(nil, "GET", "/api/v1/admin/clients", "", nil, 401)
	call(nil, "GET", "/api/v1/admin/clients?limit=5000", "", admin, 400)
	call(nil, "GET", "/api/v1/admin/clients/"+client.ID, "", admin, 200)
	call(nil, "GET", "/api/v1/admin/clients/nosuchclient", "", admin, 404)
	call(nil, "GET", "/api/v1/admin/audit?order=oldest&limit=5", "", admin, 200)
	call(nil, "GET", "/api/v1/admin/audit?since=yesterday", "", admin, 400)
	call(nil, "PUT", "/api/v1/admin/policies", `{"cedar":"permit(principal, action, resource) when { nonsense };"}`, admin, 400)
	call(nil, "PUT", "/api/v1/admin/policies", `{"cedar":""}`, admin, 200)
	call(nil, "GET", "/api/v1/admin/policies", "", admin, 200)
	call(nil, "GET", "/api/v1/admin/cas", "", admin, 200)
	call(nil, "GET", "/api/v1/admin/mqtt/clients", "", admin, 200)

	// A person signed in, with the session cookie.
	call(person, "POST", "/api/v1/signin", `{"userName":"admin","password":"wrong"}`, nil, 401)
	call(person, "POST", "/api/v1/signin", `{"userName":"admin","password":`+jsonQuote(pw)+`}`, nil, 200)
	call(person, "GET", "/api/v1/sessions", "", nil, 200)
	call(person, "GET", "/api/v1/grants", "", nil, 200)
	call(person, "GET", "/api/v1/devices", "", nil, 200)
	call(nil, "GET", "/api/v1/households", "", nil, 401)
	home := call(person, "POST", "/api/v1/households", `{"name":"Home","timeZone":"Europe/Berlin"}`, nil, 201)
	var hh struct {
		ID string `json:"id"`
	}
	json.Unmarshal([]byte(home), &hh)
	call(person, "POST", "/api/v1/households/"+hh.ID+"/rooms", `{"name":"Kitchen"}`, nil, 201)
	call(person, "POST", "/api/v1/households/"+hh.ID+"/rules",
		`{"effect":"deny","who":{"kind":"everyone"},"things":{"kind":"all"},"actions":["use"],"when":{"days":["mon"],"start":"20:00","end":"23:00"}}`, nil, 201)
	call(person, "GET", "/api/v1/households", "", nil, 200)
	call(person, "GET", "/api/v1/households/"+hh.ID, "", nil, 200)
	call(person, "GET", "/api/v1/households/invitations", "", nil, 200)
	call(person, "GET", "/api/v1/account/data", "", nil, 200)
}

// TestOpenAPIUMAProtection checks a resource server's calls to the UMA
// protection API, with a PAT, against the served document.
func TestOpenAPIUMAProtection(t *testing.T) {
	w := newUMAWorld(t)
	a := newAnswers(t, w.r)
	pat := bearer(w.pat(t, w.music))
	a.call(t, nil, "GET", "/uma/resource_set", "", nil, 401)
	out := a.call(t, nil, "POST", "/uma/resource_set", `{"name":"Road trip","type":"https://music.example/playlist","resource_scopes":["read","play"],"owner":"alice"}`, pat, 201)
	var res struct {
		ID string `json:"_id"`
	}
	json.Unmarshal([]byte(out), &res)
	a.call(t, nil, "GET", "/uma/resource_set", "", pat, 200)
	a.call(t, nil, "GET", "/uma/resource_set/"+res.ID, "", pat, 200)
	a.call(t, nil, "PUT", "/uma/resource_set/"+res.ID, `{"name":"Road trip","resource_scopes":["read","play","edit"]}`, pat, 200)
	a.call(t, nil, "POST", "/uma/permission", `[{"resource_id":`+jsonQuote(res.ID)+`,"resource_scopes":["play"]}]`, pat, 201)
	a.call(t, nil, "POST", "/uma/permission", `{"resource_id":"nosuchresource","resource_scopes":["play"]}`, pat, 400)
	a.send(t, nil, "POST", "/uma/introspect", "application/x-www-form-urlencoded", "token=not-a-token", pat, 200)
	a.call(t, nil, "DELETE", "/uma/resource_set/"+res.ID, "", pat, 204)
	a.call(t, nil, "GET", "/uma/resource_set/"+res.ID, "", pat, 404)
}
