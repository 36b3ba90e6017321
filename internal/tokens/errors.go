package tokens

import "strings"

// Error is why a token was refused. Every reason maps to the RFC 6750 §3.1
// error code invalid_token (HTTP 401); Description is safe to send back as
// error_description. Compare reasons with errors.Is(err, tokens.ErrExpired).
type Error struct {
	reason string
	detail string
}

// Reasons a token is refused.
var (
	ErrMalformed   = &Error{reason: "malformed token"}
	ErrHeader      = &Error{reason: "unexpected JOSE header"}
	ErrType        = &Error{reason: "wrong token type"}
	ErrUnknownKey  = &Error{reason: "unknown signing key"}
	ErrAlgorithm   = &Error{reason: "algorithm not allowed"}
	ErrSignature   = &Error{reason: "invalid signature"}
	ErrIssuer      = &Error{reason: "wrong issuer"}
	ErrAudience    = &Error{reason: "wrong audience"}
	ErrExpired     = &Error{reason: "token expired"}
	ErrNotYetValid = &Error{reason: "token not yet valid"}
	ErrIssuedAt    = &Error{reason: "token issued in the future"}
	ErrMissing     = &Error{reason: "required claim missing"}
	ErrRevoked     = &Error{reason: "token revoked"}
	ErrBinding     = &Error{reason: "sender binding not satisfied"}
)

// Code is the RFC 6750 §3.1 error code.
func (e *Error) Code() string { return "invalid_token" }

// Description is the RFC 6750 §3 error_description: printable ASCII without
// '"' and '\'.
func (e *Error) Description() string {
	d := e.Error()
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e || r == '"' || r == '\\' {
			return '?'
		}
		return r
	}, d)
}

func (e *Error) Error() string {
	if e.detail == "" {
		return e.reason
	}
	return e.reason + ": " + e.detail
}

// Is matches errors of the same reason, whatever their detail.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.reason == e.reason
}

func (e *Error) with(detail string) *Error { return &Error{reason: e.reason, detail: detail} }
