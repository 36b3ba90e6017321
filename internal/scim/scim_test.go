package scim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/scim"
	"github.com/thingid/thingid/internal/store/sqlite"
)

const (
	userURN     = "urn:ietf:params:scim:schemas:core:2.0:User"
	groupURN    = "urn:ietf:params:scim:schemas:core:2.0:Group"
	deviceURN   = "urn:ietf:params:scim:schemas:core:2.0:Device"
	thingExtURN = "urn:thingid:params:scim:schemas:extension:thing:2.0:Device"
	patchURN    = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
	bulkURN     = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
	searchURN   = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
)

// minLength is the password policy of the tests.
type minLength int

func (m minLength) Check(pw string, _ ...string) error {
	if len(pw) < int(m) {
		return fmt.Errorf("must be at least %d characters", int(m))
	}
	return nil
}

type client struct {
	t    testing.TB
	base string
}

// newServer starts the SCIM handler over the real identity service and a SQLite
// store in a temporary directory.
func newServer(t testing.TB, opts scim.Options) *client {
	t.Helper()
	st, err := sqlite.Open(filepath.Join(t.TempDir(), "thingid.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc := identity.New(st, events.New(), minLength(8))
	if opts.Actor == nil {
		opts.Actor = func(*http.Request) string { return "admin:test" }
	}
	if opts.FullAdmin == nil {
		opts.FullAdmin = func(*http.Request) bool { return true }
	}
	srv := httptest.NewServer(scim.New(svc, opts))
	t.Cleanup(srv.Close)
	return &client{t: t, base: srv.URL + "/scim/v2"}
}

type response struct {
	status int
	header http.Header
	body   map[string]any
	raw    []byte
}

// do sends body (a string is sent as is, anything else as JSON); hdr are
// name/value pairs.
func (c *client) do(method, path string, body any, hdr ...string) response {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, raw: raw}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			c.t.Fatalf("%s %s: response is not a JSON object: %s", method, path, raw)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/scim+json" {
			c.t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
	}
	return r
}

// must sends a request and fails the test unless the status is want.
func (c *client) must(want int, method, path string, body any, hdr ...string) map[string]any {
	c.t.Helper()
	r := c.do(method, path, body, hdr...)
	if r.status != want {
		c.t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.raw)
	}
	return r.body
}

func (c *client) createUser(name string, extra map[string]any) map[string]any {
	c.t.Helper()
	u := map[string]any{"schemas": []string{userURN}, "userName": name}
	for k, v := range extra {
		u[k] = v
	}
	return c.must(201, "POST", "/Users", u)
}

func (c *client) createDevice(serial string, ext map[string]any) map[string]any {
	c.t.Helper()
	e := map[string]any{"serialNumber": serial, "manufacturer": "Acme", "model": "Speaker"}
	for k, v := range ext {
		e[k] = v
	}
	return c.must(201, "POST", "/Devices", map[string]any{
		"schemas": []string{deviceURN, thingExtURN}, "displayName": "Speaker " + serial, thingExtURN: e})
}

func patchBody(ops ...map[string]any) map[string]any {
	return map[string]any{"schemas": []string{patchURN}, "Operations": ops}
}

func op(o, path string, value any) map[string]any {
	m := map[string]any{"op": o}
	if path != "" {
		m["path"] = path
	}
	if value != nil {
		m["value"] = value
	}
	return m
}

func str(v any) string { s, _ := v.(string); return s }

func get(m map[string]any, path ...string) any {
	var v any = m
	for _, p := range path {
		mm, _ := v.(map[string]any)
		v = mm[p]
	}
	return v
}

// checkError asserts a SCIM error response (RFC 7644 §3.12).
func checkError(t testing.TB, r response, status int, scimType, detail string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r.raw)
		return
	}
	if s := get(r.body, "schemas"); !reflect.DeepEqual(s, []any{"urn:ietf:params:scim:api:messages:2.0:Error"}) {
		t.Errorf("error schemas = %v", s)
	}
	if got := str(r.body["status"]); got != fmt.Sprint(status) {
		t.Errorf("error status %q, want %q", got, fmt.Sprint(status))
	}
	if got := str(r.body["scimType"]); got != scimType {
		t.Errorf("scimType %q, want %q: %s", got, scimType, r.raw)
	}
	if !strings.Contains(str(r.body["detail"]), detail) {
		t.Errorf("detail %q does not name %q", r.body["detail"], detail)
	}
}

