package certauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// Reason is an RFC 5280 §5.3.1 CRLReason. Only the reasons that end a
// certificate for good are offered: certificateHold (6) would need unrevoking,
// and the CA reasons do not apply to device certificates.
type Reason int

const (
	ReasonUnspecified          Reason = 0
	ReasonKeyCompromise        Reason = 1
	ReasonAffiliationChanged   Reason = 3
	ReasonSuperseded           Reason = 4
	ReasonCessationOfOperation Reason = 5
	ReasonPrivilegeWithdrawn   Reason = 9
)

var reasonNames = map[Reason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
}

func (r Reason) String() string {
	if n, ok := reasonNames[r]; ok {
		return n
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// ParseReason reads a reason by its RFC 5280 name ("keyCompromise"); empty is
// unspecified.
func ParseReason(s string) (Reason, error) {
	if s == "" {
		return ReasonUnspecified, nil
	}
	for r, n := range reasonNames {
		if strings.EqualFold(n, s) {
			return r, nil
		}
	}
	return 0, fmt.Errorf("reason %q is not one of unspecified, keyCompromise, affiliationChanged, superseded, cessationOfOperation, privilegeWithdrawn", s)
}

// MarshalText writes the reason's name, UnmarshalText reads it (JSON).
func (r Reason) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

func (r *Reason) UnmarshalText(b []byte) error {
	v, err := ParseReason(string(b))
	*r = v
	return err
}

// Revocation says which certificates to revoke: one, by Certificate or by
// Fingerprint, or, with only ThingID, every certificate recorded on the thing.
type Revocation struct {
	ThingID string
	// Fingerprint is the SHA-256 of the certificate's DER in hex (colons and
	// upper case, as openssl prints it, are accepted).
	Fingerprint string
	// Certificate, when at hand, gives the serial number: a revoked
	// certificate of the device issuing CA is then listed in the CRL too, not
	// only refused by thingid.
	Certificate *x509.Certificate
	Reason      Reason
}

// RevocationError is a Revocation that cannot be carried out as given; Field
// names what is wrong.
type RevocationError struct{ refusal.FieldError }

func invalidRevocation(field, format string, args ...any) error {
	return &RevocationError{refusal.FieldError{Field: field, Src: format, Args: args}}
}

// Revoke records the revocations and their audit records in one transaction,
// then refuses the certificates on this node at once and on every other one
// through EventCertRevoke. It returns the certificates newly revoked:
// revoking a revoked certificate again changes nothing. Several revocations
// (a factory batch's things) are all carried out or, when one of them cannot
// be, none.
func (c *Checker) Revoke(ctx context.Context, actor string, rs ...Revocation) ([]*store.RevokedCert, error) {
	var recs []*store.RevokedCert
	for _, r := range rs {
		if _, ok := reasonNames[r.Reason]; !ok {
			return nil, invalidRevocation("reason", "%s cannot be used to revoke a device certificate", r.Reason)
		}
		rc, err := c.revocations(ctx, r)
		if err != nil {
			return nil, err
		}
		recs = append(recs, rc...)
	}
	var done []*store.RevokedCert
	err := c.opts.Store.WithTx(ctx, func(tx store.Tx) error {
		done = done[:0]
		for _, rc := range recs {
			x := *rc
			err := tx.RevokeCert(ctx, &x)
			if errors.Is(err, store.ErrConflict) {
				continue
			}
			if err != nil {
				return err
			}
			detail, _ := json.Marshal(map[string]string{"fingerprint": x.FingerprintSHA256, "serial": x.SerialNumber, "reason": Reason(x.Reason).String()})
			if err := tx.AppendAudit(ctx, store.AuditRecord{Time: x.RevokedAt, Actor: actor, Action: EventCertRevoke,
				Target: store.Ref{Kind: store.KindThing, ID: x.ThingID}, Detail: detail}); err != nil {
				return err
			}
			done = append(done, &x)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.certificates.WithLabelValues(CertRevoked).Add(float64(len(done)))
	for _, x := range done {
		fp, _ := parseFingerprint(x.FingerprintSHA256)
		c.revoked.add(fp) // this node refuses it even without a bus
		c.crl.invalidate()
		c.opts.Bus.Publish(events.Event{Type: EventCertRevoke, Kind: string(store.KindThing), ID: x.ThingID, Actor: actor,
			Details: map[string]string{"fingerprint": x.FingerprintSHA256}})
	}
	return done, nil
}

// revocations turns r into the records to store.
func (c *Checker) revocations(ctx context.Context, r Revocation) ([]*store.RevokedCert, error) {
	base := store.RevokedCert{ThingID: r.ThingID, Reason: int(r.Reason), RevokedAt: c.opts.Now()}
	switch {
	case r.Certificate != nil:
		rc := base
		sum := sha256.Sum256(r.Certificate.Raw)
		rc.FingerprintSHA256 = hex.EncodeToString(sum[:])
		if r.Fingerprint != "" {
			if fp, ok := parseFingerprint(r.Fingerprint); !ok || fp != sum {
				return nil, invalidRevocation("fingerprint", "is not the SHA-256 of the certificate given; give one or the other")
			}
		}
		rc.SerialNumber = r.Certificate.SerialNumber.Text(16)
		rc.Issuer = r.Certificate.Issuer.String()
		rc.NotAfter = r.Certificate.NotAfter
		rc.Authority = c.authorityOf(r.Certificate)
		if rc.Authority == AuthorityPlatform {
			id, ok := pki.ThingID(r.Certificate)
			if ok && r.ThingID != "" && r.ThingID != id {
				return nil, invalidRevocation("thingId", "the certificate was issued to thing %s, not %s", id, r.ThingID)
			}
			rc.ThingID = id
		}
		return []*store.RevokedCert{&rc}, nil
	case r.Fingerprint != "":
		fp, ok := parseFingerprint(r.Fingerprint)
		if !ok {
			return nil, invalidRevocation("fingerprint", "must be a SHA-256 in hex: 64 hex digits, colons allowed")
		}
		rc := base
		rc.FingerprintSHA256 = hex.EncodeToString(fp[:])
		return []*store.RevokedCert{&rc}, nil
	case r.ThingID != "":
		t, err := c.opts.Store.GetThing(ctx, r.ThingID)
		if err != nil {
			return nil, err
		}
		if len(t.Certificates) == 0 {
			return nil, invalidRevocation("thingId", "thing %s has no certificates recorded; give the certificate or its fingerprint", t.ID)
		}
		var out []*store.RevokedCert
		for _, ref := range t.Certificates {
			rc := base
			rc.FingerprintSHA256, rc.Issuer, rc.NotAfter, rc.SerialNumber = ref.FingerprintSHA256, ref.Issuer, ref.NotAfter, ref.SerialNumber
			if ref.Issuer == c.anchors.Load().issuing.Subject.String() {
				rc.Authority = AuthorityPlatform // listed in the CRL by its serial number
			}
			out = append(out, &rc)
		}
		return out, nil
	}
	return nil, invalidRevocation("thingId", "give a thing, a certificate or a fingerprint to revoke")
}

// authorityOf says which known CA signed c: AuthorityPlatform, a manufacturer
// CA's ID (for certificates it signed directly), or "".
func (c *Checker) authorityOf(cert *x509.Certificate) string {
	a := c.anchors.Load()
	if cert.CheckSignatureFrom(a.issuing) == nil {
		return AuthorityPlatform
	}
	for id, ca := range a.byID {
		if cert.CheckSignatureFrom(ca.cert) == nil {
			return id
		}
	}
	return ""
}

// parseFingerprint reads a SHA-256 in hex, with or without colons, any case.
func parseFingerprint(s string) ([32]byte, bool) {
	var fp [32]byte
	b, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(b) != len(fp) {
		return fp, false
	}
	copy(fp[:], b)
	return fp, true
}

// revokedSet holds the fingerprints of every revoked certificate. It only
// grows: a revocation is for good, so a reload racing an event can never
// forget one.
type revokedSet struct {
	mu sync.RWMutex
	m  map[[32]byte]struct{}
}

func (s *revokedSet) add(fp [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[[32]byte]struct{}{}
	}
	s.m[fp] = struct{}{}
}

func (s *revokedSet) has(fp [32]byte) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	_, ok := s.m[fp]
	return ok
}

// revocationPage is how many revocations one store read returns.
const revocationPage = 1000

// loadRevocations adds the revocations stored since the last call. After the
// first call, a revocation this node had not heard of (its event was missed
// while the node's relay reconnected) is published on this node alone as
// the EventCertRevoke it missed, so that the doors holding connections (the
// broker) end them too.
func (c *Checker) loadRevocations(ctx context.Context) error {
	missed, err := c.readRevocations(ctx)
	for _, r := range missed {
		c.opts.Bus.Publish(events.Event{Type: EventCertRevoke, Kind: string(store.KindThing), ID: r.ThingID, Local: true,
			Details: map[string]string{"fingerprint": r.FingerprintSHA256}})
	}
	return err
}

// readRevocations adds the revocations stored since the last call and
// returns those not heard of before (none on the first call).
func (c *Checker) readRevocations(ctx context.Context) ([]*store.RevokedCert, error) {
	c.revMu.Lock()
	defer c.revMu.Unlock()
	var missed []*store.RevokedCert
	for {
		page, err := c.opts.Store.ListRevokedCerts(ctx, c.lastSeq, revocationPage)
		if err != nil {
			return missed, fmt.Errorf("certauth: read revocations: %w", err)
		}
		for _, r := range page {
			if fp, ok := parseFingerprint(r.FingerprintSHA256); ok {
				if c.revocationsRead && !c.revoked.has(fp) {
					missed = append(missed, r)
				}
				c.revoked.add(fp)
				c.crl.invalidate()
			}
			c.lastSeq = r.Seq
		}
		if len(page) < revocationPage {
			c.revocationsRead = true
			return missed, nil
		}
	}
}
