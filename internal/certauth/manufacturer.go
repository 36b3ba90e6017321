package certauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/store"
)

// Where a manufacturer certificate carries the device's serial number
// (store.ProvisioningTemplate.SerialFrom).
const (
	SerialFromSerialNumber = "serialNumber" // subject serialNumber attribute (X.520)
	SerialFromCommonName   = "commonName"   // subject CN
	SerialFromDNSName      = "dnsName"      // the one dNSName SAN
	SerialFromURI          = "uri"          // the one URI SAN
	SerialFromEmail        = "email"        // the one rfc822Name SAN
)

// CASpec is a manufacturer CA to register.
type CASpec struct {
	Name string `json:"name"`
	// Certificate is the CA certificate in PEM.
	Certificate string                     `json:"certificate"`
	Template    store.ProvisioningTemplate `json:"template"`
}

// CAError is a CASpec that cannot be registered; Field names what is wrong.
type CAError struct{ refusal.FieldError }

func invalidCA(field, format string, args ...any) error {
	return &CAError{refusal.FieldError{Field: field, Src: format, Args: args}}
}

const (
	maxCAName        = 200
	maxTemplateText  = 256
	maxTemplateAttrs = 64
	maxTemplateJSON  = 16 << 10
)

// check validates the spec against the platform's own CAs and returns the
// CA certificate.
func (s *CASpec) check(dca *pki.DeviceCA) (*x509.Certificate, error) {
	s.Name = strings.TrimSpace(s.Name)
	if s.Name == "" || utf8.RuneCountInString(s.Name) > maxCAName || !utf8.ValidString(s.Name) {
		return nil, invalidCA("name", "is required: 1 to %d characters", maxCAName)
	}
	cert, err := pki.ParseCertificatePEM([]byte(s.Certificate))
	if err != nil {
		return nil, invalidCA("certificate", "%v", err)
	}
	switch {
	case !cert.BasicConstraintsValid || !cert.IsCA:
		return nil, invalidCA("certificate", "%q is not a CA certificate (basicConstraints cA is not set)", cert.Subject)
	case cert.KeyUsage&x509.KeyUsageCertSign == 0:
		return nil, invalidCA("certificate", "%q lacks the keyCertSign key usage", cert.Subject)
	case cert.Equal(dca.Root) || cert.Equal(dca.Cert):
		return nil, invalidCA("certificate", "is the platform's own CA: its device certificates are accepted already")
	}
	if err := pki.CheckPublicKey(cert.PublicKey); err != nil {
		return nil, invalidCA("certificate", "%v", err)
	}
	if err := checkTemplate(&s.Template); err != nil {
		return nil, err
	}
	return cert, nil
}

// checkTemplate checks what the provisioning needs; the thing it creates is
// validated again by internal/identity.
func checkTemplate(t *store.ProvisioningTemplate) error {
	for _, f := range []struct{ name, value string }{{"template.manufacturer", t.Manufacturer}, {"template.model", t.Model}} {
		// Manufacturer, model and serial are the key the thing is found by.
		if f.value == "" || utf8.RuneCountInString(f.value) > maxTemplateText || !utf8.ValidString(f.value) {
			return invalidCA(f.name, "is required: 1 to %d characters", maxTemplateText)
		}
	}
	switch t.SerialFrom {
	case SerialFromSerialNumber, SerialFromCommonName, SerialFromDNSName, SerialFromURI, SerialFromEmail:
	default:
		return invalidCA("template.serialFrom", "%q is not one of serialNumber, commonName, dnsName, uri, email", t.SerialFrom)
	}
	switch t.ThingType {
	case "":
		t.ThingType = store.ThingDevice
	case store.ThingDevice, store.ThingService, store.ThingGateway:
	default:
		return invalidCA("template.thingType", "%q is not one of device, service, gateway", t.ThingType)
	}
	if len(t.Attributes) > maxTemplateAttrs {
		return invalidCA("template.attributes", "at most %d attributes", maxTemplateAttrs)
	}
	if b, err := json.Marshal(t.Attributes); err != nil || len(b) > maxTemplateJSON {
		return invalidCA("template.attributes", "must be JSON values of at most %d bytes in all", maxTemplateJSON)
	}
	return nil
}

// AddCA registers a manufacturer CA; devices with certificates from it are
// accepted (and provisioned) from when it returns, on every node within a
// moment.
func (c *Checker) AddCA(ctx context.Context, actor string, spec CASpec) (*store.ManufacturerCA, error) {
	cert, err := spec.check(c.opts.DeviceCA)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(cert.Raw)
	ca := &store.ManufacturerCA{
		Name: spec.Name, Certificate: cert.Raw, FingerprintSHA256: hex.EncodeToString(sum[:]),
		Subject: cert.Subject.String(), NotAfter: cert.NotAfter, Template: spec.Template,
	}
	err = c.opts.Store.WithTx(ctx, func(tx store.Tx) error {
		ca.ID = ""
		if err := tx.CreateManufacturerCA(ctx, ca); err != nil {
			return err
		}
		detail, _ := json.Marshal(map[string]string{"name": ca.Name, "subject": ca.Subject, "fingerprint": ca.FingerprintSHA256})
		return tx.AppendAudit(ctx, store.AuditRecord{Actor: actor, Action: EventCACreate, Target: caRef(ca.ID), Detail: detail})
	})
	if err != nil {
		return nil, err
	}
	if err := c.reloadCAs(ctx); err != nil {
		return nil, err
	}
	c.opts.Bus.Publish(events.Event{Type: EventCACreate, Kind: string(kindCA), ID: ca.ID, Actor: actor})
	return ca, nil
}

