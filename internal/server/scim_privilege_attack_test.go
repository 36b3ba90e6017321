package server

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/authn"
)

// scimCall sends a SCIM request with auth and returns the status and the body.
func scimCall(t *testing.T, r *running, auth func(*http.Request), method, path string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, r.base+"/scim/v2"+path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/scim+json")
	}
	auth(req)
	resp, err := r.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

// clientToken is a client_credentials access token for a new client with scopes.
func clientToken(t *testing.T, r *running, name string, scopes ...string) func(*http.Request) {
	t.Helper()
	id, secret := createClient(t, r, map[string]any{"client_name": name, "grant_types": []string{"client_credentials"}, "scopes": scopes})
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, r.client)
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: r.base + "/oauth2/token", Scopes: scopes}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("token with %v: %v", scopes, err)
	}
	return bearer(tok.AccessToken)
}

func patchOps(ops ...map[string]any) map[string]any {
	list := make([]any, len(ops))
	for i, op := range ops {
		list[i] = op
	}
	return map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:PatchOp"}, "Operations": list}
}

// TestAttackSCIMWriteCannotMakeAdministrators: a client with scim:write but
// not admin provisions freely but can neither make anyone an administrator
// nor take an administrator's account over, by any SCIM write path.
func TestAttackSCIMWriteCannotMakeAdministrators(t *testing.T) {
	r := serve(t)
	pw := adminPassword(t, r)
	admin := basic("admin", pw)
	write := clientToken(t, r, "provisioner", authn.ScopeSCIMWrite)
	full := clientToken(t, r, "full", authn.ScopeAdmin)

	one := func(path string) map[string]any {
		t.Helper()
		code, m := scimCall(t, r, admin, "GET", path, nil)
		list, _ := m["Resources"].([]any)
		if code != 200 || len(list) != 1 {
			t.Fatalf("GET %s: %d %v", path, code, m)
		}
		return list[0].(map[string]any)
	}
	adminID := one(`/Users?filter=userName%20eq%20%22admin%22`)["id"].(string)
	groupID := one(`/Groups?filter=displayName%20eq%20%22administrators%22`)["id"].(string)
	const alicePW = "alice's very long password"
	code, m := scimCall(t, r, admin, "POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": "alice", "password": alicePW})
	if code != 201 {
		t.Fatalf("create alice: %d %v", code, m)
	}
	aliceID := m["id"].(string)
	code, m = scimCall(t, r, admin, "POST", "/Groups", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:Group"},
		"displayName": "staff", "members": []any{map[string]any{"value": aliceID, "type": "User"}}})
	if code != 201 {
		t.Fatalf("create staff: %d %v", code, m)
	}
	staffID := m["id"].(string)

	snapshot := func() []map[string]any {
		t.Helper()
		var out []map[string]any
		for _, p := range []string{"/Users/" + adminID, "/Groups/" + groupID, "/Groups/" + staffID} {
			code, m := scimCall(t, r, admin, "GET", p, nil)
			if code != 200 {
				t.Fatalf("GET %s: %d %v", p, code, m)
			}
			out = append(out, m)
		}
		code, m := scimCall(t, r, admin, "GET", `/Groups?filter=displayName%20eq%20%22administrators%22`, nil)
		if code != 200 {
			t.Fatalf("list administrators groups: %d %v", code, m)
		}
		return append(out, m)
	}
	before := snapshot()

	addAlice := patchOps(map[string]any{"op": "add", "path": "members", "value": []any{map[string]any{"value": aliceID, "type": "User"}}})
	newPW := patchOps(map[string]any{"op": "replace", "path": "password", "value": "the attacker's own password"})
	groupURN := "urn:ietf:params:scim:schemas:core:2.0:Group"
	userURN := "urn:ietf:params:scim:schemas:core:2.0:User"
	attacks := []struct {
		name, method, path string
		body               any
	}{
		{"PATCH add a member to administrators", "PATCH", "/Groups/" + groupID, addAlice},
		{"PATCH members without a path", "PATCH", "/Groups/" + groupID, patchOps(map[string]any{"op": "add",
			"value": map[string]any{"members": []any{map[string]any{"value": aliceID}}}})},
		{"PATCH remove the administrators' members", "PATCH", "/Groups/" + groupID, patchOps(map[string]any{"op": "remove", "path": "members"})},
		{"PUT administrators with a new member", "PUT", "/Groups/" + groupID, map[string]any{"schemas": []string{groupURN}, "displayName": "administrators",
			"members": []any{map[string]any{"value": adminID, "type": "User"}, map[string]any{"value": aliceID, "type": "User"}}}},
		{"PATCH rename administrators", "PATCH", "/Groups/" + groupID, patchOps(map[string]any{"op": "replace", "path": "displayName", "value": "former admins"})},
		{"DELETE administrators", "DELETE", "/Groups/" + groupID, nil},
		{"POST a second administrators group", "POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": "administrators",
			"members": []any{map[string]any{"value": aliceID, "type": "User"}}}},
		{"POST Administrators in another case", "POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": " Administrators "}},
		{"PATCH rename a group of ours to administrators", "PATCH", "/Groups/" + staffID, patchOps(map[string]any{"op": "replace", "path": "displayName", "value": "administrators"})},
		{"PATCH an administrator's password", "PATCH", "/Users/" + adminID, newPW},
		{"PATCH remove an administrator's password", "PATCH", "/Users/" + adminID, patchOps(map[string]any{"op": "remove", "path": "password"})},
		{"PUT an administrator with a password", "PUT", "/Users/" + adminID, map[string]any{"schemas": []string{userURN}, "userName": "admin",
			"password": "the attacker's own password"}},
		{"PATCH an administrator's userName", "PATCH", "/Users/" + adminID, patchOps(map[string]any{"op": "replace", "path": "userName", "value": "root"})},
		{"PATCH deactivate an administrator", "PATCH", "/Users/" + adminID, patchOps(map[string]any{"op": "replace", "path": "active", "value": false})},
		{"DELETE an administrator", "DELETE", "/Users/" + adminID, nil},
	}
	for _, a := range attacks {
		code, m := scimCall(t, r, write, a.method, a.path, a.body)
		detail, _ := m["detail"].(string)
		if code != 403 || m["status"] != "403" || m["scimType"] != "mutability" || !strings.Contains(detail, "`admin` scope") {
			t.Errorf("%s with scim:write: %d %v, want 403 naming the admin scope", a.name, code, m)
		}
	}
	var ops []any
	for i, a := range attacks {
		op := map[string]any{"method": a.method, "path": a.path, "bulkId": "b" + string(rune('a'+i))}
		if a.body != nil {
			op["data"] = a.body
		}
		ops = append(ops, op)
	}
	code, m = scimCall(t, r, write, "POST", "/Bulk", map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:BulkRequest"}, "Operations": ops})
	results, _ := m["Operations"].([]any)
	if code != 200 || len(results) != len(attacks) {
		t.Fatalf("Bulk: %d %v", code, m)
	}
	for i, res := range results {
		if s := res.(map[string]any)["status"]; s != "403" {
			t.Errorf("Bulk %s with scim:write: %v, want 403", attacks[i].name, res)
		}
	}
	if after := snapshot(); !reflect.DeepEqual(before, after) {
		t.Errorf("refused writes changed something:\nbefore %v\nafter  %v", before, after)
	}
	if code, _ := scimCall(t, r, admin, "GET", "/Users", nil); code != 200 {
		t.Errorf("the administrator's password stopped working: %d", code)
	}
	if code, _ := scimCall(t, r, basic("alice", alicePW), "GET", "/Users", nil); code != 401 {
		t.Errorf("alice reached SCIM as an administrator: %d", code)
	}

	// scim:write still provisions everyone else, and an administrator's
	// other attributes.
	for _, ok := range []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"PATCH a member into another group", "PATCH", "/Groups/" + staffID, patchOps(map[string]any{"op": "remove", "path": "members"}), 200},
		{"PATCH a user's password", "PATCH", "/Users/" + aliceID, patchOps(map[string]any{"op": "replace", "path": "password", "value": "alice's second long password"}), 200},
		{"PATCH deactivate a user", "PATCH", "/Users/" + aliceID, patchOps(map[string]any{"op": "replace", "path": "active", "value": false}), 200},
		{"PATCH reactivate a user", "PATCH", "/Users/" + aliceID, patchOps(map[string]any{"op": "replace", "path": "active", "value": true}), 200},
		{"PATCH an administrator's displayName", "PATCH", "/Users/" + adminID, patchOps(map[string]any{"op": "replace", "path": "displayName", "value": "The Admin"}), 200},
		{"POST a new group", "POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": "ops",
			"members": []any{map[string]any{"value": aliceID, "type": "User"}}}, 201},
		{"Bulk PATCH another group", "POST", "/Bulk", map[string]any{"schemas": []string{"urn:ietf:params:scim:api:messages:2.0:BulkRequest"},
			"Operations": []any{map[string]any{"method": "PATCH", "path": "/Groups/" + staffID, "data": addAlice}}}, 200},
	} {
		if code, m := scimCall(t, r, write, ok.method, ok.path, ok.body); code != ok.want {
			t.Errorf("%s with scim:write: %d %v, want %d", ok.name, code, m, ok.want)
		} else if ok.path == "/Bulk" {
			if res := m["Operations"].([]any)[0].(map[string]any); res["status"] != "200" {
				t.Errorf("%s with scim:write: %v", ok.name, res)
			}
		}
	}

	// The admin scope keeps full power: it makes alice an administrator,
	// whom scim:write then cannot touch, and the admin scope can.
	if code, m := scimCall(t, r, full, "PATCH", "/Groups/"+groupID, addAlice); code != 200 {
		t.Fatalf("admin scope adding to administrators: %d %v", code, m)
	}
	if code, m := scimCall(t, r, write, "PATCH", "/Users/"+aliceID, newPW); code != 403 {
		t.Errorf("scim:write changing the new administrator's password: %d %v", code, m)
	}
	if code, m := scimCall(t, r, full, "PATCH", "/Users/"+aliceID, patchOps(map[string]any{"op": "replace", "path": "password", "value": "alice's third long password"})); code != 200 {
		t.Errorf("admin scope changing an administrator's password: %d %v", code, m)
	}
	if code, m := scimCall(t, r, full, "PATCH", "/Users/"+aliceID, patchOps(map[string]any{"op": "replace", "path": "active", "value": false})); code != 200 {
		t.Errorf("admin scope deactivating an administrator: %d %v", code, m)
	}
	if code, m := scimCall(t, r, full, "DELETE", "/Users/"+aliceID, nil); code != 204 {
		t.Errorf("admin scope deleting an administrator: %d %v", code, m)
	}
}

