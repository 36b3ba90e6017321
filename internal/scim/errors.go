package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// RFC 7644 §3.12, Table 9: the scimType detail error keywords.
const (
	typeInvalidFilter = "invalidFilter"
	typeUniqueness    = "uniqueness"
	typeMutability    = "mutability"
	typeInvalidSyntax = "invalidSyntax"
	typeInvalidPath   = "invalidPath"
	typeNoTarget      = "noTarget"
	typeInvalidValue  = "invalidValue"
	// typeTooLarge is not in Table 9; RFC 7644 §3.7.4 only fixes status 413 for
	// oversize requests, the keyword lets clients tell it apart programmatically.
	typeTooLarge = "tooLarge"
)

const errorSchema = "urn:ietf:params:scim:api:messages:2.0:Error"

// Error is a SCIM protocol error: an HTTP status, an optional scimType keyword and a
// detail that names the attribute at fault.
type Error struct {
	Status   int
	ScimType string
	Detail   string
}

func (e *Error) Error() string {
	if e.ScimType == "" {
		return fmt.Sprintf("scim %d: %s", e.Status, e.Detail)
	}
	return fmt.Sprintf("scim %d %s: %s", e.Status, e.ScimType, e.Detail)
}

// MarshalJSON writes the RFC 7644 §3.12 error response; status is a string there.
func (e *Error) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Schemas  []string `json:"schemas"`
		Status   string   `json:"status"`
		ScimType string   `json:"scimType,omitempty"`
		Detail   string   `json:"detail,omitempty"`
	}{[]string{errorSchema}, strconv.Itoa(e.Status), e.ScimType, e.Detail})
}

func errorf(status int, scimType, format string, args ...any) *Error {
	return &Error{Status: status, ScimType: scimType, Detail: fmt.Sprintf(format, args...)}
}

func badValue(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, typeInvalidValue, format, args...)
}

func badSyntax(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, typeInvalidSyntax, format, args...)
}

func badFilter(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, typeInvalidFilter, format, args...)
}

func badPath(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, typeInvalidPath, format, args...)
}

func noTarget(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, typeNoTarget, format, args...)
}

func immutable(format string, args ...any) *Error {
	return errorf(http.StatusBadRequest, typeMutability, format, args...)
}

// identityFields maps the field names of identity validation errors to SCIM
// attribute names where they differ.
var identityFields = map[string]string{"status": "active"}

// toError turns any error of a request into a SCIM error. Unexpected errors become
// a 500 whose detail hides internals; they are logged with the request.
func toError(err error, log *slog.Logger, r *http.Request) *Error {
	var se *Error
	var ve *identity.ValidationError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &se):
		return se
	case errors.As(err, &ve):
		field := ve.Field
		if f, ok := identityFields[field]; ok {
			field = f
		}
		return badValue("%s: %s", field, ve.Reason())
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, typeTooLarge, "request body exceeds %d bytes", mbe.Limit)
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "", "%v", err)
	case errors.Is(err, store.ErrConflict):
		return errorf(http.StatusConflict, typeUniqueness, "%v", err)
	case errors.Is(err, store.ErrStale):
		// RFC 7644 §3.14: a failed If-Match precondition is 412.
		return errorf(http.StatusPreconditionFailed, "", "the resource was modified: its version no longer matches If-Match")
	case errors.Is(err, store.ErrInvalidQuery):
		return badFilter("%v", err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusServiceUnavailable, "", "request cancelled or timed out")
	}
	log.ErrorContext(r.Context(), "scim: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
	return errorf(http.StatusInternalServerError, "", "internal server error")
}

func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	e := toError(err, log, r)
	writeJSON(w, e.Status, e)
}
