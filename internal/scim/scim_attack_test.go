package scim_test

// Attacks on the SCIM API through the real identity service and SQLite store:
// every test tries to break one security rule and stays as a regression test.

import (
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/scim"
)

// listNames runs a user filter and returns the userNames found; any status
// other than 200 or 400 (a 500, a hang caught by the client) fails the test.
func listStatus(t *testing.T, c *client, path string) response {
	t.Helper()
	r := c.do("GET", path, nil)
	if r.status != 200 && r.status != 400 {
		t.Fatalf("GET %s: status %d, want 200 or 400: %.500s", path, r.status, r.raw)
	}
	return r
}

func totalOf(r response) float64 { f, _ := r.body["totalResults"].(float64); return f }

// TestAttackFilterInjection sends SQL through every place a filter, sort or
// projection carries text: values, attribute names, free attribute names, sortBy.
// Values must match literally; names must be refused; the tables must survive.
func TestAttackFilterInjection(t *testing.T) {
	c := newServer(t, scim.Options{})
	c.createUser("alice", map[string]any{"displayName": "Alice"})
	c.createUser("o'brien", map[string]any{"displayName": `50% "off"_x`})
	c.createDevice("SN-1", map[string]any{"attributes": map[string]any{"room": "hall"}})

	values := []string{
		`' OR '1'='1`, `alice' --`, `"; DROP TABLE users; --`, `') OR 1=1 --`, `\`, `%`, `_`, `%%`, `\%`,
		`' UNION SELECT doc FROM users --`, "\x00", `$.passwordHash`, `*`,
	}
	for _, v := range values {
		for _, op := range []string{"eq", "co", "sw", "ew", "gt"} {
			f := fmt.Sprintf(`userName %s %s`, op, jsonString(v))
			r := listStatus(t, c, "/Users?filter="+url.QueryEscape(f))
			if strings.ContainsRune(v, 0) {
				// SQLite's LIKE stops at NUL ("co" would match everything) and
				// PostgreSQL refuses NUL: no stored value holds one.
				if r.status != 400 {
					t.Errorf("%s: status %d, want 400: %s", f, r.status, r.raw)
				}
				continue
			}
			if r.status != 200 {
				t.Errorf("%s: status %d: %s", f, r.status, r.raw)
				continue
			}
			// Only gt may match (by order); the literal values are in no user name.
			if op != "gt" && totalOf(r) != 0 {
				t.Errorf("%s matched %v users: the value is not taken literally", f, totalOf(r))
			}
		}
	}
	// LIKE wildcards in values are literal: "50%" matches only the name holding it.
	for f, want := range map[string]float64{
		`displayName co "%"`:     1,
		`displayName co "_"`:     1,
		`displayName sw "50% "`:  1,
		`displayName sw "5_%"`:   0,
		`displayName co "\"off"`: 1,
		`userName eq "O'BRIEN"`:  1,
		`displayName ew "x"`:     1,
		`displayName co "lic"`:   1,
		`userName co ""`:         2,
	} {
		if r := listStatus(t, c, "/Users?filter="+url.QueryEscape(f)); r.status != 200 || totalOf(r) != want {
			t.Errorf("%s: status %d, %v matches, want %v: %s", f, r.status, totalOf(r), want, r.raw)
		}
	}
	// SQL in names is refused by the grammar or the schema, never compiled.
	for _, f := range []string{
		`userName) OR (1=1 eq "x"`,
		`user_name_lower eq "alice"`,
		`doc eq "x"`,
		`x.doc pr`,
		`passwordHash pr`,
		`name.passwordHash pr`,
		`emails[passwordHash pr]`,
		`emails.value') OR ('1 eq "x"`,
		`urn:x:y' OR 1=1:userName eq "x"`,
		`userName eq "x" or 1 eq 1`,
	} {
		r := listStatus(t, c, "/Users?filter="+url.QueryEscape(f))
		if r.status != 400 {
			t.Errorf("%s: status %d, want 400: %s", f, r.status, r.raw)
		}
	}
	for _, s := range []string{`userName; DROP TABLE users`, `doc`, `x.doc`, `passwordHash`, `1`, `userName DESC, (SELECT 1)`, `attributes.`, `attributes.a'b`} {
		for _, path := range []string{"/Users", "/Devices"} {
			r := listStatus(t, c, path+"?sortBy="+url.QueryEscape(s))
			if r.status != 400 {
				t.Errorf("%s sortBy=%s: status %d, want 400: %s", path, s, r.status, r.raw)
			}
		}
	}
	// Free attribute names reach SQL only as bind parameters; the grammar
	// refuses quotes and brackets before that.
	for _, f := range []string{
		`attributes.room' OR '1'='1 eq "x"`,
		`attributes.$.room eq "hall"`,
		`attributes.room.x eq "hall"`,
		`attributes.ro"om eq "x"`,
	} {
		r := listStatus(t, c, "/Devices?filter="+url.QueryEscape(f))
		if r.status == 200 && totalOf(r) != 0 {
			t.Errorf("%s matched %v devices", f, totalOf(r))
		}
	}
	if r := listStatus(t, c, "/Devices?sortBy=attributes.room&filter="+url.QueryEscape(`attributes.room eq "hall"`)); totalOf(r) != 1 {
		t.Errorf("attributes.room eq hall: %s", r.raw)
	}
	// The tables are intact.
	if r := c.must(200, "GET", "/Users", nil); r["totalResults"] != float64(2) {
		t.Errorf("users after the attack: %v", r["totalResults"])
	}
}

