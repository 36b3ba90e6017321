package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/thingid/thingid/internal/browsertest"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/factory"
	"github.com/thingid/thingid/internal/store"
)

// issueBatchOn runs the factory on the platform of r: n devices of model.
func issueBatchOn(t *testing.T, r *running, model string, n int) (*store.FactoryBatch, []*store.Thing) {
	t.Helper()
	ctx := context.Background()
	_, dca, err := r.p.PKI()
	must(t, "opening the device CA", err)
	sum, err := factory.Issue(ctx, r.p.Identity, dca, factory.Options{Model: model, Manufacturer: "Acme", Count: n, Out: t.TempDir(), Actor: "test"})
	must(t, "issuing the batch", err)
	b, err := r.p.Store.GetFactoryBatch(ctx, sum.Batch)
	must(t, "reading the batch", err)
	things, _, err := r.p.Store.ListFactoryBatchThings(ctx, b.ID, 0, n)
	must(t, "reading the batch's things", err)
	return b, things
}

// revokedOf lists the fingerprints revoked on the platform.
func revokedOf(t *testing.T, r *running) map[string]bool {
	t.Helper()
	rcs, err := r.p.Store.ListRevokedCerts(context.Background(), 0, 1000)
	must(t, "reading the revocations", err)
	out := map[string]bool{}
	for _, rc := range rcs {
		out[rc.FingerprintSHA256] = true
	}
	return out
}

// An administrator finds the factory's batch newest first, opens it (its
// things link to their pages), and revokes every certificate of it through
// the confirmation step; each certificate is revoked through certauth (in
// the CRL by serial, audited on its thing) and the batch records the
// revocation. Bad input names its field.
func TestConsoleBatches(t *testing.T) {
	w := newConsoleWorld(t)
	b, things := issueBatchOn(t, w.r, "Cam", 3)
	ada := w.client(t, "ada")

	r := ada.get("/admin/batches")
	if r.status != 200 || !strings.Contains(r.body, "Batches 1–2 of 2, newest first.") ||
		strings.Index(r.body, "/admin/batches/"+b.ID) > strings.Index(r.body, "/admin/batches/"+w.batch.ID) {
		t.Fatalf("the batches: %d %.3000s", r.status, r.body)
	}
	page := "/admin/batches/" + b.ID
	r = ada.get(page)
	for _, want := range []string{"Cam-000001 – Cam-000003", "3 of 3", b.CAFingerprint, "Things 1–3 of 3", `id="revoke-batch"`} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the batch's page lacks %q", want)
		}
	}
	for _, th := range things {
		if !strings.Contains(r.body, `href="/admin/things/`+th.ID+`">`+th.SerialNumber+`<`) {
			t.Errorf("no link to thing %s", th.SerialNumber)
		}
	}

	form := url.Values{"csrf": {ada.formToken(page)}, "reason": {"keyCompromise"}}
	if r := ada.post(page+"/revoke", form); r.status != 200 || !strings.Contains(r.body, `name="confirm" value="yes"`) ||
		!strings.Contains(r.body, `name="reason" value="keyCompromise"`) || !strings.Contains(r.body, `href="`+page+`"`) {
		t.Fatalf("revoking without confirmation: %d %.2000s", r.status, r.body)
	}
	if len(revokedOf(t, w.r)) != 0 {
		t.Fatal("revoked before the confirmation")
	}
	form.Set("confirm", "yes")
	if r := ada.post(page+"/revoke", form); r.status != 303 || r.location != page+"?done=batchRevoked" {
		t.Fatalf("revoking: %d %q %.1000s", r.status, r.location, r.body)
	}
	revoked := revokedOf(t, w.r)
	for _, th := range things {
		if !revoked[th.Certificates[0].FingerprintSHA256] {
			t.Errorf("the certificate of %s is not revoked", th.SerialNumber)
		}
	}
	if len(revoked) != 3 {
		t.Errorf("%d certificates revoked, want the batch's 3", len(revoked))
	}
	if r := ada.get(page); strings.Count(r.body, "<td>revoked</td>") != 3 {
		t.Errorf("the things are not shown revoked: %.3000s", r.body)
	}
	ctx := context.Background()
	recs, err := w.r.p.Store.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: "batch", ID: b.ID}, Action: store.TextMatch{Value: "factory.batch.revoke"}})
	if err != nil || len(recs) != 1 || recs[0].Actor != "admin:"+w.ada.ID || !strings.Contains(string(recs[0].Detail), `"certificatesRevoked":3`) {
		t.Errorf("the batch's audit record: %+v %v", recs, err)
	}
	if recs, _ := w.r.p.Store.ListAudit(ctx, store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: things[0].ID},
		Action: store.TextMatch{Value: "cert.revoke"}}); len(recs) != 1 {
		t.Errorf("the thing's revocation is not audited: %+v", recs)
	}
	// Again: nothing more to revoke, still no error.
	if r := ada.post(page+"/revoke", form); r.status != 303 {
		t.Errorf("revoking again: %d", r.status)
	}

	for path, form := range map[string]url.Values{
		page + "/revoke":                      {"reason": {"certificateHold"}},
		"/admin/batches/nope/revoke":          {"reason": {"keyCompromise"}},
		page + "/revoke?reason=keyCompromise": {"reason": {"<script>"}},
	} {
		form.Set("csrf", ada.formToken(page))
		form.Set("confirm", "yes")
		if r := ada.post(path, form); (r.status != 400 && r.status != 404) || (r.status == 400 && !strings.Contains(r.body, "reason:")) {
			t.Errorf("POST %s %v: %d %.500s", path, form, r.status, r.body)
		}
	}
	for path, want := range map[string]int{"/admin/batches/nope": 404, page + "?page=0": 400, "/admin/batches?page=x": 400} {
		if r := ada.get(path); r.status != want {
			t.Errorf("GET %s: %d, want %d", path, r.status, want)
		}
	}
}

