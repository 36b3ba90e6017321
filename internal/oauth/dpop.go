package oauth

import (
	"context"
	"crypto/hmac"
	"errors"
	"net/http"

	"github.com/thingid/thingid/internal/dpop"
)

// DPoP (RFC 9449): a client proves possession of a key with a proof JWT per
// request; access tokens (and public clients' refresh tokens) issued under a
// proof are bound to the key's thumbprint (cnf.jkt, RFC 9449 §6.1). Proofs
// are checked by internal/dpop, the one implementation the resource servers
// share.

// Errors of RFC 9449 §12.2; at a resource they travel in WWW-Authenticate.
var (
	ErrInvalidDPoPProof = &Error{Code: dpop.ErrInvalidProof.Code, Status: http.StatusBadRequest}
	ErrUseDPoPNonce     = &Error{Code: dpop.ErrUseNonce.Code, Status: http.StatusBadRequest}
)

// dpopNonceRotation is the default period of server nonces (RFC 9449 §8).
const dpopNonceRotation = dpop.DefaultNonceRotation

// dpopAlgs are the proof algorithms accepted (metadata).
var dpopAlgs = dpop.Algorithms()

// dpopVerifier checks proofs against the replay cache of the store, with
// nonces when they are on; nonces are keyed by Key, so every node accepts them.
func (s *Server) dpopVerifier() *dpop.Verifier {
	v := &dpop.Verifier{Replay: s.st, Now: s.now}
	if s.opts.DPoPNonces {
		v.NonceKey, v.NonceRotation = s.nonceKey, s.opts.DPoPNonceRotation
	}
	return v
}

// ProofVerifier is the verifier of the DPoP proofs sent to this server,
// with its nonces when they are on, for the other resources of the same
// listener (SCIM) to share: one replay cache, one nonce.
func (s *Server) ProofVerifier() *dpop.Verifier { return s.dpopVerifier() }

// dpopProof returns the request's single DPoP header, "" when there is none.
func dpopProof(r *http.Request) (string, *Error) {
	raw, err := dpop.Header(r)
	if err != nil {
		return "", asOAuthError(err)
	}
	return raw, nil
}

// verifyDPoP checks a proof (see dpop.Verifier.Verify) and returns the jkt
// of its key. A refusal is an *Error (invalid_dpop_proof or use_dpop_nonce);
// any other error is a failure of the server.
func (s *Server) verifyDPoP(ctx context.Context, raw string, want dpop.Request) (string, error) {
	jkt, err := s.dpopVerifier().Verify(ctx, raw, want)
	if e := asOAuthError(err); e != nil {
		return "", e
	}
	return jkt, err
}

// asOAuthError maps a *dpop.Error to the oauth error of its code; nil for
// any other error.
func asOAuthError(err error) *Error {
	var de *dpop.Error
	if !errors.As(err, &de) {
		return nil
	}
	base := ErrInvalidDPoPProof
	if de.Code == ErrUseDPoPNonce.Code {
		base = ErrUseDPoPNonce
	}
	return base.WithDescription("%s", de.Description)
}

// currentNonce is the nonce to hand out now.
func (s *Server) currentNonce() string { return s.dpopVerifier().Nonce() }

// dpopKey carries the jkt of the request's verified proof to issue.
type dpopKey struct{}

func withDPoP(ctx context.Context, jkt string) context.Context {
	return context.WithValue(ctx, dpopKey{}, jkt)
}

// dpopJKT is the thumbprint of the token request's verified proof, "" without one.
func dpopJKT(ctx context.Context) string {
	jkt, _ := ctx.Value(dpopKey{}).(string)
	return jkt
}

// tokenDPoP verifies the token request's proof, if any, and returns ctx
// carrying its jkt (RFC 9449 §5). When nonces are on, every answer to a DPoP
// request carries the current one.
func (s *Server) tokenDPoP(w http.ResponseWriter, r *http.Request) (context.Context, error) {
	raw, perr := dpopProof(r)
	if perr != nil {
		return nil, perr
	}
	if raw == "" {
		return r.Context(), nil
	}
	if s.opts.DPoPNonces {
		w.Header().Set("DPoP-Nonce", s.currentNonce())
	}
	jkt, err := s.verifyDPoP(r.Context(), raw, dpop.Request{Method: r.Method, URL: s.issuer + PathToken})
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			return nil, serverError(err)
		}
		return nil, err
	}
	return withDPoP(r.Context(), jkt), nil
}

// dpopError answers a resource request with the DPoP challenge of RFC 9449
// §7.1 (401; the algorithms we accept in algs).
func dpopError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("WWW-Authenticate", dpop.Challenge(code, desc))
	writeJSON(w, status, struct {
		Error       string `json:"error"`
		Description string `json:"error_description,omitempty"`
	}{code, desc})
}

func equalJKT(a, b string) bool { return hmac.Equal([]byte(a), []byte(b)) }