func jsonString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r < 0x20:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// TestAttackMalformedQueryString: a query string Go cannot parse (a raw ";" or
// a bad %-escape) must not silently drop the filter and list everything: a
// client acting on "every match" would act on every resource.
func TestAttackMalformedQueryString(t *testing.T) {
	c := newServer(t, scim.Options{})
	id := str(c.createUser("alice", nil)["id"])
	c.createUser("bob", nil)
	for _, q := range []string{
		`filter=userName%20eq%20%22a;b%22`,
		`filter=userName%20eq%20%22100%%22`,
		`filter=userName%20eq%20%22x%22&x=%zz`,
		`attributes=userName;id`,
	} {
		r := c.do("GET", "/Users?"+q, nil)
		if r.status != 400 || totalOf(r) != 0 {
			t.Errorf("GET /Users?%s: status %d, want 400: %.300s", q, r.status, r.raw)
		}
	}
	r := c.do("GET", "/Users/"+id+"?attributes=%zz", nil)
	checkError(t, r, 400, "invalidValue", "query")
	r = c.do("PATCH", "/Users/"+id+"?attributes=userName;id", patchBody(op("replace", "displayName", "x")))
	checkError(t, r, 400, "invalidValue", "query")
	if u := c.must(200, "GET", "/Users/"+id, nil); u["displayName"] != nil {
		t.Errorf("a refused PATCH changed the user: %v", u)
	}
}

