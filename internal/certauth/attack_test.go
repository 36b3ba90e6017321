package certauth

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/events"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

func TestVerifyPlatformCertificate(t *testing.T) {
	e := newEnv(t)
	th, dc := e.thing("SPK-000001")
	for name, ch := range map[string][]*x509.Certificate{
		"with the issuing CA": chain(t, dc),
		"leaf alone":          chain(t, dc)[:1], // the issuing CA is known: devices need not send it
	} {
		t.Run(name, func(t *testing.T) {
			id, err := e.c.Verify(t.Context(), ch)
			if err != nil {
				t.Fatal(err)
			}
			if id.Thing.ID != th.ID || id.Authority != AuthorityPlatform || id.Leaf != ch[0] {
				t.Errorf("identity %+v, want thing %s from the platform", id, th.ID)
			}
			if id.Thumbprint != tokens.CertThumbprint(ch[0]) {
				t.Errorf("thumbprint %s, want tokens.CertThumbprint %s", id.Thumbprint, tokens.CertThumbprint(ch[0]))
			}
		})
	}
	// Device certificates name where their revocation is published.
	if dps := dc.Leaf.CRLDistributionPoints; len(dps) != 1 || dps[0] != e.dca.CRLURL {
		t.Errorf("CRL distribution points %v, want %s", dps, e.dca.CRLURL)
	}
}

// TestVerifyRefuses tries every way in the issue and a few more; each must
// end in the refusal named.
func TestVerifyRefuses(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	victim, victimCert := e.thing("SPK-VICTIM")
	uri := pki.ThingURIPrefix + victim.ID

	// A CA of the attacker's with exactly the names of the platform's root
	// and issuing CA, issuing a certificate that names the victim.
	fakeRoot, fakeRootKey := newCA(t, e.dca.Root.Subject, nil, nil, 1)
	fakeIssuing, fakeIssuingKey := newCA(t, e.dca.Cert.Subject, fakeRoot, fakeRootKey, 0)
	forged, _ := issue(t, leafTmpl("SPK-VICTIM", uri), fakeIssuing, fakeIssuingKey)
	// A self-signed certificate naming the victim.
	selfKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	selfTmpl := leafTmpl("SPK-VICTIM", uri)
	selfTmpl.Subject = e.dca.Cert.Subject
	selfSigned := sign(t, selfTmpl, selfTmpl, selfKey.Public(), selfKey)
	// A device certificate used as a CA: its holder signs a certificate
	// naming the victim (the issuing CA has path length 0, and a device
	// certificate is no CA).
	_, attackerCert := e.thing("SPK-ATTACKER")
	underDevice, _ := issue(t, leafTmpl("SPK-VICTIM", uri), attackerCert.Leaf, attackerCert.Key)
	// Like the listener's server certificate: signed by the platform root,
	// for serverAuth only.
	serverTmpl := leafTmpl("SPK-VICTIM", uri)
	serverTmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	serverOnly, _ := issue(t, serverTmpl, e.dca.Root, e.rootKey)
	// A client certificate the root signs directly, bypassing the issuing CA.
	direct, _ := issue(t, leafTmpl("SPK-VICTIM", uri), e.dca.Root, e.rootKey)

	cases := []struct {
		name  string
		chain []*x509.Certificate
		want  error
	}{
		{"no certificate", nil, ErrNoCertificate},
		{"unknown CA with the platform's names", []*x509.Certificate{forged, fakeIssuing, fakeRoot}, ErrUnknownCA},
		{"unknown CA, its root not presented", []*x509.Certificate{forged, fakeIssuing}, ErrUnknownCA},
		{"self-signed", []*x509.Certificate{selfSigned}, ErrUnknownCA},
		{"leaf signed by a device certificate", []*x509.Certificate{underDevice, attackerCert.Leaf, e.dca.Cert}, ErrUnknownCA},
		{"the issuing CA presented as the leaf", []*x509.Certificate{e.dca.Cert}, ErrNotClientCert},
		{"the root presented as the leaf", []*x509.Certificate{e.dca.Root}, ErrNotClientCert},
		{"server-auth-only certificate", []*x509.Certificate{serverOnly}, ErrNotClientCert},
		{"root-signed, not through the issuing CA", []*x509.Certificate{direct}, ErrUnknownCA},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id, err := e.c.Verify(ctx, c.chain)
			if !errors.Is(err, c.want) || id != nil {
				t.Fatalf("Verify: %v (identity %v), want %v", err, id, c.want)
			}
			if !Refused(err) {
				t.Errorf("Refused(%v) is false: callers would answer 500", err)
			}
			t.Log(err) // what the operator reads
		})
	}
	// The victim's own certificate still works: nothing above spoilt it.
	if _, err := e.c.Verify(ctx, chain(t, victimCert)); err != nil {
		t.Fatal(err)
	}
}

