package est

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/sdk"
)

// checkIssued checks an enrollment answer: the new certificate first, for
// key, naming th by the platform's rules whatever the CSR asked for, issued
// by the device CA and recorded on the thing.
func (e *env) checkIssued(t *testing.T, resp *http.Response, body string, key *ecdsa.PrivateKey, th *store.Thing) *x509.Certificate {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("enrollment: %d %s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/pkcs7-mime; smime-type=certs-only" {
		t.Errorf("Content-Type %q", ct)
	}
	certs := issued(t, body)
	leaf := certs[0]
	if !leaf.PublicKey.(*ecdsa.PublicKey).Equal(&key.PublicKey) {
		t.Fatal("the first certificate is not for the CSR's key")
	}
	if len(certs) != 2 || !certs[1].Equal(e.ca.Cert) {
		t.Errorf("the answer should carry the issuing CA after the certificate, got %d certificates", len(certs))
	}
	if sdk.ThingID(leaf) != th.ID || leaf.Subject.SerialNumber != th.SerialNumber || len(leaf.DNSNames)+len(leaf.EmailAddresses) > 0 {
		t.Errorf("names: thing %q serial %q SANs %v %v", sdk.ThingID(leaf), leaf.Subject.SerialNumber, leaf.DNSNames, leaf.EmailAddresses)
	}
	roots := x509.NewCertPool()
	roots.AddCert(e.ca.Root)
	inter := x509.NewCertPool()
	inter.AddCert(e.ca.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("the certificate does not chain to the platform root: %v", err)
	}
	got, err := e.st.GetThing(context.Background(), th.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(got.Certificates, func(c store.CertRef) bool { return c.FingerprintSHA256 == fingerprint(leaf) }) {
		t.Errorf("certificate not recorded on the thing: %+v", got.Certificates)
	}
	return leaf
}

func fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

func TestEnrollWithTokenOnce(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	tok := e.token(t, e.thing)
	key := newKey(t)
	// The CSR asks for another name: the platform's names win.
	resp, body := e.post(t, c, "simpleenroll", csrBody(t, key, pkix.Name{CommonName: "admin", SerialNumber: "SN-9999"}), basic(e.thing.ID, tok))
	e.checkIssued(t, resp, body, key, e.thing)

	// RFC 7030 §3.2.3 credentials are one-time: the same token is refused.
	resp, body = e.post(t, c, "simpleenroll", csrBody(t, newKey(t), pkix.Name{}), basic(e.thing.ID, tok))
	if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(body, "used already") || resp.Header.Values("WWW-Authenticate") == nil {
		t.Fatalf("token reuse: %d %v %s", resp.StatusCode, resp.Header.Values("WWW-Authenticate"), body)
	}
	// A token as a Bearer credential works the same.
	key2 := newKey(t)
	resp, body = e.post(t, c, "simpleenroll", csrBody(t, key2, pkix.Name{}), bearer(e.token(t, e.thing)))
	e.checkIssued(t, resp, body, key2, e.thing)

	audit, _ := e.st.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: e.thing.ID}})
	var creates, updates int
	for _, a := range audit {
		switch {
		case a.Action == "est.token.create" && a.Actor == "admin:test" && !strings.Contains(string(a.Detail), tok):
			creates++
		case a.Action == "thing.update" && strings.HasPrefix(a.Actor, "est-token:"):
			updates++
		}
	}
	if creates != 2 || updates != 2 {
		t.Errorf("audit: %d token creations, %d certificate records; want 2 and 2: %+v", creates, updates, audit)
	}
}

