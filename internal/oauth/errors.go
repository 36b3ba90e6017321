package oauth

import (
	"encoding/json"
	"fmt"
	"net/http"
)

// Error is an OAuth error response (RFC 6749 §5.2, RFC 8628 §3.5, RFC 7009
// §2.2.1): a wire code, a description for the developer, an HTTP status.
type Error struct {
	Code        string
	Description string
	Status      int
	// basic asks the client for HTTP Basic credentials (RFC 6749 §5.2:
	// WWW-Authenticate when the client tried Basic).
	basic bool
	cause error
}

// Protocol errors; add detail with WithDescription.
var (
	ErrInvalidRequest       = &Error{Code: "invalid_request", Status: http.StatusBadRequest}
	ErrInvalidClient        = &Error{Code: "invalid_client", Status: http.StatusUnauthorized}
	ErrInvalidGrant         = &Error{Code: "invalid_grant", Status: http.StatusBadRequest}
	ErrUnauthorizedClient   = &Error{Code: "unauthorized_client", Status: http.StatusBadRequest}
	ErrUnsupportedGrantType = &Error{Code: "unsupported_grant_type", Status: http.StatusBadRequest}
	ErrInvalidScope         = &Error{Code: "invalid_scope", Status: http.StatusBadRequest}
	ErrAuthorizationPending = &Error{Code: "authorization_pending", Status: http.StatusBadRequest}
	ErrSlowDown             = &Error{Code: "slow_down", Status: http.StatusBadRequest}
	ErrExpiredToken         = &Error{Code: "expired_token", Status: http.StatusBadRequest}
	ErrAccessDenied         = &Error{Code: "access_denied", Status: http.StatusBadRequest}
	ErrUnsupportedTokenType = &Error{Code: "unsupported_token_type", Status: http.StatusBadRequest}
	ErrServerError          = &Error{Code: "server_error", Status: http.StatusInternalServerError}
)

// WithDescription returns a copy of e carrying the description.
func (e *Error) WithDescription(format string, args ...any) *Error {
	c := *e
	c.Description = fmt.Sprintf(format, args...)
	return &c
}

func (e *Error) Error() string {
	if e.Description == "" {
		return e.Code
	}
	return e.Code + ": " + e.Description
}

// Is matches errors of the same wire code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

func (e *Error) Unwrap() error { return e.cause }

// serverError hides err from the client; writeError logs it.
func serverError(err error) *Error {
	c := *ErrServerError
	c.Description = "internal error"
	c.cause = err
	return &c
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	// RFC 6749 §5.1: responses carrying tokens or errors are never cached.
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// errorCode is the wire code writeError answers for err.
func errorCode(err error) string {
	if e, ok := err.(*Error); ok {
		return e.Code
	}
	return ErrServerError.Code
}

// writeError answers e as RFC 6749 §5.2 JSON; any other error is a 500.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	e, ok := err.(*Error)
	if !ok {
		e = serverError(err)
	}
	if e.Status >= 500 {
		s.log.Error("oauth: request failed", "path", r.URL.Path, "err", e.cause)
	}
	if e.basic {
		w.Header().Set("WWW-Authenticate", `Basic realm="thingid", charset="UTF-8"`)
	}
	writeJSON(w, e.Status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{e.Code, e.Description})
}

func writeBody(w http.ResponseWriter, v any) { _ = json.NewEncoder(w).Encode(v) }
