package certauth

import (
	"context"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/store"
)

// manufacturerThing is the thing a certificate of manufacturer CA ca stands
// for: the one with the template's manufacturer and model and the serial
// number the certificate carries, provisioned from the template on first
// contact (just in time).
func (c *Checker) manufacturerThing(ctx context.Context, ca *manufacturerCA, leaf *x509.Certificate, fp [32]byte) (*store.Thing, error) {
	tmpl := &ca.Template
	serial, err := serialOf(leaf, tmpl.SerialFrom)
	if err != nil {
		return nil, err
	}
	// Later contacts: one read by primary key, like platform certificates.
	if id, ok := c.things.get(fp); ok {
		t, err := c.opts.Store.GetThing(ctx, id)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
		if err == nil && t.Manufacturer == tmpl.Manufacturer && t.Model == tmpl.Model && t.SerialNumber == serial && holds(t, fp) {
			return t, nil
		}
		c.things.remove(fp) // deleted or changed since: look it up again
	}
	t, err := c.findThing(ctx, tmpl, serial)
	if errors.Is(err, store.ErrNotFound) {
		t, err = c.provision(ctx, ca, leaf, fp, serial)
	}
	if err != nil {
		return nil, err
	}
	if !holds(t, fp) {
		if t, err = c.renew(ctx, ca, t, leaf, fp); err != nil {
			return nil, err
		}
	}
	c.things.put(fp, t.ID)
	return t, nil
}

// findThing looks a thing up by its unique (manufacturer, model, serial).
func (c *Checker) findThing(ctx context.Context, tmpl *store.ProvisioningTemplate, serial string) (*store.Thing, error) {
	eq := func(field, v string) store.Expr { return store.Compare{Field: field, Op: store.OpEq, Value: v} }
	ts, _, err := c.opts.Store.ListThings(ctx, store.Query{
		Filter: store.And{Left: store.And{Left: eq("manufacturer", tmpl.Manufacturer), Right: eq("model", tmpl.Model)}, Right: eq("serialNumber", serial)},
		Limit:  1,
	})
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, fmt.Errorf("thing %s %s %q: %w", tmpl.Manufacturer, tmpl.Model, serial, store.ErrNotFound)
	}
	return ts[0], nil
}

// provision creates the thing through internal/identity (validated, audited,
// published). Of two first contacts racing, on one node or two, the store's
// uniqueness of (manufacturer, model, serial) lets one create it; the other
// reads the winner's.
func (c *Checker) provision(ctx context.Context, ca *manufacturerCA, leaf *x509.Certificate, fp [32]byte, serial string) (*store.Thing, error) {
	tmpl := &ca.Template
	t := &store.Thing{
		Type:         tmpl.ThingType,
		Manufacturer: tmpl.Manufacturer,
		Model:        tmpl.Model,
		SerialNumber: serial,
		Attributes:   maps.Clone(tmpl.Attributes),
		Certificates: []store.CertRef{certRefOf(ca, leaf)},
	}
	created, err := c.opts.Identity.CreateThing(ctx, provisioner(ca), t)
	var invalid *identity.ValidationError
	switch {
	case errors.Is(err, store.ErrConflict):
		return c.findThing(ctx, tmpl, serial)
	case errors.As(err, &invalid):
		return nil, fmt.Errorf("%w: %q cannot be provisioned from the template of manufacturer CA %s (%s): %v", ErrNoThing, leaf.Subject, ca.ID, ca.Name, err)
	case err != nil:
		return nil, err
	}
	c.opts.Log.Info("certauth: thing provisioned on first contact", "thing", created.ID, "ca", ca.ID,
		"manufacturer", created.Manufacturer, "model", created.Model, "serial", created.SerialNumber)
	return created, nil
}

// renew accepts a certificate new to a thing when the thing holds one from
// the same issuer already (the manufacturer renewed the device's certificate)
// and records it. Anything else would let one CA take over things another CA,
// the factory or an administrator made.
func (c *Checker) renew(ctx context.Context, ca *manufacturerCA, t *store.Thing, leaf *x509.Certificate, fp [32]byte) (*store.Thing, error) {
	issuer := leaf.Issuer.String()
	same := issuer != c.opts.DeviceCA.Cert.Subject.String() &&
		slices.ContainsFunc(t.Certificates, func(r store.CertRef) bool { return r.Issuer == issuer })
	if !same {
		return nil, fmt.Errorf("%w: thing %s (%s %s %q) holds no certificate from %q", ErrWrongAuthority, t.ID, t.Manufacturer, t.Model, t.SerialNumber, issuer)
	}
	return c.opts.Identity.AddCertificate(ctx, provisioner(ca), t.ID, certRefOf(ca, leaf))
}

// certRefOf records leaf as accepted through ca, whose things it counts
// with on the console even when an intermediate of ca issued it.
func certRefOf(ca *manufacturerCA, leaf *x509.Certificate) store.CertRef {
	ref := store.CertRefOf(leaf)
	ref.CA = ca.ID
	return ref
}

// provisioner is the actor of the changes provisioning makes.
func provisioner(ca *manufacturerCA) string { return string(kindCA) + ":" + ca.ID }

// holds reports whether t records the certificate with fingerprint fp.
func holds(t *store.Thing, fp [32]byte) bool {
	h := hex.EncodeToString(fp[:])
	return slices.ContainsFunc(t.Certificates, func(r store.CertRef) bool { return r.FingerprintSHA256 == h })
}
