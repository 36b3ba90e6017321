package oauth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	jwkcert "github.com/lestrrat-go/jwx/v3/cert"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/secrets"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/internal/tokens"
)

// mtlsEnv is env with the platform's device CA and certificate checks.
type mtlsEnv struct {
	*env
	ca    *pki.DeviceCA
	certs *certauth.Checker
}

func newMTLSEnv(t testing.TB) *mtlsEnv { return newMTLSEnvWith(t) }

func newMTLSEnvWith(t testing.TB, tweak ...func(*Options)) *mtlsEnv {
	t.Helper()
	var key secrets.Key
	copy(key[:], testKey)
	dir := t.TempDir()
	root, err := pki.LoadOrCreateCA(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := root.DeviceCA(dir, key)
	if err != nil {
		t.Fatal(err)
	}
	var chk *certauth.Checker
	e := newEnv(t, append([]func(*Options){func(o *Options) {
		var err error
		chk, err = certauth.New(context.Background(), certauth.Options{
			Store: o.Store, Identity: o.Identities.(*identity.Service), DeviceCA: ca, Bus: o.Bus, Log: quiet})
		if err != nil {
			t.Fatalf("certauth: %v", err)
		}
		t.Cleanup(chk.Close)
		o.Certificates = chk
		o.ThingScopes = []string{"telemetry:write"}
	}}, tweak...)...)
	return &mtlsEnv{env: e, ca: ca, certs: chk}
}

// deviceCert issues a platform certificate for thing.
func (e *mtlsEnv) deviceCert(t *testing.T, thing *store.Thing) tls.Certificate {
	t.Helper()
	dc, err := e.ca.IssueDevice(thing.ID, thing.SerialNumber, 0)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: dc.Chain, PrivateKey: dc.Key, Leaf: dc.Leaf}
}

// withCert is a client of e.srv presenting cert.
func (e *mtlsEnv) withCert(cert tls.Certificate) *http.Client {
	c := *e.srv.Client()
	tr := c.Transport.(*http.Transport).Clone()
	tr.TLSClientConfig.Certificates = []tls.Certificate{cert}
	c.Transport = tr
	return &c
}

// selfSigned is a self-signed client certificate valid from nb to na.
func selfSigned(t *testing.T, nb, na time.Time) (tls.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	priv, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "self"},
		NotBefore: nb, NotAfter: na, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}, priv
}

func (e *mtlsEnv) tokenFor(t *testing.T, c *http.Client, clientID string) (*http.Response, string) {
	t.Helper()
	return e.post(t, c, "/oauth2/token", url.Values{"grant_type": {GrantClientCredentials}, "client_id": {clientID}})
}

