package certauth

import (
	"crypto/x509/pkix"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/thingid/thingid/internal/store"
)

// call sends body (JSON unless ctype says otherwise) with the admin token when admin.
func call(t *testing.T, srv *httptest.Server, method, path, ctype, body string, admin bool) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if admin {
		req.Header.Set("Authorization", "Bearer admin")
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(b) > 0 {
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s %s: %s is not JSON: %s", method, path, resp.Header.Get("Content-Type"), b)
		}
	}
	return resp, out
}

func specJSON(t *testing.T, spec any) string {
	b, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCAAPI(t *testing.T) {
	e := newEnv(t)
	srv := serve(t, e.c)
	caCert, _ := newCA(t, pkix.Name{CommonName: "Acme Device CA"}, nil, nil, -1)
	body := specJSON(t, CASpec{Name: "Acme", Certificate: pemOf(caCert), Template: acme})
	const js = "application/json"

	for name, c := range map[string]struct {
		method, path, ctype, body string
		admin                     bool
		status                    int
		field                     string
	}{
		"no credentials":       {"POST", PathCAs, js, body, false, http.StatusUnauthorized, ""},
		"no credentials, list": {"GET", PathCAs, "", "", false, http.StatusUnauthorized, ""},
		"not JSON":             {"POST", PathCAs, "text/plain", body, true, http.StatusUnsupportedMediaType, ""},
		"unknown field":        {"POST", PathCAs, js, `{"name":"x","certificate":"","template":{},"trustEverything":true}`, true, http.StatusBadRequest, ""},
		"two objects":          {"POST", PathCAs, js, body + body, true, http.StatusBadRequest, ""},
		"bad certificate":      {"POST", PathCAs, js, `{"name":"x","certificate":"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n","template":{}}`, true, http.StatusBadRequest, "certificate"},
		"bad template":         {"POST", PathCAs, js, specJSON(t, CASpec{Name: "x", Certificate: pemOf(caCert)}), true, http.StatusBadRequest, "template.manufacturer"},
		"unknown CA":           {"GET", PathCAs + "/nope", "", "", true, http.StatusNotFound, ""},
		"delete unknown CA":    {"DELETE", PathCAs + "/nope", "", "", true, http.StatusNotFound, ""},
		"bad revocation":       {"POST", PathRevocations, js, `{"fingerprintSha256":"zz"}`, true, http.StatusBadRequest, "fingerprint"},
		"bad reason":           {"POST", PathRevocations, js, `{"thingId":"x","reason":"certificateHold"}`, true, http.StatusBadRequest, ""},
	} {
		t.Run(name, func(t *testing.T) {
			resp, p := call(t, srv, c.method, c.path, c.ctype, c.body, c.admin)
			if resp.StatusCode != c.status || resp.Header.Get("Content-Type") != "application/problem+json" || p["field"] != nilIfEmpty(c.field) {
				t.Fatalf("%s %s: %s %v, want %d with field %q", c.method, c.path, resp.Status, p, c.status, c.field)
			}
		})
	}

	resp, created := call(t, srv, "POST", PathCAs, js, body, true)
	if resp.StatusCode != http.StatusCreated || created["id"] == "" || resp.Header.Get("Location") != PathCAs+"/"+created["id"].(string) ||
		created["certificate"] != pemOf(caCert) || created["subject"] != "CN=Acme Device CA" {
		t.Fatalf("create: %s %v", resp.Status, created)
	}
	id := created["id"].(string)
	if resp, p := call(t, srv, "POST", PathCAs, js, body, true); resp.StatusCode != http.StatusConflict {
		t.Errorf("registered twice: %s %v", resp.Status, p)
	}
	if resp, got := call(t, srv, "GET", PathCAs+"/"+id, "", "", true); resp.StatusCode != http.StatusOK || got["name"] != "Acme" {
		t.Errorf("get: %s %v", resp.Status, got)
	}
	if resp, list := call(t, srv, "GET", PathCAs, "", "", true); resp.StatusCode != http.StatusOK || len(list["cas"].([]any)) != 1 {
		t.Errorf("list: %s %v", resp.Status, list)
	}
	recs, err := e.st.ListAudit(t.Context(), store.AuditQuery{Target: &store.Ref{Kind: kindCA, ID: id}})
	if err != nil || len(recs) != 1 || recs[0].Actor != "api-admin" || recs[0].Action != EventCACreate {
		t.Errorf("audit: %+v %v", recs, err)
	}
	if resp, _ := call(t, srv, "DELETE", PathCAs+"/"+id, "", "", true); resp.StatusCode != http.StatusNoContent {
		t.Errorf("delete: %s", resp.Status)
	}
	if resp, _ := call(t, srv, "GET", PathCAs+"/"+id, "", "", true); resp.StatusCode != http.StatusNotFound {
		t.Errorf("get after delete: %s", resp.Status)
	}

	th, dc := e.thing("SPK-API")
	resp, out := call(t, srv, "POST", PathRevocations, js, specJSON(t, map[string]string{"certificate": string(dc.ChainPEM()), "reason": "superseded"}), true)
	revoked, _ := out["revoked"].([]any)
	if resp.StatusCode != http.StatusOK || len(revoked) != 1 {
		t.Fatalf("revoke: %s %v", resp.Status, out)
	}
	if r := revoked[0].(map[string]any); r["thingId"] != th.ID || r["reason"] != "superseded" || r["inCrl"] != true || r["fingerprintSha256"] != dc.FingerprintSHA256 {
		t.Errorf("revoked %v", r)
	}
	if err := verifyErr(e.c, t, dc); err == nil {
		t.Error("revoked through the API, still verifies")
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