func TestRefusedIsNotAServerFailure(t *testing.T) {
	if Refused(errors.New("database is locked")) || Refused(nil) {
		t.Error("a failure of the server counted as a refusal")
	}
}

func TestVerifyValidity(t *testing.T) {
	e := newEnv(t)
	th, err := e.ids.CreateThing(t.Context(), "test", &store.Thing{SerialNumber: "SPK-1"})
	if err != nil {
		t.Fatal(err)
	}
	dc, err := e.dca.IssueDevice(th.ID, "SPK-1", 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// Verified once, the chain is cached: the cache must still honour time.
	if _, err := e.c.Verify(t.Context(), chain(t, dc)); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		skew time.Duration
		want error
	}{
		{"expired", 3 * time.Hour, ErrExpired},
		{"not yet valid", -time.Hour, ErrNotYetValid}, // issued with NotBefore 5 minutes back
	} {
		t.Run(c.name, func(t *testing.T) {
			e.skew.Store(int64(c.skew))
			defer e.skew.Store(0)
			_, err := e.c.Verify(t.Context(), chain(t, dc))
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify: %v, want %v", err, c.want)
			}
			t.Log(err)
		})
	}
	if _, err := e.c.Verify(t.Context(), chain(t, dc)); err != nil {
		t.Fatalf("back to now: %v", err)
	}
}