// TestAttackExpensiveFilters: filters built to be slow or to exhaust the
// parser, the SQL compiler or the database are refused with 400 or answered,
// never a 500 and never a hang.
func TestAttackExpensiveFilters(t *testing.T) {
	c := newServer(t, scim.Options{})
	c.createUser("alice", map[string]any{"emails": []any{map[string]any{"value": "a@x.example"}}})
	c.createDevice("SN-1", map[string]any{"attributes": map[string]any{"a": "b"}})
	chain := func(term, op string, limit int) string {
		var parts []string
		for n := 0; n+len(term)+len(op)+2 <= limit; n += len(term) + len(op) + 2 {
			parts = append(parts, term)
		}
		return strings.Join(parts, " "+op+" ")
	}
	tests := []struct {
		name, path, filter string
		want               int
	}{
		{"too long", "/Users", `userName co "` + strings.Repeat("a", 5000) + `"`, 400},
		{"nested parentheses", "/Users", strings.Repeat("(", 40) + `userName pr` + strings.Repeat(")", 40), 400},
		{"nested not", "/Users", strings.Repeat("not (", 40) + `userName pr` + strings.Repeat(")", 40), 400},
		{"unbalanced", "/Users", strings.Repeat("(", 2000), 400},
		{"or chain of present", "/Users", chain("id pr", "or", 4096), 200},
		{"and chain of present", "/Users", chain("id pr", "and", 4096), 200},
		{"or chain of emails", "/Users", chain("emails pr", "or", 4096), 200},
		{"or chain of value paths", "/Users", chain(`emails[value co "a"]`, "or", 4096), 200},
		{"or chain of groups", "/Users", chain(`groups eq "x"`, "or", 4096), 200},
		{"or chain of attributes", "/Devices", chain(`attributes.a pr`, "or", 4096), 200},
		{"or chain of attributes eq", "/Devices", chain(`attributes.a eq 1`, "or", 4096), 200},
		{"and chain of not", "/Users", chain(`not (id pr)`, "and", 4096), 200},
		{"long co", "/Users", `userName co "` + strings.Repeat("%_", 2000) + `"`, 200},
		{"number out of range", "/Devices", `attributes.a gt 1e999`, 400},
		{"huge exponent", "/Devices", `attributes.a gt 1e-999999999`, 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := listStatus(t, c, tt.path+"?filter="+url.QueryEscape(tt.filter))
			if r.status != tt.want {
				t.Errorf("status %d, want %d: %.300s", r.status, tt.want, r.raw)
			}
			// The same through POST .search.
			r = c.do("POST", tt.path+"/.search", map[string]any{"schemas": []string{searchURN}, "filter": tt.filter})
			if r.status != tt.want {
				t.Errorf(".search: status %d, want %d: %.300s", r.status, tt.want, r.raw)
			}
		})
	}
}

// TestAttackPasswordNeverLeaks: no projection, filter, sort or error message
// reveals the password hash or lets a caller test it.
func TestAttackPasswordNeverLeaks(t *testing.T) {
	c := newServer(t, scim.Options{})
	id := str(c.createUser("alice", map[string]any{"password": "correct horse battery"})["id"])
	leak := func(what string, r response) {
		t.Helper()
		for _, s := range []string{"argon2", "correct horse"} {
			if strings.Contains(strings.ToLower(string(r.raw)), strings.ToLower(s)) {
				t.Errorf("%s: the response reveals %q: %s", what, s, r.raw)
			}
		}
	}
	for _, p := range []string{
		"/Users/" + id, "/Users/" + id + "?attributes=password", "/Users/" + id + "?attributes=password,userName",
		"/Users/" + id + "?excludedAttributes=userName", "/Users?attributes=password",
		"/Users/" + id + "?attributes=urn:ietf:params:scim:schemas:core:2.0:User:password",
		"/Users/" + id + "?attributes=passwordHash",
	} {
		r := c.do("GET", p, nil)
		leak(p, r)
		if r.status == 200 {
			if _, ok := r.body["password"]; ok {
				t.Errorf("%s returned the password attribute", p)
			}
		}
	}
	for _, f := range []string{`password pr`, `password sw "$argon2"`, `password eq "correct horse battery"`,
		`PASSWORD co "a"`, `urn:ietf:params:scim:schemas:core:2.0:User:password pr`, `password.value pr`, `password[value pr]`} {
		r := listStatus(t, c, "/Users?filter="+url.QueryEscape(f))
		leak(f, r)
		if r.status != 400 {
			t.Errorf("filter %s: status %d, want 400 (password is not filterable)", f, r.status)
		}
	}
	for _, s := range []string{"password", "PassWord", "urn:ietf:params:scim:schemas:core:2.0:User:password"} {
		r := listStatus(t, c, "/Users?sortBy="+url.QueryEscape(s))
		leak(s, r)
		if r.status != 400 {
			t.Errorf("sortBy=%s: status %d, want 400", s, r.status)
		}
	}
	// Writes answer without the password either.
	for _, r := range []response{
		c.do("PUT", "/Users/"+id, map[string]any{"schemas": []string{userURN}, "userName": "alice"}),
		c.do("PATCH", "/Users/"+id+"?attributes=password", patchBody(op("replace", "displayName", "A"))),
		c.do("PATCH", "/Users/"+id, patchBody(op("replace", "password", "short"))),
		c.do("POST", "/Bulk", map[string]any{"schemas": []string{bulkURN}, "Operations": []any{
			map[string]any{"method": "PATCH", "path": "/Users/" + id, "data": patchBody(op("replace", "password", "x"))}}}),
	} {
		leak("write", r)
	}
	// A PATCH on the password path that is not a string does not clear or keep a
	// bogus value silently.
	checkError(t, c.do("PATCH", "/Users/"+id, patchBody(op("replace", "password", map[string]any{"value": "x"}))), 400, "invalidValue", "password")
	checkError(t, c.do("PATCH", "/Users/"+id, patchBody(op("add", "password.value", "x"))), 400, "invalidPath", "password")
}

