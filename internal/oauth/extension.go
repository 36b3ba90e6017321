package oauth

import (
	"context"
	"net/http"
	"net/url"
	"slices"

	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// ExtensionGrant serves one extension grant type at the token endpoint (RFC
// 6749 §4.5), such as UMA's uma-ticket, in a package of its own. The token
// endpoint authenticates the client, checks it may use the grant type and
// reads the sender binding (DPoP proof, client certificate) first;
// confirmation is what the issued token must be bound to (nil: bearer).
// Handle answers the status and JSON body (success or the grant's own
// error object, which says its code through an ErrorCode() string method
// for thingid_oauth_tokens_total); an error is a server failure.
type ExtensionGrant struct {
	Handle func(ctx context.Context, client *store.Client, form url.Values, confirmation *tokens.Confirmation) (status int, body any, err error)
	// Things lets the client every thing is use the grant.
	Things bool
}

// grantTypes is what clients may be registered with: the built-in grant
// types and the extensions.
func (s *Server) grantTypes() []string {
	out := slices.Clone(supportedGrantTypes)
	for gt := range s.opts.Extensions {
		out = append(out, gt)
	}
	slices.Sort(out[len(supportedGrantTypes):])
	return out
}

// codedBody is an extension's error body; its wire error code is the
// result thingid_oauth_tokens_total counts.
type codedBody interface{ ErrorCode() string }

// bodyCode is the error code of a successful token response (none) or of
// an extension's refusal: what its body names, else "other".
func bodyCode(status int, body any) string {
	if status < http.StatusBadRequest {
		return ""
	}
	if e, ok := body.(codedBody); ok {
		return e.ErrorCode()
	}
	return "other"
}

// extension runs an extension grant with the token request's binding.
func (s *Server) extension(ctx context.Context, x ExtensionGrant, c *store.Client, form url.Values) (int, any, error) {
	var cnf *tokens.Confirmation
	if x5t := certBinding(ctx); x5t != "" {
		cnf = &tokens.Confirmation{X5TS256: x5t}
	}
	if jkt := dpopJKT(ctx); jkt != "" {
		if cnf == nil {
			cnf = &tokens.Confirmation{}
		}
		cnf.JKT = jkt
	}
	status, body, err := x.Handle(ctx, c, form, cnf)
	if err != nil {
		return 0, nil, serverError(err)
	}
	return status, body, nil
}