func TestUsersCRUD(t *testing.T) {
	c := newServer(t, scim.Options{BaseURL: "https://id.example.com"})
	r := c.do("POST", "/Users", map[string]any{
		"schemas":    []string{userURN},
		"userName":   "bjensen",
		"externalId": "ext-1",
		"name":       map[string]any{"givenName": "Barbara", "familyName": "Jensen"},
		"emails":     []any{map[string]any{"value": "bjensen@Example.COM", "type": "work", "primary": true}},
		"password":   "correct horse battery",
		"active":     true,
		"id":         "ignored-read-only",
	})
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.raw)
	}
	u := r.body
	id := str(u["id"])
	if id == "" || id == "ignored-read-only" {
		t.Fatalf("id = %q", id)
	}
	loc := "https://id.example.com/scim/v2/Users/" + id
	if r.header.Get("Location") != loc || get(u, "meta", "location") != loc {
		t.Errorf("Location %q, meta.location %v, want %q", r.header.Get("Location"), get(u, "meta", "location"), loc)
	}
	if r.header.Get("ETag") != `W/"1"` || get(u, "meta", "version") != `W/"1"` || get(u, "meta", "resourceType") != "User" {
		t.Errorf("ETag %q meta %v", r.header.Get("ETag"), u["meta"])
	}
	if _, ok := u["password"]; ok {
		t.Error("password returned")
	}
	if get(u, "emails") == nil || str(get(u, "emails").([]any)[0].(map[string]any)["value"]) != "bjensen@example.com" {
		t.Errorf("emails not normalized by identity: %v", u["emails"])
	}

	got := c.must(200, "GET", "/Users/"+id, nil)
	if got["userName"] != "bjensen" || get(got, "name", "givenName") != "Barbara" || got["externalId"] != "ext-1" {
		t.Errorf("GET = %v", got)
	}
	if r := c.do("GET", "/Users/"+id, nil, "If-None-Match", `W/"1"`); r.status != 304 {
		t.Errorf("If-None-Match current: %d", r.status)
	}
	if r := c.do("GET", "/Users/"+id, nil, "If-None-Match", `W/"7"`); r.status != 200 {
		t.Errorf("If-None-Match other: %d", r.status)
	}

	put := c.must(200, "PUT", "/Users/"+id, map[string]any{
		"schemas": []string{userURN}, "userName": "bjensen", "displayName": "Babs", "active": false,
	}, "If-Match", `W/"1"`)
	if put["displayName"] != "Babs" || put["active"] != false || put["name"] != nil || put["emails"] != nil {
		t.Errorf("PUT replaced to %v", put)
	}
	if get(put, "meta", "version") != `W/"2"` {
		t.Errorf("version after PUT: %v", get(put, "meta", "version"))
	}

	patched := c.must(200, "PATCH", "/Users/"+id, patchBody(
		op("replace", "active", true),
		op("add", "emails", []any{map[string]any{"value": "b@work.example", "type": "work"}}),
		op("replace", "password", "another good one"),
	))
	if patched["active"] != true || len(get(patched, "emails").([]any)) != 1 {
		t.Errorf("PATCH = %v", patched)
	}
	if _, ok := patched["password"]; ok {
		t.Error("password returned by PATCH")
	}
	checkError(t, c.do("PATCH", "/Users/"+id, patchBody(op("replace", "password", "short"))), 400, "invalidValue", "password")

	c.must(204, "DELETE", "/Users/"+id, nil)
	checkError(t, c.do("GET", "/Users/"+id, nil), 404, "", "")
	checkError(t, c.do("DELETE", "/Users/"+id, nil), 404, "", "")
}

func TestUserNameUniqueness(t *testing.T) {
	c := newServer(t, scim.Options{})
	c.createUser("alice", nil)
	checkError(t, c.do("POST", "/Users", map[string]any{"schemas": []string{userURN}, "userName": "ALICE"}), 409, "uniqueness", "")
}

func TestETags(t *testing.T) {
	c := newServer(t, scim.Options{})
	id := str(c.createUser("etag", nil)["id"])
	c.must(200, "PATCH", "/Users/"+id, patchBody(op("replace", "displayName", "one")), "If-Match", `W/"1"`)
	// The stored revision is 2 now: every write conditional on 1 fails.
	checkError(t, c.do("PATCH", "/Users/"+id, patchBody(op("replace", "displayName", "two")), "If-Match", `W/"1"`), 412, "", "")
	checkError(t, c.do("PUT", "/Users/"+id, map[string]any{"schemas": []string{userURN}, "userName": "x"}, "If-Match", `W/"1"`), 412, "", "")
	checkError(t, c.do("DELETE", "/Users/"+id, nil, "If-Match", `W/"1"`), 412, "", "")
	checkError(t, c.do("DELETE", "/Users/"+id, nil, "If-Match", `"not-ours"`), 412, "", "")
	if u := c.must(200, "GET", "/Users/"+id, nil); u["displayName"] != "one" || u["userName"] != "etag" {
		t.Errorf("a failed precondition changed the user: %v", u)
	}
	c.must(200, "PATCH", "/Users/"+id, patchBody(op("replace", "displayName", "two")), "If-Match", `"2"`)
	c.must(204, "DELETE", "/Users/"+id, nil, "If-Match", "*")
}

func TestGroups(t *testing.T) {
	c := newServer(t, scim.Options{})
	alice := str(c.createUser("alice", map[string]any{"displayName": "Alice"})["id"])
	bob := str(c.createUser("bob", nil)["id"])
	dev := str(c.createDevice("SN-G1", nil)["id"])

	g := c.must(201, "POST", "/Groups", map[string]any{
		"schemas":     []string{groupURN},
		"displayName": "Family",
		"members": []any{
			map[string]any{"value": alice, "type": "User"},
			map[string]any{"value": dev}, // kind looked up
		},
	})
	gid := str(g["id"])
	members := memberIDs(g)
	if !reflect.DeepEqual(members, sorted(alice, dev)) {
		t.Fatalf("members = %v", g["members"])
	}
	for _, m := range g["members"].([]any) {
		m := m.(map[string]any)
		switch m["value"] {
		case alice:
			if m["type"] != "User" || m["display"] != "Alice" || !strings.HasSuffix(str(m["$ref"]), "/Users/"+alice) {
				t.Errorf("member %v", m)
			}
		case dev:
			if m["type"] != "Device" || m["display"] != "Speaker SN-G1" {
				t.Errorf("member %v", m)
			}
		}
	}
	u := c.must(200, "GET", "/Users/"+alice, nil)
	if gs, _ := u["groups"].([]any); len(gs) != 1 || get(gs[0].(map[string]any), "value") != gid || get(gs[0].(map[string]any), "display") != "Family" {
		t.Errorf("user groups = %v", u["groups"])
	}
	d := c.must(200, "GET", "/Devices/"+dev, nil)
	if gs, _ := d["groups"].([]any); len(gs) != 1 {
		t.Errorf("device groups = %v", d["groups"])
	}

	g = c.must(200, "PATCH", "/Groups/"+gid, patchBody(
		op("add", "members", []any{map[string]any{"value": bob}}),
		op("remove", fmt.Sprintf("members[value eq %q]", alice), nil),
	))
	if !reflect.DeepEqual(memberIDs(g), sorted(bob, dev)) {
		t.Errorf("after PATCH members = %v", g["members"])
	}
	checkError(t, c.do("PATCH", "/Groups/"+gid, patchBody(op("remove", `members[value eq "nobody"]`, nil))), 400, "noTarget", "members")
	checkError(t, c.do("PATCH", "/Groups/"+gid, patchBody(op("add", "members", []any{map[string]any{"value": "nobody"}}))),
		400, "invalidValue", "members")
	checkError(t, c.do("PATCH", "/Groups/"+gid, patchBody(op("add", "members", []any{map[string]any{"value": bob, "type": "Robot"}}))),
		400, "invalidValue", "members.type")
	checkError(t, c.do("PATCH", "/Groups/"+gid, patchBody(op("replace", "members[value eq \""+bob+"\"].display", "B"))),
		400, "mutability", "members.display")

	list := c.must(200, "GET", `/Groups?filter=`+query(`members[value eq "`+dev+`" and type eq "Device"]`), nil)
	if list["totalResults"] != 1.0 {
		t.Errorf("filter by member: %v", list)
	}
	g = c.must(200, "PUT", "/Groups/"+gid, map[string]any{"schemas": []string{groupURN}, "displayName": "Family 2"})
	if g["members"] != nil || g["displayName"] != "Family 2" {
		t.Errorf("PUT = %v", g)
	}
	checkError(t, c.do("POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": "family 2"}), 409, "uniqueness", "")
	c.must(204, "DELETE", "/Groups/"+gid, nil)
}

