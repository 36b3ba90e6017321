package est

import (
	"bytes"
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

const (
	// maxCSRBody bounds an enrollment body: the base64 of a CSR with an
	// RSA-4096 key is about 2 KiB.
	maxCSRBody = 32 << 10
	// maxPresentedCerts bounds the client's chain handed to certauth.
	maxPresentedCerts = 8
	// maxLiveCerts bounds the unexpired platform certificates recorded on a
	// thing that enrolls on its own: a device that renews correctly holds two
	// or three; one renewing in a loop must not grow its record without end.
	maxLiveCerts = 16
	// replayMargin keeps a spent token's record past its expiry, so that no
	// clock difference between the check of the expiry and the database can
	// make the record lapse while the token is still accepted.
	replayMargin = time.Hour
)

// The enrollment operations (RFC 7030 §4.2), as paths and metric labels.
// serverkeygen (§4.4) is not served: a device's key never leaves it.
const (
	opEnroll   = "simpleenroll"
	opReenroll = "simplereenroll"
)

// answer serves an enrollment operation: the certificate it issued, or its
// refusal. Each is counted: thingid_est_enrollments_total by result, and
// an issued certificate in thingid_certificates_total (a re-enrollment as
// renewed).
func (s *Server) answer(operation string, op func(http.ResponseWriter, *http.Request) (*pki.DeviceCert, error)) http.Handler {
	event := certauth.CertIssued
	if operation == opReenroll {
		event = certauth.CertRenewed
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		result := "ok"
		dc, err := op(w, r)
		if err == nil {
			s.certificates.WithLabelValues(event).Inc() // issued and recorded, whether or not the answer reaches the device
			err = s.writeCert(w, r, dc)
		}
		if err != nil {
			result = "refused"
			if s.fail(w, r, err) >= http.StatusInternalServerError {
				result = "error"
			}
		}
		s.enrollments.WithLabelValues(operation, result).Inc()
	})
}

// enroll is POST simpleenroll (RFC 7030 §4.2.1): a first certificate for a
// thing that proves itself with a one-time enrollment token or with a
// bootstrap certificate of a registered manufacturer CA. When the request has
// HTTP credentials they decide, whatever certificate the TLS connection has.
func (s *Server) enroll(w http.ResponseWriter, r *http.Request) (*pki.DeviceCert, error) {
	ctx := r.Context()
	user, secret, hasToken, err := credentials(r)
	if err != nil {
		return nil, err
	}
	chain := peerCertificates(r)
	switch {
	case hasToken:
		claims, err := s.parseToken(secret, time.Now())
		if err != nil {
			return nil, unauthorized("%v", err)
		}
		if user != "" && user != claims.thingID {
			return nil, unauthorized("the enrollment token was made for another thing than %q", user)
		}
		csr, err := readCSR(w, r)
		if err != nil {
			return nil, err
		}
		return s.issue(ctx, "est-token:"+claims.id, claims.thingID, csr, s.spendToken(ctx, claims))
	case chain != nil:
		id, err := s.verify(ctx, chain)
		if err != nil {
			return nil, err
		}
		if id.Authority == certauth.AuthorityPlatform {
			return nil, refuse(http.StatusForbidden, "this certificate is the platform's own: renew it with simplereenroll")
		}
		csr, err := readCSR(w, r)
		if err != nil {
			return nil, err
		}
		return s.issue(ctx, "thing:"+id.Thing.ID, id.Thing.ID, csr, nil)
	}
	return nil, unauthorized("simpleenroll needs an enrollment token (HTTP Basic with the thing id as user name and the token as password, " +
		"or Authorization: Bearer with the token) or a manufacturer certificate presented over mutual TLS")
}

// reenroll is POST simplereenroll (RFC 7030 §4.2.2): the thing presents its
// current platform certificate over mutual TLS and gets a new one for the
// key of the CSR, under the same identity. The CSR must carry the subject
// (and, if it has any, the subject alternative names) of the certificate it
// renews.
func (s *Server) reenroll(w http.ResponseWriter, r *http.Request) (*pki.DeviceCert, error) {
	ctx := r.Context()
	chain := peerCertificates(r)
	if chain == nil {
		// No HTTP scheme would help: the credential is the TLS client
		// certificate, so no WWW-Authenticate challenge is offered.
		return nil, refuse(http.StatusUnauthorized, "simplereenroll renews the certificate the thing connects with: "+
			"present it as the TLS client certificate (curl --cert device.pem --key device.key)")
	}
	id, err := s.verify(ctx, chain)
	if err != nil {
		return nil, err
	}
	if id.Authority != certauth.AuthorityPlatform {
		return nil, refuse(http.StatusForbidden, "a manufacturer certificate is not renewed here: get a platform certificate with simpleenroll")
	}
	csr, err := readCSR(w, r)
	if err != nil {
		return nil, err
	}
	if !sameNames(csr.Subject.Names, id.Leaf.Subject.Names) {
		return nil, refuse(http.StatusBadRequest, "the CSR's subject %q is not the subject of the certificate being renewed (%q); "+
			"RFC 7030 §4.2.2 requires the same subject", csr.Subject, id.Leaf.Subject)
	}
	if hasSANs(csr) && !sameSANs(csr, id.Leaf) {
		return nil, refuse(http.StatusBadRequest, "the CSR's subject alternative names are not those of the certificate being renewed; "+
			"leave them out or copy them (RFC 7030 §4.2.2)")
	}
	return s.issue(ctx, "thing:"+id.Thing.ID, id.Thing.ID, csr, nil)
}

