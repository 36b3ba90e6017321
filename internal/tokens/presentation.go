package tokens

import (
	"context"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"

	"github.com/thingid/thingid/internal/dpop"
)

// Scheme is how a request presented its access token.
type Scheme string

// Schemes of the Authorization header a resource accepts tokens with, and
// SchemeNone for tokens that came another way (an MQTT password).
const (
	SchemeNone   Scheme = ""
	SchemeBearer Scheme = "Bearer" // RFC 6750 §2.1
	SchemeDPoP   Scheme = "DPoP"   // RFC 9449 §7.1
)

// Presentation is an access token as a request presented it, with the
// evidence of who sends it: the scheme, the DPoP proof and the request it
// must cover, and the client certificate whose key the TLS handshake proved.
// Verify takes one, so no resource can check a token apart from the sender
// binding it may carry (RFC 9449 §7, RFC 8705 §3). Only FromRequest,
// FromBody and FromConnection make one; it is for one request, not for
// concurrent use.
type Presentation struct {
	token  string
	scheme Scheme
	// The DPoP header of a DPoP-scheme request, or why it is unusable.
	proof    string
	proofErr error
	// What the proof must cover: the method and the URL as the resource
	// knows itself.
	method, url string
	x5t         string // of the client certificate; "" without one
	provenJKT   string // a DPoP key the carrying request proved (FromProven)
	dpopBound   bool   // the token named a DPoP key (set by Verify)
}

// RequestError is an Authorization the request got wrong (RFC 6750 §3.1
// invalid_request, HTTP 400); Description is safe to send back.
type RequestError struct{ Description string }

func (e *RequestError) Error() string { return "invalid_request: " + e.Description }

// FromRequest reads how r presents an access token: the one Authorization
// header with the Bearer (RFC 6750 §2.1) or DPoP (RFC 9449 §7.1) scheme, the
// request's DPoP proof, and the leaf of chain, the client certificate the
// TLS handshake (or a proxy the resource trusts) proved. url is the request
// URL as the resource knows itself, its configured origin and
// r.URL.EscapedPath(): the Host header is the client's to choose and proves
// nothing. A request without a token, or with another scheme (Basic), gives
// a Presentation whose Token is "". A malformed one is a *RequestError.
// Tokens in the query are refused (RFC 6750 §2.3, RFC 9700 §2.5).
func FromRequest(r *http.Request, url string, chain []*x509.Certificate) (*Presentation, error) {
	if strings.Contains(r.URL.RawQuery, "access_token") && r.URL.Query().Has("access_token") {
		return nil, &RequestError{"send the access token in the Authorization header, not in the query"}
	}
	vs := r.Header.Values("Authorization")
	switch {
	case len(vs) == 0:
		return &Presentation{}, nil
	case len(vs) > 1:
		return nil, &RequestError{"send one Authorization header"}
	}
	name, tok, _ := strings.Cut(vs[0], " ")
	var scheme Scheme
	switch {
	case strings.EqualFold(name, string(SchemeBearer)):
		scheme = SchemeBearer
	case strings.EqualFold(name, string(SchemeDPoP)):
		scheme = SchemeDPoP
	default:
		return &Presentation{}, nil
	}
	tok = strings.Trim(tok, " \t")
	if !isB64Token(tok) {
		return nil, &RequestError{"the Authorization header is not \"" + string(scheme) + " <token>\" (RFC 6750 §2.1)"}
	}
	p := &Presentation{token: tok, scheme: scheme, method: r.Method, url: url, x5t: leafThumbprint(chain)}
	if scheme == SchemeDPoP {
		p.proof, p.proofErr = dpop.Header(r)
	}
	return p, nil
}

// FromBody is a token sent in a form body (RFC 6750 §2.2), where only
// the Bearer scheme exists: a DPoP-bound token presented so is refused.
func FromBody(token string, chain []*x509.Certificate) *Presentation {
	return &Presentation{token: token, scheme: SchemeBearer, x5t: leafThumbprint(chain)}
}