func TestEnrollTokenRefusals(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	other := e.newThing(t, "SN-0002")
	disabled := e.newThing(t, "SN-0003")
	disabledTok := e.token(t, disabled)
	if _, err := e.id.UpdateThing(context.Background(), "test", disabled.ID, 0, func(th *store.Thing) error {
		th.Status = store.StatusDisabled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	deleted := e.newThing(t, "SN-0004")
	deletedTok := e.token(t, deleted)
	if err := e.id.DeleteThing(context.Background(), "test", deleted.ID, 0); err != nil {
		t.Fatal(err)
	}
	noSerial, err := e.id.CreateThing(context.Background(), "test", &store.Thing{Model: "Speaker"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.est.CreateToken(context.Background(), "admin:test", noSerial.ID, 0); err == nil {
		t.Error("a token was made for a thing without a serial number")
	}
	foreign, err := New(Options{CA: e.ca, Identity: e.id, Audit: e.st, TokenKey: []byte(strings.Repeat("k", 32))})
	if err != nil {
		t.Fatal(err)
	}
	good := e.token(t, e.thing)
	tampered := []byte(good)
	tampered[len(tampered)/2] ^= 1
	for _, tc := range []struct {
		name string
		auth func(*http.Request)
		want int
		text string
	}{
		{"no credentials", nil, 401, "needs an enrollment token"},
		{"unknown scheme", func(r *http.Request) { r.Header.Set("Authorization", "Digest x") }, 401, "unsupported Authorization"},
		{"empty password", basic(e.thing.ID, ""), 401, "no password"},
		{"tampered token", basic(e.thing.ID, string(tampered)), 401, "not valid"},
		{"token of another platform", bearer(foreign.mint(e.thing.ID, time.Now().Add(time.Hour)).Secret), 401, "not valid"},
		{"expired token", bearer(e.est.mint(e.thing.ID, time.Now().Add(-time.Second)).Secret), 401, "expired"},
		{"another thing's name", basic(other.ID, good), 401, "another thing"},
		{"admin API token as token", bearer("thingid_at_AAAA"), 401, "not valid"},
		{"disabled thing", bearer(disabledTok), 403, "disabled"},
		{"deleted thing", bearer(deletedTok), 403, "no longer exists"},
		{"thing without serial", bearer(e.est.mint(noSerial.ID, time.Now().Add(time.Hour)).Secret), 409, "serial"},
	} {
		resp, body := e.post(t, c, "simpleenroll", csrBody(t, newKey(t), pkix.Name{}), tc.auth)
		if resp.StatusCode != tc.want || !strings.Contains(body, tc.text) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, resp.StatusCode, body, tc.want, tc.text)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("%s: Content-Type %q, want text/plain (RFC 7030 §4.2.3)", tc.name, ct)
		}
		if got := resp.Header.Values("WWW-Authenticate"); (tc.want == 401) != (len(got) == 2) {
			t.Errorf("%s: WWW-Authenticate %v", tc.name, got)
		}
	}
	// None of this spent the good token.
	key := newKey(t)
	resp, body := e.post(t, c, "simpleenroll", csrBody(t, key, pkix.Name{}), basic(e.thing.ID, good))
	e.checkIssued(t, resp, body, key, e.thing)
}

// badCSRs are requests whose CSR must be refused with 400, and why.
func badCSRs(t *testing.T) map[string]struct{ body, text string } {
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	der, _ := base64.StdEncoding.DecodeString(csrBody(t, newKey(t), pkix.Name{CommonName: "x"}))
	badSig := append([]byte(nil), der...)
	badSig[len(badSig)-3] ^= 0x40 // inside the signature's last INTEGER
	return map[string]struct{ body, text string }{
		"garbage":          {"!!! not base64 !!!", "not base64"},
		"empty":            {"", "not base64"},
		"base64 of junk":   {base64.StdEncoding.EncodeToString([]byte("hello, EST")), "not a PKCS#10"},
		"PEM":              {string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})), "PEM"},
		"bad signature":    {base64.StdEncoding.EncodeToString(badSig), "signature"},
		"RSA-1024":         {csrBody(t, rsa1024, pkix.Name{}), "1024 bits"},
		"P-224":            {csrBody(t, p224, pkix.Name{}), "P-224"},
		"trailing garbage": {base64.StdEncoding.EncodeToString(append(der, 0, 0)), "PKCS#10"},
	}
}

func TestEnrollRefusesBadCSRsWithoutSpendingTheToken(t *testing.T) {
	e := newEnv(t)
	c := e.client()
	tok := e.token(t, e.thing)
	for name, tc := range badCSRs(t) {
		resp, body := e.post(t, c, "simpleenroll", tc.body, basic(e.thing.ID, tok))
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.text) {
			t.Errorf("%s: %d %q, want 400 with %q", name, resp.StatusCode, body, tc.text)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+Prefix+"simpleenroll", strings.NewReader(csrBody(t, newKey(t), pkix.Name{})))
	req.Header.Set("Content-Type", "application/json")
	req.SetBasicAuth(e.thing.ID, tok)
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Errorf("wrong content type: %v %v", resp.StatusCode, err)
	}
	resp, body := e.post(t, c, "simpleenroll", strings.Repeat("A", maxCSRBody+1), basic(e.thing.ID, tok))
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("huge body: %d %s", resp.StatusCode, body)
	}
	// Line breaks and missing padding are fine (RFC 8951 §3).
	key := newKey(t)
	b64 := strings.TrimRight(csrBody(t, key, pkix.Name{}), "=")
	var wrapped strings.Builder
	for len(b64) > 64 {
		wrapped.WriteString(b64[:64] + "\r\n")
		b64 = b64[64:]
	}
	wrapped.WriteString(b64)
	resp, body = e.post(t, c, "simpleenroll", wrapped.String(), basic(e.thing.ID, tok))
	e.checkIssued(t, resp, body, key, e.thing)
}

