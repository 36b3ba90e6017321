package ace

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"net/http"
	"net/url"
	"strings"

	"github.com/fxamacker/cbor/v2"
	"github.com/veraison/go-cose"

	"github.com/thingid/thingid/internal/tokens"
)

// Identity is who the client proved to be on its connection: the
// certificate chain of mutual TLS or DTLS (leaf first), a raw public key
// (RFC 7250), or the PSK identity of a DTLS session and the thing its key
// is for (the gateway's PSK callback decided). Its key is the one a token
// is bound to when the request names none (req_cnf): a PSK session's tokens
// name its PSK identity as cnf's kid (RFC 9202 §3.3).
type Identity struct {
	Chain     []*x509.Certificate
	PublicKey crypto.PublicKey // a raw public key, when Chain is empty
	PSK       []byte
	PSKThing  string
	// Authorization is the HTTP Authorization header of an HTTPS request
	// (a resource server's Basic credentials at introspection).
	Authorization string
}

// key is the identity's public key, nil for a PSK.
func (id Identity) key() crypto.PublicKey {
	if len(id.Chain) > 0 {
		return id.Chain[0].PublicKey
	}
	return id.PublicKey
}

// tokenRequest is a decoded token or device authorization request.
type tokenRequest struct {
	form url.Values
	cnf  *confirmation // req_cnf, nil when absent
	aif  bool          // scope (9) came as AIF: answer it so
}

// grantTypes names the abbreviated grant types (RFC 9200 Figure 11) served.
var grantTypes = map[uint64]string{
	grantClientCredentials: "client_credentials",
	grantRefreshToken:      "refresh_token",
}

// textParams are the parameters carried as text strings, by their form name.
var textParams = map[any]string{
	uint64(paramClientID):     "client_id",
	uint64(paramAudience):     "resource", // RFC 8707's resource: the audience of the token
	uint64(paramRefreshToken): "refresh_token",
	paramDeviceCode:           "device_code",
}

// paramNames name the parameters in errors, with their CBOR keys.
var paramNames = map[any]string{
	uint64(paramClientID): "client_id (24)", uint64(paramAudience): "audience (5)",
	uint64(paramRefreshToken): "refresh_token (37)", paramDeviceCode: "device_code",
	uint64(paramScope): "scope (9)", uint64(paramGrantType): "grant_type (33)", uint64(paramReqCnf): "req_cnf (4)",
}

// parseRequest decodes a token request (RFC 9200 §5.8.1): a CBOR map of
// abbreviated parameters. Unknown parameters are ignored (RFC 6749 §3.2);
// a known one of the wrong type is refused by name.
func parseRequest(b []byte) (*tokenRequest, *Error) {
	if len(b) > maxMessage {
		return nil, invalidRequest("the request is larger than %d bytes", maxMessage)
	}
	var m map[any]cbor.RawMessage
	if err := decMode.Unmarshal(b, &m); err != nil {
		var dup *cbor.DupMapKeyError
		if errors.As(err, &dup) {
			return nil, invalidRequest("parameter %v appears more than once (RFC 6749 §3.2)", dup.Key)
		}
		return nil, invalidRequest("the request is not a CBOR map of parameters (RFC 9200 §5.8.1): %v", err)
	}
	req := &tokenRequest{form: url.Values{}}
	for k, raw := range m {
		if name, ok := textParams[k]; ok {
			var v string
			if err := decMode.Unmarshal(raw, &v); err != nil || v == "" {
				return nil, invalidRequest("%s must be a non-empty text string", paramNames[k])
			}
			req.form.Set(name, v)
		}
	}
	if raw, ok := m[uint64(paramScope)]; ok {
		var v string
		var aif []byte
		switch {
		case decMode.Unmarshal(raw, &v) == nil:
		case decMode.Unmarshal(raw, &aif) == nil:
			scopes, err := parseAIF(aif)
			if err != nil {
				return nil, err
			}
			v, req.aif = strings.Join(scopes, " "), true
		default:
			return nil, invalidRequest("scope (9) must be a text string of space-separated scopes or a byte string holding an AIF scope (RFC 9237)")
		}
		req.form.Set("scope", v)
	}
	if raw, ok := m[uint64(paramGrantType)]; ok {
		gt, err := grantType(raw)
		if err != nil {
			return nil, err
		}
		req.form.Set("grant_type", gt)
	}
	if raw, ok := m[uint64(paramReqCnf)]; ok {
		var cnf confirmation
		if err := decMode.Unmarshal(raw, &cnf); err != nil || (cnf.Key == nil) == (cnf.Kid == nil) {
			return nil, failure(http.StatusBadRequest, "unsupported_pop_key", "req_cnf (4) must be a map holding a COSE_Key (1) or a kid (3) (RFC 9201 §3.1)")
		}
		req.cnf = &cnf
	}
	return req, nil
}