// TestTLSClientAuth: a thing calls home with its factory certificate and the
// real x/oauth2 client; its token is bound to that certificate.
func TestTLSClientAuth(t *testing.T) {
	e := newMTLSEnv(t)
	cert := e.deviceCert(t, e.speaker)
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, e.withCert(cert))
	cc := clientcredentials.Config{ClientID: e.speaker.ID, TokenURL: e.srv.URL + "/oauth2/token", AuthStyle: oauth2.AuthStyleInParams}
	tok, err := cc.Token(ctx)
	if err != nil {
		t.Fatalf("client credentials over mutual TLS: %v", err)
	}
	if tok.TokenType != "Bearer" {
		t.Errorf("token_type %q, want Bearer (RFC 8705 §3)", tok.TokenType)
	}
	claims, err := e.verifier.Inspect(ctx, tok.AccessToken, tokens.VerifyOptions{Audience: e.srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	if claims.ClientID != e.speaker.ID || claims.Subject != e.speaker.ID || claims.ThingID != e.speaker.ID {
		t.Errorf("claims %+v: want the thing as client, subject and thing", claims)
	}
	if got := strings.Join(claims.Scope, " "); got != "telemetry:write" {
		t.Errorf("scope %q, want the thing scopes", got)
	}
	if claims.Confirmation == nil || claims.Confirmation.X5TS256 != tokens.CertThumbprint(cert.Leaf) {
		t.Fatalf("cnf %+v: want x5t#S256 of the client certificate", claims.Confirmation)
	}
	if _, err := e.verifier.Verify(ctx, tokens.FromConnection(tok.AccessToken, nil), tokens.VerifyOptions{Audience: e.srv.URL}); !errors.Is(err, tokens.ErrBinding) {
		t.Errorf("the bound token without its certificate: %v, want a binding refusal", err)
	}
	if _, err := e.verifier.Verify(ctx, tokens.FromConnection(tok.AccessToken, []*x509.Certificate{cert.Leaf}), tokens.VerifyOptions{Audience: e.srv.URL}); err != nil {
		t.Errorf("the bound token failed with its certificate: %v", err)
	}
	m := e.s.Metadata()
	if !m.TLSClientCertificateBoundAccessTokens || !strings.Contains(strings.Join(m.TokenEndpointAuthMethodsSupported, " "), "tls_client_auth") {
		t.Errorf("metadata does not advertise mutual TLS: %+v", m)
	}
}

// TestTLSClientAuthRefusals tries to get a thing's token without its certificate.
func TestTLSClientAuthRefusals(t *testing.T) {
	e := newMTLSEnv(t)
	ctx := context.Background()
	other, err := e.ids.CreateThing(ctx, "test", &store.Thing{Type: store.ThingDevice, Manufacturer: "Acme", Model: "Speaker-1",
		SerialNumber: "SN-0002", Status: store.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	stranger, _ := selfSigned(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	cases := []struct {
		name   string
		client *http.Client
		id     string
		want   string
	}{
		{"no certificate", e.srv.Client(), e.speaker.ID, "mutual TLS"},
		{"certificate of another thing", e.withCert(e.deviceCert(t, other)), e.speaker.ID, "another thing"},
		{"self-signed certificate, no registered keys", e.withCert(stranger), e.speaker.ID, "refused"},
		{"unknown client id", e.withCert(e.deviceCert(t, e.speaker)), "no-such-client", "failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp, body := e.tokenFor(t, c.client, c.id)
			if resp.StatusCode != http.StatusUnauthorized || oauthError(t, body) != "invalid_client" || !strings.Contains(body, c.want) {
				t.Fatalf("%d %s: want 401 invalid_client mentioning %q", resp.StatusCode, body, c.want)
			}
		})
	}

	t.Run("disabled thing", func(t *testing.T) {
		cert := e.deviceCert(t, other)
		if resp, body := e.tokenFor(t, e.withCert(cert), other.ID); resp.StatusCode != http.StatusOK {
			t.Fatalf("before disabling: %d %s", resp.StatusCode, body)
		}
		if _, err := e.ids.UpdateThing(ctx, "test", other.ID, 0, func(th *store.Thing) error { th.Status = store.StatusDisabled; return nil }); err != nil {
			t.Fatal(err)
		}
		resp, body := e.tokenFor(t, e.withCert(cert), other.ID)
		if resp.StatusCode != http.StatusUnauthorized || oauthError(t, body) != "invalid_client" {
			t.Fatalf("disabled thing got %d %s", resp.StatusCode, body)
		}
	})

	t.Run("devices may not introspect", func(t *testing.T) {
		// Not even the token issued to it: a device is refused before any
		// token is looked at.
		device := e.withCert(e.deviceCert(t, e.speaker))
		resp, body := e.tokenFor(t, device, e.speaker.ID)
		var tr tokenResponse
		if err := json.Unmarshal([]byte(body), &tr); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("the device's token: %d %s", resp.StatusCode, body)
		}
		resp, body = e.post(t, device, "/oauth2/introspect", url.Values{"client_id": {e.speaker.ID}, "token": {tr.AccessToken}})
		if resp.StatusCode != http.StatusUnauthorized || oauthError(t, body) != "invalid_client" || strings.Contains(body, "active") {
			t.Fatalf("a thing introspected its own token: %d %s", resp.StatusCode, body)
		}
	})
}

// TestSelfSignedTLSClientAuth: a registered client proves a registered key
// with a self-signed certificate (RFC 8705 §2.2).
func TestSelfSignedTLSClientAuth(t *testing.T) {
	e := newMTLSEnv(t)
	now := time.Now()
	cert, priv := selfSigned(t, now.Add(-time.Hour), now.Add(time.Hour))
	pub, _ := jwk.Import(&priv.PublicKey)
	_ = pub.Set(jwk.AlgorithmKey, "ES256")
	jwks, _ := json.Marshal(map[string]any{"keys": []any{pub}})
	c, _ := e.client(t, ClientSpec{Name: "gateway box", TokenEndpointAuthMethod: methodSelfSignedTLS,
		GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}, JWKS: jwks})

	resp, body := e.tokenFor(t, e.withCert(cert), c.ID)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("self-signed client: %d %s", resp.StatusCode, body)
	}
	var tr tokenResponse
	_ = json.Unmarshal([]byte(body), &tr)
	claims, err := e.verifier.Inspect(context.Background(), tr.AccessToken, tokens.VerifyOptions{Audience: e.srv.URL})
	if err != nil || claims.Confirmation == nil || claims.Confirmation.X5TS256 != tokens.CertThumbprint(cert.Leaf) {
		t.Fatalf("claims %+v, %v: want bound to the self-signed certificate", claims, err)
	}

	otherCert, _ := selfSigned(t, now.Add(-time.Hour), now.Add(time.Hour))
	expired, _ := selfSigned(t, now.Add(-2*time.Hour), now.Add(-time.Hour))
	for name, cl := range map[string]*http.Client{
		"another key":         e.withCert(otherCert),
		"no certificate":      e.srv.Client(),
		"expired certificate": e.withCert(expired),
	} {
		resp, body := e.tokenFor(t, cl, c.ID)
		if resp.StatusCode != http.StatusUnauthorized || oauthError(t, body) != "invalid_client" {
			t.Errorf("%s: %d %s, want invalid_client", name, resp.StatusCode, body)
		}
	}

	// The same key in x5c form: only that very certificate matches.
	x5c, _ := jwk.Import(&priv.PublicKey)
	_ = x5c.Set(jwk.AlgorithmKey, "ES256")
	var chain jwkcert.Chain
	if err := chain.Add(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})); err != nil {
		t.Fatal(err)
	}
	if err := x5c.Set(jwk.X509CertChainKey, &chain); err != nil {
		t.Fatal(err)
	}
	jwks, _ = json.Marshal(map[string]any{"keys": []any{x5c}})
	c2, _ := e.client(t, ClientSpec{Name: "x5c box", TokenEndpointAuthMethod: methodSelfSignedTLS,
		GrantTypes: []string{GrantClientCredentials}, JWKS: jwks})
	if resp, body := e.tokenFor(t, e.withCert(cert), c2.ID); resp.StatusCode != http.StatusOK {
		t.Errorf("x5c match: %d %s", resp.StatusCode, body)
	}
	sameKey := reissue(t, cert, priv)
	if resp, body := e.tokenFor(t, e.withCert(sameKey), c2.ID); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("another certificate of the x5c key: %d %s, want 401", resp.StatusCode, body)
	}
}

