package tokens

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwt"
)

// idTokenRequired are the claims an ID token presented to a resource server
// must carry: OIDC Core §2 plus gid, the grant that revocation acts on.
var idTokenRequired = []string{"iss", "sub", "aud", "exp", "iat", "gid"}

// IDTokenOptions are the expectations of VerifyIDToken.
type IDTokenOptions struct {
	// Clients whose ID tokens the caller accepts. An ID token is addressed to
	// the client it was issued to (aud, azp), not to a resource server, so
	// the caller must opt in per client: aud must name exactly one of them.
	// Required.
	Clients []string
}

// VerifyIDToken checks raw, an ID token (OIDC Core §2) that a client
// presents to a resource server as its credential: signature by a published
// key with that key's algorithm, typ JWT (so an access token never passes
// here, as an ID token never passes Verify), iss, exp/nbf/iat, aud naming exactly one of
// opts.Clients (and azp, when present or when aud has several entries, that
// one), a gid, and that grant not revoked. The claims returned have Subject,
// Audience, IssuedAt, ExpiresAt, AuthTime, ID, GrantID and ClientID (the
// client the token was issued to); Scope, ThingID and Confirmation stay
// empty, whatever the token carries. A refused token is an *Error; other
// errors are the server's. The caller must still check that the grant
// belongs to that client and user.
func (v *Verifier) VerifyIDToken(ctx context.Context, raw string, opts IDTokenOptions) (*Claims, error) {
	if len(opts.Clients) == 0 {
		return nil, errors.New("tokens: VerifyIDToken needs the clients whose ID tokens are accepted")
	}
	tok, _, err := v.parse(raw, typeIDToken, idTokenRequired)
	if err != nil {
		return nil, err
	}
	c := registeredClaims(tok)
	if c.ClientID, err = idTokenClient(tok, c.Audience, opts.Clients); err != nil {
		return nil, err
	}
	if err := tok.Get("gid", &c.GrantID); err != nil || c.GrantID == "" {
		return nil, ErrMalformed.with("gid must be a non-empty string")
	}
	if c.Subject == "" {
		return nil, ErrMalformed.with("sub must be a non-empty string")
	}
	if tok.Has("cnf") {
		// A binding this verifier does not enforce must not be ignored.
		return nil, ErrBinding.with("an ID token carries no cnf")
	}
	if tok.Has("auth_time") {
		var at float64
		if err := tok.Get("auth_time", &at); err != nil {
			return nil, ErrMalformed.with("auth_time must be a number")
		}
		c.AuthTime = time.Unix(int64(at), 0)
	}
	if v.deny.denied(c.GrantID, v.keys.cfg.Now()) {
		return nil, ErrRevoked
	}
	return c, nil
}

// idTokenClient is the one accepted client an ID token was issued to: aud
// names exactly one of clients, and azp, which OIDC Core §2 requires with
// several audiences, names the same.
func idTokenClient(tok jwt.Token, aud, clients []string) (string, error) {
	var client string
	for _, a := range aud {
		if !slices.Contains(clients, a) {
			continue
		}
		if client != "" && client != a {
			return "", ErrAudience.with("names more than one accepted client")
		}
		client = a
	}
	if client == "" {
		return "", ErrAudience.with("not issued to a client whose ID tokens are accepted here")
	}
	var azp string
	if tok.Has("azp") {
		if err := tok.Get("azp", &azp); err != nil {
			return "", ErrMalformed.with("azp must be a string")
		}
	}
	switch {
	case azp == "" && len(aud) > 1:
		return "", ErrMissing.with("azp (several audiences)")
	case azp != "" && azp != client:
		return "", ErrAudience.with("azp is another client")
	}
	return client, nil
}
