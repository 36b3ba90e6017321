package uma

import (
	"context"
	"errors"
	"net/http"

	"github.com/thingid/thingid/internal/tokens"
)

// maxClaimToken bounds a claim token before any parsing.
const maxClaimToken = 8 << 10

// ClaimToken is a claim token as pushed at the token endpoint (UMA 2.0
// Grant §3.3.1).
type ClaimToken struct {
	Format string
	Token  string
}

// ParseClaimToken checks the claim_token and claim_token_format parameters:
// both or neither, a known format, a compact JWS of bounded size.
func ParseClaimToken(token, format string) (*ClaimToken, error) {
	switch {
	case token == "" && format == "":
		return nil, nil
	case token == "" || format == "":
		return nil, newError(http.StatusBadRequest, "invalid_request", "claim_token and claim_token_format go together (UMA 2.0 Grant §3.3.1)")
	case format != FormatIDToken && format != FormatAccessToken:
		return nil, newError(http.StatusBadRequest, "invalid_request", "claim_token_format is not supported; use "+FormatIDToken+" or "+FormatAccessToken)
	case len(token) > maxClaimToken || !compactJWS(token):
		return nil, newError(http.StatusBadRequest, "invalid_grant", "claim_token is not a compact JWT")
	}
	return &ClaimToken{Format: format, Token: token}, nil
}

func compactJWS(s string) bool {
	dots := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			dots++
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return dots == 2
}

// requestingParty verifies a claim token and returns the user it proves:
// an ID token issued to this client, or this client's own access token that
// acts for a user (bound tokens only with their key: cnf is the binding of
// this token request). Tokens of another issuer, expired, badly signed (alg
// none, HMAC with a public key, an unknown key) are refused by Tokens.
func (s *Server) requestingParty(ctx context.Context, clientID string, cnf *tokens.Confirmation, ct *ClaimToken) (string, error) {
	refused := func(why string) error {
		return newError(http.StatusBadRequest, "invalid_grant", "the claim token is not valid: "+why)
	}
	var c *tokens.Claims
	var err error
	switch ct.Format {
	case FormatIDToken:
		c, err = s.opts.Tokens.IDToken(ctx, ct.Token, clientID)
	default:
		// A sender-constrained claim token is refused unless this token
		// request proved the same key or certificate.
		c, err = s.opts.Tokens.Presented(ctx, ct.Token, cnf)
	}
	var te *tokens.Error
	if errors.As(err, &te) {
		return "", refused(te.Description())
	}
	if err != nil {
		return "", err
	}
	if c.ClientID != clientID {
		return "", refused("it was issued to another client")
	}
	if ct.Format == FormatAccessToken {
		if len(c.Permissions) > 0 {
			return "", refused("an RPT is not a claim token; send it as rpt")
		}
	}
	g, live, err := s.liveGrant(ctx, c.GrantID)
	if err != nil {
		return "", err
	}
	if !live || g.ClientID != clientID || g.UserID == "" || g.UserID != c.Subject {
		return "", refused("it does not act for a user, or its grant was revoked")
	}
	return g.UserID, nil
}
