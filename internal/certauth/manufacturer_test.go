package certauth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// acme is the template most tests register.
var acme = store.ProvisioningTemplate{Manufacturer: "Acme", Model: "T-1000", SerialFrom: SerialFromSerialNumber,
	Attributes: map[string]any{"color": "red", "rooms": 3.0}}

// manufacturer registers a new manufacturer CA with tmpl and returns it with its key.
func (e *env) manufacturer(name string, tmpl store.ProvisioningTemplate) (*store.ManufacturerCA, *x509.Certificate, crypto.Signer) {
	e.t.Helper()
	cert, key := newCA(e.t, pkix.Name{Organization: []string{name}, CommonName: name + " Device CA"}, nil, nil, -1)
	ca, err := e.c.AddCA(e.t.Context(), "test", CASpec{Name: name, Certificate: pemOf(cert), Template: tmpl})
	if err != nil {
		e.t.Fatal(err)
	}
	return ca, cert, key
}

func countThings(t *testing.T, e *env) int {
	t.Helper()
	_, n, err := e.st.ListThings(t.Context(), store.Query{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestManufacturerFirstContact(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ca, caCert, caKey := e.manufacturer("Acme", acme)
	leaf, _ := issue(t, leafTmpl("ACME-0001"), caCert, caKey)

	id, err := e.c.Verify(ctx, []*x509.Certificate{leaf})
	if err != nil {
		t.Fatal(err)
	}
	th := id.Thing
	if id.Authority != ca.ID || th.Manufacturer != "Acme" || th.Model != "T-1000" || th.SerialNumber != "ACME-0001" ||
		th.Type != store.ThingDevice || th.Status != store.StatusActive || th.Attributes["color"] != "red" || th.Attributes["rooms"] != 3.0 {
		t.Fatalf("provisioned %+v (authority %s)", th, id.Authority)
	}
	if len(th.Certificates) != 1 || th.Certificates[0].FingerprintSHA256 != fingerprintHex(leaf) || th.Certificates[0].Issuer != caCert.Subject.String() {
		t.Errorf("certificates %+v", th.Certificates)
	}
	recs, err := e.st.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: th.ID}})
	if err != nil || len(recs) != 1 || recs[0].Action != "thing.create" || recs[0].Actor != "manufacturer-ca:"+ca.ID {
		t.Errorf("audit %+v %v", recs, err)
	}
	// Later contacts, on this node and on one that never saw the device, find the same thing.
	for name, c := range map[string]*Checker{"this node": e.c, "another node": e.checker()} {
		again, err := c.Verify(ctx, []*x509.Certificate{leaf})
		if err != nil || again.Thing.ID != th.ID {
			t.Errorf("%s: %v, thing %v, want %s", name, err, again, th.ID)
		}
	}
	if n := countThings(t, e); n != 1 {
		t.Errorf("%d things, want 1", n)
	}
}

func fingerprintHex(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// selfSigned makes a CA certificate valid until notAfter with key usage ku.
func selfSigned(t *testing.T, cn string, notAfter time.Time, ku x509.KeyUsage) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: ku, BasicConstraintsValid: true, IsCA: true}
	return sign(t, tmpl, tmpl, key.Public(), key), key
}

// TestManufacturerConcurrentFirstContact: the device calls home on two nodes
// at once, several times: one thing, and every call gets it.
func TestManufacturerConcurrentFirstContact(t *testing.T) {
	e := newEnv(t)
	_, caCert, caKey := e.manufacturer("Acme", acme)
	leaf, _ := issue(t, leafTmpl("ACME-RACE"), caCert, caKey)
	nodes := []*Checker{e.c, e.checker()}
	const n = 8
	ids := make([]string, 2*n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range ids {
		wg.Go(func() {
			<-start
			id, err := nodes[i%2].Verify(t.Context(), []*x509.Certificate{leaf})
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = id.Thing.ID
		})
	}
	close(start)
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("two things for one device: %v", ids)
		}
	}
	if c := countThings(t, e); c != 1 {
		t.Fatalf("%d things, want 1", c)
	}
}