// GetCA returns a registered manufacturer CA (store.ErrNotFound when missing).
func (c *Checker) GetCA(ctx context.Context, id string) (*store.ManufacturerCA, error) {
	return c.opts.Store.GetManufacturerCA(ctx, id)
}

// ListCAs returns the registered manufacturer CAs.
func (c *Checker) ListCAs(ctx context.Context) ([]*store.ManufacturerCA, error) {
	return c.opts.Store.ListManufacturerCAs(ctx)
}

// DeleteCA removes a manufacturer CA: its certificates stop verifying on this
// node when it returns and on the others as the event reaches them. Things it
// provisioned stay (disable or delete them as any thing).
func (c *Checker) DeleteCA(ctx context.Context, actor, id string) error {
	err := c.opts.Store.WithTx(ctx, func(tx store.Tx) error {
		if err := tx.DeleteManufacturerCA(ctx, id); err != nil {
			return err
		}
		return tx.AppendAudit(ctx, store.AuditRecord{Actor: actor, Action: EventCADelete, Target: caRef(id)})
	})
	if err != nil {
		return err
	}
	c.removeCA(id)
	c.opts.Bus.Publish(events.Event{Type: EventCADelete, Kind: string(kindCA), ID: id, Actor: actor})
	return nil
}

// kindCA names manufacturer CAs in audit records and events.
const kindCA store.Kind = "manufacturer-ca"

func caRef(id string) store.Ref { return store.Ref{Kind: kindCA, ID: id} }

// reloadCAs reads the manufacturer CAs and, if they changed, replaces the anchors.
func (c *Checker) reloadCAs(ctx context.Context) error {
	list, err := c.opts.Store.ListManufacturerCAs(ctx)
	if err != nil {
		return fmt.Errorf("certauth: read manufacturer CAs: %w", err)
	}
	c.caMu.Lock()
	defer c.caMu.Unlock()
	cur := c.anchors.Load()
	var cas []*manufacturerCA
	same := true
	for _, m := range list {
		if c.deleted[m.ID] { // read before a deletion this node already applied
			continue
		}
		if have := cur.byID[m.ID]; have != nil {
			cas = append(cas, have)
			continue
		}
		cert, err := x509.ParseCertificate(m.Certificate)
		if err != nil {
			c.opts.Log.Error("certauth: stored manufacturer CA does not parse; its devices are refused", "ca", m.ID, "err", err)
			continue
		}
		cas = append(cas, &manufacturerCA{ManufacturerCA: m, cert: cert})
		same = false
	}
	if same && len(cas) == len(cur.byID) {
		return nil // keep the cache of verified chains
	}
	c.anchors.Store(newAnchors(c.opts.DeviceCA, cas))
	return nil
}

// removeCA stops trusting a manufacturer CA at once and for good (IDs are not reused).
func (c *Checker) removeCA(id string) {
	c.caMu.Lock()
	defer c.caMu.Unlock()
	c.deleted[id] = true
	if cur := c.anchors.Load(); cur.byID[id] != nil {
		c.anchors.Store(newAnchors(c.opts.DeviceCA, cur.manufacturerCAs(id)))
	}
}

// serialOf reads the device serial number from the field the template names.
func serialOf(leaf *x509.Certificate, from string) (string, error) {
	one := func(kind string, vs []string) (string, error) {
		if len(vs) != 1 {
			return "", fmt.Errorf("%w: the template takes the serial number from the %s SAN, and %q carries %d of them", ErrNoThing, kind, leaf.Subject, len(vs))
		}
		return vs[0], nil
	}
	var v string
	switch from {
	case SerialFromSerialNumber:
		v = leaf.Subject.SerialNumber
	case SerialFromCommonName:
		v = leaf.Subject.CommonName
	case SerialFromDNSName:
		return one("dNSName", leaf.DNSNames)
	case SerialFromEmail:
		return one("rfc822Name", leaf.EmailAddresses)
	case SerialFromURI:
		uris := make([]string, len(leaf.URIs))
		for i, u := range leaf.URIs {
			uris[i] = u.String()
		}
		return one("URI", uris)
	default:
		return "", errors.New("certauth: template with unknown serialFrom " + from)
	}
	if v == "" {
		return "", fmt.Errorf("%w: the template takes the serial number from the subject %s, which %q lacks", ErrNoThing, from, leaf.Subject)
	}
	return v, nil
}
