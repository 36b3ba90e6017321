package server

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/store"
)

// The audit API is served to administrators and to support staff, whose
// reads it records; support staff's credentials open nothing else.
func TestAuditAPIIsServed(t *testing.T) {
	r := serve(t)
	admin := basic("admin", adminPassword(t, r))
	code, body := r.get(t, "/api/v1/admin/audit?action=user.*&order=oldest", admin)
	var page struct {
		Records []struct {
			Actor, Action string
			Subject       *store.Ref
		}
		Next string
	}
	if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil || len(page.Records) == 0 ||
		page.Records[0].Action != "user.create" || page.Records[0].Actor != "system:bootstrap" || page.Next == "" {
		t.Fatalf("administrator: %d %v %s", code, err, body)
	}
	if code, body := r.get(t, "/api/v1/admin/audit?since=today", admin); code != 400 || !strings.Contains(body, `"field":"since"`) {
		t.Fatalf("bad since: %d %s", code, body)
	}

	ctx := context.Background()
	const pw = "support staff password"
	sam, err := r.p.Identity.CreateUser(ctx, "test", &store.User{UserName: "sam"}, pw)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.p.Identity.CreateGroup(ctx, "test", &store.Group{DisplayName: authn.SupportGroup,
		Members: []store.Ref{{Kind: store.KindUser, ID: sam.ID}}}); err != nil {
		t.Fatal(err)
	}
	support := basic("sam", pw)
	if code, body := r.get(t, "/api/v1/admin/audit?subject="+sam.ID, support); code != 200 || !strings.Contains(body, `"user.create"`) {
		t.Fatalf("support: %d %s", code, body)
	}
	recs, err := r.p.Store.ListAudit(ctx, store.AuditQuery{Action: store.TextMatch{Value: "audit.read"}})
	if err != nil || len(recs) != 1 || recs[0].Actor != "support:"+sam.ID || recs[0].Target.ID != sam.ID {
		t.Fatalf("the support read recorded as %+v %v", recs, err)
	}
	// Support staff change nothing and read nothing but the audit log.
	for _, c := range []struct{ method, path string }{
		{"GET", "/scim/v2/Users"}, {"GET", "/api/v1/admin/clients"}, {"DELETE", "/api/v1/admin/users/" + sam.ID + "/sessions"},
		{"GET", "/api/v1/admin/cas"}, {"POST", "/api/v1/admin/clients"},
	} {
		resp, body := r.do(t, nil, c.method, c.path, support)
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("support staff %s %s: %d %.200s", c.method, c.path, resp.StatusCode, body)
		}
	}
}
