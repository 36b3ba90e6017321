// Package authzen serves the OpenID AuthZEN Authorization API 1.0: the
// Access Evaluation and Access Evaluations endpoints and the PDP metadata,
// for enforcement points authenticated as OAuth clients with scope
// authzen:evaluate. It parses and answers; the decisions are
// internal/policy's, asked through Decider. It verifies tokens only through
// its Tokens interface and changes nothing.
package authzen

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/policy"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/tokens"
)

// Wire identifiers.
const (
	// Scope is what an enforcement point's access token needs.
	Scope = "authzen:evaluate"
	// PathConfiguration is the PDP metadata (AuthZEN §9).
	PathConfiguration = "/.well-known/authzen-configuration"
	PathEvaluation    = "/access/v1/evaluation"
	PathEvaluations   = "/access/v1/evaluations"
)

// door is how the audit record of a refusal names this API.
const door = "authzen"

// maxBody bounds a request body (AuthZEN §13.4).
const maxBody = 256 << 10

// Tokens verifies the access token of a request for this issuer, with its
// sender binding and the revocation deny set; ErrNoToken when there is none.
type Tokens interface {
	Request(r *http.Request) (*tokens.Claims, error)
}

// ErrNoToken is what Tokens.Request returns for a request without a token.
var ErrNoToken = errors.New("no access token")

// Decider decides (*household.Service).
type Decider interface {
	Decide(ctx context.Context, req policy.Request) (policy.Decision, error)
}

// Server is the PDP.
type Server struct {
	issuer  string
	tokens  Tokens
	decider Decider
	log     *slog.Logger
}

// New returns the PDP of issuer (the platform's public URL).
func New(issuer string, tk Tokens, d Decider, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{issuer: strings.TrimSuffix(issuer, "/"), tokens: tk, decider: d, log: log}
}

// Register mounts the metadata and, as routes taking access tokens, the
// two evaluation endpoints.
func (s *Server) Register(mux routes.Mux) {
	mux.HandleFunc("GET "+PathConfiguration, s.metadata)
	mux.Handle("POST "+PathEvaluation, routes.AccessTokens(http.HandlerFunc(s.evaluation)))
	mux.Handle("POST "+PathEvaluations, routes.AccessTokens(http.HandlerFunc(s.evaluations)))
}

// metadata is AuthZEN §9.
func (s *Server) metadata(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{
		"policy_decision_point":       s.issuer,
		"access_evaluation_endpoint":  s.issuer + PathEvaluation,
		"access_evaluations_endpoint": s.issuer + PathEvaluations,
	})
}

// response is an Access Evaluation Response (AuthZEN §6.2) with thingid's
// reason in its context as a Reason Object (§5.5.1).
type response struct {
	Decision bool           `json:"decision"`
	Context  map[string]any `json:"context,omitempty"`
}

func decisionOf(d policy.Decision) response {
	id := d.Rule
	if id == "" {
		id = "default"
	}
	reason := map[string]string{"en": d.Reason}
	return response{Decision: d.Allowed, Context: map[string]any{
		"id":           id,
		"reason_admin": reason,
		"reason_user":  reason,
		// The clock that decided: the server's, in the household's zone.
		"local_time": d.Local.Format(time.RFC3339),
	}}
}

func (s *Server) evaluation(w http.ResponseWriter, r *http.Request) {
	body, ok := s.admit(w, r)
	if !ok {
		return
	}
	req, err := ParseEvaluation(body)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	req.Door = door
	d, err := s.decider.Decide(r.Context(), req)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, decisionOf(d))
}

func (s *Server) evaluations(w http.ResponseWriter, r *http.Request) {
	body, ok := s.admit(w, r)
	if !ok {
		return
	}
	reqs, semantic, err := ParseEvaluations(body)
	if err != nil {
		s.refuse(w, r, err)
		return
	}
	out := make([]response, 0, len(reqs))
	for _, req := range reqs {
		req.Door = door
		d, err := s.decider.Decide(r.Context(), req)
		var res response
		switch {
		case err == nil:
			res = decisionOf(d)
		default:
			// AuthZEN §7.2.1: an evaluation that fails is closed, its error in
			// its context.
			status, msg := http.StatusInternalServerError, "internal error"
			var fe *policy.FieldError
			if errors.As(err, &fe) {
				status, msg = http.StatusBadRequest, fe.Error()
			} else {
				s.log.Error("authzen: decision failed", "err", err)
			}
			res = response{Context: map[string]any{"error": map[string]any{"status": status, "message": msg}}}
		}
		out = append(out, res)
		if (semantic == DenyOnFirstDeny && !res.Decision) || (semantic == PermitOnFirstPermit && res.Decision) {
			break
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"evaluations": out})
}

// admit authenticates the enforcement point, echoes X-Request-ID (AuthZEN
// §12.1.11) and reads the body; it answers the refusal itself.
func (s *Server) admit(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if id := r.Header.Get("X-Request-ID"); id != "" {
		if len(id) > 256 || strings.ContainsFunc(id, func(c rune) bool { return c < 0x20 || c > 0x7e }) {
			problem.Write(w, http.StatusBadRequest, "X-Request-ID", "a request identifier is at most 256 visible ASCII characters")
			return nil, false
		}
		w.Header().Set("X-Request-ID", id)
	}
	claims, err := s.tokens.Request(r)
	if err != nil {
		var te *tokens.Error
		var de *dpop.Error
		switch {
		case errors.As(err, &de):
			w.Header().Set("WWW-Authenticate", dpop.Challenge(de.Code, de.Description))
			problem.Write(w, http.StatusUnauthorized, "", "the DPoP proof is refused: "+de.Description)
		case errors.As(err, &te) || errors.Is(err, ErrNoToken):
			w.Header().Set("WWW-Authenticate", `Bearer realm="thingid", error="invalid_token", `+dpop.Challenge("invalid_token", ""))
			problem.Write(w, http.StatusUnauthorized, "", "an access token with scope "+Scope+" is required ("+err.Error()+")")
		default:
			s.log.Error("authzen: verifying the token", "err", err)
			problem.Write(w, http.StatusInternalServerError, "", "internal error")
		}
		return nil, false
	}
	if !slices.Contains(claims.Scope, Scope) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="thingid", error="insufficient_scope", scope="`+Scope+`"`)
		problem.Write(w, http.StatusForbidden, "", "the access token lacks scope "+Scope)
		return nil, false
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(ct), "application/json") {
		problem.Write(w, http.StatusUnsupportedMediaType, "Content-Type", "send the request as application/json")
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			problem.Write(w, http.StatusRequestEntityTooLarge, "", "the body must not be larger than 256 KiB")
		} else {
			problem.Write(w, http.StatusBadRequest, "", "the body could not be read")
		}
		return nil, false
	}
	return body, true
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, err error) {
	var fe *refusal.FieldError
	var pe *policy.FieldError
	switch {
	case errors.As(err, &fe):
		problem.Write(w, http.StatusBadRequest, fe.Field, fe.Error())
	case errors.As(err, &pe):
		problem.Write(w, http.StatusBadRequest, pe.Field, pe.Error())
	default:
		s.log.Error("authzen: request failed", "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
