package selfservice

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/thingid/thingid/internal/refusal"
)

// problem is an RFC 9457 problem details object; Errors extends it with one
// entry per wrong field, as in the RFC's §3 example.
type problem struct {
	Type   string         `json:"type"`
	Title  string         `json:"title"`
	Status int            `json:"status"`
	Detail string         `json:"detail,omitempty"`
	Errors []fieldProblem `json:"errors,omitempty"`
}

type fieldProblem struct {
	Field   string `json:"field"`
	Pointer string `json:"pointer"` // RFC 6901 JSON Pointer into the request body
	Detail  string `json:"detail"`
}

func writeProblem(w http.ResponseWriter, status int, detail string, fields ...*refusal.FieldError) {
	p := problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail}
	for _, f := range fields {
		p.Errors = append(p.Errors, fieldProblem{Field: f.Field, Pointer: "/" + f.Field, Detail: f.Reason()})
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
}

func tooManyProblem(w http.ResponseWriter, _ *http.Request, retryAfter int) {
	writeProblem(w, http.StatusTooManyRequests, "too many attempts from your network; retry after "+strconv.Itoa(retryAfter)+" seconds")
}

// registerJSON is POST /api/v1/register: the form as JSON, answering 201 with the
// new user's id and userName, or problem details naming each wrong field.
func (h *Handler) registerJSON(w http.ResponseWriter, r *http.Request) {
	var reg registration
	if !readJSON(w, r, &reg, "userName, email, displayName and password") {
		return
	}
	u, err := h.register(r.Context(), reg)
	if ie := (*inputError)(nil); errors.As(err, &ie) {
		writeProblem(w, ie.status, "the registration was not accepted; see errors", ie.fields...)
		return
	}
	if err != nil {
		h.log.Error("selfservice: registration failed", "err", err)
		writeProblem(w, http.StatusInternalServerError, "the account could not be created because of a problem on our side; try again later")
		return
	}
	writeJSON(w, http.StatusCreated, struct {
		ID            string `json:"id"`
		UserName      string `json:"userName"`
		EmailVerified bool   `json:"emailVerified"`
	}{u.ID, u.UserName, u.EmailVerified})
}

// readJSON reads the request's JSON body into v or answers the problem and
// returns false. Requiring application/json also keeps HTML forms (which
// cannot send it without a CORS preflight) away from every JSON API.
func readJSON(w http.ResponseWriter, r *http.Request, v any, members string) bool {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeProblem(w, http.StatusUnsupportedMediaType, "send a JSON object with "+members+" and Content-Type: application/json")
		return false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if status, detail, fields := decodeJSON(r.Body, v, members); status != 0 {
		writeProblem(w, status, detail, fields...)
		return false
	}
	return true
}

// writeJSON answers v with status; nothing of it may be cached.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeJSON reads exactly one JSON object with no unknown member into v (all
// of whose fields are strings), whose members are named in members ("email
// and password"). On failure it returns the HTTP status and what to tell the
// client.
func decodeJSON(body io.Reader, v any, members string) (status int, detail string, fields []*refusal.FieldError) {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if dec.Decode(new(json.RawMessage)) != io.EOF {
			return http.StatusBadRequest, "the body must hold exactly one JSON object", nil
		}
		return 0, "", nil
	}
	var (
		mbe *http.MaxBytesError
		ute *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, fmt.Sprintf("the body must not be larger than %d bytes", mbe.Limit), nil
	case errors.Is(err, io.EOF):
		return http.StatusBadRequest, "the body is empty; send a JSON object with " + members, nil
	case errors.As(err, &ute) && ute.Field != "":
		return http.StatusBadRequest, "the body has a member of the wrong type", []*refusal.FieldError{refusal.New(ute.Field, "must be a string")}
	case errors.As(err, &ute):
		return http.StatusBadRequest, "the body must be a JSON object with " + members, nil
	}
	// encoding/json reports unknown members only as text.
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if n, uerr := strconv.Unquote(name); uerr == nil {
			name = n
		}
		return http.StatusBadRequest, "the body has a member this API does not know", []*refusal.FieldError{refusal.New(name, "is not a member of this request; use %s", members)}
	}
	return http.StatusBadRequest, "the body is not valid JSON: " + err.Error(), nil
}
