package sdk_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/sdk"
)

// musicService is a UMA resource server written from the UMA 2.0
// Federated Authorization recommendation only: it registers a playlist for
// its owner, answers a request without a sufficient RPT with a permission
// ticket (§4), and checks RPTs by introspection (§5), including their
// certificate binding (RFC 8705 §3.2).
type musicService struct {
	srv      *httptest.Server
	issuer   string
	platform *http.Client
	pat      string
	playlist string
	tickets  atomic.Int32 // permission tickets asked for
}

func startMusicService(t *testing.T, pl *platform, id, secret, owner string) *musicService {
	t.Helper()
	ms := &musicService{issuer: pl.url, platform: pl.client()}
	cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: pl.url + "/oauth2/token", Scopes: []string{"uma_protection"}}
	tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, ms.platform))
	if err != nil {
		t.Fatal(err)
	}
	ms.pat = tok.AccessToken
	var reg struct {
		ID string `json:"_id"`
	}
	if code := ms.call("/uma/resource_set", "application/json",
		`{"name":"Road trip","type":"https://music.example/playlist","resource_scopes":["play","edit"],"owner":"`+owner+`"}`, &reg); code != http.StatusCreated {
		t.Fatalf("registering the playlist: %d", code)
	}
	ms.playlist = reg.ID
	ms.srv = httptest.NewUnstartedServer(http.HandlerFunc(ms.serve))
	ms.srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
	ms.srv.StartTLS()
	t.Cleanup(ms.srv.Close)
	pl.roots.AddCert(ms.srv.Certificate())
	return ms
}

// call posts body to the platform with the PAT and decodes the answer; 0
// when there is none.
func (ms *musicService) call(path, ctype, body string, out any) int {
	req, _ := http.NewRequest(http.MethodPost, ms.issuer+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+ms.pat)
	req.Header.Set("Content-Type", ctype)
	resp, err := ms.platform.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(out) != nil {
		return 0
	}
	return resp.StatusCode
}