func memberIDs(g map[string]any) []string {
	var ids []string
	for _, m := range get(g, "members").([]any) {
		ids = append(ids, str(m.(map[string]any)["value"]))
	}
	sort.Strings(ids)
	return ids
}

func sorted(s ...string) []string { sort.Strings(s); return s }

func query(filter string) string {
	return strings.NewReplacer(" ", "%20", `"`, "%22", "[", "%5B", "]", "%5D", "&", "%26", "+", "%2B").Replace(filter)
}

func TestDevices(t *testing.T) {
	c := newServer(t, scim.Options{})
	owner := str(c.createUser("owner", nil)["id"])
	d := c.must(201, "POST", "/Devices", map[string]any{
		"schemas":     []string{deviceURN, thingExtURN},
		"displayName": "Kitchen speaker",
		"active":      true,
		thingExtURN: map[string]any{
			"serialNumber":    "SN-0001",
			"macAddresses":    []any{"AA-BB-CC-DD-EE-01"},
			"thingType":       "device",
			"manufacturer":    "Acme",
			"model":           "S1",
			"firmwareVersion": "1.0.0",
			"location":        "kitchen",
			"attributes":      map[string]any{"color": "red", "watts": 15},
			"owners":          []any{map[string]any{"value": owner}}, // read-only: ignored
		},
	})
	id := str(d["id"])
	ext := d[thingExtURN].(map[string]any)
	if !reflect.DeepEqual(ext["macAddresses"], []any{"aa:bb:cc:dd:ee:01"}) || get(ext, "attributes", "watts") != 15.0 {
		t.Errorf("created %v", d)
	}
	if ext["owners"] != nil {
		t.Errorf("owners set on POST: %v", ext["owners"])
	}
	if !reflect.DeepEqual(d["schemas"], []any{deviceURN, thingExtURN}) || get(d, "meta", "resourceType") != "Device" {
		t.Errorf("schemas/meta %v %v", d["schemas"], d["meta"])
	}

	// Owners are linked and unlinked through PATCH (owner relationships).
	d = c.must(200, "PATCH", "/Devices/"+id, patchBody(op("add", "owners", []any{map[string]any{"value": owner}})))
	owners, _ := get(d, thingExtURN, "owners").([]any)
	if len(owners) != 1 || get(owners[0].(map[string]any), "value") != owner || get(owners[0].(map[string]any), "display") != "owner" {
		t.Fatalf("owners = %v", owners)
	}
	if get(d, "meta", "version") != `W/"2"` {
		t.Errorf("owner change did not bump the version: %v", d["meta"])
	}
	list := c.must(200, "GET", "/Devices?filter="+query(`owners[value eq "`+owner+`"]`), nil)
	if list["totalResults"] != 1.0 {
		t.Errorf("filter by owner: %v", list["totalResults"])
	}
	checkError(t, c.do("PATCH", "/Devices/"+id, patchBody(op("add", "owners", []any{map[string]any{"value": "no-such-user"}}))),
		400, "invalidValue", "owners")
	checkError(t, c.do("PATCH", "/Devices/"+id, patchBody(op("replace", "owners", []any{map[string]any{"value": owner}}))),
		400, "mutability", "owners")
	// A failing operation in the same request undoes the owner change.
	other := str(c.createUser("other", nil)["id"])
	checkError(t, c.do("PATCH", "/Devices/"+id, patchBody(
		op("add", "owners", []any{map[string]any{"value": other}}),
		op("replace", "active", "no"),
	)), 400, "invalidValue", "active")
	if o, _ := get(c.must(200, "GET", "/Devices/"+id, nil), thingExtURN, "owners").([]any); len(o) != 1 {
		t.Errorf("owners after failed PATCH = %v", o)
	}

	d = c.must(200, "PATCH", "/Devices/"+id, patchBody(
		op("remove", `owners[value eq "`+owner+`"]`, nil),
		op("replace", "urn:thingid:params:scim:schemas:extension:thing:2.0:Device:attributes.color", "blue"),
		op("add", "macAddresses", []any{"aabb.ccdd.ee02"}),
		op("replace", "active", false),
	))
	ext = d[thingExtURN].(map[string]any)
	if ext["owners"] != nil || get(ext, "attributes", "color") != "blue" || d["active"] != false ||
		!reflect.DeepEqual(ext["macAddresses"], []any{"aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"}) {
		t.Errorf("after PATCH %v", d)
	}
	checkError(t, c.do("PATCH", "/Devices/"+id, patchBody(op("remove", `owners[value eq "`+owner+`"]`, nil))), 400, "noTarget", "owners")
	checkError(t, c.do("PATCH", "/Devices/"+id, patchBody(op("add", "certificates", []any{map[string]any{"subject": "x"}}))),
		400, "mutability", "certificates")

	// MAC addresses are unique across devices.
	r := c.do("POST", "/Devices", map[string]any{"schemas": []string{deviceURN}, "displayName": "dup",
		thingExtURN: map[string]any{"macAddresses": []any{"aa:bb:cc:dd:ee:02"}}})
	checkError(t, r, 409, "uniqueness", "")

	d = c.must(200, "PUT", "/Devices/"+id, map[string]any{"schemas": []string{deviceURN, thingExtURN}, "displayName": "Renamed",
		thingExtURN: map[string]any{"serialNumber": "SN-0001", "manufacturer": "Acme", "model": "S1"}})
	if d["displayName"] != "Renamed" || get(d, thingExtURN, "macAddresses") != nil || d["active"] != true {
		t.Errorf("PUT = %v", d)
	}
	c.must(204, "DELETE", "/Devices/"+id, nil)
	checkError(t, c.do("GET", "/Devices/"+id, nil), 404, "", "")
}