func TestReenrollKeepsTheThing(t *testing.T) {
	e := newEnv(t)
	pair, _, _ := e.deviceCert(t, e.thing)
	c := e.client(pair)
	leaf := pair.Leaf
	key := newKey(t)
	resp, body := e.post(t, c, "simplereenroll", reenrollCSR(t, key, leaf, false), nil)
	renewed := e.checkIssued(t, resp, body, key, e.thing)
	if renewed.SerialNumber.Cmp(leaf.SerialNumber) == 0 || !slices.Equal(renewed.RawSubject, leaf.RawSubject) {
		t.Error("the renewed certificate should be new, with the same subject")
	}
	// The renewed certificate renews in turn, its SANs copied into the CSR.
	next := tls.Certificate{Certificate: [][]byte{renewed.Raw, e.ca.Cert.Raw}, PrivateKey: key}
	key2 := newKey(t)
	resp, body = e.post(t, e.client(next), "simplereenroll", reenrollCSR(t, key2, renewed, true), nil)
	e.checkIssued(t, resp, body, key2, e.thing)
	got, _ := e.st.GetThing(context.Background(), e.thing.ID)
	if len(got.Certificates) != 3 {
		t.Errorf("the thing should record its three certificates: %+v", got.Certificates)
	}
	audit, _ := e.st.ListAudit(context.Background(), store.AuditQuery{Target: &store.Ref{Kind: store.KindThing, ID: e.thing.ID}})
	if !slices.ContainsFunc(audit, func(a store.AuditRecord) bool { return a.Action == "thing.update" && a.Actor == "thing:"+e.thing.ID }) {
		t.Errorf("audit: %+v", audit)
	}
}