// grantType reads grant_type: an abbreviation or a text string.
func grantType(raw cbor.RawMessage) (string, *Error) {
	var n uint64
	if err := decMode.Unmarshal(raw, &n); err == nil {
		if gt, ok := grantTypes[n]; ok {
			return gt, nil
		}
		return "", failure(http.StatusBadRequest, "unsupported_grant_type", "grant_type (33) %d is not served; use 2 (client_credentials), 3 (refresh_token) or the device code's URN", n)
	}
	var s string
	if err := decMode.Unmarshal(raw, &s); err != nil || s == "" {
		return "", invalidRequest("grant_type (33) must be an unsigned integer or a text string")
	}
	return s, nil
}

// confirm is the cnf of a token for the client of id: req_cnf when the
// request has it, else the key the client proved. A kid (a PSK identity)
// must be the session's own: a client cannot bind its rights to another's key.
func confirm(req *tokenRequest, id Identity) (*confirmation, *Error) {
	cnf := req.cnf
	switch {
	case cnf == nil && id.PSK != nil:
		return &confirmation{Kid: id.PSK}, nil
	case cnf == nil && id.key() != nil:
		k, err := cose.NewKeyFromPublic(id.key())
		if err != nil {
			return nil, failure(http.StatusBadRequest, "unsupported_pop_key", "the client's key (%T) cannot be a COSE_Key; send req_cnf (4)", id.key())
		}
		return &confirmation{Key: k}, nil
	case cnf == nil:
		return nil, invalidRequest("req_cnf (4) is required: the connection proved no key")
	case cnf.Kid != nil && !bytes.Equal(cnf.Kid, id.PSK):
		return nil, failure(http.StatusBadRequest, "unsupported_pop_key", "req_cnf (4): a kid must be the PSK identity of this session")
	case cnf.Key != nil:
		if _, err := publicKey(cnf.Key); err != nil {
			return nil, failure(http.StatusBadRequest, "unsupported_pop_key", "req_cnf (4): %v", err)
		}
	}
	return cnf, nil
}

// publicKey is a COSE_Key's public key: EC2 P-256 or OKP Ed25519, the keys
// of the DTLS profile's cipher suites (RFC 9202 §3.2), never a private key.
func publicKey(k *cose.Key) (crypto.PublicKey, error) {
	if _, ok := k.Params[cose.KeyLabelEC2D]; ok {
		return nil, errors.New("the COSE_Key holds a private key (d); send the public key only")
	}
	pub, err := k.PublicKey()
	if err != nil {
		return nil, errors.New("the COSE_Key is not an EC2 P-256 or OKP Ed25519 public key")
	}
	switch p := pub.(type) {
	case *ecdsa.PublicKey:
		if p.Curve.Params().Name == "P-256" {
			return p, nil
		}
	case ed25519.PublicKey:
		return p, nil
	}
	return nil, errors.New("the COSE_Key is not an EC2 P-256 or OKP Ed25519 public key")
}