// TestFilters runs every operator against the SQL backend.
func TestFilters(t *testing.T) {
	c := newServer(t, scim.Options{})
	c.createUser("alice", map[string]any{"displayName": "Alice Liddell", "locale": "en-GB",
		"name":   map[string]any{"givenName": "Alice", "familyName": "Liddell"},
		"emails": []any{map[string]any{"value": "alice@work.example", "type": "work", "primary": true}, map[string]any{"value": "alice@home.example", "type": "home"}}})
	c.createUser("bob", map[string]any{"displayName": "Bob", "active": false, "externalId": "b-1",
		"emails": []any{map[string]any{"value": "bob@home.example", "type": "home"}}})
	c.createUser("carol", map[string]any{"timezone": "Europe/Berlin",
		"emails": []any{map[string]any{"value": "carol@work.example", "type": "work"}}})
	tests := []struct {
		filter string
		want   []string
	}{
		{`userName eq "alice"`, []string{"alice"}},
		{`USERNAME eq "ALICE"`, []string{"alice"}}, // userName is caseExact false
		{`userName ne "alice"`, []string{"bob", "carol"}},
		{`displayName co "lid"`, []string{"alice"}},
		{`userName sw "ca"`, []string{"carol"}},
		{`userName ew "ob"`, []string{"bob"}},
		{`userName gt "bob"`, []string{"carol"}},
		{`userName ge "bob"`, []string{"bob", "carol"}},
		{`userName lt "bob"`, []string{"alice"}},
		{`userName le "bob"`, []string{"alice", "bob"}},
		{`externalId pr`, []string{"bob"}},
		{`timezone pr or locale pr`, []string{"alice", "carol"}},
		{`active eq false`, []string{"bob"}},
		{`active eq true and not (emails co "carol")`, []string{"alice"}},
		{`name.familyName eq "Liddell"`, []string{"alice"}},
		{`urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "Al"`, []string{"alice"}},
		{`emails co "@home.example"`, []string{"alice", "bob"}},
		{`emails.type eq "work"`, []string{"alice", "carol"}},
		{`emails[type eq "work" and value co "alice"]`, []string{"alice"}},
		{`emails[type eq "home" and value co "carol"]`, nil},
		{`emails[primary eq true]`, []string{"alice"}},
		{`userName eq "bob" or userName eq "carol" and active eq true`, []string{"bob", "carol"}},
		{`(userName eq "bob" or userName eq "carol") and active eq true`, []string{"carol"}},
		{`meta.created gt "2000-01-01T00:00:00Z"`, []string{"alice", "bob", "carol"}},
		{`meta.lastModified lt "2000-01-01T00:00:00Z"`, nil},
	}
	for _, tt := range tests {
		list := c.must(200, "GET", "/Users?sortBy=userName&filter="+query(tt.filter), nil)
		var got []string
		res, _ := list["Resources"].([]any)
		for _, r := range res {
			got = append(got, str(r.(map[string]any)["userName"]))
		}
		if !slices.Equal(got, tt.want) || list["totalResults"] != float64(len(tt.want)) {
			t.Errorf("%s: got %v (total %v), want %v", tt.filter, got, list["totalResults"], tt.want)
		}
	}

	c.createDevice("SN-F1", map[string]any{"macAddresses": []any{"00:11:22:33:44:55"}, "attributes": map[string]any{"room": "kitchen", "watts": 10}})
	c.createDevice("SN-F2", map[string]any{"model": "Thermostat", "attributes": map[string]any{"room": "hall", "watts": 3}})
	devTests := []struct {
		filter string
		want   []string
	}{
		{`serialNumber eq "SN-F1"`, []string{"SN-F1"}},
		{`macAddresses eq "00-11-22-33-44-55"`, []string{"SN-F1"}},
		{`macAddresses[value sw "00:11"]`, []string{"SN-F1"}},
		{`model eq "Thermostat"`, []string{"SN-F2"}},
		{`attributes.room eq "hall"`, []string{"SN-F2"}},
		{`attributes.watts gt 5`, []string{"SN-F1"}},
		{`urn:thingid:params:scim:schemas:extension:thing:2.0:Device:manufacturer eq "Acme"`, []string{"SN-F1", "SN-F2"}},
		{`displayName sw "Speaker SN-F"`, []string{"SN-F1", "SN-F2"}},
	}
	for _, tt := range devTests {
		list := c.must(200, "GET", "/Devices?sortBy=serialNumber&filter="+query(tt.filter), nil)
		var got []string
		res, _ := list["Resources"].([]any)
		for _, r := range res {
			got = append(got, str(get(r.(map[string]any), thingExtURN, "serialNumber")))
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.filter, got, tt.want)
		}
	}
	checkError(t, c.do("GET", "/Users?filter="+query(`title eq "x"`), nil), 400, "invalidFilter", "title")
	checkError(t, c.do("GET", "/Devices?filter="+query(`serialNumber eq`), nil), 400, "invalidFilter", "expected a value")
}

