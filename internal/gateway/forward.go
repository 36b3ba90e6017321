package gateway

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"net/http"
	"net/url"
	"strings"
)

// forwardAuth is the endpoint a web server asks before serving a request
// itself (nginx auth_request, Traefik ForwardAuth): the original request is
// described by headers, matched against the routes and put through the
// route's filters; the answer is 200 with the identity headers, or the
// filters' 401/403/429. A request no route serves is 403: only what a route
// allows passes.
//
// The original method, URI and host come from X-Forwarded-Method,
// X-Forwarded-Uri and X-Forwarded-Host (Traefik) or X-Original-Method and
// X-Original-URI with Host (nginx); the scheme from X-Forwarded-Proto
// (https when absent). A trusted proxy may pass the client's certificate in
// X-Forwarded-Tls-Client-Cert (Traefik) or X-Ssl-Client-Cert (nginx
// $ssl_client_escaped_cert).
func (g *Gateway) forwardAuth(w http.ResponseWriter, r *http.Request, x *exchange) {
	deny := func(status int, code, reason, detail string) {
		x.reason = reason
		writeProblem(w, status, code, detail)
	}
	method := first(r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Original-Method"))
	uri := first(r.Header.Get("X-Forwarded-Uri"), r.Header.Get("X-Original-Uri"))
	if method == "" || uri == "" {
		deny(http.StatusBadRequest, "invalid_request", "bad_request",
			"forward-auth needs the original request: X-Forwarded-Method and X-Forwarded-Uri, or X-Original-Method and X-Original-URI")
		return
	}
	u, err := url.ParseRequestURI(uri)
	if err != nil || u.Host != "" || !strings.HasPrefix(uri, "/") {
		deny(http.StatusBadRequest, "invalid_request", "bad_request", "the original URI must be a path with an optional query")
		return
	}
	proto := strings.ToLower(first(r.Header.Get("X-Forwarded-Proto"), "https"))
	if proto != "https" && proto != "http" {
		deny(http.StatusBadRequest, "invalid_request", "bad_request", "X-Forwarded-Proto must be http or https")
		return
	}
	host := first(r.Header.Get("X-Forwarded-Host"), r.Host)
	p, err := canonicalPath(u.EscapedPath())
	if err != nil {
		deny(http.StatusForbidden, "invalid_request", "bad_path", err.Error())
		return
	}
	f, _ := g.tbl.Load().lookup(canonicalHost(host), p, method)
	if f.route == nil {
		deny(http.StatusForbidden, "no_route", "no_route", "no route allows this request")
		return
	}
	orig := r.Clone(r.Context())
	orig.Method, orig.URL, orig.Host, orig.RequestURI = method, u, host, uri
	x.route, x.found, x.path = f.route, f, p
	// The proxy in front knows its names (nginx server_name, Traefik rules):
	// the forwarded origin is what DPoP proofs sign.
	x.origin = proto + "://" + host
	if g.trusted(peerHost(r)) {
		x.certs = forwardedCerts(r.Header)
	}
	f.route.auth.ServeHTTP(w, orig)
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// forwardedCerts reads the client certificate chain a proxy passed: URL-escaped
// PEM (nginx), or base64 DER blocks separated by commas, with or without
// PEM armour (Traefik). Nil when there is none or it does not parse.
func forwardedCerts(h http.Header) []*x509.Certificate {
	v := first(h.Get("X-Forwarded-Tls-Client-Cert"), h.Get("X-Ssl-Client-Cert"))
	if v == "" {
		return nil
	}
	if s, err := url.PathUnescape(v); err == nil {
		v = s
	}
	var chain []*x509.Certificate
	if strings.Contains(v, "-----BEGIN") {
		rest := []byte(v)
		for {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil
			}
			chain = append(chain, c)
		}
		return chain
	}
	for _, part := range strings.Split(v, ",") {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(part))
		if err != nil {
			return nil
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil
		}
		chain = append(chain, c)
	}
	return chain
}