// TestAttackMassAssignment: a client cannot choose ids, meta, versions,
// memberships, owners or verification flags through POST, PUT or PATCH.
func TestAttackMassAssignment(t *testing.T) {
	c := newServer(t, scim.Options{})
	victim := c.createUser("victim", nil)
	vid := str(victim["id"])
	grp := c.must(201, "POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": "staff"})
	gid := str(grp["id"])

	// POST: id, meta and groups are read-only and ignored (RFC 7644 §3.3);
	// unknown attributes such as emailVerified are refused.
	u := c.must(201, "POST", "/Users", map[string]any{"schemas": []string{userURN}, "userName": "mallory",
		"id": vid, "meta": map[string]any{"version": `W/"99"`, "created": "2000-01-01T00:00:00Z"},
		"groups": []any{map[string]any{"value": gid}}})
	if str(u["id"]) == vid || get(u, "meta", "version") != `W/"1"` || u["groups"] != nil {
		t.Errorf("POST took read-only attributes: %v", u)
	}
	mid := str(u["id"])
	checkError(t, c.do("POST", "/Users", map[string]any{"schemas": []string{userURN}, "userName": "eve", "emailVerified": true}), 400, "invalidSyntax", "emailVerified")
	checkError(t, c.do("POST", "/Users", map[string]any{"schemas": []string{userURN}, "userName": "eve", "passwordHash": "$argon2id$"}), 400, "invalidSyntax", "passwordHash")
	if g := c.must(200, "GET", "/Groups/"+gid, nil); g["members"] != nil {
		t.Errorf("POST /Users with groups made a member: %v", g)
	}

	// PUT with another user's id in the body changes only the addressed user.
	c.must(200, "PUT", "/Users/"+mid, map[string]any{"schemas": []string{userURN}, "userName": "mallory", "id": vid, "displayName": "M"})
	if v := c.must(200, "GET", "/Users/"+vid, nil); !reflect.DeepEqual(v["displayName"], victim["displayName"]) {
		t.Errorf("PUT with id %s changed the victim: %v", vid, v)
	}

	// PATCH: every read-only attribute answers mutability, including through
	// a path-less value and the fully qualified names.
	for _, o := range []map[string]any{
		op("replace", "id", vid),
		op("replace", "meta", map[string]any{"version": `W/"7"`}),
		op("replace", "meta.version", `W/"7"`),
		op("add", "groups", []any{map[string]any{"value": gid}}),
		op("add", "groups.value", gid),
		op("add", `groups[value eq "x"].value`, gid),
		op("replace", "", map[string]any{"id": vid}),
		op("replace", "", map[string]any{"groups": []any{map[string]any{"value": gid}}}),
		op("replace", "", map[string]any{"urn:ietf:params:scim:schemas:core:2.0:User:meta.version": "x"}),
	} {
		r := c.do("PATCH", "/Users/"+mid, patchBody(o))
		if r.status != 400 {
			t.Errorf("PATCH %v: status %d, want 400: %s", o, r.status, r.raw)
		}
	}
	for _, o := range []map[string]any{
		op("add", "emailVerified", true),
		op("replace", "", map[string]any{"emailVerified": true}),
		op("replace", "passwordHash", "$argon2id$v=19$m=65536,t=1,p=1$AAAA$AAAA"),
	} {
		if r := c.do("PATCH", "/Users/"+mid, patchBody(o)); r.status != 400 {
			t.Errorf("PATCH %v: status %d, want 400: %s", o, r.status, r.raw)
		}
	}
	if g := c.must(200, "GET", "/Groups/"+gid, nil); g["members"] != nil {
		t.Errorf("user PATCH made a group member: %v", g)
	}
	if m := c.must(200, "GET", "/Users/"+mid, nil); get(m, "meta", "version") != `W/"2"` {
		t.Errorf("refused PATCHes changed the user: %v", m)
	}

	// Devices: owners only through add/remove of existing users; certificates read-only.
	dev := c.createDevice("SN-M1", nil)
	did := str(dev["id"])
	grp2 := c.must(201, "POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": "g2"})
	for _, tc := range []struct {
		body   map[string]any
		status int
	}{
		{patchBody(op("replace", thingExtURN+":owners", []any{map[string]any{"value": vid}})), 400},
		{patchBody(op("add", "owners", []any{map[string]any{"value": did}})), 400},             // a device is not a user
		{patchBody(op("add", "owners", []any{map[string]any{"value": str(grp2["id"])}})), 400}, // nor a group
		{patchBody(op("add", "owners.value", vid)), 400},                                       // whole owners only
		{patchBody(op("add", "", map[string]any{thingExtURN: map[string]any{"owners": []any{map[string]any{"value": vid}}}})), 400},
		{patchBody(op("add", thingExtURN+":certificates", []any{map[string]any{"fingerprintSha256": strings.Repeat("a", 64)}})), 400},
	} {
		r := c.do("PATCH", "/Devices/"+did, tc.body)
		if r.status != tc.status {
			t.Errorf("PATCH device %v: status %d, want %d: %s", tc.body, r.status, tc.status, r.raw)
		}
	}
	if d := c.must(200, "GET", "/Devices/"+did, nil); get(d, thingExtURN, "owners") != nil || get(d, thingExtURN, "certificates") != nil {
		t.Errorf("refused PATCHes changed the device: %v", d)
	}
	c.must(201, "POST", "/Devices", map[string]any{"schemas": []string{deviceURN, thingExtURN}, thingExtURN: map[string]any{
		"serialNumber": "SN-M2", "owners": []any{map[string]any{"value": vid}}}})
	if r := c.must(200, "GET", "/Devices?filter="+url.QueryEscape(`owners eq "`+vid+`"`), nil); r["totalResults"] != float64(0) {
		t.Errorf("POST /Devices with owners linked an owner: %v", r)
	}
}