func TestPagingAndSorting(t *testing.T) {
	c := newServer(t, scim.Options{MaxResults: 10})
	for i := range 25 {
		c.createUser(fmt.Sprintf("user%02d", i), nil)
	}
	names := func(list map[string]any) []string {
		var out []string
		for _, r := range list["Resources"].([]any) {
			out = append(out, str(r.(map[string]any)["userName"]))
		}
		return out
	}
	list := c.must(200, "GET", "/Users?sortBy=userName&sortOrder=descending&startIndex=3&count=4", nil)
	if got := names(list); !slices.Equal(got, []string{"user22", "user21", "user20", "user19"}) {
		t.Errorf("page = %v", got)
	}
	if list["totalResults"] != 25.0 || list["startIndex"] != 3.0 || list["itemsPerPage"] != 4.0 {
		t.Errorf("list meta %v %v %v", list["totalResults"], list["startIndex"], list["itemsPerPage"])
	}
	// count above maxResults is clamped; startIndex below 1 is 1 (RFC 7644 §3.4.2.4).
	list = c.must(200, "GET", "/Users?sortBy=userName&startIndex=0&count=500", nil)
	if got := names(list); len(got) != 10 || got[0] != "user00" || list["startIndex"] != 1.0 {
		t.Errorf("clamped page = %v start %v", got, list["startIndex"])
	}
	list = c.must(200, "GET", "/Users?count=0", nil)
	if list["totalResults"] != 25.0 || len(list["Resources"].([]any)) != 0 {
		t.Errorf("count=0: %v", list)
	}
	list = c.must(200, "GET", "/Users?sortBy=userName&startIndex=30", nil)
	if list["totalResults"] != 25.0 || len(list["Resources"].([]any)) != 0 {
		t.Errorf("past the end: %v", list)
	}
	// POST /.search takes the same parameters in its body (RFC 7644 §3.4.3).
	list = c.must(200, "POST", "/Users/.search", map[string]any{"schemas": []string{searchURN},
		"filter": `userName sw "user1"`, "sortBy": "userName", "startIndex": 2, "count": 3, "attributes": []string{"userName"}})
	if got := names(list); !slices.Equal(got, []string{"user11", "user12", "user13"}) || list["totalResults"] != 10.0 {
		t.Errorf(".search = %v total %v", got, list["totalResults"])
	}
	checkError(t, c.do("GET", "/Users?count=ten", nil), 400, "invalidValue", "count")
	checkError(t, c.do("GET", "/Users?sortBy=emails", nil), 400, "invalidValue", "sortBy")
}

func TestProjection(t *testing.T) {
	c := newServer(t, scim.Options{})
	c.createUser("proj", map[string]any{"displayName": "P", "name": map[string]any{"givenName": "G", "familyName": "F"},
		"emails": []any{map[string]any{"value": "p@x.example", "type": "work"}}})
	keys := func(m map[string]any) []string {
		var k []string
		for key := range m {
			k = append(k, key)
		}
		sort.Strings(k)
		return k
	}
	list := c.must(200, "GET", "/Users?attributes=userName,name.givenName", nil)
	u := list["Resources"].([]any)[0].(map[string]any)
	if got := keys(u); !slices.Equal(got, []string{"id", "name", "schemas", "userName"}) {
		t.Errorf("attributes projection keys = %v", got)
	}
	if !reflect.DeepEqual(u["name"], map[string]any{"givenName": "G"}) {
		t.Errorf("name = %v", u["name"])
	}
	list = c.must(200, "GET", "/Users?excludedAttributes=emails,meta,id,name.familyName", nil)
	u = list["Resources"].([]any)[0].(map[string]any)
	if got := keys(u); !slices.Equal(got, []string{"active", "displayName", "id", "name", "schemas", "userName"}) {
		t.Errorf("excludedAttributes keys = %v (id cannot be excluded)", got)
	}
	id := str(u["id"])
	if got := keys(c.must(200, "GET", "/Users/"+id+"?attributes=emails.value", nil)); !slices.Equal(got, []string{"emails", "id", "schemas"}) {
		t.Errorf("GET projection keys = %v", got)
	}
	dev := c.createDevice("SN-P", nil)
	d := c.must(200, "GET", "/Devices/"+str(dev["id"])+"?attributes="+thingExtURN+":serialNumber", nil)
	if !reflect.DeepEqual(d[thingExtURN], map[string]any{"serialNumber": "SN-P"}) || d["displayName"] != nil {
		t.Errorf("device projection = %v", d)
	}
	d = c.must(200, "GET", "/Devices/"+str(dev["id"])+"?attributes="+thingExtURN, nil)
	if get(d, thingExtURN, "model") != "Speaker" {
		t.Errorf("whole-extension projection = %v", d)
	}
	checkError(t, c.do("GET", "/Users?attributes=nickName", nil), 400, "invalidValue", "nickName")
	// RFC 7644 §3.9: the parameters apply to the response of a change too.
	p := c.must(200, "PATCH", "/Users/"+id+"?attributes=displayName", patchBody(op("replace", "displayName", "Q")))
	if got := keys(p); !slices.Equal(got, []string{"displayName", "id", "schemas"}) {
		t.Errorf("PATCH projection keys = %v", got)
	}
	checkError(t, c.do("PATCH", "/Users/"+id+"?attributes=bogus", patchBody(op("replace", "displayName", "R"))), 400, "invalidValue", "bogus")
	if u := c.must(200, "GET", "/Users/"+id, nil); u["displayName"] != "Q" {
		t.Errorf("a PATCH with a bad attributes parameter changed the user: %v", u["displayName"])
	}
}