func (ms *musicService) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/foreign" {
		w.Header().Set("WWW-Authenticate", `UMA realm="music", as_uri="https://as.elsewhere.example", ticket="t1"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	if r.URL.Path != "/playlists/"+ms.playlist {
		http.NotFound(w, r)
		return
	}
	if ms.permitted(r) {
		io.WriteString(w, `{"name":"Road trip","tracks":["Born to Run","Roadrunner"]}`)
		return
	}
	var tk struct {
		Ticket string `json:"ticket"`
	}
	if code := ms.call("/uma/permission", "application/json",
		`{"resource_id":"`+ms.playlist+`","resource_scopes":["play"]}`, &tk); code != http.StatusCreated {
		http.Error(w, "no ticket", http.StatusBadGateway)
		return
	}
	ms.tickets.Add(1)
	w.Header().Set("WWW-Authenticate", `UMA realm="music", as_uri="`+ms.issuer+`", ticket="`+tk.Ticket+`"`)
	w.WriteHeader(http.StatusUnauthorized)
}

// permitted introspects the request's RPT: active, holding play on the
// playlist, and bound to the certificate the client presented.
func (ms *musicService) permitted(r *http.Request) bool {
	scheme, rpt, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	var in struct {
		Active      bool `json:"active"`
		Permissions []struct {
			ResourceID string   `json:"resource_id"`
			Scopes     []string `json:"resource_scopes"`
		} `json:"permissions"`
		Cnf struct {
			X5t string `json:"x5t#S256"`
		} `json:"cnf"`
	}
	if ms.call("/uma/introspect", "application/x-www-form-urlencoded", url.Values{"token": {rpt}}.Encode(), &in) != http.StatusOK || !in.Active {
		return false
	}
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return false
	}
	sum := sha256.Sum256(r.TLS.PeerCertificates[0].Raw)
	if in.Cnf.X5t != base64.RawURLEncoding.EncodeToString(sum[:]) {
		return false
	}
	for _, p := range in.Permissions {
		if p.ResourceID == ms.playlist && slices.Contains(p.Scopes, "play") {
			return true
		}
	}
	return false
}

// The speaker's owner asks for a playlist that a friend owns on a music
// service: the owner is asked to share first, the friend shares, the speaker
// plays it with a certificate-bound RPT, and the friend's revocation stops it.
func TestUMAClientPlaysSharedPlaylist(t *testing.T) {
	var musicID, musicSecret string
	pl := startPlatform(t, nil, func(p *server.Platform) {
		ctx := context.Background()
		srv, cleanup, err := p.OAuthAdmin(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		defer cleanup()
		c, secret, err := srv.CreateClient(ctx, "test", oauth.ClientSpec{Name: "music", GrantTypes: []string{"client_credentials"}, Scopes: []string{"uma_protection"}})
		if err != nil {
			t.Fatal(err)
		}
		musicID, musicSecret = c.ID, secret
		p.Config.UMA.TrustedResourceServers = []string{c.ID}
	})
	const pw = "correct horse battery staple"
	pl.user(t, "olivia", pw)
	pl.user(t, "frank", pw)
	ms := startMusicService(t, pl, musicID, musicSecret, "frank")

	_, certFile, keyFile := pl.device(t, "SPK-UMA-1", 0)
	c, err := sdk.New(sdk.Config{Server: pl.url, CertFile: certFile, KeyFile: keyFile, RootCAs: pl.roots})
	if err != nil {
		t.Fatal(err)
	}
	ts, _, err := pl.pair(t, c, "olivia", pw, "allow")
	if err != nil {
		t.Fatal(err)
	}
	hc := c.UMAClient(ts)
	play := func() (int, error) {
		resp, err := hc.Get(ms.srv.URL + "/playlists/" + ms.playlist)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, nil
	}

	// Nothing shared yet: frank is asked.
	_, err = play()
	var ue *sdk.UMAError
	if !errors.Is(err, sdk.ErrAccessRequested) || !errors.As(err, &ue) || ue.Ticket == "" || ue.Interval <= 0 {
		t.Fatalf("before the share: %v (%+v)", err, ue)
	}

	frank := pl.client()
	signin(t, pl, frank, "frank", pw)
	var shares struct {
		ID string `json:"id"`
	}
	if code := pl.jsonCall(t, frank, http.MethodPost, "/api/v1/uma/shares",
		`{"resourceId":"`+ms.playlist+`","user":"olivia","scopes":["play"]}`, &shares); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("frank shares: %d", code)
	}
	if code, err := play(); err != nil || code != http.StatusOK {
		t.Fatalf("after the share: %d %v", code, err)
	}
	asked := ms.tickets.Load()
	if code, err := play(); err != nil || code != http.StatusOK || ms.tickets.Load() != asked {
		t.Fatalf("the RPT should be kept: %d %v, tickets %d then %d", code, err, asked, ms.tickets.Load())
	}

	// A challenge of another authorization server is the caller's: the
	// owner's token is not spent on it.
	resp, err := hc.Get(ms.srv.URL + "/foreign")
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("foreign as_uri: %v %v", resp, err)
	}
	resp.Body.Close()

	// Frank revokes: the RPT stops, and the owner is asked again.
	if code := pl.jsonCall(t, frank, http.MethodDelete, "/api/v1/uma/shares/"+shares.ID, "", nil); code != http.StatusNoContent {
		t.Fatalf("frank revokes: %d", code)
	}
	if _, err := play(); !errors.Is(err, sdk.ErrAccessRequested) {
		t.Fatalf("after the revocation: %v", err)
	}
}

func signin(t *testing.T, pl *platform, c *http.Client, user, pw string) {
	t.Helper()
	creds, _ := json.Marshal(map[string]string{"userName": user, "password": pw})
	if code := pl.jsonCall(t, c, http.MethodPost, "/api/v1/signin", string(creds), nil); code != http.StatusOK {
		t.Fatalf("sign in %s: %d", user, code)
	}
}

// jsonCall sends a same-origin JSON request as a signed-in browser would.
func (pl *platform) jsonCall(t *testing.T, c *http.Client, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, pl.url+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Origin", pl.url)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode
}
