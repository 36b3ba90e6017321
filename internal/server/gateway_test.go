package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/tokens"
)

// lockedBuffer is the operator's output, written by Serve while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// `thingid serve` with the gateway on: its own TLS listener with the
// platform's certificate, routes from home/routes, tokens of the platform.
func TestServeStartsTheGateway(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"path": r.URL.Path, "subject": r.Header.Get("X-Thingid-Subject")})
	}))
	defer upstream.Close()
	cfg := config.Default()
	cfg.Home = t.TempDir()
	cfg.Gateway.Enabled = true
	cfg.Gateway.Address = "127.0.0.1:0"
	cfg.MQTT.TLS.Address = "127.0.0.1:0" // tests run in parallel, and e2e plays the documents on the default ports
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cfg.Gateway.Routes, 0o700); err != nil {
		t.Fatal(err)
	}
	routes := "routes:\n  - {name: api, match: {pathPrefix: /api}, upstream: {url: \"" + upstream.URL + "\", stripPrefix: true}, filters: [oauth2]}\n"
	if err := os.WriteFile(filepath.Join(cfg.Gateway.Routes, "api.yaml"), []byte(routes), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out := &lockedBuffer{}
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx, ln, slog.New(slog.DiscardHandler), out) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		p.Close()
	}()
	var addr string
	re := regexp.MustCompile(`thingid gateway is serving on https://(\S+) `)
	for deadline := time.Now().Add(20 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if m := re.FindStringSubmatch(out.String()); m != nil {
			addr = m[1]
		}
	}
	if addr == "" {
		t.Fatalf("the gateway's address was not printed:\n%s", out)
	}

	ca, err := os.ReadFile(filepath.Join(cfg.Home, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "localhost"}}}
	tk, cleanup, err := p.newTokens(ctx, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer cleanup()
	tok, err := tk.issuer.AccessToken(tokens.Claims{Subject: "user-1", ClientID: "app", Audience: []string{cfg.Gateway.Audience},
		GrantID: "grant-1", ExpiresAt: time.Now().Add(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	call := func(tok string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+"/api/things", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := call(tok); code != http.StatusOK || body != `{"path":"/things","subject":"user-1"}`+"\n" {
		t.Fatalf("through the gateway: %d %s", code, body)
	}
	if code, _ := call(""); code != http.StatusUnauthorized {
		t.Fatalf("without a token: %d", code)
	}
}
