package ace

import (
	"context"
	"errors"
	"net/http"
)

// Abbreviations of the introspection response (RFC 9200 §5.9.2, Figure 16).
const (
	paramActive = 10
	claimIss    = 1
	claimSub    = 2
	claimAud    = 3
	claimExp    = 4
	claimIat    = 6
	claimCti    = 7
	claimCnf    = 8
)

// Introspect answers an introspection request (RFC 9200 §5.9, RFC 7662 in
// ACE's CBOR: the token under 11) from the client of id: the claims of a
// CWT this platform signed, unexpired and not revoked (by cti or grant),
// with active (10) true, when id holds its cnf key; active false for every
// other token, so that a client learns nothing of tokens it does not hold.
func (s *Server) Introspect(ctx context.Context, body []byte, id Identity) ([]byte, int) {
	resp, err := s.introspect(ctx, body, id)
	s.metrics.count(endpointIntrospect, err)
	if err != nil {
		return s.refuse(endpointIntrospect, err)
	}
	return resp, http.StatusOK
}

func (s *Server) introspect(ctx context.Context, body []byte, id Identity) ([]byte, error) {
	tok, perr := parseTokenParam(body)
	if perr != nil {
		return nil, perr
	}
	c, err := s.verify(ctx, tok, "")
	if err == nil {
		err = held(c.Cnf, id)
	}
	var e *Error
	if errors.As(err, &e) && e.Status < http.StatusInternalServerError {
		return encMode.Marshal(map[int]any{paramActive: false})
	} else if err != nil {
		return nil, err
	}
	out := map[any]any{
		paramActive: true, claimIss: c.Iss, claimSub: c.Sub, claimAud: c.Aud, claimExp: c.Exp, claimIat: c.Iat,
		claimCti: c.Cti, claimCnf: c.Cnf, paramACEProfile: profileCoAPDTLS, "gid": c.Gid,
	}
	if c.Scope != "" {
		out[paramScope] = c.Scope
	}
	if c.Thing != "" {
		out["thing"] = c.Thing
	}
	return encMode.Marshal(out)
}
