package ace

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
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
// ACE's CBOR: the token under 11) with the claims of a CWT this platform
// signed, unexpired and not revoked (by cti or grant), and active (10)
// true, to
//
//   - a client that authenticates as at the token endpoint (client_id (24)
//     and client_secret (25), or HTTP Basic), for a token the authorization
//     server's rule (AuthorizationServer.Disclose) lets it see: issued to
//     it, or of an audience it is a resource server of (the answer's aud
//     then only those audiences);
//   - the token's holder: a client without credentials that proved the
//     token's cnf key on its connection.
//
// Every other token is active false (10), so that a client learns nothing
// of tokens neither for it nor held by it. A client that proved nothing, or
// whose credentials fail, or that may not introspect at all (public, a
// thing), is refused (invalid_client, 401).
func (s *Server) Introspect(ctx context.Context, body []byte, id Identity) ([]byte, int) {
	c, err := s.introspectCBOR(ctx, body, id)
	s.metrics.count(endpointIntrospect, err)
	if err != nil {
		return s.refuse(endpointIntrospect, err)
	}
	b, err := encMode.Marshal(c.cbor())
	if err != nil {
		return s.refuse(endpointIntrospect, err)
	}
	return b, http.StatusOK
}

func (s *Server) introspectCBOR(ctx context.Context, body []byte, id Identity) (*claims, error) {
	tok, form, perr := parseTokenParam(body)
	if perr != nil {
		return nil, perr
	}
	return s.introspect(ctx, tok, form, id)
}

// introspect is the token's claims when the caller may see them, nil when
// the token is not active for it; an error is a refusal of the caller.
func (s *Server) introspect(ctx context.Context, tok []byte, form url.Values, id Identity) (*claims, error) {
	if form.Get("client_id") != "" || form.Get("client_secret") != "" || id.Authorization != "" {
		client, err := s.as.Introspector(ctx, form, id)
		if err != nil {
			return nil, err
		}
		c, err := s.verify(ctx, tok, "")
		if inactive(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		aud, ok := s.as.Disclose(client, c.Client, c.Aud)
		if !ok {
			s.log.Info("ace: a client introspected a CWT neither issued to it nor of an audience it is a resource server of (oauth.resourceServers); answered inactive",
				"client", client, "token_client", c.Client, "aud", []string(c.Aud))
			return nil, nil
		}
		c.Aud = aud
		return c, nil
	}
	if id.PSK == nil && id.key() == nil {
		return nil, failure(http.StatusUnauthorized, "invalid_client",
			"introspection needs a resource server's credentials (client_id (24) and client_secret (25), or HTTP Basic) or the token holder's key (mutual TLS or DTLS)")
	}
	c, err := s.verify(ctx, tok, "")
	if err == nil {
		err = held(c.Cnf, id)
	}
	if inactive(err) {
		return nil, nil
	}
	return c, err
}

// inactive tells a token refused (not active) from a server error.
func inactive(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status < http.StatusInternalServerError
}

// cbor is the introspection response in CBOR (RFC 9200 §5.9.2): the claims
// under their CWT keys, active (10), ace_profile (38), client_id (24); nil
// claims are {10: false}.
func (c *claims) cbor() map[any]any {
	if c == nil {
		return map[any]any{paramActive: false}
	}
	out := map[any]any{
		paramActive: true, claimIss: c.Iss, claimSub: c.Sub, claimAud: c.Aud, claimExp: c.Exp, claimIat: c.Iat,
		claimCti: c.Cti, claimCnf: c.Cnf, paramACEProfile: profileCoAPDTLS, "gid": c.Gid,
	}
	if c.Scope.Text != "" {
		out[paramScope] = c.Scope // in the token's own form, text or AIF
	}
	if c.Thing != "" {
		out["thing"] = c.Thing
	}
	if c.Client != "" {
		out[paramClientID] = c.Client
	}
	return out
}

// introspectionJSON is the introspection response in JSON (RFC 7662 §2.2
// with RFC 9200 §5.9.2's ACE parameters): cti base64url, cnf as RFC 7800's
// (a JWK, or the PSK identity as kid, base64url), ace_profile by name.
type introspectionJSON struct {
	Active     bool     `json:"active"`
	Issuer     string   `json:"iss,omitempty"`
	Subject    string   `json:"sub,omitempty"`
	Audience   []string `json:"aud,omitempty"`
	ExpiresAt  int64    `json:"exp,omitempty"`
	IssuedAt   int64    `json:"iat,omitempty"`
	CTI        string   `json:"cti,omitempty"`
	Cnf        *jsonCnf `json:"cnf,omitempty"`
	Scope      string   `json:"scope,omitempty"`
	ClientID   string   `json:"client_id,omitempty"`
	TokenType  string   `json:"token_type,omitempty"`
	ACEProfile string   `json:"ace_profile,omitempty"`
	GrantID    string   `json:"gid,omitempty"`
	Thing      string   `json:"thing,omitempty"`
}

type jsonCnf struct {
	JWK map[string]string `json:"jwk,omitempty"`
	Kid string            `json:"kid,omitempty"`
}

func (c *claims) json() introspectionJSON {
	if c == nil {
		return introspectionJSON{}
	}
	return introspectionJSON{Active: true, Issuer: c.Iss, Subject: c.Sub, Audience: c.Aud, ExpiresAt: c.Exp, IssuedAt: c.Iat,
		CTI: base64.RawURLEncoding.EncodeToString(c.Cti), Cnf: c.Cnf.json(), Scope: c.Scope.Text, ClientID: c.Client,
		TokenType: "PoP", ACEProfile: "coap_dtls", GrantID: c.Gid, Thing: c.Thing}
}

// json is cnf as RFC 7800 §3 writes it: a public key as a JWK (RFC 7518
// §6.2 EC, RFC 8037 OKP), a PSK identity as kid.
func (cnf *confirmation) json() *jsonCnf {
	b64 := base64.RawURLEncoding.EncodeToString
	if cnf.Kid != nil {
		return &jsonCnf{Kid: b64(cnf.Kid)}
	}
	pub, err := publicKey(cnf.Key)
	if err != nil {
		return nil // check refused such a token already
	}
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		e, err := k.ECDH()
		if err != nil {
			return nil
		}
		b := e.Bytes() // 0x04 || X || Y (SEC 1 §2.3.3)
		return &jsonCnf{JWK: map[string]string{"kty": "EC", "crv": "P-256", "x": b64(b[1:33]), "y": b64(b[33:])}}
	case ed25519.PublicKey:
		return &jsonCnf{JWK: map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(k)}}
	}
	return nil
}