// issue certifies csr for the thing and records the certificate on it, in
// one transaction. spend, when not nil, spends the enrollment token in that
// transaction first, so that a failed enrollment leaves the token good.
// Without a token the device enrolls on its own authority (its certificate)
// and may hold at most maxLiveCerts unexpired platform certificates.
func (s *Server) issue(ctx context.Context, actor, thingID string, csr *x509.CertificateRequest, spend func(store.Tx) error) (*pki.DeviceCert, error) {
	var dc *pki.DeviceCert
	err := s.opts.Identity.WithTx(ctx, actor, func(tx *identity.Tx) error {
		if spend != nil {
			if err := spend(tx.Store); err != nil {
				return err
			}
		}
		th, err := tx.Store.GetThing(ctx, thingID)
		if errors.Is(err, store.ErrNotFound) {
			return refuse(http.StatusForbidden, "thing %s no longer exists", thingID)
		}
		if err != nil {
			return err
		}
		if err := enrollable(th); err != nil {
			var re *refusal.FieldError
			if errors.As(err, &re) {
				return refuse(http.StatusConflict, "%s", re.Reason())
			}
			return err
		}
		if n := s.liveCerts(th); spend == nil && n >= maxLiveCerts {
			s.log.Warn("est: enrollment refused: too many live certificates", "thing", th.ID, "count", n)
			return refuse(http.StatusConflict, "thing %s holds %d unexpired certificates of the platform already, the most a device may get "+
				"on its own; a device renewing this often is misbehaving: an administrator can re-enroll it with an enrollment token", th.ID, n)
		}
		dc, err = s.opts.CA.SignCSR(csr, th.ID, th.SerialNumber, 0) // the device CA's lifetime (pki.deviceCertLifetime)
		if err != nil {
			return refuse(http.StatusConflict, "no certificate can be issued for thing %s: %v", th.ID, err)
		}
		// With its serial number: revoking every certificate of the thing
		// lists this one in the CRL too.
		_, err = tx.AddCertificate(ctx, th.ID, store.CertRefOf(dc.Leaf))
		return err
	})
	return dc, err
}

// liveCerts counts the unexpired certificates of the device CA recorded on th.
func (s *Server) liveCerts(th *store.Thing) int {
	issuer, now, n := s.opts.CA.Cert.Subject.String(), time.Now(), 0
	for _, c := range th.Certificates {
		if c.Issuer == issuer && c.NotAfter.After(now) {
			n++
		}
	}
	return n
}

// spendToken is the spend of issue for an enrollment token.
func (s *Server) spendToken(ctx context.Context, claims *tokenClaims) func(store.Tx) error {
	return func(tx store.Tx) error {
		switch err := tx.UseOnce(ctx, s.useKey(claims), claims.expires.Add(replayMargin)); {
		case errors.Is(err, store.ErrUsed):
			return unauthorized("%v", errTokenUsed)
		case err != nil:
			return err
		}
		return nil
	}
}

// writeCert answers an enrollment with the certs-only response of RFC 7030
// §4.2.3: the new certificate, then its issuing CA. An error is returned
// before anything is written.
func (s *Server) writeCert(w http.ResponseWriter, r *http.Request, dc *pki.DeviceCert) error {
	der, err := certsOnly(dc.Chain)
	if err != nil {
		return err
	}
	s.log.Info("est: certificate issued", "path", r.URL.Path, "thing", thingOf(dc.Leaf), "fingerprint", dc.FingerprintSHA256,
		"notAfter", dc.Leaf.NotAfter)
	writeBase64(w, certsOnlyType, der)
	return nil
}

func thingOf(c *x509.Certificate) string {
	id, _ := pki.ThingID(c)
	return id
}

