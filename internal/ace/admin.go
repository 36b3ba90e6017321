package ace

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/routes"
)

// RegisterAdmin mounts the administrators' API of a thing's CWTs behind
// admin; actor names the administrator of a request in the audit log:
//
//	GET    /api/v1/admin/things/{thingId}/cwts        the unexpired CWTs issued to the thing
//	DELETE /api/v1/admin/things/{thingId}/cwts/{cti}  revoke one by its cti (hex): 204
func (s *Server) RegisterAdmin(mux routes.Mux, admin func(http.Handler) http.Handler, actor func(*http.Request) string) {
	mux.Handle("GET /api/v1/admin/things/{thingId}/cwts", admin(http.HandlerFunc(s.apiListCWTs)))
	mux.Handle("DELETE /api/v1/admin/things/{thingId}/cwts/{cti}", admin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.apiRevokeCWT(w, r, actor(r))
	})))
}

func (s *Server) apiListCWTs(w http.ResponseWriter, r *http.Request) {
	list, err := s.IssuedCWTs(r.Context(), r.PathValue("thingId"))
	if err != nil {
		s.log.Error("ace: listing a thing's CWTs", "thing", r.PathValue("thingId"), "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error")
		return
	}
	if list == nil {
		list = []Issued{}
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"cwts": list})
}

func (s *Server) apiRevokeCWT(w http.ResponseWriter, r *http.Request, actor string) {
	cti, err := ParseCTI(r.PathValue("cti"))
	if err != nil {
		problem.Write(w, http.StatusBadRequest, "cti", err.Error())
		return
	}
	switch err := s.RevokeIssued(r.Context(), actor, r.PathValue("thingId"), cti); {
	case errors.Is(err, ErrNotIssued):
		problem.Write(w, http.StatusNotFound, "cti", err.Error())
	case err != nil:
		s.log.Error("ace: an administrator's revocation failed", "thing", r.PathValue("thingId"), "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error")
	default:
		w.WriteHeader(http.StatusNoContent)
	}
}

// ParseCTI reads a cti as the audit log and the API write it: lower- or
// upper-case hex of 1 to 64 bytes.
func ParseCTI(s string) ([]byte, error) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) == 0 || len(b) > 64 {
		return nil, errors.New("a cti is 1 to 64 bytes in hexadecimal, as the thing's list of CWTs shows it")
	}
	return b, nil
}
