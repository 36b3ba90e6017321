package problem

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	w := httptest.NewRecorder()
	Write(w, http.StatusBadRequest, "redirect_uris[0]", "must use https")
	if w.Code != http.StatusBadRequest || w.Header().Get("Content-Type") != "application/problem+json" || w.Header().Get("Cache-Control") != "no-store" {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
	var d Details
	if err := json.Unmarshal(w.Body.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if d != (Details{Type: "about:blank", Title: "Bad Request", Status: 400, Detail: "must use https", Field: "redirect_uris[0]"}) {
		t.Fatalf("%+v", d)
	}
}
