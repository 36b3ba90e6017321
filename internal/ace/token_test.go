package ace

import (
	"bytes"
	"errors"
	"net/http"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// Requests that must be refused before the authorization server is asked,
// each naming what is wrong.
func TestAttackTokenRequestEncoding(t *testing.T) {
	enc := func(v any) []byte { b, _ := cbor.Marshal(v); return b }
	for _, c := range []struct {
		name, code, field string
		body              []byte
	}{
		{"not a map", "invalid_request", "CBOR map", enc([]int{1, 2})},
		{"truncated", "invalid_request", "CBOR map", []byte{0xa2, 0x18, 0x21, 0x02}},
		// {33: 2, 33: 2}: grant_type twice (RFC 6749 §3.2).
		{"duplicate key", "invalid_request", "33 appears more than once", []byte{0xa2, 0x18, 0x21, 0x02, 0x18, 0x21, 0x02}},
		{"oversized", "invalid_request", "larger than", enc(map[int]string{24: string(bytes.Repeat([]byte("a"), maxMessage))})},
		{"client_id not text", "invalid_request", "client_id (24)", enc(map[int]any{33: 2, 24: 7})},
		{"scope as bytes that are no AIF", "invalid_scope", "AIF array", enc(map[int]any{33: 2, 9: []byte{1}})},
		{"scope a number", "invalid_request", "scope (9)", enc(map[int]any{33: 2, 9: 7})},
		{"grant_type unknown", "unsupported_grant_type", "grant_type (33) 0", enc(map[int]any{33: 0})},
		{"grant_type a map", "invalid_request", "grant_type (33)", enc(map[int]any{33: map[int]int{}})},
		{"req_cnf empty", "unsupported_pop_key", "req_cnf (4)", enc(map[int]any{33: 2, 4: map[int]int{}})},
		{"indefinite length", "invalid_request", "CBOR map", []byte{0xbf, 0x18, 0x21, 0x02, 0xff}},
		{"a tag", "invalid_request", "CBOR map", []byte{0xc1, 0xa1, 0x18, 0x21, 0x02}},
	} {
		_, err := parseRequest(c.body)
		var e *Error
		if !errors.As(err, &e) || e.Code != c.code || e.Status != http.StatusBadRequest || !bytes.Contains([]byte(e.Description), []byte(c.field)) {
			t.Errorf("%s: got %v; want %s naming %q", c.name, err, c.code, c.field)
		}
	}
}

func FuzzTokenRequest(f *testing.F) {
	f.Add([]byte{0xa3, 0x18, 0x21, 0x02, 0x18, 0x18, 0x61, 0x61, 0x09, 0x61, 0x62})
	f.Add([]byte{0xa1, 0x04, 0xa1, 0x03, 0x41, 0x01})
	f.Add([]byte{0xa2, 0x18, 0x21, 0x02, 0x18, 0x21, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := parseRequest(b)
		if err != nil {
			if err.Status != http.StatusBadRequest || err.Description == "" {
				t.Fatalf("refusal %+v", err)
			}
			return
		}
		if req.cnf != nil && (req.cnf.Key == nil) == (req.cnf.Kid == nil) {
			t.Fatalf("req_cnf with both or neither: %+v", req.cnf)
		}
	})
}