// Token answers an ACE token request (RFC 9200 §5.8) from the client of id:
// the CBOR answer and its HTTP status (see the package comment).
func (s *Server) Token(ctx context.Context, body []byte, id Identity) ([]byte, int) {
	resp, err := s.token(ctx, body, id)
	s.metrics.count(endpointToken, err)
	if err != nil {
		return s.refuse(endpointToken, err)
	}
	return resp, http.StatusOK
}

func (s *Server) token(ctx context.Context, body []byte, id Identity) ([]byte, error) {
	req, perr := parseRequest(body)
	if perr != nil {
		return nil, perr
	}
	if req.form.Get("grant_type") == "" {
		return nil, invalidRequest("grant_type (33) is required")
	}
	cnf, cerr := confirm(req, id)
	if cerr != nil {
		return nil, cerr
	}
	if req.form.Get("resource") == "" {
		req.form.Set("resource", s.audience)
	}
	var issued *claims
	a, err := s.as.Token(ctx, req.form, id, func(c tokens.Claims) ([]byte, error) {
		b, cl, err := s.issue(c, cnf, req.aif)
		issued = cl
		return b, err
	})
	if err != nil {
		return nil, err
	}
	// A CWT the audit log does not record is not handed out: the log is
	// where an administrator finds it to revoke it.
	if issued == nil {
		return nil, &Error{Code: "server_error", Description: "internal error", Status: http.StatusInternalServerError,
			cause: errors.New("ace: the authorization server answered a token it did not have signed")}
	}
	if err := s.auditIssue(ctx, issued); err != nil {
		return nil, &Error{Code: "server_error", Description: "the token could not be recorded", Status: http.StatusInternalServerError, cause: err}
	}
	// RFC 9200 §5.8.2; token_type is left out: the default, PoP (§5.8.4.2).
	out := map[int]any{paramAccessToken: a.AccessToken, paramExpiresIn: a.ExpiresIn, paramACEProfile: profileCoAPDTLS}
	switch {
	case a.Scope != "" && req.aif:
		aif, err := aifOf(strings.Fields(a.Scope))
		if err != nil {
			return nil, err
		}
		out[paramScope] = aif
	case a.Scope != "":
		out[paramScope] = a.Scope
	}
	if a.RefreshToken != "" {
		out[paramRefreshToken] = a.RefreshToken
	}
	return encMode.Marshal(out)
}

// DeviceAuthorization starts the device flow (RFC 8628 §3.1) for the client
// of id; the request carries client_id (24), scope (9) and audience (5), the
// answer RFC 8628's parameters under their names.
func (s *Server) DeviceAuthorization(ctx context.Context, body []byte, id Identity) ([]byte, int) {
	resp, err := s.deviceAuthorization(ctx, body, id)
	s.metrics.count(endpointDevice, err)
	if err != nil {
		return s.refuse(endpointDevice, err)
	}
	return resp, http.StatusOK
}

func (s *Server) deviceAuthorization(ctx context.Context, body []byte, id Identity) ([]byte, error) {
	req, perr := parseRequest(body)
	if perr != nil {
		return nil, perr
	}
	if req.form.Get("resource") == "" {
		req.form.Set("resource", s.audience)
	}
	d, err := s.as.DeviceAuthorization(ctx, req.form, id)
	if err != nil {
		return nil, err
	}
	return encMode.Marshal(map[string]any{
		"device_code": d.DeviceCode, "user_code": d.UserCode, "verification_uri": d.VerificationURI,
		"verification_uri_complete": d.VerificationURIComplete, "expires_in": d.ExpiresIn, "interval": d.Interval,
	})
}

// refuse answers err as RFC 9200 §5.8.3's CBOR; a server error is logged,
// never described.
func (s *Server) refuse(endpoint string, err error) ([]byte, int) {
	var e *Error
	if !errors.As(err, &e) || e.Status >= http.StatusInternalServerError {
		s.log.Error("ace: request failed", "endpoint", endpoint, "err", err)
		e = &Error{Code: "server_error", Description: "internal error", Status: http.StatusInternalServerError}
	}
	return e.cbor(), e.Status
}