func TestBulk(t *testing.T) {
	c := newServer(t, scim.Options{})
	body := map[string]any{"schemas": []string{bulkURN}, "Operations": []any{
		// The group references a user created later in the same request.
		map[string]any{"method": "POST", "path": "/Groups", "bulkId": "g", "data": map[string]any{
			"schemas": []string{groupURN}, "displayName": "Bulk group",
			"members": []any{map[string]any{"type": "User", "value": "bulkId:u"}}}},
		map[string]any{"method": "POST", "path": "/Users", "bulkId": "u", "data": map[string]any{
			"schemas": []string{userURN}, "userName": "bulkuser"}},
		map[string]any{"method": "POST", "path": "/Devices", "bulkId": "d1", "data": map[string]any{
			"schemas": []string{deviceURN, thingExtURN}, thingExtURN: map[string]any{"serialNumber": "B1"}}},
		map[string]any{"method": "POST", "path": "/Devices", "bulkId": "d2", "data": map[string]any{
			"schemas": []string{deviceURN, thingExtURN}, thingExtURN: map[string]any{"serialNumber": "B1"}}}, // duplicate
		map[string]any{"method": "PATCH", "path": "/Devices/bulkId:d1", "data": patchBody(
			op("add", "owners", []any{map[string]any{"value": "bulkId:u"}}))},
		map[string]any{"method": "DELETE", "path": "/Users/missing"},
	}}
	resp := c.must(200, "POST", "/Bulk", body)
	results := resp["Operations"].([]any)
	if len(results) != 6 {
		t.Fatalf("results = %v", results)
	}
	wantStatus := []string{"201", "201", "201", "409", "200", "404"}
	for i, r := range results {
		r := r.(map[string]any)
		if r["status"] != wantStatus[i] {
			t.Errorf("operation %d: %v, want status %s", i, r, wantStatus[i])
		}
	}
	if get(results[3].(map[string]any), "response", "scimType") != "uniqueness" {
		t.Errorf("duplicate response: %v", results[3])
	}
	g := c.must(200, "GET", strings.TrimPrefix(str(get(results[0].(map[string]any), "location")), c.base), nil)
	uid := str(c.must(200, "GET", strings.TrimPrefix(str(get(results[1].(map[string]any), "location")), c.base), nil)["id"])
	if !reflect.DeepEqual(memberIDs(g), []string{uid}) {
		t.Errorf("group members %v, want the bulk user %s", g["members"], uid)
	}
	d := c.must(200, "GET", strings.TrimPrefix(str(get(results[2].(map[string]any), "location")), c.base), nil)
	if o, _ := get(d, thingExtURN, "owners").([]any); len(o) != 1 {
		t.Errorf("device owners %v", get(d, thingExtURN, "owners"))
	}

	// failOnErrors: 1 stops after the first error; later operations are not run.
	resp = c.must(200, "POST", "/Bulk", map[string]any{"schemas": []string{bulkURN}, "failOnErrors": 1, "Operations": []any{
		map[string]any{"method": "POST", "path": "/Devices", "bulkId": "x1", "data": map[string]any{
			"schemas": []string{deviceURN, thingExtURN}, thingExtURN: map[string]any{"serialNumber": "F1"}}},
		map[string]any{"method": "POST", "path": "/Devices", "bulkId": "x2", "data": map[string]any{
			"schemas": []string{deviceURN, thingExtURN}, thingExtURN: map[string]any{"serialNumber": "B1"}}},
		map[string]any{"method": "POST", "path": "/Devices", "bulkId": "x3", "data": map[string]any{
			"schemas": []string{deviceURN, thingExtURN}, thingExtURN: map[string]any{"serialNumber": "F3"}}},
	}})
	if results := resp["Operations"].([]any); len(results) != 2 || get(results[1].(map[string]any), "status") != "409" {
		t.Errorf("failOnErrors results = %v", results)
	}
	if list := c.must(200, "GET", "/Devices?filter="+query(`serialNumber eq "F3"`), nil); list["totalResults"] != 0.0 {
		t.Error("an operation after failOnErrors was reached ran")
	}

	// Unresolvable and circular references.
	resp = c.must(200, "POST", "/Bulk", map[string]any{"schemas": []string{bulkURN}, "Operations": []any{
		map[string]any{"method": "POST", "path": "/Groups", "bulkId": "a", "data": map[string]any{"schemas": []string{groupURN},
			"displayName": "A", "members": []any{map[string]any{"type": "Group", "value": "bulkId:b"}}}},
		map[string]any{"method": "POST", "path": "/Groups", "bulkId": "b", "data": map[string]any{"schemas": []string{groupURN},
			"displayName": "B", "members": []any{map[string]any{"type": "Group", "value": "bulkId:a"}}}},
		map[string]any{"method": "POST", "path": "/Groups", "bulkId": "c", "data": map[string]any{"schemas": []string{groupURN},
			"displayName": "C", "members": []any{map[string]any{"type": "Group", "value": "bulkId:zzz"}}}},
		map[string]any{"method": "POST", "path": "/Users", "data": map[string]any{"schemas": []string{userURN}, "userName": "nobulkid"}},
		map[string]any{"method": "GET", "path": "/Users", "bulkId": "e"},
	}})
	for i, want := range []string{"409", "409", "409", "400", "400"} {
		if r := resp["Operations"].([]any)[i].(map[string]any); r["status"] != want {
			t.Errorf("operation %d: %v, want %s", i, r, want)
		}
	}
}

