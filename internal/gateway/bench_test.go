package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/internal/tokens"
)

// cannedUpstream answers every request at once, in memory, as the bench's
// upstream does over the network: what remains is the proxy's own work.
type cannedUpstream struct{}

const cannedBody = `{"ok":true,"temperature":21.5}` + "\n"

func (cannedUpstream) RoundTrip(r *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header:        http.Header{"Content-Type": {"application/json"}},
		Body:          io.NopCloser(strings.NewReader(cannedBody)),
		ContentLength: int64(len(cannedBody)),
		Request:       r,
	}, nil
}

// BenchmarkServeHTTP is one request through the gateway, without the
// network, next to the standard library's reverse proxy alone: the
// difference is the gateway's own work (go test -bench ServeHTTP -benchmem);
// JWT (the oauth2 filter) against UMA (the uma filter with an RPT) is what
// the uma filter costs more.
func BenchmarkServeHTTP(b *testing.B) {
	e := newEnv(b, `
routes:
  - name: jwt
    match: {pathPrefix: /jwt}
    upstream: {url: "http://upstream.internal/api", stripPrefix: true}
    filters:
      - oauth2: {scopes: {"*": [telemetry]}}
  - name: throttled
    match: {pathPrefix: /throttled}
    upstream: {url: "http://upstream.internal/api", stripPrefix: true}
    filters:
      - oauth2: {scopes: {"*": [telemetry]}}
      - throttle:
          key: [thing, subject]
          rate: {requests: 1000000000, per: 1s}
  - name: jwt-pattern
    match: {pathPattern: "/jwtp/{resource}/telemetry"}
    upstream: {url: "http://upstream.internal/api", rewrite: /telemetry}
    filters:
      - oauth2: {scopes: {"*": [telemetry]}}
  - name: uma
    match: {pathPattern: "/uma/{resource}/telemetry"}
    upstream: {url: "http://upstream.internal/api", rewrite: /telemetry}
    filters:
      - uma: {resourceServer: music, resource: "{resource}", scopes: {"*": [telemetry]}}
`, withUMA, func(o *Options) { o.Transport = cannedUpstream{} })
	auth := "Bearer " + e.token("telemetry")
	// An RPT of a few permissions, the one asked for last.
	rpt := "Bearer " + e.rpt(tokens.Permission{ResourceID: "r1", Scopes: []string{"read"}}, tokens.Permission{ResourceID: "r2", Scopes: []string{"play"}},
		tokens.Permission{ResourceID: "thermostat-7", Scopes: []string{"read", "telemetry"}, ExpiresAt: time.Now().Add(time.Hour).Unix()})
	bare := &httputil.ReverseProxy{
		Rewrite:    func(pr *httputil.ProxyRequest) { pr.SetURL(&url.URL{Scheme: "http", Host: "upstream.internal"}) },
		Transport:  cannedUpstream{},
		BufferPool: bufferPool{},
	}
	for _, c := range []struct {
		name, auth string
		h          http.Handler
		path       string
	}{
		{"ReverseProxy alone", auth, bare, "/api/telemetry"},
		{"JWT", auth, e.g, "/jwt/telemetry"},
		{"JWT+throttle", auth, e.g, "/throttled/telemetry"},
		{"JWT pattern", auth, e.g, "/jwtp/thermostat-7/telemetry"}, // the UMA route's match and rewrite, with oauth2
		{"UMA", rpt, e.g, "/uma/thermostat-7/telemetry"},
	} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9443"+c.path, nil)
				r.Header.Set("Authorization", c.auth)
				r.Header.Set("User-Agent", "bench")
				r.Header.Set("Accept", "*/*")
				w := httptest.NewRecorder()
				c.h.ServeHTTP(w, r)
				if w.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", c.name, w.Code, w.Body)
				}
			}
		})
	}
}
