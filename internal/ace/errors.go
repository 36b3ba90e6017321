package ace

import (
	"fmt"
	"net/http"
)

// Error is an ACE error: the OAuth error code (RFC 6749 §5.2, RFC 9200
// §5.8.3, RFC 8628 §3.5), a description naming what to fix, and the HTTP
// status (CoAP's by the mapping in the package comment).
type Error struct {
	Code        string
	Description string
	Status      int
	cause       error // a server error's, for the log
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func (e *Error) Unwrap() error { return e.cause }

// StatusCode is the HTTP status of the refusal (CoAP's by RFC 8075's mapping).
func (e *Error) StatusCode() int { return e.Status }

// errorCodes are the abbreviations of error codes (RFC 9200 §8.4, Figure
// 10); other codes (RFC 8628's) travel as text.
var errorCodes = map[string]int{
	"invalid_request":           1,
	"invalid_client":            2,
	"invalid_grant":             3,
	"unauthorized_client":       4,
	"unsupported_grant_type":    5,
	"invalid_scope":             6,
	"unsupported_pop_key":       7,
	"incompatible_ace_profiles": 8,
}

func failure(status int, code, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...), Status: status}
}

// invalidRequest is a malformed request; the description names the field.
func invalidRequest(format string, args ...any) *Error {
	return failure(http.StatusBadRequest, "invalid_request", format, args...)
}

// unauthorized refuses a token at /authz-info (RFC 9200 §5.10.1.1: 4.01).
func unauthorized(format string, args ...any) *Error {
	return failure(http.StatusUnauthorized, "invalid_token", format, args...)
}

// cbor is the answer's body (RFC 9200 §5.8.3): error and error_description.
func (e *Error) cbor() []byte {
	var code any = e.Code
	if n, ok := errorCodes[e.Code]; ok {
		code = n
	}
	b, err := encMode.Marshal(map[int]any{paramError: code, paramErrorDesc: e.Description})
	if err != nil {
		panic(err) // a map of an int or string and a string always encodes
	}
	return b
}

// NewError is an error of the authorization server (an adapter's): its OAuth
// code, description and HTTP status; cause is a server error's, for the log.
func NewError(status int, code, description string, cause error) *Error {
	return &Error{Code: code, Description: description, Status: status, cause: cause}
}
