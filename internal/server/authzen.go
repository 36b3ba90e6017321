package server

import (
	"net/http"

	"github.com/thingid/thingid/internal/authzen"
	"github.com/thingid/thingid/internal/tokens"
)

// authzenTokens adapts the platform's verifier to authzen.Tokens: access
// tokens for the issuer, with their sender binding, as the UMA protection
// API takes them.
type authzenTokens struct {
	tk       *tokenSet
	audience string
	proofs   func() tokens.ProofVerifier
}

func (a *authzenTokens) Request(r *http.Request) (*tokens.Claims, error) {
	return verifyRequest(a.tk, a.audience, a.proofs(), r, authzen.ErrNoToken)
}

var _ authzen.Tokens = (*authzenTokens)(nil)