// TestTLSClientAuthRegistration: tls_client_auth names a thing; keys are
// required for self-signed certificates.
func TestTLSClientAuthRegistration(t *testing.T) {
	e := newMTLSEnv(t)
	for _, spec := range []ClientSpec{
		{Name: "x", TokenEndpointAuthMethod: methodTLSClientAuth, GrantTypes: []string{GrantClientCredentials}},
		{Name: "y", TokenEndpointAuthMethod: methodSelfSignedTLS, GrantTypes: []string{GrantClientCredentials}},
	} {
		if _, _, err := e.s.CreateClient(context.Background(), "test", spec); err == nil {
			t.Errorf("%s without thing_id or jwks was registered", spec.TokenEndpointAuthMethod)
		}
	}
	c, _ := e.client(t, ClientSpec{Name: "speaker app", TokenEndpointAuthMethod: methodTLSClientAuth,
		GrantTypes: []string{GrantClientCredentials}, Scopes: []string{"telemetry:write"}, ThingID: e.speaker.ID})
	if resp, body := e.tokenFor(t, e.withCert(e.deviceCert(t, e.speaker)), c.ID); resp.StatusCode != http.StatusOK {
		t.Errorf("registered tls_client_auth client: %d %s", resp.StatusCode, body)
	}
}

// reissue is another self-signed certificate of the same key.
func reissue(t *testing.T, c tls.Certificate, priv crypto.Signer) tls.Certificate {
	t.Helper()
	tmpl := *c.Leaf
	tmpl.SerialNumber = big.NewInt(8)
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: priv, Leaf: leaf}
}

// TestCallHome: a thing learns over mutual TLS whether it is paired and when
// to renew its certificate; nobody else learns anything.
func TestCallHome(t *testing.T) {
	e := newMTLSEnv(t)
	ctx := context.Background()
	cert := e.deviceCert(t, e.speaker)
	get := func(c *http.Client) (int, callHomeView) {
		resp, body := e.do(t, c, http.MethodGet, pathCallHome, "", "")
		var v callHomeView
		if resp.StatusCode == http.StatusOK {
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				t.Fatal(err)
			}
		}
		return resp.StatusCode, v
	}
	code, v := get(e.withCert(cert))
	if code != http.StatusOK || v.ThingID != e.speaker.ID || v.SerialNumber != "SN-0001" || v.Paired {
		t.Fatalf("call home before pairing: %d %+v", code, v)
	}
	if !v.Certificate.RenewAfter.After(cert.Leaf.NotBefore) || !v.Certificate.RenewAfter.Before(cert.Leaf.NotAfter) {
		t.Errorf("renew_after %s is not within the certificate's validity", v.Certificate.RenewAfter)
	}
	if v.Certificate.Thumbprint != tokens.CertThumbprint(cert.Leaf) {
		t.Errorf("thumbprint %q", v.Certificate.Thumbprint)
	}
	if err := e.ids.WithTx(ctx, "test", func(tx *identity.Tx) error {
		return tx.AddRelationship(ctx, ownerRel(e.alice.ID, e.speaker.ID))
	}); err != nil {
		t.Fatal(err)
	}
	if code, v = get(e.withCert(cert)); code != http.StatusOK || !v.Paired || v.PairedSince == nil {
		t.Fatalf("call home after pairing: %d %+v", code, v)
	}
	stranger, _ := selfSigned(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	for name, c := range map[string]*http.Client{"no certificate": e.srv.Client(), "unknown CA": e.withCert(stranger)} {
		if code, _ := get(c); code != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, code)
		}
	}
}