// TestAttackMemberKindConfusion: a member's declared type must match the
// identity the id names, whether given directly or through a Bulk bulkId.
func TestAttackMemberKindConfusion(t *testing.T) {
	c := newServer(t, scim.Options{})
	uid := str(c.createUser("alice", nil)["id"])
	did := str(c.createDevice("SN-K1", nil)["id"])
	for _, m := range []map[string]any{
		{"value": uid, "type": "Device"},
		{"value": uid, "type": "Group"},
		{"value": did, "type": "User"},
		{"value": uid, "$ref": "https://evil.example/scim/v2/Devices/" + uid},
		{"value": uid, "type": "user'); DROP TABLE relationships; --"},
		{"value": "no-such-id"},
	} {
		r := c.do("POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": "g", "members": []any{m}})
		if r.status != 400 {
			t.Errorf("member %v: status %d, want 400: %s", m, r.status, r.raw)
		}
	}
	if r := c.must(200, "GET", "/Groups", nil); r["totalResults"] != float64(0) {
		t.Errorf("refused groups were stored: %v", r)
	}
	bulk := map[string]any{"schemas": []string{bulkURN}, "Operations": []any{
		map[string]any{"method": "POST", "path": "/Users", "bulkId": "u", "data": map[string]any{"schemas": []string{userURN}, "userName": "bob"}},
		map[string]any{"method": "POST", "path": "/Groups", "bulkId": "g", "data": map[string]any{"schemas": []string{groupURN}, "displayName": "bulkgroup",
			"members": []any{map[string]any{"value": "bulkId:u", "type": "Device"}}}},
		map[string]any{"method": "POST", "path": "/Groups", "bulkId": "g2", "data": map[string]any{"schemas": []string{groupURN}, "displayName": "bulkgroup2",
			"members": []any{map[string]any{"value": "bulkId:u", "$ref": "/Devices/bulkId:u"}}}},
		map[string]any{"method": "PATCH", "path": "/Devices/bulkId:u", "data": patchBody(op("replace", "displayName", "x"))},
		map[string]any{"method": "DELETE", "path": "/Groups/bulkId:u"},
	}}
	r := c.must(200, "POST", "/Bulk", bulk)
	ops, _ := r["Operations"].([]any)
	if len(ops) != 5 {
		t.Fatalf("bulk answered %d operations: %v", len(ops), r)
	}
	for i, want := range []string{"201", "400", "400", "404", "404"} {
		if got := str(ops[i].(map[string]any)["status"]); got != want {
			t.Errorf("bulk op %d: status %s, want %s: %v", i, got, want, ops[i])
		}
	}
	if r := c.must(200, "GET", "/Groups", nil); r["totalResults"] != float64(0) {
		t.Errorf("groups with confused members were stored: %v", r)
	}
}