func TestVerifyThingRules(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()

	t.Run("another thing's certificate names that other thing", func(t *testing.T) {
		// Verify knows no claimed identity: the caller (the token endpoint)
		// compares the thing returned with the client it authenticates.
		mine, _ := e.thing("SPK-MINE")
		other, otherCert := e.thing("SPK-OTHER")
		id, err := e.c.Verify(ctx, chain(t, otherCert))
		if err != nil || id.Thing.ID != other.ID || id.Thing.ID == mine.ID {
			t.Fatalf("Verify: %v %+v, want thing %s", err, id, other.ID)
		}
	})
	t.Run("serial changed on the thing", func(t *testing.T) {
		th, dc := e.thing("SPK-2")
		if _, err := e.ids.UpdateThing(ctx, "test", th.ID, 0, func(x *store.Thing) error { x.SerialNumber = "SPK-2B"; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Verify(ctx, chain(t, dc)); !errors.Is(err, ErrSerialMismatch) {
			t.Fatalf("Verify: %v, want ErrSerialMismatch", err)
		}
	})
	t.Run("certificate with another serial", func(t *testing.T) {
		th, _ := e.thing("SPK-3")
		dc, err := e.dca.IssueDevice(th.ID, "SPK-4", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Verify(ctx, chain(t, dc)); !errors.Is(err, ErrSerialMismatch) {
			t.Fatalf("Verify: %v, want ErrSerialMismatch", err)
		}
	})
	t.Run("thing without serial", func(t *testing.T) {
		th, err := e.ids.CreateThing(ctx, "test", &store.Thing{DisplayName: "no serial"})
		if err != nil {
			t.Fatal(err)
		}
		dc, err := e.dca.IssueDevice(th.ID, "SPK-5", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Verify(ctx, chain(t, dc)); !errors.Is(err, ErrSerialMismatch) {
			t.Fatalf("Verify: %v, want ErrSerialMismatch", err)
		}
	})
	t.Run("disabled, then enabled", func(t *testing.T) {
		th, dc := e.thing("SPK-6")
		if _, err := e.c.Verify(ctx, chain(t, dc)); err != nil {
			t.Fatal(err)
		}
		setStatus(t, e, th.ID, store.StatusDisabled)
		if _, err := e.c.Verify(ctx, chain(t, dc)); !errors.Is(err, ErrThingDisabled) {
			t.Fatalf("Verify: %v, want ErrThingDisabled", err)
		}
		setStatus(t, e, th.ID, store.StatusActive)
		if _, err := e.c.Verify(ctx, chain(t, dc)); err != nil {
			t.Fatalf("enabled again: %v", err)
		}
	})
	t.Run("deleted", func(t *testing.T) {
		th, dc := e.thing("SPK-7")
		if err := e.ids.DeleteThing(ctx, "test", th.ID, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := e.c.Verify(ctx, chain(t, dc)); !errors.Is(err, ErrNoThing) {
			t.Fatalf("Verify: %v, want ErrNoThing", err)
		}
	})
}

func setStatus(t *testing.T, e *env, id string, s store.Status) {
	t.Helper()
	if _, err := e.ids.UpdateThing(context.Background(), "test", id, 0, func(x *store.Thing) error { x.Status = s; return nil }); err != nil {
		t.Fatal(err)
	}
}

// TestRevokedEverywhereAtOnce: a revocation on one node is refused by another
// node sharing the bus as soon as Revoke returns, not at its next reload
// (an hour away in env), even though it had verified the certificate before.
func TestRevokedEverywhereAtOnce(t *testing.T) {
	e := newEnv(t)
	other := e.checker()
	ctx := t.Context()
	th, dc := e.thing("SPK-R1")
	_, spare := e.thing("SPK-R2")
	if _, err := other.Verify(ctx, chain(t, dc)); err != nil {
		t.Fatal(err)
	}
	var seen []string
	e.bus.Subscribe(func(ev events.Event) {
		if ev.Type == EventCertRevoke {
			seen = append(seen, ev.Kind+"/"+ev.ID+"/"+ev.Details["fingerprint"])
		}
	})
	done, err := e.c.Revoke(ctx, "test", Revocation{Certificate: dc.Leaf, Reason: ReasonKeyCompromise})
	if err != nil || len(done) != 1 {
		t.Fatalf("Revoke: %v %v", done, err)
	}
	r := done[0]
	if r.ThingID != th.ID || r.FingerprintSHA256 != dc.FingerprintSHA256 || r.Authority != AuthorityPlatform ||
		r.SerialNumber != dc.Leaf.SerialNumber.Text(16) || r.Reason != int(ReasonKeyCompromise) {
		t.Errorf("revocation %+v", r)
	}
	for name, c := range map[string]*Checker{"this node": e.c, "other node": other} {
		if _, err := c.Verify(ctx, chain(t, dc)); !errors.Is(err, ErrRevoked) {
			t.Errorf("%s: Verify %v, want ErrRevoked", name, err)
		}
	}
	if len(seen) != 1 || seen[0] != "thing/"+th.ID+"/"+dc.FingerprintSHA256 {
		t.Errorf("events %v", seen)
	}
	// A node started later reads it from the store.
	if _, err := e.checker().Verify(ctx, chain(t, dc)); !errors.Is(err, ErrRevoked) {
		t.Errorf("new node: %v, want ErrRevoked", err)
	}
	// The thing's other certificates are untouched; revoking again changes nothing.
	if _, err := other.Verify(ctx, chain(t, spare)); err != nil {
		t.Fatal(err)
	}
	if again, err := e.c.Revoke(ctx, "test", Revocation{Fingerprint: dc.FingerprintSHA256}); err != nil || len(again) != 0 {
		t.Errorf("second revocation: %v %v", again, err)
	}
	recs, err := e.st.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: th.ID}})
	if err != nil {
		t.Fatal(err)
	}
	var audited int
	for _, rec := range recs {
		if rec.Action == EventCertRevoke && rec.Actor == "test" {
			audited++
		}
	}
	if audited != 1 {
		t.Errorf("%d cert.revoke audit records, want 1", audited)
	}
}

// TestMissedEventsAreReloaded: a node that missed the event (another bus: a
// relay that was reconnecting) refuses the certificate after its reload, and
// publishes the event it missed on its own bus for the broker.
func TestMissedEventsAreReloaded(t *testing.T) {
	e := newEnv(t)
	_, dc := e.thing("SPK-M1")
	bus := events.New()
	replayed := make(chan events.Event, 10)
	bus.Subscribe(func(ev events.Event) { replayed <- ev })
	lonely, err := New(t.Context(), Options{Store: e.st, Identity: e.ids, DeviceCA: e.dca, Bus: bus, Log: quiet, ReloadInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer lonely.Close()
	if _, err := lonely.Verify(t.Context(), chain(t, dc)); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Revoke(t.Context(), "test", Revocation{Fingerprint: dc.FingerprintSHA256}); err != nil {
		t.Fatal(err)
	}
	for !errors.Is(verifyErr(lonely, t, dc), ErrRevoked) {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case ev := <-replayed:
		if ev.Type != EventCertRevoke || !ev.Local || ev.Details["fingerprint"] != dc.FingerprintSHA256 {
			t.Errorf("published %+v, want the local cert.revoke of %s", ev, dc.FingerprintSHA256)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the missed revocation was not published on the node")
	}
}

func verifyErr(c *Checker, t *testing.T, dc *pki.DeviceCert) error {
	_, err := c.Verify(t.Context(), chain(t, dc))
	return err
}

func TestRevokeWholeThing(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	th, first := e.thing("SPK-W1")
	second, err := e.dca.IssueDevice(th.ID, "SPK-W1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.ids.AddCertificate(ctx, "test", th.ID, store.CertRef{FingerprintSHA256: second.FingerprintSHA256,
		Issuer: second.Leaf.Issuer.String(), NotAfter: second.Leaf.NotAfter}); err != nil {
		t.Fatal(err)
	}
	done, err := e.c.Revoke(ctx, "test", Revocation{ThingID: th.ID, Reason: ReasonCessationOfOperation})
	if err != nil || len(done) != 2 {
		t.Fatalf("Revoke: %d %v", len(done), err)
	}
	for _, dc := range []*pki.DeviceCert{first, second} {
		if err := verifyErr(e.c, t, dc); !errors.Is(err, ErrRevoked) {
			t.Errorf("Verify: %v, want ErrRevoked", err)
		}
	}
}

// Several revocations (a factory batch's things) are carried out together,
// or, when one of them cannot be, none is.
func TestRevokeSeveral(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	a, dcA := e.thing("SPK-S1")
	b, dcB := e.thing("SPK-S2")
	bare, err := e.ids.CreateThing(ctx, "test", &store.Thing{SerialNumber: "SPK-S3"})
	if err != nil {
		t.Fatal(err)
	}
	var re *RevocationError
	if _, err := e.c.Revoke(ctx, "test", Revocation{ThingID: a.ID, Reason: ReasonKeyCompromise}, Revocation{ThingID: bare.ID}); !errors.As(err, &re) {
		t.Fatalf("with a thing without certificates: %v, want a RevocationError", err)
	}
	if err := verifyErr(e.c, t, dcA); err != nil {
		t.Fatalf("a refused batch revoked %s: %v", a.SerialNumber, err)
	}
	done, err := e.c.Revoke(ctx, "test", Revocation{ThingID: a.ID, Reason: ReasonKeyCompromise}, Revocation{ThingID: b.ID, Reason: ReasonKeyCompromise})
	if err != nil || len(done) != 2 {
		t.Fatalf("Revoke: %d %v", len(done), err)
	}
	for _, dc := range []*pki.DeviceCert{dcA, dcB} {
		if err := verifyErr(e.c, t, dc); !errors.Is(err, ErrRevoked) {
			t.Errorf("Verify: %v, want ErrRevoked", err)
		}
	}
	if done, err := e.c.Revoke(ctx, "test"); err != nil || len(done) != 0 {
		t.Errorf("no revocation: %d %v", len(done), err)
	}
}

func TestRevokeRefusesNonsense(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	bare, err := e.ids.CreateThing(ctx, "test", &store.Thing{SerialNumber: "NO-CERTS"})
	if err != nil {
		t.Fatal(err)
	}
	th, dc := e.thing("SPK-N1")
	other, _ := e.thing("SPK-N2")
	// Another certificate's fingerprint: the real one with its first digit changed, so
	// it never equals the real one whatever the real one begins with.
	flipped := map[bool]string{true: "1", false: "0"}[dc.FingerprintSHA256[0] == '0'] + dc.FingerprintSHA256[1:]
	var re *RevocationError
	for name, r := range map[string]Revocation{
		"nothing named":            {},
		"fingerprint not hex":      {Fingerprint: "zz"},
		"fingerprint too short":    {Fingerprint: "abcd"},
		"fingerprint of another":   {Certificate: dc.Leaf, Fingerprint: flipped},
		"certificate of another":   {Certificate: dc.Leaf, ThingID: other.ID},
		"no certificates recorded": {ThingID: bare.ID},
		"certificateHold":          {Fingerprint: dc.FingerprintSHA256, Reason: 6},
		"removeFromCRL":            {Fingerprint: dc.FingerprintSHA256, Reason: 8},
	} {
		if _, err := e.c.Revoke(ctx, "test", r); !errors.As(err, &re) {
			t.Errorf("%s: %v, want a RevocationError", name, err)
		}
	}
	if _, err := e.c.Revoke(ctx, "test", Revocation{ThingID: "no-such-thing"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown thing: %v", err)
	}
	if err := verifyErr(e.c, t, dc); err != nil {
		t.Fatalf("a refused revocation revoked: %v (thing %s)", err, th.ID)
	}
	// openssl's colon-separated upper-case form is accepted.
	var pairs []string
	for i := 0; i < len(dc.FingerprintSHA256); i += 2 {
		pairs = append(pairs, strings.ToUpper(dc.FingerprintSHA256[i:i+2]))
	}
	colons := strings.Join(pairs, ":")
	if done, err := e.c.Revoke(ctx, "test", Revocation{Fingerprint: colons}); err != nil || len(done) != 1 || done[0].FingerprintSHA256 != dc.FingerprintSHA256 {
		t.Fatalf("openssl form %s: %v %v", colons, done, err)
	}
}

func TestParseReason(t *testing.T) {
	for _, s := range []string{"", "unspecified", "keyCompromise", "KEYCOMPROMISE", "superseded", "affiliationChanged", "cessationOfOperation", "privilegeWithdrawn"} {
		r, err := ParseReason(s)
		if err != nil {
			t.Errorf("%q: %v", s, err)
		}
		if back, _ := ParseReason(r.String()); back != r {
			t.Errorf("%q: round trip %v", s, back)
		}
	}
	for _, s := range []string{"certificateHold", "removeFromCRL", "cACompromise", "1", "x"} {
		if _, err := ParseReason(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