func TestManufacturerRefuses(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	ca, caCert, caKey := e.manufacturer("Acme", acme)
	verify := func(c *Checker, leaf ...*x509.Certificate) error {
		_, err := c.Verify(ctx, leaf)
		return err
	}

	t.Run("disabled", func(t *testing.T) {
		leaf, _ := issue(t, leafTmpl("ACME-D"), caCert, caKey)
		id, err := e.c.Verify(ctx, []*x509.Certificate{leaf})
		if err != nil {
			t.Fatal(err)
		}
		setStatus(t, e, id.Thing.ID, store.StatusDisabled)
		if err := verify(e.c, leaf); !errors.Is(err, ErrThingDisabled) {
			t.Fatalf("Verify: %v, want ErrThingDisabled", err)
		}
	})
	t.Run("serial field missing or ambiguous", func(t *testing.T) {
		byDNS := acme
		byDNS.SerialFrom = SerialFromDNSName
		_, c2, k2 := e.manufacturer("DNSCo", byDNS)
		none, _ := issue(t, leafTmpl("X"), c2, k2)
		twoTmpl := leafTmpl("X")
		twoTmpl.DNSNames = []string{"a.example", "b.example"}
		two, _ := issue(t, twoTmpl, c2, k2)
		noSerial, _ := issue(t, leafTmpl(""), caCert, caKey)
		for name, leaf := range map[string]*x509.Certificate{"no DNS name": none, "two DNS names": two, "no subject serialNumber": noSerial} {
			err := verify(e.c, leaf)
			if !errors.Is(err, ErrNoThing) {
				t.Errorf("%s: %v, want ErrNoThing", name, err)
			}
			t.Log(err)
		}
	})
	t.Run("serial the thing model refuses", func(t *testing.T) {
		leaf, _ := issue(t, leafTmpl(" leading space"), caCert, caKey)
		if err := verify(e.c, leaf); !errors.Is(err, ErrNoThing) {
			t.Fatalf("Verify: %v, want ErrNoThing", err)
		}
	})
	t.Run("thing made by an administrator", func(t *testing.T) {
		if _, err := e.ids.CreateThing(ctx, "admin", &store.Thing{Manufacturer: "Acme", Model: "T-1000", SerialNumber: "ACME-PRE"}); err != nil {
			t.Fatal(err)
		}
		leaf, _ := issue(t, leafTmpl("ACME-PRE"), caCert, caKey)
		if err := verify(e.c, leaf); !errors.Is(err, ErrWrongAuthority) {
			t.Fatalf("Verify: %v, want ErrWrongAuthority", err)
		}
	})
	t.Run("thing provisioned by another CA with the same template", func(t *testing.T) {
		leaf, _ := issue(t, leafTmpl("ACME-OWNED"), caCert, caKey)
		if err := verify(e.c, leaf); err != nil {
			t.Fatal(err)
		}
		_, rivalCert, rivalKey := e.manufacturer("Rival", acme)
		stolen, _ := issue(t, leafTmpl("ACME-OWNED"), rivalCert, rivalKey)
		if err := verify(e.c, stolen); !errors.Is(err, ErrWrongAuthority) {
			t.Fatalf("Verify: %v, want ErrWrongAuthority", err)
		}
	})
	t.Run("factory thing claimed through an intermediate named like the platform's", func(t *testing.T) {
		factory, _ := e.thing("SPK-FACTORY")
		_, mimicRoot, mimicKey := e.manufacturer("Mimic", store.ProvisioningTemplate{Manufacturer: factory.Manufacturer, Model: factory.Model, SerialFrom: SerialFromSerialNumber})
		inter, interKey := newCA(t, e.dca.Cert.Subject, mimicRoot, mimicKey, 0)
		leaf, _ := issue(t, leafTmpl("SPK-FACTORY"), inter, interKey)
		if err := verify(e.c, leaf, inter); !errors.Is(err, ErrWrongAuthority) {
			t.Fatalf("Verify: %v, want ErrWrongAuthority", err)
		}
	})
	t.Run("intermediate presented as the leaf", func(t *testing.T) {
		inter, _ := newCA(t, pkix.Name{CommonName: "Acme line 2", SerialNumber: "ACME-INTER"}, caCert, caKey, 0)
		if err := verify(e.c, inter); !errors.Is(err, ErrNotClientCert) {
			t.Fatalf("Verify: %v, want ErrNotClientCert", err)
		}
	})
	t.Run("server-auth only", func(t *testing.T) {
		tmpl := leafTmpl("ACME-SRV")
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		leaf, _ := issue(t, tmpl, caCert, caKey)
		if err := verify(e.c, leaf); !errors.Is(err, ErrNotClientCert) {
			t.Fatalf("Verify: %v, want ErrNotClientCert", err)
		}
	})
	t.Run("no digitalSignature key usage", func(t *testing.T) {
		tmpl := leafTmpl("ACME-KU")
		tmpl.KeyUsage = x509.KeyUsageKeyEncipherment
		leaf, _ := issue(t, tmpl, caCert, caKey)
		if err := verify(e.c, leaf); !errors.Is(err, ErrNotClientCert) {
			t.Fatalf("Verify: %v, want ErrNotClientCert", err)
		}
	})
	t.Run("CA expired before the leaf", func(t *testing.T) {
		short, shortKey := selfSigned(t, "Short CA", time.Now().Add(time.Hour), x509.KeyUsageCertSign)
		shortTmpl := acme
		shortTmpl.Model = "SHORT"
		if _, err := e.c.AddCA(ctx, "test", CASpec{Name: "Short", Certificate: pemOf(short), Template: shortTmpl}); err != nil {
			t.Fatal(err)
		}
		leaf, _ := issue(t, leafTmpl("S-1"), short, shortKey) // valid for a year
		if err := verify(e.c, leaf); err != nil {
			t.Fatal(err)
		}
		e.skew.Store(int64(2 * time.Hour))
		defer e.skew.Store(0)
		err := verify(e.c, leaf)
		if !errors.Is(err, ErrExpired) {
			t.Fatalf("Verify: %v, want ErrExpired", err)
		}
		t.Log(err)
	})
	t.Run("CA deleted", func(t *testing.T) {
		other := e.checker()
		leaf, _ := issue(t, leafTmpl("ACME-DEL"), caCert, caKey)
		for _, c := range []*Checker{e.c, other} {
			if err := verify(c, leaf); err != nil {
				t.Fatal(err)
			}
		}
		if err := e.c.DeleteCA(ctx, "test", ca.ID); err != nil {
			t.Fatal(err)
		}
		for name, c := range map[string]*Checker{"this node": e.c, "other node": other, "new node": e.checker()} {
			if err := verify(c, leaf); !errors.Is(err, ErrUnknownCA) {
				t.Errorf("%s: %v, want ErrUnknownCA", name, err)
			}
		}
		if err := e.c.DeleteCA(ctx, "test", ca.ID); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("second delete: %v", err)
		}
	})
}

