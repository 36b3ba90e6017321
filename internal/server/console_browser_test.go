package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/thingid/thingid/internal/browsertest"
	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/store"
)

// TestBrowserConsoleRevokesCertificate plays the administrator in
// Chromium: a speaker is connected to the broker with its device
// certificate; ada finds it by serial number, revokes the certificate
// (through the confirmation page), sees the connection gone from its page
// while the MQTT client is told so, and finds the revocation in the audit
// log. The pages are kept as screenshots.
func TestBrowserConsoleRevokesCertificate(t *testing.T) {
	tab := browsertest.New(t)
	shots := browsertest.NewScreenshots(t)
	ctx := context.Background()
	var ada *store.User
	var speaker *store.Thing
	r := serveWith(t, func(p *Platform) {
		var err error
		if ada, err = p.Identity.CreateUser(ctx, "test", &store.User{UserName: "ada"}, umaPW); err != nil {
			t.Fatal(err)
		}
		if speaker, err = p.Identity.CreateThing(ctx, "test", &store.Thing{DisplayName: "Living-room speaker", Type: store.ThingDevice,
			Manufacturer: "Acme", Model: "Echo 3", SerialNumber: "SPK-0042", Status: store.StatusActive}); err != nil {
			t.Fatal(err)
		}
	}, func(c *config.Config) { c.MQTT.CertificateLogin = true })
	setAdmin(t, r, ada.ID, true)

	fingerprint, dropped := connectWithCertificate(t, r, speaker)

	browserSignIn(t, tab, r.base, "/admin/things", "ada")
	shots.Take(t, tab, "things")
	must(t, "searching by serial number", chromedp.Do(tab,
		chromedp.SendKeys(chromedp.ID("serial"), "SPK-0042"),
		chromedp.Click(chromedp.ID("search")),
		chromedp.WaitVisible(chromedp.ID("results"))))
	shots.Take(t, tab, "found")
	must(t, "opening the speaker", chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`#results a`)),
		chromedp.WaitVisible(chromedp.ID("certificates"))))
	state, err := chromedp.Run(tab, chromedp.Text(chromedp.ID("connections")))
	if err != nil || !strings.Contains(state, speaker.ID) || !strings.Contains(state, "connected") {
		t.Fatalf("the speaker's connection on its page: %q %v", state, err)
	}
	shots.Take(t, tab, "speaker")
	must(t, "revoking the certificate", chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`button[name="revoke-cert"]`)),
		chromedp.WaitVisible(chromedp.ID("confirm"))))
	shots.Take(t, tab, "confirm")
	if notice := submitForm(t, tab, "confirming", chromedp.Click(chromedp.ID("confirm"))); !strings.HasPrefix(notice, "Certificate revoked.") {
		t.Errorf("after revoking: %q", notice)
	}
	select {
	case d := <-dropped:
		t.Logf("the broker ended the speaker's connection (reason %#x)", d.ReasonCode)
	case <-time.After(10 * time.Second):
		t.Fatal("the speaker is still connected after its certificate was revoked")
	}
	// The page the browser landed on was rendered after the revocation;
	// once the broker has let go, a reload shows no connection.
	for {
		must(t, "reloading the speaker", chromedp.Do(tab, chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("certificates"))))
		gone, err := chromedp.Run(tab, chromedp.Evaluate[bool](`document.getElementById('no-connection') !== null`))
		must(t, "reading the connection", err)
		if gone {
			break
		}
		if tab.Err() != nil {
			t.Fatal("the connection stays on the speaker's page")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cert, err := chromedp.Run(tab, chromedp.Text(chromedp.ID("certificates")))
	if err != nil || !strings.Contains(cert, "revoked") {
		t.Errorf("the certificate on the page: %q %v", cert, err)
	}
	shots.Take(t, tab, "revoked")

	must(t, "opening the audit log", chromedp.Do(tab,
		chromedp.Click(chromedp.CSS(`nav a[href="/admin/audit"]`)),
		chromedp.WaitVisible(chromedp.ID("action")),
		chromedp.SendKeys(chromedp.ID("action"), "cert.*"),
		chromedp.Click(chromedp.ID("filter")),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-action="cert.revoke"]`))))
	row, err := chromedp.Run(tab, chromedp.Text(chromedp.CSS(`tr[data-action="cert.revoke"]`)))
	if err != nil || !strings.Contains(row, "admin:"+ada.ID) || !strings.Contains(row, "thing:"+speaker.ID) || !strings.Contains(row, fingerprint) {
		t.Errorf("the revocation in the audit log: %q %v", row, err)
	}
	shots.Take(t, tab, "audit")
}

// connectWithCertificate issues th a device certificate, records it on the
// thing and connects th to the broker with it alone (r serves with
// mqtt.certificateLogin); it returns the certificate's fingerprint and what
// the broker says when it ends the connection.
func connectWithCertificate(t *testing.T, r *running, th *store.Thing) (string, <-chan *paho.Disconnect) {
	t.Helper()
	ctx := context.Background()
	_, dca, err := r.p.PKI()
	must(t, "opening the device CA", err)
	dc, err := dca.IssueDevice(th.ID, th.SerialNumber, 0)
	must(t, "issuing the certificate", err)
	_, err = r.p.Identity.AddCertificate(ctx, "test", th.ID, store.CertRefOf(dc.Leaf))
	must(t, "recording the certificate", err)
	_, addr, ok := strings.Cut(r.out.String(), "mqtts://")
	if !ok {
		t.Fatalf("no MQTT address printed: %q", r.out.String())
	}
	addr, _, _ = strings.Cut(addr, "\n")
	ca, err := os.ReadFile(filepath.Join(r.p.Config.Home, "pki", "ca.crt"))
	must(t, "reading the platform CA", err)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost",
		Certificates: []tls.Certificate{{Certificate: dc.Chain, PrivateKey: dc.Key, Leaf: dc.Leaf}}})
	must(t, "dialling the broker", err)
	dropped := make(chan *paho.Disconnect, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: packets.NewThreadSafeConn(conn),
		OnServerDisconnect: func(d *paho.Disconnect) { dropped <- d }})
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if ack, err := c.Connect(cctx, &paho.Connect{ClientID: th.ID, KeepAlive: 30, CleanStart: true}); err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connecting with the certificate: %+v %v", ack, err)
	}
	t.Cleanup(func() { c.Disconnect(&paho.Disconnect{}) })
	return dc.FingerprintSHA256, dropped
}

// TestBrowserConsoleAccessibility runs axe-core on every console page an
// administrator sees: no serious or critical WCAG 2.1 A/AA violation.
func TestBrowserConsoleAccessibility(t *testing.T) {
	tab := browsertest.New(t)
	axe := browsertest.Axe(t)
	w := newConsoleWorld(t)
	browserSignIn(t, tab, w.r.base, "/admin", "ada")
	for _, page := range []string{"/admin", "/admin/things", "/admin/things?model=Echo+3", "/admin/things?mac=zz",
		"/admin/things/" + w.speaker.ID, "/admin/users?q=o", "/admin/users/" + w.olive.ID, "/admin/audit",
		"/admin/audit?since=yesterday", "/admin/clients", "/admin/platform", "/admin/batches", "/admin/batches/" + w.batch.ID, "/admin/cas"} {
		must(t, "opening "+page, chromedp.Do(tab, chromedp.Navigate(w.r.base+page), chromedp.WaitVisible(chromedp.CSS("nav"))))
		browsertest.CheckAccessibility(t, tab, axe, page)
	}
	// The confirmation page.
	must(t, "asking to disable", chromedp.Do(tab, chromedp.Navigate(w.r.base+"/admin/things/"+w.speaker.ID),
		chromedp.Click(chromedp.ID("toggle-status")), chromedp.WaitVisible(chromedp.ID("confirm"))))
	browsertest.CheckAccessibility(t, tab, axe, "the confirmation page")
}