func TestReenrollRefusals(t *testing.T) {
	e := newEnv(t)
	pair, _, _ := e.deviceCert(t, e.thing)
	leaf := pair.Leaf
	other := e.newThing(t, "SN-0002")
	otherPair, _, _ := e.deviceCert(t, other)
	rogue := newTestCA(t, "Rogue CA").issue(t, leaf.Subject, pki.ThingURIPrefix+e.thing.ID)
	uri, _ := url.Parse(pki.ThingURIPrefix + other.ID)
	otherSAN, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{RawSubject: leaf.RawSubject, URIs: []*url.URL{uri}}, newKey(t))
	for _, tc := range []struct {
		name   string
		client *http.Client
		csr    string
		auth   func(*http.Request)
		want   int
		text   string
	}{
		{"no client certificate", e.client(), reenrollCSR(t, newKey(t), leaf, false), nil, 401, "present it as the TLS client certificate"},
		{"an enrollment token instead", e.client(), reenrollCSR(t, newKey(t), leaf, false), bearer(e.token(t, e.thing)), 401, "TLS client certificate"},
		{"another CA", e.client(rogue), reenrollCSR(t, newKey(t), leaf, false), nil, 401, "does not chain"},
		{"different subject", e.client(pair), csrBody(t, newKey(t), pkix.Name{CommonName: "SN-0001", SerialNumber: "SN-0002"}), nil, 400, "subject"},
		{"empty subject", e.client(pair), csrBody(t, newKey(t), pkix.Name{}), nil, 400, "subject"},
		{"another thing's subject", e.client(pair), reenrollCSR(t, newKey(t), otherPair.Leaf, false), nil, 400, "subject"},
		{"another thing's URI", e.client(pair), base64.StdEncoding.EncodeToString(otherSAN), nil, 400, "alternative names"},
	} {
		resp, body := e.post(t, tc.client, "simplereenroll", tc.csr, tc.auth)
		if resp.StatusCode != tc.want || !strings.Contains(body, tc.text) {
			t.Errorf("%s: %d %q, want %d with %q", tc.name, resp.StatusCode, body, tc.want, tc.text)
		}
	}
	for name, tc := range badCSRs(t) {
		resp, body := e.post(t, e.client(pair), "simplereenroll", tc.body, nil)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tc.text) {
			t.Errorf("%s: %d %q, want 400 with %q", name, resp.StatusCode, body, tc.text)
		}
	}
	// A disabled thing renews nothing.
	if _, err := e.id.UpdateThing(context.Background(), "test", e.thing.ID, 0, func(th *store.Thing) error {
		th.Status = store.StatusDisabled
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if resp, body := e.post(t, e.client(pair), "simplereenroll", reenrollCSR(t, newKey(t), leaf, false), nil); resp.StatusCode != 403 {
		t.Errorf("disabled thing: %d %s", resp.StatusCode, body)
	}
}

// A manufacturer's bootstrap certificate enrolls (the thing is provisioned
// from the CA's template) but renews nothing; the platform's certificate
// renews but does not enroll.
func TestBootstrapCertificate(t *testing.T) {
	e := newEnv(t)
	acme := newTestCA(t, "Acme Devices CA")
	if _, err := e.certs.AddCA(context.Background(), "admin:test", certauth.CASpec{Name: "Acme", Certificate: acme.pem(),
		Template: store.ProvisioningTemplate{Manufacturer: "Acme", Model: "Speaker", SerialFrom: certauth.SerialFromSerialNumber}}); err != nil {
		t.Fatal(err)
	}
	boot := acme.issue(t, pkix.Name{CommonName: "Acme speaker", SerialNumber: "ACME-42"})
	key := newKey(t)
	resp, body := e.post(t, e.client(boot), "simpleenroll", csrBody(t, key, pkix.Name{}), nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("bootstrap enrollment: %d %s", resp.StatusCode, body)
	}
	leaf := issued(t, body)[0]
	th, err := e.st.GetThing(context.Background(), sdk.ThingID(leaf))
	if err != nil || th.SerialNumber != "ACME-42" || th.Manufacturer != "Acme" {
		t.Fatalf("provisioned thing %+v %v", th, err)
	}
	e.checkIssued(t, resp, body, key, th)
	if resp, body := e.post(t, e.client(boot), "simplereenroll", csrBody(t, newKey(t), boot.Leaf.Subject), nil); resp.StatusCode != 403 {
		t.Errorf("bootstrap certificate on simplereenroll: %d %s", resp.StatusCode, body)
	}
	platform := tls.Certificate{Certificate: [][]byte{leaf.Raw, e.ca.Cert.Raw}, PrivateKey: key}
	if resp, body := e.post(t, e.client(platform), "simpleenroll", csrBody(t, newKey(t), pkix.Name{}), nil); resp.StatusCode != 403 || !strings.Contains(body, "simplereenroll") {
		t.Errorf("platform certificate on simpleenroll: %d %s", resp.StatusCode, body)
	}
	// HTTP credentials decide over the connection's certificate.
	key2 := newKey(t)
	resp, body = e.post(t, e.client(boot), "simpleenroll", csrBody(t, key2, pkix.Name{}), bearer(e.token(t, e.thing)))
	e.checkIssued(t, resp, body, key2, e.thing)
}

// reenrollCSR is a CSR for key with the subject of cur, and its SANs when sans.
func reenrollCSR(t testing.TB, key *ecdsa.PrivateKey, cur *x509.Certificate, sans bool) string {
	t.Helper()
	tmpl := &x509.CertificateRequest{RawSubject: cur.RawSubject}
	if sans {
		tmpl.URIs = cur.URIs
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

// A spent token cannot be used again under another spelling of the same
// bytes (the unused bits of the last base64 character).
func TestSpentTokenHasNoOtherSpelling(t *testing.T) {
	e := newEnv(t)
	th, err := e.id.CreateThing(context.Background(), "test", &store.Thing{Meta: store.Meta{ID: "speaker-10"}, SerialNumber: "SN-10"})
	if err != nil {
		t.Fatal(err)
	}
	tok := e.token(t, th)
	if (len(tok)-len(TokenPrefix))%4 == 0 {
		t.Fatal("the test needs a token whose last character has unused bits")
	}
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	last := strings.IndexByte(alphabet, tok[len(tok)-1])
	variant := tok[:len(tok)-1] + string(alphabet[last^1])
	key := newKey(t)
	resp, body := e.post(t, e.client(), "simpleenroll", csrBody(t, key, pkix.Name{}), bearer(tok))
	e.checkIssued(t, resp, body, key, th)
	resp, body = e.post(t, e.client(), "simpleenroll", csrBody(t, newKey(t), pkix.Name{}), bearer(variant))
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("another spelling of a spent token: %d %s", resp.StatusCode, body)
	}
}

// A device renewing in a loop gets maxLiveCerts certificates, then 409; an
// administrator's token still enrolls it.
func TestReenrollLoopIsBounded(t *testing.T) {
	e := newEnv(t)
	pair, _, _ := e.deviceCert(t, e.thing)
	c := e.client(pair)
	n := 0
	for ; n <= maxLiveCerts; n++ {
		resp, body := e.post(t, c, "simplereenroll", reenrollCSR(t, newKey(t), pair.Leaf, false), nil)
		if resp.StatusCode == http.StatusConflict && strings.Contains(body, "misbehaving") {
			break
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("renewal %d: %d %s", n, resp.StatusCode, body)
		}
	}
	if n != maxLiveCerts-1 { // the factory certificate is one of them
		t.Fatalf("%d renewals before the refusal, want %d", n, maxLiveCerts-1)
	}
	key := newKey(t)
	resp, body := e.post(t, c, "simpleenroll", csrBody(t, key, pkix.Name{}), bearer(e.token(t, e.thing)))
	e.checkIssued(t, resp, body, key, e.thing)
}
