package est

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

func (e *env) createToken(t *testing.T, thingID, ctype, body string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/api/v1/things/"+thingID+"/enrollment-tokens", strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := e.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %s", b)
	}
	return resp.StatusCode, v
}

func TestTokenAPI(t *testing.T) {
	e := newEnv(t)
	code, v := e.createToken(t, e.thing.ID, "application/json", `{"expiresIn": 3600}`)
	if code != http.StatusCreated || v["thingId"] != e.thing.ID || !strings.HasPrefix(v["token"].(string), TokenPrefix) {
		t.Fatalf("create: %d %v", code, v)
	}
	exp, _ := time.Parse(time.RFC3339, v["expiresAt"].(string))
	if d := time.Until(exp); d < 59*time.Minute || d > time.Hour {
		t.Errorf("expiresAt %v", exp)
	}
	if code, v = e.createToken(t, e.thing.ID, "", ""); code != http.StatusCreated {
		t.Errorf("create without a body: %d %v", code, v)
	}
	noSerial, _ := e.id.CreateThing(context.Background(), "test", &store.Thing{Model: "x"})
	disabled, _ := e.id.CreateThing(context.Background(), "test", &store.Thing{SerialNumber: "SN-D", Status: store.StatusDisabled})
	for _, tc := range []struct {
		name, thing, ctype, body string
		want                     int
		field                    string
	}{
		{"unknown thing", "nope", "", "", 404, ""},
		{"no serial", noSerial.ID, "", "", 409, "serialNumber"},
		{"disabled", disabled.ID, "", "", 409, ""},
		{"zero expiry", e.thing.ID, "application/json", `{"expiresIn": 0}`, 400, "expiresIn"},
		{"too short", e.thing.ID, "application/json", `{"expiresIn": 59}`, 400, "expiresIn"},
		{"too long", e.thing.ID, "application/json", `{"expiresIn": 7776001}`, 400, "expiresIn"},
		{"huge", e.thing.ID, "application/json", `{"expiresIn": 9223372036854775807}`, 400, "expiresIn"},
		{"unknown field", e.thing.ID, "application/json", `{"expiresIn": 60, "admin": true}`, 400, ""},
		{"two objects", e.thing.ID, "application/json", `{} {}`, 400, ""},
		{"not JSON", e.thing.ID, "application/json", `expiresIn=60`, 400, ""},
		{"form", e.thing.ID, "application/x-www-form-urlencoded", `expiresIn=60`, 415, ""},
		{"too large", e.thing.ID, "application/json", `{"expiresIn": 60` + strings.Repeat(" ", 5000) + `}`, 413, ""},
	} {
		code, v := e.createToken(t, tc.thing, tc.ctype, tc.body)
		if code != tc.want || v["status"] != float64(tc.want) || (tc.field != "" && v["field"] != tc.field) {
			t.Errorf("%s: %d %v, want %d on %q", tc.name, code, v, tc.want, tc.field)
		}
	}
}
