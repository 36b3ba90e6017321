// Package problem writes RFC 9457 problem details, the error answer of
// thingid's JSON admin APIs, with the bad input named in "field".
package problem

import (
	"encoding/json"
	"net/http"
)

// Details is an RFC 9457 problem details object; Field names the bad input.
type Details struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
	Field  string `json:"field,omitempty"`
}

// Write answers status with a problem whose detail says what went wrong and,
// when field is not "", which input it was.
func Write(w http.ResponseWriter, status int, field, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Details{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail, Field: field})
}