// Revoking a batch is for administrators only, and only through the
// console's form: support staff with a valid token, a form without one,
// and a user who is no staff are refused, and nothing is revoked.
func TestConsoleBatchRevokeRefused(t *testing.T) {
	w := newConsoleWorld(t)
	b, _ := issueBatchOn(t, w.r, "Cam", 2)
	path := "/admin/batches/" + b.ID + "/revoke"

	sam := w.client(t, "sam")
	if r := sam.get("/admin/batches/" + b.ID); r.status != 200 || strings.Contains(r.body, `method="post"`) {
		t.Errorf("support staff's view of the batch: %d, a form shown: %v", r.status, strings.Contains(r.body, `method="post"`))
	}
	form := url.Values{"csrf": {w.consoleToken(t, sam)}, "confirm": {"yes"}, "reason": {"keyCompromise"}}
	if r := sam.post(path, form); r.status != http.StatusForbidden || !strings.Contains(r.body, "Support staff can read the console but change nothing") {
		t.Errorf("support staff revoking: %d %.300s", r.status, r.body)
	}

	ada := w.client(t, "ada")
	ada.get("/admin/batches")
	if r := ada.post(path, url.Values{"confirm": {"yes"}, "reason": {"keyCompromise"}}); r.status != http.StatusForbidden || !strings.Contains(r.body, "Form expired") {
		t.Errorf("without a CSRF token: %d %.300s", r.status, r.body)
	}

	nora := w.client(t, "nora")
	if r := nora.get("/admin/batches/" + b.ID); r.status != http.StatusForbidden || strings.Contains(r.body, b.ID) {
		t.Errorf("a normal user's view of the batch: %d", r.status)
	}
	if r := nora.post(path, url.Values{"csrf": {nora.formToken("/account")}, "confirm": {"yes"}, "reason": {"keyCompromise"}}); r.status != http.StatusForbidden {
		t.Errorf("a normal user revoking: %d", r.status)
	}
	if n := len(revokedOf(t, w.r)); n != 0 {
		t.Fatalf("%d certificates revoked by refused requests", n)
	}
}