// TestAttackResourceLimits: oversized, deep or out-of-range inputs are 4xx.
func TestAttackResourceLimits(t *testing.T) {
	c := newServer(t, scim.Options{MaxBulkOperations: 3, MaxResults: 5})
	for i := range 7 {
		c.createDevice(fmt.Sprintf("SN-L%d", i), nil)
	}
	// Bulk with maxOperations+1.
	ops := []any{}
	for i := range 4 {
		ops = append(ops, map[string]any{"method": "DELETE", "path": fmt.Sprintf("/Users/%d", i)})
	}
	checkError(t, c.do("POST", "/Bulk", map[string]any{"schemas": []string{bulkURN}, "Operations": ops}), 413, "tooLarge", "maxOperations")

	// Deeply nested JSON bodies.
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for _, b := range []string{
		`{"schemas":["` + userURN + `"],"userName":"x","name":` + deep + `}`,
		`{"schemas":["` + deviceURN + `"],"` + thingExtURN + `":{"attributes":{"a":` + deep + `}}}`,
	} {
		for _, p := range []string{"/Users", "/Devices"} {
			if r := c.do("POST", p, b); r.status != 400 {
				t.Errorf("POST %s nested body: status %d: %.300s", p, r.status, r.raw)
			}
		}
	}
	if r := c.do("POST", "/Bulk", `{"schemas":["`+bulkURN+`"],"Operations":[{"method":"POST","path":"/Users","bulkId":"a","data":`+deep+`}]}`); r.status != 400 {
		t.Errorf("bulk nested body: status %d: %.300s", r.status, r.raw)
	}

	// Paging parameters out of range.
	for q, want := range map[string]int{
		"count=1000000000":                          200,
		"count=-5":                                  200,
		"count=abc":                                 400,
		"count=99999999999999999999":                400,
		"startIndex=-9223372036854775808":           200,
		"startIndex=9223372036854775807":            200,
		"startIndex=99999999999999999999":           400,
		"startIndex=0&count=0":                      200,
		"startIndex=1e3":                            400,
		"sortOrder=sideways":                        400,
		"sortBy=meta.created&sortOrder=DESCENDING":  200,
		"attributes=" + strings.Repeat("a,", 10000): 400,
	} {
		r := listStatus(t, c, "/Devices?"+q)
		if r.status != want {
			t.Errorf("%s: status %d, want %d: %.200s", q, r.status, want, r.raw)
			continue
		}
		if r.status == 200 {
			if n := len(r.body["Resources"].([]any)); n > 5 {
				t.Errorf("%s: %d resources, more than MaxResults", q, n)
			}
		}
	}
	r := c.must(200, "POST", "/Devices/.search", map[string]any{"schemas": []string{searchURN}, "startIndex": -1 << 62, "count": 1 << 62})
	if n := len(r["Resources"].([]any)); n > 5 {
		t.Errorf(".search: %d resources, more than MaxResults", n)
	}
	checkError(t, c.do("POST", "/Devices/.search", `{"schemas":["`+searchURN+`"],"count":1e99}`), 400, "invalidSyntax", "count")
}