// FromConnection is a token presented without HTTP, like an MQTT password,
// on a connection whose client proved chain (nil for none). DPoP has no
// such form, so a DPoP-bound token presented so is refused.
func FromConnection(token string, chain []*x509.Certificate) *Presentation {
	return &Presentation{token: token, x5t: leafThumbprint(chain)}
}

// FromProven is a token handed over inside a request whose sender already
// proved its keys: the token endpoint checked the DPoP proof and the client
// certificate of the request that carries it (a UMA claim token, an RPT to
// upgrade). cnf names those keys (nil for none); a token bound to any other
// key is refused, as it would be presented on its own.
func FromProven(token string, cnf *Confirmation) *Presentation {
	p := &Presentation{token: token}
	if cnf != nil {
		p.x5t, p.provenJKT = cnf.X5TS256, cnf.JKT
	}
	return p
}

// PeerCertificates is the client's chain on a mutual-TLS connection, leaf
// first; nil without one.
func PeerCertificates(r *http.Request) []*x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates
}

func leafThumbprint(chain []*x509.Certificate) string {
	if len(chain) == 0 {
		return ""
	}
	return CertThumbprint(chain[0])
}

// Token is the presented token; "" when the request had none.
func (p *Presentation) Token() string { return p.token }

// Scheme is how the token was presented.
func (p *Presentation) Scheme() Scheme { return p.scheme }

// DPoP tells whether a refusal should carry the DPoP challenge (RFC 9449
// §7.1): the token came with the DPoP scheme or is bound to a DPoP key.
func (p *Presentation) DPoP() bool { return p.scheme == SchemeDPoP || p.dpopBound }

// ProofVerifier checks DPoP proofs (*dpop.Verifier): a refusal is a
// *dpop.Error, any other error the server's.
type ProofVerifier interface {
	Verify(ctx context.Context, proof string, want dpop.Request) (string, error)
}

// Confirm enforces the sender binding of c, the verified claims of p's
// token (Verify does; a resource that caches verified claims calls it for
// every request). A token with cnf is accepted only from the holder of the
// key it names: x5t#S256 must be the thumbprint of the client certificate
// (RFC 8705 §3) and jkt that of the key of a DPoP proof, sent with the DPoP
// scheme, over this request and this token (RFC 9449 §7.1, §4.3). A token
// without cnf is a bearer token (RFC 6750); sent with the DPoP scheme, its
// proof must still be good. A refused token is an *Error, a refused proof a
// *dpop.Error.
func (p *Presentation) Confirm(ctx context.Context, c *Claims, proofs ProofVerifier) error {
	cnf := c.Confirmation
	p.dpopBound = cnf != nil && cnf.JKT != ""
	jkt := p.provenJKT
	if p.scheme == SchemeDPoP {
		switch {
		case p.proofErr != nil:
			return p.proofErr
		case p.proof == "":
			return dpop.ErrInvalidProof.WithDescription("the DPoP scheme needs a DPoP proof header (RFC 9449 §7.1)")
		case proofs == nil:
			return errors.New("tokens: a DPoP presentation needs VerifyOptions.Proofs")
		}
		var err error
		if jkt, err = proofs.Verify(ctx, p.proof, dpop.Request{Method: p.method, URL: p.url, AccessToken: p.token}); err != nil {
			return err
		}
	}
	return checkBinding(c, p.x5t, jkt)
}

// b64 marks the characters of RFC 6750 §2.1 b64token before its "=" padding.
var b64Chars = func() (t [256]bool) {
	for _, c := range "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/" {
		t[c] = true
	}
	return t
}()

// isB64Token: RFC 6750 §2.1 b64token.
func isB64Token(s string) bool {
	i := 0
	for i < len(s) && b64Chars[s[i]] {
		i++
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
