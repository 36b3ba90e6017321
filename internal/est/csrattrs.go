package est

import (
	"encoding/asn1"
	"encoding/base64"
	"net/http"
)

var (
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECPublicKey     = asn1.ObjectIdentifier{1, 2, 840, 10045, 2, 1}
	oidP256            = asn1.ObjectIdentifier{1, 2, 840, 10045, 3, 1, 7}
)

// csrAttrs is the DER of what this server wants in a CSR (RFC 7030 §4.5.2):
//
//	CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID
//	AttrOrOID ::= CHOICE { oid OBJECT IDENTIFIER, attribute Attribute }
//
// an ECDSA P-256 key (the attribute form of the RFC's own example) signed
// with ecdsa-with-SHA256. No challengePassword: enrollment is authenticated
// by a token or a certificate, and the names come from the platform, not the
// CSR, so no subject attribute is asked for either. Other keys (Ed25519, RSA of
// 2048 bits or more, P-384) are accepted; this is the recommendation.
var csrAttrs = func() []byte {
	attr, err := asn1.Marshal(struct {
		Type   asn1.ObjectIdentifier
		Values []asn1.ObjectIdentifier `asn1:"set"`
	}{oidECPublicKey, []asn1.ObjectIdentifier{oidP256}})
	if err != nil {
		panic(err)
	}
	alg, err := asn1.Marshal(oidECDSAWithSHA256)
	if err != nil {
		panic(err)
	}
	seq, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: append(alg, attr...)})
	if err != nil {
		panic(err)
	}
	return seq
}()

// serveCSRAttrs answers GET csrattrs (RFC 7030 §4.5), open to anyone like cacerts.
func (s *Server) serveCSRAttrs(w http.ResponseWriter, r *http.Request) {
	writeBase64(w, "application/csrattrs", csrAttrs)
}

// writeBase64 sends an EST payload: base64 of the DER (RFC 7030 §4, RFC 8951
// §3), with Content-Transfer-Encoding for the clients written before RFC 8951.
func writeBase64(w http.ResponseWriter, contentType string, der []byte) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Transfer-Encoding", "base64")
	h.Set("Cache-Control", "no-store")
	enc := base64.StdEncoding.EncodeToString(der)
	// 64 characters a line, the line length of RFC 7468 and of openssl.
	out := make([]byte, 0, len(enc)+len(enc)/64*2+2)
	for len(enc) > 64 {
		out = append(append(out, enc[:64]...), '\r', '\n')
		enc = enc[64:]
	}
	out = append(append(out, enc...), '\r', '\n')
	w.WriteHeader(http.StatusOK)
	w.Write(out)
}