func TestBulkLimits(t *testing.T) {
	c := newServer(t, scim.Options{MaxBulkOperations: 2, MaxPayloadSize: 2048})
	ops := []any{}
	for i := range 3 {
		ops = append(ops, map[string]any{"method": "DELETE", "path": fmt.Sprintf("/Users/%d", i)})
	}
	checkError(t, c.do("POST", "/Bulk", map[string]any{"schemas": []string{bulkURN}, "Operations": ops}), 413, "tooLarge", "maxOperations")
	big := map[string]any{"schemas": []string{bulkURN}, "Operations": []any{map[string]any{"method": "POST", "path": "/Users",
		"bulkId": "x", "data": map[string]any{"schemas": []string{userURN}, "userName": strings.Repeat("x", 4096)}}}}
	checkError(t, c.do("POST", "/Bulk", big), 413, "tooLarge", "2048")
	checkError(t, c.do("POST", "/Bulk", map[string]any{"schemas": []string{bulkURN}, "failOnErrors": 0, "Operations": []any{}}),
		400, "invalidValue", "failOnErrors")
	checkError(t, c.do("POST", "/Bulk", map[string]any{"Operations": []any{}}), 400, "invalidValue", "schemas")
}

// bulkDevices builds n device creations; run makes serial numbers and MACs unique
// across calls.
func bulkDevices(n, run int) map[string]any {
	ops := make([]any, n)
	for i := range ops {
		ops[i] = map[string]any{"method": "POST", "path": "/Devices", "bulkId": fmt.Sprint(i), "data": map[string]any{
			"schemas": []string{deviceURN, thingExtURN}, "displayName": "Unit", thingExtURN: map[string]any{
				"serialNumber": fmt.Sprintf("R%d-%06d", run, i), "manufacturer": "Acme", "model": "F1",
				"macAddresses": []any{fmt.Sprintf("02:%02x:%02x:%02x:%02x:%02x", run>>8&0xff, run&0xff, i>>16&0xff, i>>8&0xff, i&0xff)},
			}}}
	}
	return map[string]any{"schemas": []string{bulkURN}, "Operations": ops}
}

// TestBulkFactory creates 10,000 devices in one request, as a factory line does.
func TestBulkFactory(t *testing.T) {
	if testing.Short() {
		t.Skip("10,000 devices")
	}
	c := newServer(t, scim.Options{})
	resp := c.must(200, "POST", "/Bulk", bulkDevices(10000, 0))
	for _, r := range resp["Operations"].([]any) {
		if r.(map[string]any)["status"] != "201" {
			t.Fatalf("operation failed: %v", r)
		}
	}
	if list := c.must(200, "GET", "/Devices?count=0", nil); list["totalResults"] != 10000.0 {
		t.Errorf("stored %v devices", list["totalResults"])
	}
}

// BenchmarkBulkDevices reports the factory path's rate in devices/s.
func BenchmarkBulkDevices(b *testing.B) {
	c := newServer(b, scim.Options{})
	const n = 10000
	bodies := make([][]byte, b.N)
	for i := range bodies {
		bodies[i], _ = json.Marshal(bulkDevices(n, i))
	}
	b.ResetTimer()
	for i := range b.N {
		r := c.do("POST", "/Bulk", string(bodies[i]))
		if r.status != 200 || strings.Contains(string(r.raw), `"status":"4`) {
			b.Fatalf("bulk: %d %.300s", r.status, r.raw)
		}
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "devices/s")
}

func TestDiscovery(t *testing.T) {
	c := newServer(t, scim.Options{MaxBulkOperations: 500})
	sp := c.must(200, "GET", "/ServiceProviderConfig", nil)
	if get(sp, "bulk", "maxOperations") != 500.0 || get(sp, "patch", "supported") != true || get(sp, "etag", "supported") != true ||
		get(sp, "filter", "maxResults") != 1000.0 {
		t.Errorf("ServiceProviderConfig = %v", sp)
	}
	schemas := c.must(200, "GET", "/Schemas", nil)
	if schemas["totalResults"] != 4.0 {
		t.Errorf("schemas: %v", schemas["totalResults"])
	}
	user := c.must(200, "GET", "/Schemas/"+userURN, nil)
	found := false
	for _, a := range user["attributes"].([]any) {
		a := a.(map[string]any)
		switch a["name"] {
		case "userName":
			found = a["required"] == true && a["uniqueness"] == "server" && a["mutability"] == "readWrite"
		case "password":
			if a["returned"] != "never" || a["mutability"] != "writeOnly" {
				t.Errorf("password definition %v", a)
			}
		case "emails":
			if len(a["subAttributes"].([]any)) != 4 {
				t.Errorf("emails definition %v", a)
			}
		}
	}
	if !found {
		t.Errorf("userName definition missing or wrong: %v", user["attributes"])
	}
	ext := c.must(200, "GET", "/Schemas/"+thingExtURN, nil)
	if len(ext["attributes"].([]any)) < 8 {
		t.Errorf("extension schema %v", ext)
	}
	rts := c.must(200, "GET", "/ResourceTypes", nil)
	if rts["totalResults"] != 3.0 {
		t.Errorf("resource types %v", rts)
	}
	dev := c.must(200, "GET", "/ResourceTypes/Device", nil)
	if dev["endpoint"] != "/Devices" || dev["schema"] != deviceURN || get(dev["schemaExtensions"].([]any)[0].(map[string]any), "schema") != thingExtURN {
		t.Errorf("Device resource type %v", dev)
	}
	checkError(t, c.do("GET", "/Schemas?filter="+query(`id eq "x"`), nil), 403, "", "filter")
	checkError(t, c.do("GET", "/Schemas/urn:nope", nil), 404, "", "urn:nope")
	checkError(t, c.do("GET", "/Nope", nil), 404, "", "Nope")
}

