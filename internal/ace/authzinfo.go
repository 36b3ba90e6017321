package ace

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Access is what a CWT accepted at /authz-info grants its presenter.
type Access struct {
	Subject   string // sub: the client (a thing's own id) or the user it acts for
	ThingID   string // the thing the client stands for, "" for none
	Scopes    []string
	ExpiresAt time.Time
	ID        []byte // cti
	GrantID   string // gid: revoking the grant revokes the token
}

// AuthzInfo is the resource server's /authz-info (RFC 9200 §5.10.1): it
// verifies token (a CWT for this server's audience, signed by a current
// platform key, unexpired, its grant not revoked) and that peer, the DTLS
// session's client, holds its cnf key (RFC 9202 §3.2: the raw public key or
// certificate key of the handshake; §3.3: the PSK identity). token is the
// CWT in a CBOR byte string (RFC 9200 §5.10.1) or the COSE message itself.
// A refusal is an *Error (§5.10.1.1): 400 for what is not a CWT, 403 for a
// CWT for another audience, 401 for one refused otherwise.
func (s *Server) AuthzInfo(ctx context.Context, token []byte, peer Identity) (*Access, error) {
	a, err := s.authzInfo(ctx, token, peer)
	s.metrics.count(endpointAuthzInfo, err)
	if err != nil {
		var e *Error
		if errors.As(err, &e) && e.Status < http.StatusInternalServerError {
			s.log.Info("ace: token refused at authz-info", "reason", e.Description)
		} else {
			s.log.Error("ace: authz-info failed", "err", err)
		}
	}
	return a, err
}

func (s *Server) authzInfo(ctx context.Context, token []byte, peer Identity) (*Access, error) {
	token, err := unwrapToken(token)
	if err != nil {
		return nil, err
	}
	c, err := s.verify(ctx, token, s.audience)
	if err != nil {
		return nil, err
	}
	if err := held(c.Cnf, peer); err != nil {
		return nil, err
	}
	return &Access{Subject: c.Sub, ThingID: c.Thing, Scopes: strings.Fields(c.Scope.Text), ExpiresAt: time.Unix(c.Exp, 0), ID: c.Cti, GrantID: c.Gid}, nil
}

// unwrapToken is the COSE message of a token posted to /authz-info: the
// content of a CBOR byte string (major type 2), or b when it is no byte
// string (a tagged COSE message, as libcoap's -f sends a file).
func unwrapToken(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, invalidRequest("the request has no token: post the CWT as a CBOR byte string")
	}
	if b[0]>>5 != 2 {
		return b, nil
	}
	var raw []byte
	if err := decMode.Unmarshal(b, &raw); err != nil {
		return nil, invalidRequest("the token is not a well-formed CBOR byte string: %v", err)
	}
	return raw, nil
}

// held checks that peer proved the key cnf names.
func held(cnf *confirmation, peer Identity) error {
	if cnf.Kid != nil {
		if peer.PSK == nil || !bytes.Equal(cnf.Kid, peer.PSK) {
			return unauthorized("the token is bound to a PSK identity this session did not prove (cnf, 8)")
		}
		return nil
	}
	want, err := publicKey(cnf.Key)
	if err != nil {
		return unauthorized("cnf (8): %v", err)
	}
	if !sameKey(want, peer.key()) {
		return unauthorized("the token is bound to a key this session did not prove (cnf, 8)")
	}
	return nil
}

func sameKey(a, b any) bool {
	switch k := a.(type) {
	case *ecdsa.PublicKey:
		return k.Equal(b)
	case ed25519.PublicKey:
		return k.Equal(b)
	}
	return false
}
