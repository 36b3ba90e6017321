package store

import (
	"context"
	"time"
)

// ManufacturerCA is an external certificate authority whose device
// certificates the platform accepts; a device presenting one is provisioned on
// first contact from Template. FingerprintSHA256 is unique.
type ManufacturerCA struct {
	ID   string // set by the store (a UUID) when empty
	Name string
	// Certificate is the CA certificate (DER); FingerprintSHA256 is the
	// lower-case hex SHA-256 of it.
	Certificate       []byte
	FingerprintSHA256 string
	Subject           string
	NotAfter          time.Time
	Template          ProvisioningTemplate
	Created           time.Time // now when zero
}

// ProvisioningTemplate says what thing a manufacturer certificate stands for.
// The thing is found (or created) by (Manufacturer, Model, serial number).
type ProvisioningTemplate struct {
	Manufacturer string    `json:"manufacturer"`
	Model        string    `json:"model"`
	ThingType    ThingType `json:"thingType,omitempty"`
	// SerialFrom names the certificate field holding the device's serial
	// number: "serialNumber" (subject serialNumber), "commonName" (subject
	// CN), "dnsName", "uri" or "email" (the one SAN of that type).
	SerialFrom string `json:"serialFrom"`
	// Attributes are the thing's initial free-form attributes.
	Attributes map[string]any `json:"attributes,omitempty"`
}

// RevokedCert is a revoked certificate. FingerprintSHA256 is unique: a
// certificate is revoked once, for good.
type RevokedCert struct {
	Seq               int64 // assigned by the store, increasing in commit order
	FingerprintSHA256 string
	// SerialNumber is the certificate's serial number in lower-case hex, empty
	// when the revocation named only the fingerprint.
	SerialNumber string
	// Authority issued the certificate: "platform" (the device issuing CA), a
	// manufacturer CA's ID, or empty when unknown.
	Authority string
	Issuer    string // issuer DN, for people
	ThingID   string
	// Reason is the RFC 5280 §5.3.1 CRLReason code.
	Reason    int
	RevokedAt time.Time // now when zero
	NotAfter  time.Time // the certificate's; zero when unknown
}

// PKI stores manufacturer CAs and certificate revocations.
type PKI interface {
	// CreateManufacturerCA stores ca; ErrConflict when a CA with the same
	// fingerprint is registered already.
	CreateManufacturerCA(ctx context.Context, ca *ManufacturerCA) error
	GetManufacturerCA(ctx context.Context, id string) (*ManufacturerCA, error)
	// ListManufacturerCAs returns every CA in creation order.
	ListManufacturerCAs(ctx context.Context) ([]*ManufacturerCA, error)
	DeleteManufacturerCA(ctx context.Context, id string) error
	// RevokeCert records r and sets its Seq and RevokedAt; ErrConflict when the
	// fingerprint is revoked already (the first record stays, the transaction
	// remains usable).
	RevokeCert(ctx context.Context, r *RevokedCert) error
	// ListRevokedCerts returns up to limit revocations with Seq > afterSeq in
	// Seq order. A revocation committed after the call never gets a Seq at or
	// below the last one returned, so paging by Seq misses nothing.
	ListRevokedCerts(ctx context.Context, afterSeq int64, limit int) ([]*RevokedCert, error)
	// PutCAFiles stores the files of the platform's own CAs (name →
	// content: certificates in PEM, keys sealed with the master key), so
	// that every node of one database issues and checks with the same CAs:
	// all of them, or none and ErrConflict when any is stored already.
	PutCAFiles(ctx context.Context, files map[string][]byte) error
	// GetCAFiles returns the files PutCAFiles stored; empty when none were.
	GetCAFiles(ctx context.Context) (map[string][]byte, error)
	// ListExpiringCertificates returns up to limit certificates recorded on
	// things (Thing.Certificates, with a NotAfter) that are not revoked and
	// expire before before, soonest first, and how many there are.
	ListExpiringCertificates(ctx context.Context, before time.Time, limit int) ([]ThingCertificate, int, error)
}

// ThingCertificate is a certificate recorded on a thing.
type ThingCertificate struct {
	ThingID           string
	FingerprintSHA256 string
	NotAfter          time.Time
}