func TestManufacturerRenewalAndReprovisioning(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	_, caCert, caKey := e.manufacturer("Acme", acme)
	first, _ := issue(t, leafTmpl("ACME-R"), caCert, caKey)
	id1, err := e.c.Verify(ctx, []*x509.Certificate{first})
	if err != nil {
		t.Fatal(err)
	}
	// The manufacturer renews the device's certificate: same thing, both recorded.
	renewed, _ := issue(t, leafTmpl("ACME-R"), caCert, caKey)
	id2, err := e.c.Verify(ctx, []*x509.Certificate{renewed})
	if err != nil || id2.Thing.ID != id1.Thing.ID || len(id2.Thing.Certificates) != 2 {
		t.Fatalf("renewed: %v %+v", err, id2)
	}
	// A deleted thing is provisioned again on the next contact: to keep a
	// device out, disable the thing or revoke the certificate.
	if err := e.ids.DeleteThing(ctx, "test", id1.Thing.ID, 0); err != nil {
		t.Fatal(err)
	}
	id3, err := e.c.Verify(ctx, []*x509.Certificate{first})
	if err != nil || id3.Thing.ID == id1.Thing.ID {
		t.Fatalf("after delete: %v %+v", err, id3)
	}
	if _, err := e.c.Revoke(ctx, "test", Revocation{ThingID: id3.Thing.ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Verify(ctx, []*x509.Certificate{first}); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked: %v", err)
	}
}

func TestManufacturerIntermediates(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	byURI := acme
	byURI.SerialFrom = SerialFromURI
	ca, root, rootKey := e.manufacturer("Acme", byURI)
	inter, interKey := newCA(t, pkix.Name{CommonName: "Acme plant 7"}, root, rootKey, 0)
	leaf, _ := issue(t, leafTmpl("", "urn:acme:dev:7-0042"), inter, interKey)
	if _, err := e.checker().Verify(ctx, []*x509.Certificate{leaf}); !errors.Is(err, ErrUnknownCA) {
		t.Fatalf("without its intermediate: %v, want ErrUnknownCA", err)
	}
	id, err := e.c.Verify(ctx, []*x509.Certificate{leaf, inter})
	if err != nil || id.Thing.SerialNumber != "urn:acme:dev:7-0042" {
		t.Fatalf("Verify: %v %+v", err, id)
	}
	// The certificate records the CA it chained to, so the CA's things
	// count it although the plant's intermediate issued it.
	if c := id.Thing.Certificates; len(c) != 1 || c[0].CA != ca.ID || c[0].Issuer != inter.Subject.String() {
		t.Fatalf("recorded %+v, want the intermediate's certificate with CA %s", c, ca.ID)
	}
	if n, err := e.st.CountThingsOfCAs(ctx, []*store.ManufacturerCA{ca}); err != nil || n[ca.ID] != 1 {
		t.Fatalf("the CA's things: %v %v, want 1", n, err)
	}
	if _, err := e.c.Verify(ctx, []*x509.Certificate{inter, root}); !errors.Is(err, ErrNotClientCert) {
		t.Fatalf("intermediate as the leaf: %v", err)
	}
	// A leaf under an intermediate with path length 0 that issued a CA is refused.
	sub, subKey := newCA(t, pkix.Name{CommonName: "Acme rogue"}, inter, interKey, -1)
	rogue, _ := issue(t, leafTmpl("", "urn:acme:dev:rogue"), sub, subKey)
	if _, err := e.c.Verify(ctx, []*x509.Certificate{rogue, sub, inter}); !errors.Is(err, ErrUnknownCA) {
		t.Fatalf("beyond the path length: %v, want ErrUnknownCA", err)
	}
}

func TestAddCARefuses(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	good, _ := newCA(t, pkix.Name{CommonName: "Good CA"}, nil, nil, -1)
	noSign, _ := selfSigned(t, "No sign", time.Now().Add(time.Hour), x509.KeyUsageDigitalSignature)
	leaf, _ := issue(t, leafTmpl("X"), e.dca.Root, e.rootKey)
	withTmpl := func(f func(*store.ProvisioningTemplate)) store.ProvisioningTemplate {
		t := acme
		f(&t)
		return t
	}
	cases := map[string]struct {
		spec  CASpec
		field string
	}{
		"no name":              {CASpec{Certificate: pemOf(good), Template: acme}, "name"},
		"not PEM":              {CASpec{Name: "x", Certificate: "MIIB", Template: acme}, "certificate"},
		"two certificates":     {CASpec{Name: "x", Certificate: pemOf(good) + pemOf(good), Template: acme}, "certificate"},
		"a key, not a cert":    {CASpec{Name: "x", Certificate: "-----BEGIN PRIVATE KEY-----\nAA==\n-----END PRIVATE KEY-----\n", Template: acme}, "certificate"},
		"not a CA":             {CASpec{Name: "x", Certificate: pemOf(leaf), Template: acme}, "certificate"},
		"no keyCertSign":       {CASpec{Name: "x", Certificate: pemOf(noSign), Template: acme}, "certificate"},
		"the platform root":    {CASpec{Name: "x", Certificate: pemOf(e.dca.Root), Template: acme}, "certificate"},
		"the issuing CA":       {CASpec{Name: "x", Certificate: pemOf(e.dca.Cert), Template: acme}, "certificate"},
		"no manufacturer":      {CASpec{Name: "x", Certificate: pemOf(good), Template: withTmpl(func(t *store.ProvisioningTemplate) { t.Manufacturer = "" })}, "template.manufacturer"},
		"no model":             {CASpec{Name: "x", Certificate: pemOf(good), Template: withTmpl(func(t *store.ProvisioningTemplate) { t.Model = "" })}, "template.model"},
		"unknown serial field": {CASpec{Name: "x", Certificate: pemOf(good), Template: withTmpl(func(t *store.ProvisioningTemplate) { t.SerialFrom = "serial" })}, "template.serialFrom"},
		"unknown thing type":   {CASpec{Name: "x", Certificate: pemOf(good), Template: withTmpl(func(t *store.ProvisioningTemplate) { t.ThingType = "robot" })}, "template.thingType"},
	}
	for name, c := range cases {
		_, err := e.c.AddCA(ctx, "test", c.spec)
		var ce *CAError
		if !errors.As(err, &ce) || ce.Field != c.field {
			t.Errorf("%s: %v, want a CAError on %s", name, err, c.field)
		}
	}
	if _, err := e.c.AddCA(ctx, "test", CASpec{Name: "Good", Certificate: pemOf(good), Template: acme}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.AddCA(ctx, "test", CASpec{Name: "Again", Certificate: pemOf(good), Template: acme}); !errors.Is(err, store.ErrConflict) {
		t.Errorf("registered twice: %v", err)
	}
	if list, err := e.c.ListCAs(ctx); err != nil || len(list) != 1 {
		t.Errorf("list: %v %v", list, err)
	}
}