// TestAttackIfMatch: every precondition that is not the current version fails
// with 412 and changes nothing; "*" and the current version succeed.
func TestAttackIfMatch(t *testing.T) {
	c := newServer(t, scim.Options{})
	id := str(c.createUser("alice", nil)["id"])
	u := "/Users/" + id
	for _, h := range []string{`W/"2"`, `"2"`, `W/"0"`, `W/"-1"`, `W/""`, `garbage`, `W/"1 "`, `W/"1", W/"2"`, `W/"9223372036854775808"`, `W/"1e0"`} {
		r := c.do("PATCH", u, patchBody(op("replace", "displayName", "changed")), "If-Match", h)
		if r.status != 412 {
			t.Errorf("If-Match %s: status %d, want 412: %s", h, r.status, r.raw)
		}
		if r.status == 200 {
			t.Errorf("If-Match %s changed the user", h)
		}
	}
	if g := c.must(200, "GET", u, nil); get(g, "meta", "version") != `W/"1"` {
		t.Fatalf("failed preconditions changed the user: %v", g)
	}
	c.must(200, "PATCH", u, patchBody(op("replace", "displayName", "a")), "If-Match", `W/"1"`)
	c.must(200, "PATCH", u, patchBody(op("replace", "displayName", "b")), "If-Match", `"2"`)
	c.must(200, "PATCH", u, patchBody(op("replace", "displayName", "c")), "If-Match", `*`)
	checkError(t, c.do("DELETE", u, nil, "If-Match", `W/"1"`), 412, "", "If-Match")
	c.must(204, "DELETE", u, nil, "If-Match", `W/"4"`)
}

// TestAttackNestedAttributes: a device whose free attributes nest deeper than
// the databases' JSON parsers allow (SQLite: 1000 levels) would make every
// attributes.<name> filter and sort over it fail with a 500. Such values are
// refused when written, naming the attribute.
func TestAttackNestedAttributes(t *testing.T) {
	c := newServer(t, scim.Options{})
	c.createDevice("SN-N0", map[string]any{"attributes": map[string]any{"a": 1}})
	deep := strings.Repeat("[", 1500) + strings.Repeat("]", 1500)
	body := `{"schemas":["` + deviceURN + `","` + thingExtURN + `"],"` + thingExtURN + `":{"serialNumber":"SN-N1","attributes":{"a":` + deep + `}}}`
	checkError(t, c.do("POST", "/Devices", body), 400, "invalidValue", "attributes")
	id := str(c.createDevice("SN-N2", nil)["id"])
	r := c.do("PATCH", "/Devices/"+id, `{"schemas":["`+patchURN+`"],"Operations":[{"op":"add","path":"attributes.b","value":`+deep+`}]}`)
	checkError(t, r, 400, "invalidValue", "attributes")
	r = c.do("POST", "/Bulk", `{"schemas":["`+bulkURN+`"],"Operations":[{"method":"POST","path":"/Devices","bulkId":"d","data":`+body+`}]}`)
	if r.status != 200 || !strings.Contains(string(r.raw), `"status":"400"`) {
		t.Errorf("bulk create with nested attributes: %d %.300s", r.status, r.raw)
	}
	// A moderately nested value is fine, and filters keep working.
	c.createDevice("SN-N3", map[string]any{"attributes": map[string]any{"cfg": map[string]any{"x": []any{[]any{1}}}}})
	for _, f := range []string{`attributes.a eq 1`, `attributes.b pr`, `attributes.zz eq "x"`} {
		if r := listStatus(t, c, "/Devices?sortBy=attributes.a&filter="+url.QueryEscape(f)); r.status != 200 {
			t.Errorf("%s: status %d: %.300s", f, r.status, r.raw)
		}
	}
}
