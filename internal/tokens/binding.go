package tokens

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
)

// checkBinding enforces the sender constraint of a verified token. A token
// with cnf is accepted only from the holder of the key it names: x5t#S256
// must equal certThumbprint, the SHA-256 of the client certificate of the
// mutual-TLS connection (RFC 8705 §3; see CertThumbprint), and jkt must equal
// dpopJKT, the JWK thumbprint of the key of a DPoP proof already validated
// against the request (RFC 9449 §6.1, §7.1). A token without cnf is a bearer
// token (RFC 6750) and needs neither. "" is a binding the request lacks.
// Only Presentation.Confirm calls it, with evidence it gathered itself.
func checkBinding(c *Claims, certThumbprint, dpopJKT string) error {
	cnf := c.Confirmation
	if cnf == nil {
		return nil
	}
	if cnf.X5TS256 == "" && cnf.JKT == "" {
		// RFC 7800 §3.1: a confirmation method we do not understand cannot be met.
		return ErrBinding.with("unsupported confirmation method")
	}
	if cnf.X5TS256 != "" {
		if certThumbprint == "" {
			return ErrBinding.with("token is bound to a client certificate; use mutual TLS")
		}
		if !equal(cnf.X5TS256, certThumbprint) {
			return ErrBinding.with("client certificate does not match the token")
		}
	}
	if cnf.JKT != "" {
		if dpopJKT == "" {
			return ErrBinding.with("token is bound to a DPoP key; send a DPoP proof")
		}
		if !equal(cnf.JKT, dpopJKT) {
			return ErrBinding.with("DPoP key does not match the token")
		}
	}
	return nil
}

// CertThumbprint is the x5t#S256 of a certificate (RFC 8705 §3.1): base64url
// of the SHA-256 of its DER.
func CertThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }
