package est

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

const maxAPIBody = 4 << 10

// apiCreateToken is POST /api/v1/things/{id}/enrollment-tokens for
// administrators: an optional JSON body {"expiresIn": seconds}; the answer
// (201) holds the token, shown only this once.
func (s *Server) apiCreateToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ExpiresIn *int64 `json:"expiresIn"`
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxAPIBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		problem.Write(w, http.StatusRequestEntityTooLarge, "", "the body is larger than 4 KiB")
		return
	}
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "", "reading the body: "+err.Error())
		return
	}
	if len(body) > 0 {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			problem.Write(w, http.StatusUnsupportedMediaType, "", "send application/json, or no body for the defaults")
			return
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil || dec.More() {
			problem.Write(w, http.StatusBadRequest, "", "the body must be a JSON object with at most \"expiresIn\" (seconds)")
			return
		}
	}
	var ttl time.Duration
	if req.ExpiresIn != nil {
		if *req.ExpiresIn <= 0 || *req.ExpiresIn > int64(MaxTokenLifetime/time.Second) {
			problem.Write(w, http.StatusBadRequest, "expiresIn", lifetimeRange)
			return
		}
		ttl = time.Duration(*req.ExpiresIn) * time.Second
	}
	tok, err := s.CreateToken(r.Context(), s.opts.Actor(r), r.PathValue("id"), ttl)
	var re *refusal.FieldError
	var rf *failure
	switch {
	case err == nil:
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(tok)
	case errors.As(err, &re):
		status := http.StatusBadRequest
		if re.Field == "serialNumber" {
			status = http.StatusConflict // the thing's state, not the request, is wrong
		}
		problem.Write(w, status, re.Field, re.Reason())
	case errors.Is(err, store.ErrNotFound):
		problem.Write(w, http.StatusNotFound, "", "no such thing")
	case errors.As(err, &rf):
		problem.Write(w, http.StatusConflict, "", rf.msg)
	default:
		s.log.Error("est: creating an enrollment token", "thing", r.PathValue("id"), "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error")
	}
}