// TestBadInput sends malformed requests and checks each is a 4xx naming the
// problem and that nothing was stored.
func TestBadInput(t *testing.T) {
	c := newServer(t, scim.Options{})
	id := str(c.createUser("victim", map[string]any{"displayName": "V", "emails": []any{map[string]any{"value": "v@x.example"}}})["id"])
	before := c.must(200, "GET", "/Users/"+id, nil)
	dev := str(c.createDevice("SN-BAD", nil)["id"])
	devBefore := c.must(200, "GET", "/Devices/"+dev, nil)
	u := "/Users/" + id
	tests := []struct {
		name, method, path string
		body               any
		hdr                []string
		status             int
		scimType, detail   string
	}{
		{"malformed JSON", "PUT", u, `{"schemas": [`, nil, 400, "invalidSyntax", "not valid JSON"},
		{"trailing data", "PUT", u, `{"schemas":["` + userURN + `"],"userName":"x"} {}`, nil, 400, "invalidSyntax", "after the JSON"},
		{"array body", "PUT", u, `[]`, nil, 400, "invalidSyntax", "JSON object"},
		{"empty body", "PUT", u, ``, nil, 400, "invalidSyntax", "empty"},
		{"wrong content type", "PUT", u, `{}`, []string{"Content-Type", "text/plain"}, 415, "", "text/plain"},
		{"missing schemas", "PUT", u, map[string]any{"userName": "x"}, nil, 400, "invalidValue", "schemas"},
		{"foreign schema", "PUT", u, map[string]any{"schemas": []string{groupURN}, "userName": "x"}, nil, 400, "invalidValue", "schemas"},
		{"unknown attribute", "PUT", u, map[string]any{"schemas": []string{userURN}, "userName": "x", "nickName": "n"}, nil, 400, "invalidSyntax", "nickName"},
		{"unknown sub-attribute", "PUT", u, map[string]any{"schemas": []string{userURN}, "userName": "x", "name": map[string]any{"nick": "n"}}, nil, 400, "invalidSyntax", "name.nick"},
		{"duplicate attribute", "PUT", u, `{"schemas":["` + userURN + `"],"userName":"x","USERNAME":"y"}`, nil, 400, "invalidSyntax", "userName"},
		{"string for boolean", "PUT", u, map[string]any{"schemas": []string{userURN}, "userName": "x", "active": "true"}, nil, 400, "invalidValue", "active"},
		{"number for string", "PUT", u, map[string]any{"schemas": []string{userURN}, "userName": 7}, nil, 400, "invalidValue", "userName"},
		{"object for multi", "PUT", u, map[string]any{"schemas": []string{userURN}, "userName": "x", "emails": map[string]any{"value": "a@b.c"}}, nil, 400, "invalidValue", "emails"},
		{"missing required", "PUT", u, map[string]any{"schemas": []string{userURN}, "displayName": "x"}, nil, 400, "invalidValue", "userName"},
		{"identity validation", "PUT", u, map[string]any{"schemas": []string{userURN}, "userName": "x", "emails": []any{map[string]any{"value": "not-an-email"}}}, nil, 400, "invalidValue", "emails"},
		{"bad timezone", "PUT", u, map[string]any{"schemas": []string{userURN}, "userName": "x", "timezone": "Mars/Olympus"}, nil, 400, "invalidValue", "timezone"},
		{"two primaries", "PUT", u, map[string]any{"schemas": []string{userURN}, "userName": "x", "emails": []any{
			map[string]any{"value": "a@b.example", "primary": true}, map[string]any{"value": "c@d.example", "primary": true}}}, nil, 400, "invalidValue", "emails"},
		{"patch bad path", "PATCH", u, patchBody(op("replace", `emails[type eq "work"`, "x")), nil, 400, "invalidPath", "emails"},
		{"patch read-only", "PATCH", u, patchBody(op("replace", "meta.version", "x")), nil, 400, "mutability", "meta"},
		{"patch id", "PATCH", u, patchBody(op("replace", "id", "x")), nil, 400, "mutability", "id"},
		{"patch later op fails", "PATCH", u, patchBody(op("replace", "displayName", "changed"), op("replace", "locale", 5)), nil, 400, "invalidValue", "locale"},
		{"patch required", "PATCH", u, patchBody(op("remove", "userName", nil)), nil, 400, "invalidValue", "userName"},
		{"oversize body", "PUT", u, `{"schemas":["` + userURN + `"],"userName":"` + strings.Repeat("x", 2<<20) + `"}`, nil, 413, "tooLarge", "bytes"},
		{"search without schema", "POST", "/Users/.search", map[string]any{"filter": "userName pr"}, nil, 400, "invalidValue", "schemas"},
		{"search unknown member", "POST", "/Users/.search", map[string]any{"schemas": []string{searchURN}, "filtr": "x"}, nil, 400, "invalidSyntax", "filtr"},
		{"search wrong type", "POST", "/Users/.search", map[string]any{"schemas": []string{searchURN}, "count": "ten"}, nil, 400, "invalidSyntax", "count"},
		{"device bad MAC", "PATCH", "/Devices/" + dev, patchBody(op("add", "macAddresses", []any{"zz:zz"})), nil, 400, "invalidValue", "macAddresses"},
		{"device bad type", "PATCH", "/Devices/" + dev, patchBody(op("replace", thingExtURN+":thingType", "toaster")), nil, 400, "invalidValue", "thingType"},
		{"device bad attribute name", "PATCH", "/Devices/" + dev, patchBody(op("replace", "attributes", map[string]any{"1x": 1})), nil, 400, "invalidValue", "attributes"},
		{"device ext not object", "PUT", "/Devices/" + dev, map[string]any{"schemas": []string{deviceURN}, thingExtURN: "x"}, nil, 400, "invalidValue", thingExtURN},
		{"unknown resource type", "GET", "/Robots", nil, nil, 404, "", "Robots"},
		{"missing resource", "GET", "/Users/nope", nil, nil, 404, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkError(t, c.do(tt.method, tt.path, tt.body, tt.hdr...), tt.status, tt.scimType, tt.detail)
		})
	}
	if after := c.must(200, "GET", "/Users/"+id, nil); !reflect.DeepEqual(before, after) {
		t.Errorf("bad input changed the user:\n%v\n%v", before, after)
	}
	if after := c.must(200, "GET", "/Devices/"+dev, nil); !reflect.DeepEqual(devBefore, after) {
		t.Errorf("bad input changed the device:\n%v\n%v", devBefore, after)
	}
}