// TestThingSession: a thing opens a session with its certificate and calls
// home with it alone; a disable or a revocation of that certificate ends
// it at once, and a forged or expired one is refused.
func TestThingSession(t *testing.T) {
	var now atomic.Pointer[time.Time]
	start := time.Now()
	now.Store(&start)
	e := newMTLSEnvWith(t, func(o *Options) { o.Now = func() time.Time { return *now.Load() } })
	ctx := context.Background()
	cert := e.deviceCert(t, e.speaker)
	resp, body := e.post(t, e.withCert(cert), pathThingSession, nil)
	var opened struct {
		Session   string `json:"session"`
		ThingID   string `json:"thingId"`
		ExpiresIn int64  `json:"expiresIn"`
	}
	if err := json.Unmarshal([]byte(body), &opened); err != nil || resp.StatusCode != http.StatusCreated || opened.ThingID != e.speaker.ID || opened.ExpiresIn <= 0 {
		t.Fatalf("opening a session: %d %s", resp.StatusCode, body)
	}
	if c := resp.Cookies(); len(c) != 1 || c[0].Name != thingSessionCookie || !c[0].Secure || !c[0].HttpOnly || c[0].SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie %+v", c)
	}
	call := func(session string) (int, string) {
		resp, body := e.do(t, e.srv.Client(), http.MethodGet, pathCallHome, "", "", "Authorization", "ThingSession "+session)
		return resp.StatusCode, body
	}
	if code, body := call(opened.Session); code != http.StatusOK || !strings.Contains(body, e.speaker.ID) {
		t.Fatalf("call home with the session: %d %s", code, body)
	}
	if resp, _ := e.post(t, e.srv.Client(), pathThingSession, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a session without a certificate: %d", resp.StatusCode)
	}
	forged := []byte(opened.Session) // one character of the payload changed
	forged[10] = map[bool]byte{true: 'B', false: 'A'}[forged[10] == 'A']
	for name, s := range map[string]string{"tampered": string(forged), "garbage": "tts_x.y", "empty": "tts_"} {
		if code, _ := call(s); code != http.StatusUnauthorized {
			t.Errorf("%s session: %d", name, code)
		}
	}
	later := start.Add(time.Hour)
	now.Store(&later)
	if code, body := call(opened.Session); code != http.StatusUnauthorized || !strings.Contains(body, "expired") {
		t.Errorf("expired session: %d %s", code, body)
	}
	now.Store(&start)

	// Revoking the certificate the session was opened with ends it.
	if _, err := e.certs.Revoke(ctx, "test", certauth.Revocation{Certificate: cert.Leaf}); err != nil {
		t.Fatal(err)
	}
	if code, body := call(opened.Session); code != http.StatusUnauthorized || !strings.Contains(body, "revoked") {
		t.Errorf("session of a revoked certificate: %d %s", code, body)
	}
	// So does disabling the thing.
	other, err := e.ids.CreateThing(ctx, "test", &store.Thing{Type: store.ThingDevice, Manufacturer: "Acme", Model: "Speaker-1",
		SerialNumber: "SN-0003", Status: store.StatusActive})
	if err != nil {
		t.Fatal(err)
	}
	_, body = e.post(t, e.withCert(e.deviceCert(t, other)), pathThingSession, nil)
	_ = json.Unmarshal([]byte(body), &opened)
	if code, _ := call(opened.Session); code != http.StatusOK {
		t.Fatalf("second thing's session: %d", code)
	}
	if _, err := e.ids.UpdateThing(ctx, "test", other.ID, 0, func(th *store.Thing) error { th.Status = store.StatusDisabled; return nil }); err != nil {
		t.Fatal(err)
	}
	if code, body := call(opened.Session); code != http.StatusUnauthorized || !strings.Contains(body, "disabled") {
		t.Errorf("session of a disabled thing: %d %s", code, body)
	}
}

// FuzzThingSession: whatever a client sends as a session, it is refused
// (only the server's seal opens one) and nothing panics.
func FuzzThingSession(f *testing.F) {
	e := newMTLSEnv(f)
	for _, s := range []string{"", "tts_", "tts_.", "tts_e30.AAAA", "tts_eyJ0IjoieCJ9.", "tts_" + strings.Repeat("A", 2000)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if id, err := e.s.thingSession(context.Background(), raw); err == nil || id != nil {
			t.Fatalf("session %q accepted: %+v", raw, id)
		}
	})
}