// TestAttackSCIMWriteCannotMakeSupportStaff: support staff read the whole
// audit log, so a scim:write client can neither make anyone support staff
// nor take a support user's account over; with the admin scope it can.
func TestAttackSCIMWriteCannotMakeSupportStaff(t *testing.T) {
	r := serve(t)
	admin := basic("admin", adminPassword(t, r))
	write := clientToken(t, r, "provisioner", authn.ScopeSCIMWrite)
	full := clientToken(t, r, "full", authn.ScopeAdmin)
	const groupURN, samPW = "urn:ietf:params:scim:schemas:core:2.0:Group", "sam's long support password"
	code, m := scimCall(t, r, admin, "POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"},
		"userName": "sam", "password": samPW})
	if code != 201 {
		t.Fatalf("create sam: %d %v", code, m)
	}
	samID := m["id"].(string)
	code, m = scimCall(t, r, admin, "POST", "/Users", map[string]any{"schemas": []string{"urn:ietf:params:scim:schemas:core:2.0:User"}, "userName": "eve"})
	if code != 201 {
		t.Fatalf("create eve: %d %v", code, m)
	}
	eve := map[string]any{"value": m["id"], "type": "User"}
	code, m = scimCall(t, r, admin, "POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": "support",
		"members": []any{map[string]any{"value": samID, "type": "User"}}})
	if code != 201 {
		t.Fatalf("create support: %d %v", code, m)
	}
	supportID := m["id"].(string)
	code, m = scimCall(t, r, write, "POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": "helpdesk"})
	if code != 201 {
		t.Fatalf("scim:write creating an ordinary group: %d %v", code, m)
	}
	helpdeskID := m["id"].(string)

	for _, a := range []struct {
		name, method, path string
		body               any
	}{
		{"POST a second support group", "POST", "/Groups", map[string]any{"schemas": []string{groupURN}, "displayName": " SUPPORT ", "members": []any{eve}}},
		{"PATCH a member into support", "PATCH", "/Groups/" + supportID, patchOps(map[string]any{"op": "add", "path": "members", "value": []any{eve}})},
		{"PATCH rename a group to support", "PATCH", "/Groups/" + helpdeskID, patchOps(map[string]any{"op": "replace", "path": "displayName", "value": "Support"})},
		{"PATCH rename support", "PATCH", "/Groups/" + supportID, patchOps(map[string]any{"op": "replace", "path": "displayName", "value": "former support"})},
		{"DELETE support", "DELETE", "/Groups/" + supportID, nil},
		{"PATCH a support user's password", "PATCH", "/Users/" + samID, patchOps(map[string]any{"op": "replace", "path": "password", "value": "the attacker's own password"})},
		{"PATCH a support user's userName", "PATCH", "/Users/" + samID, patchOps(map[string]any{"op": "replace", "path": "userName", "value": "sammy"})},
		{"DELETE a support user", "DELETE", "/Users/" + samID, nil},
	} {
		code, m := scimCall(t, r, write, a.method, a.path, a.body)
		if detail, _ := m["detail"].(string); code != 403 || !strings.Contains(detail, "support staff") {
			t.Errorf("%s with scim:write: %d %v, want 403", a.name, code, m)
		}
	}
	if code, _ := r.get(t, "/api/v1/admin/audit?limit=1", basic("sam", samPW)); code != 200 {
		t.Errorf("sam's support access after the refused writes: %d", code)
	}
	if code, m := scimCall(t, r, full, "PATCH", "/Groups/"+supportID, patchOps(map[string]any{"op": "add", "path": "members", "value": []any{eve}})); code != 200 {
		t.Errorf("the admin scope adding to support: %d %v", code, m)
	}
}