// verify hands the client's chain to certauth.
func (s *Server) verify(ctx context.Context, chain []*x509.Certificate) (*certauth.Identity, error) {
	if s.opts.Certificates == nil {
		return nil, refuse(http.StatusUnauthorized, "this server accepts no client certificates")
	}
	if len(chain) > maxPresentedCerts {
		return nil, refuse(http.StatusBadRequest, "too many client certificates presented (at most %d)", maxPresentedCerts)
	}
	return s.opts.Certificates.Verify(ctx, chain)
}

// peerCertificates is the client's chain on a mutual-TLS connection, leaf
// first; nil without one.
func peerCertificates(r *http.Request) []*x509.Certificate {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return nil
	}
	return r.TLS.PeerCertificates
}

// credentials reads an enrollment token from the Authorization header: HTTP
// Basic (RFC 7030 §3.2.3; the user name is the thing id) or Bearer. ok is
// false when the request has no Authorization header.
func credentials(r *http.Request) (user, secret string, ok bool, err error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", "", false, nil
	}
	if u, p, isBasic := r.BasicAuth(); isBasic {
		if p == "" {
			return "", "", false, unauthorized("the Basic credentials have no password: send the enrollment token as the password")
		}
		return u, p, true, nil
	}
	if scheme, tok, _ := strings.Cut(h, " "); strings.EqualFold(scheme, "Bearer") && strings.TrimSpace(tok) != "" {
		return "", strings.TrimSpace(tok), true, nil
	}
	return "", "", false, unauthorized("unsupported Authorization header: use Basic (thing id and enrollment token) or Bearer (enrollment token)")
}

// readCSR reads an enrollment body: Content-Type application/pkcs10 and the
// base64 of a DER PKCS#10 request (RFC 7030 §4.2.1, RFC 8951 §3), whose key
// type and self-signature it checks.
func readCSR(w http.ResponseWriter, r *http.Request) (*x509.CertificateRequest, error) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/pkcs10" {
		return nil, refuse(http.StatusUnsupportedMediaType, "send the CSR with Content-Type: application/pkcs10 (RFC 7030 §4.2.1)")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxCSRBody))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, refuse(http.StatusRequestEntityTooLarge, "the CSR body is larger than %d bytes", maxCSRBody)
	}
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "reading the CSR body: %v", err)
	}
	csr, err := parseCSRBody(body)
	if err != nil {
		return nil, refuse(http.StatusBadRequest, "%v", err)
	}
	return csr, nil
}

// parseCSRBody decodes the base64 (line breaks and padding optional) of a
// DER PKCS#10 request and checks what the device CA will check: a supported
// key and a signature made with it, the proof that the requester holds the
// key (RFC 2986 §3).
func parseCSRBody(body []byte) (*x509.CertificateRequest, error) {
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("-----BEGIN")) {
		return nil, errors.New("the body is PEM: send the base64 of the DER CSR without the ----- lines (RFC 7030 §4.2.1)")
	}
	compact := bytes.Map(func(r rune) rune {
		if r == ' ' || r == '\t' || r == '\r' || r == '\n' {
			return -1
		}
		return r
	}, body)
	der, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(string(compact), "="))
	if err != nil || len(der) == 0 {
		return nil, errors.New("the body is not base64 of a DER CSR (RFC 7030 §4.2.1)")
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		return nil, fmt.Errorf("the body is not a PKCS#10 CSR: %v", err)
	}
	if err := pki.CheckPublicKey(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("CSR: the signature does not verify with the CSR's own key, so it does not prove possession of the key: %v", err)
	}
	return csr, nil
}

// sameNames compares two subjects attribute by attribute, in order, by type
// and value, whatever ASN.1 string type each encoder chose.
func sameNames(a, b []pkix.AttributeTypeAndValue) bool {
	return slices.EqualFunc(a, b, func(x, y pkix.AttributeTypeAndValue) bool {
		return x.Type.Equal(y.Type) && fmt.Sprint(x.Value) == fmt.Sprint(y.Value)
	})
}

func hasSANs(csr *x509.CertificateRequest) bool {
	return len(csr.DNSNames)+len(csr.EmailAddresses)+len(csr.IPAddresses)+len(csr.URIs) > 0
}

func sameSANs(csr *x509.CertificateRequest, c *x509.Certificate) bool {
	return slices.Equal(csr.DNSNames, c.DNSNames) && slices.Equal(csr.EmailAddresses, c.EmailAddresses) &&
		slices.EqualFunc(csr.IPAddresses, c.IPAddresses, net.IP.Equal) &&
		slices.EqualFunc(csr.URIs, c.URIs, func(a, b *url.URL) bool { return a.String() == b.String() })
}
