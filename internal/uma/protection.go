package uma

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/thingid/thingid/internal/dpop"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// apiError is an error of the protection API and the grant: the OAuth error
// JSON (RFC 6749 §5.2) that the UMA recommendations extend.
type apiError struct {
	Status      int    `json:"-"`
	Code        string `json:"error"`
	Description string `json:"error_description,omitempty"`
	// UMA 2.0 Grant §3.3.6.
	Ticket         string          `json:"ticket,omitempty"`
	RequiredClaims []requiredClaim `json:"required_claims,omitempty"`
	RedirectUser   bool            `json:"redirect_user,omitempty"`
	Interval       int             `json:"interval,omitempty"`
	challenge      string
}

func (e *apiError) Error() string { return e.Code + ": " + e.Description }

// ErrorCode is the wire code; the token endpoint counts the UMA grant's
// refusals by it (oauth.ExtensionGrant).
func (e *apiError) ErrorCode() string { return e.Code }

func newError(status int, code, desc string) *apiError {
	return &apiError{Status: status, Code: code, Description: desc}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var e *apiError
	if !errors.As(err, &e) {
		s.log.Error("uma: request failed", "path", r.URL.Path, "err", err)
		e = newError(http.StatusInternalServerError, "server_error", "internal error")
	}
	if e.challenge != "" {
		w.Header().Set("WWW-Authenticate", e.challenge)
	}
	writeJSON(w, e.Status, e)
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeJSON(w, http.StatusMethodNotAllowed, newError(http.StatusMethodNotAllowed, "method_not_allowed", "use "+allow))
	}
}

// pat is what a valid protection API access token says.
type pat struct {
	client string // the resource server
	// owner is the user who consented (authorization code PAT); "" for a
	// trusted first-party resource server's client_credentials PAT, which
	// names owners explicitly.
	owner   string
	thingID string // the thing the resource server's client stands for
	trusted bool
}

// protection authenticates a protection API request: an access token with
// scope uma_protection (Federated Authorization §1.3.1), its grant live, and
// either acting for its owner or held by a trusted resource server.
func (s *Server) protection(r *http.Request) (*pat, error) {
	realm := `Bearer realm="thingid"`
	c, err := s.opts.Tokens.Request(r)
	if err != nil {
		// A PAT may be a bearer or a DPoP-bound token (RFC 9449 §7.1): the
		// refusal challenges with both schemes.
		var te *tokens.Error
		var de *dpop.Error
		switch {
		case errors.As(err, &de):
			e := newError(http.StatusUnauthorized, de.Code, "the DPoP proof of the PAT is refused: "+de.Description)
			e.challenge = dpop.Challenge(de.Code, de.Description)
			return nil, e
		case errors.As(err, &te) || errors.Is(err, ErrNoToken):
			e := newError(http.StatusUnauthorized, "invalid_token", "a PAT is required: an access token with scope uma_protection ("+err.Error()+")")
			e.challenge = realm + `, error="invalid_token", ` + dpop.Challenge("invalid_token", "")
			return nil, e
		}
		return nil, err
	}
	if !slices.Contains(c.Scope, ScopeProtection) {
		e := newError(http.StatusForbidden, "insufficient_scope", "the token lacks scope uma_protection")
		e.challenge = realm + `, error="insufficient_scope", scope="uma_protection"`
		return nil, e
	}
	g, live, err := s.liveGrant(r.Context(), c.GrantID)
	if err != nil {
		return nil, err
	}
	if !live {
		e := newError(http.StatusUnauthorized, "invalid_token", "the PAT's grant was revoked")
		e.challenge = realm + `, error="invalid_token"`
		return nil, e
	}
	p := &pat{client: c.ClientID, thingID: c.ThingID, trusted: slices.Contains(s.opts.TrustedResourceServers, c.ClientID)}
	if g.UserID != "" {
		_, active, err := s.activeUser(r.Context(), g.UserID)
		if err != nil {
			return nil, err
		}
		if !active {
			return nil, newError(http.StatusUnauthorized, "invalid_token", "the owner of this PAT is disabled or deleted")
		}
		p.owner = g.UserID
		return p, nil
	}
	if !p.trusted {
		// Without the owner's consent only a first-party resource server,
		// trusted by configuration, may name owners.
		return nil, newError(http.StatusForbidden, "unauthorized_client",
			"a PAT from client_credentials is accepted only from trusted first-party resource servers (uma.trustedResourceServers); get the PAT with the authorization code flow, with the owner's consent")
	}
	return p, nil
}

// ErrNoToken is what a Tokens implementation returns from Request for a
// request without an access token.
var ErrNoToken = errors.New("no access token")

// serves reports whether the PAT's resource server may act on resource r:
// it registered it (for its owner, with an owner's PAT), or r is a thing
// and the resource server is trusted or that thing itself.
func (p *pat) serves(r *store.UMAResource) bool {
	if p.owner != "" && r.OwnerID != p.owner {
		return false
	}
	if thingID, ok := strings.CutPrefix(r.ID, thingPrefix); ok {
		return p.trusted || (p.thingID != "" && p.thingID == thingID)
	}
	return r.ClientID == p.client
}