// The manufacturer CAs page shows each CA's subject, fingerprint, validity
// and how many things hold a certificate it issued.
func TestConsoleManufacturerCAs(t *testing.T) {
	w := newConsoleWorld(t)
	ctx := context.Background()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, "making a key", err)
	notBefore := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "Acme Device CA " + xss, Organization: []string{"Acme"}},
		NotBefore: notBefore, NotAfter: notBefore.Add(10 * 365 * 24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, "making the CA", err)
	cert, err := x509.ParseCertificate(der)
	must(t, "parsing the CA", err)
	sum := sha256.Sum256(der)
	ca := &store.ManufacturerCA{Name: "Acme", Certificate: der, FingerprintSHA256: hex.EncodeToString(sum[:]), Subject: cert.Subject.String(),
		NotAfter: cert.NotAfter, Template: store.ProvisioningTemplate{Manufacturer: "Acme", Model: "Echo 3", SerialFrom: "serialNumber"}}
	must(t, "registering the CA", w.r.p.Store.CreateManufacturerCA(ctx, ca))
	_, err = w.r.p.Identity.AddCertificate(ctx, "test", w.lamp.ID, store.CertRef{FingerprintSHA256: strings.Repeat("cd", 32),
		Issuer: cert.Subject.String(), NotAfter: time.Now().Add(time.Hour)})
	must(t, "recording a certificate of the CA", err)

	r := w.client(t, "sam").get("/admin/cas")
	for _, want := range []string{ca.FingerprintSHA256, "2026-01-02 03:04:05Z", "2035-12-31", `<td class="things">1</td>`, "Acme Echo 3", "&lt;script"} {
		if !strings.Contains(r.body, want) {
			t.Errorf("the CAs page lacks %q", want)
		}
	}
	if r.status != 200 || scriptTag.MatchString(r.body) {
		t.Errorf("the CAs page: %d %.3000s", r.status, r.body)
	}
}

// TestBrowserConsoleRevokesBatch plays the administrator in Chromium: a
// device of a factory batch is connected to the broker; ada opens the
// batch from the batches page, revokes every certificate of it for key
// compromise through the confirmation page, and the broker ends the
// device's connection. The pages are kept as screenshots.
func TestBrowserConsoleRevokesBatch(t *testing.T) {
	tab := browsertest.New(t)
	shots := browsertest.NewScreenshots(t)
	w := newConsoleWorld(t, func(c *config.Config) { c.MQTT.CertificateLogin = true })
	b, things := issueBatchOn(t, w.r, "Cam", 3)
	_, dropped := connectWithCertificate(t, w.r, things[1])

	browserSignIn(t, tab, w.r.base, "/admin/batches", "ada")
	shots.Take(t, tab, "batches")
	must(t, "opening the batch", chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`#batches a[href="/admin/batches/`+b.ID+`"]`)),
		chromedp.WaitVisible(chromedp.ID("things"))))
	shots.Take(t, tab, "batch")
	must(t, "revoking the batch", chromedp.Do(tab,
		chromedp.SetValue(chromedp.ID("reason"), "keyCompromise"),
		chromedp.Click(chromedp.ID("revoke-batch")),
		chromedp.WaitVisible(chromedp.ID("confirm"))))
	shots.Take(t, tab, "confirm")
	if notice := submitForm(t, tab, "confirming", chromedp.Click(chromedp.ID("confirm"))); !strings.HasPrefix(notice, "Every certificate of this batch is revoked.") {
		t.Errorf("after revoking: %q", notice)
	}
	select {
	case d := <-dropped:
		t.Logf("the broker ended the device's connection (reason %#x)", d.ReasonCode)
	case <-time.After(10 * time.Second):
		t.Fatal("the device is still connected after its batch was revoked")
	}
	states, err := chromedp.Run(tab, chromedp.Text(chromedp.ID("things")))
	if err != nil || strings.Count(states, "revoked") != 3 {
		t.Errorf("the batch's things after revoking: %q %v", states, err)
	}
	shots.Take(t, tab, "revoked")
	must(t, "opening a thing of the batch", chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`#things a[href="/admin/things/`+things[0].ID+`"]`)),
		chromedp.WaitVisible(chromedp.ID("certificates"))))
	cert, err := chromedp.Run(tab, chromedp.Text(chromedp.ID("certificates")))
	if err != nil || !strings.Contains(cert, "revoked") {
		t.Errorf("the thing's certificate: %q %v", cert, err)
	}
	must(t, "opening the CAs", chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`nav a[href="/admin/cas"]`)),
		chromedp.WaitVisible(chromedp.CSS("h1"))))
	shots.Take(t, tab, "cas")
}
