package gateway

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"golang.org/x/net/http/httpguts"

	"github.com/thingid/thingid/internal/refusal"
)

// Forwarding headers are how a proxy tells what it saw of a request: the
// client's address, the original method, URI, host and scheme, the client's
// certificate. Only a proxy in Options.TrustedProxies may say so: admit
// removes them from every other peer's request before any filter, the
// forward-auth endpoint or the upstream sees it, so no path of the gateway
// can read a forwarding header an untrusted client chose.

// ProxyKind names the web server in front of the forward-auth endpoint and
// with it the one set of headers the original request is read from.
type ProxyKind string

const (
	// ProxyNginx is nginx's auth_request with the snippet of docs/gateway.md.
	ProxyNginx ProxyKind = "nginx"
	// ProxyTraefik is Traefik's ForwardAuth middleware.
	ProxyTraefik ProxyKind = "traefik"
	// ProxyCaddy is Caddy's forward_auth directive.
	ProxyCaddy ProxyKind = "caddy"
	// ProxyEnvoy is Envoy's ext_authz filter with an HTTP service: the
	// original method, the original path after the path_prefix (the
	// forward-auth path) and the original Host.
	ProxyEnvoy ProxyKind = "envoy"
)

// ProxyKinds are the kinds the gateway knows, in the order the docs list them.
var ProxyKinds = []ProxyKind{ProxyNginx, ProxyTraefik, ProxyCaddy, ProxyEnvoy}

// headerSet is where one kind of proxy describes the original request. An
// empty method, uri or host means the forward-auth request's own (Envoy).
// The client's address is X-Forwarded-For for every kind.
type headerSet struct {
	method, uri, host, proto, cert string
}

var headerSets = map[ProxyKind]headerSet{
	ProxyNginx:   {method: "X-Original-Method", uri: "X-Original-Uri", host: "X-Forwarded-Host", proto: "X-Forwarded-Proto", cert: "X-Ssl-Client-Cert"},
	ProxyTraefik: {method: "X-Forwarded-Method", uri: "X-Forwarded-Uri", host: "X-Forwarded-Host", proto: "X-Forwarded-Proto", cert: "X-Forwarded-Tls-Client-Cert"},
	ProxyCaddy:   {method: "X-Forwarded-Method", uri: "X-Forwarded-Uri", host: "X-Forwarded-Host", proto: "X-Forwarded-Proto", cert: "X-Forwarded-Tls-Client-Cert"},
	ProxyEnvoy:   {proto: "X-Forwarded-Proto", cert: "X-Forwarded-Client-Cert"},
}

// The names one field goes by across the kinds: whichever a kind reads, a
// different value under another of them is a header the proxy passed on from
// the client, and is refused rather than silently ignored.
var (
	methodNames = []string{"X-Forwarded-Method", "X-Original-Method"}
	uriNames    = []string{"X-Forwarded-Uri", "X-Original-Uri"}
	hostNames   = []string{"X-Forwarded-Host"}
	certNames   = []string{"X-Ssl-Client-Cert", "X-Forwarded-Tls-Client-Cert", "X-Forwarded-Client-Cert"}
)

// ForwardingHeaders are the headers the gateway reads from a trusted proxy,
// whatever its kind: a proxy in front must set or clear each one, or a
// client's own would reach the gateway through it.
var ForwardingHeaders = slices.Concat([]string{"X-Forwarded-For", "X-Forwarded-Proto"}, methodNames, uriNames, hostNames, certNames)

// stripped are removed from an untrusted peer's request: those the gateway
// reads and those an upstream might believe because the gateway passed them.
var stripped = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range append(ForwardingHeaders, "Forwarded", "X-Real-Ip", "X-Forwarded-Port", "X-Forwarded-Prefix",
		"X-Forwarded-Server", "X-Forwarded-Tls-Client-Cert-Info", "X-Original-Url", "X-Client-Cert") {
		m[strings.ToLower(k)] = true
	}
	return m
}()

// admit is the gateway's one decision about forwarding headers, taken as a
// request arrives: a peer in TrustedProxies keeps them, any other loses them
// (also when spelled with underscores, which CGI-style upstreams read as the
// same name).
func (g *Gateway) admit(r *http.Request, x *exchange) {
	x.trusted = g.trusted(peerHost(r))
	if x.trusted {
		return
	}
	for k := range r.Header {
		if stripped[strings.ToLower(strings.ReplaceAll(k, "_", "-"))] {
			delete(r.Header, k)
		}
	}
}

// original is the request a proxy asks the forward-auth endpoint about.
type original struct {
	method, uri, host, proto string
	certs                    []*x509.Certificate
}

// readOriginal reads the original request from the headers of kind k; path
// is the forward-auth path (Envoy's path_prefix). r is a trusted proxy's. A
// bad forwarding header is a *refusal.FieldError naming it, for the answer.
func readOriginal(k ProxyKind, r *http.Request, path string) (original, error) {
	set, ok := headerSets[k]
	if !ok {
		return original{}, fmt.Errorf("unknown proxy kind %q", k)
	}
	var o original
	var err error
	if set.method == "" {
		o.method = r.Method
	} else if o.method, err = required(r.Header, set.method); err != nil {
		return o, err
	}
	if !validMethod(o.method) {
		return o, refusal.New(first(set.method, "the method"), "not an HTTP method")
	}
	if set.uri == "" {
		// Envoy's ext_authz asks path_prefix + the original path and query.
		uri, ok := strings.CutPrefix(r.RequestURI, path)
		if !ok || !strings.HasPrefix(uri, "/") {
			return o, refusal.New("the path", "Envoy's ext_authz asks for %s followed by the original path (set path_prefix: %s)", path, path)
		}
		o.uri = uri
	} else if o.uri, err = required(r.Header, set.uri); err != nil {
		return o, err
	}
	if u, err := url.ParseRequestURI(o.uri); err != nil || u.Host != "" || !strings.HasPrefix(o.uri, "/") {
		return o, refusal.New(first(set.uri, "the path"), "must be a path with an optional query")
	}
	if set.host == "" {
		o.host = r.Host
	} else if o.host, err = required(r.Header, set.host); err != nil {
		return o, err
	}
	if !httpguts.ValidHostHeader(o.host) || strings.Contains(o.host, ",") {
		return o, refusal.New(first(set.host, "Host"), "not a host")
	}
	if o.proto, err = required(r.Header, set.proto); err != nil {
		return o, err
	}
	if o.proto = strings.ToLower(o.proto); o.proto != "https" && o.proto != "http" {
		return o, refusal.New(set.proto, "must be http or https")
	}
	for _, f := range []struct {
		names      []string
		from, read string
	}{
		{methodNames, first(set.method, "the method"), o.method},
		{uriNames, first(set.uri, "the path"), o.uri},
		{hostNames, first(set.host, "Host"), o.host},
	} {
		for _, name := range f.names {
			if name == f.from {
				continue
			}
			if v, err := single(r.Header, name); err != nil {
				return o, err
			} else if v != "" && v != f.read {
				return o, refusal.New(name, "differs from %s, where gateway.forwardAuthProxy %s describes the request: the proxy passed on a header the client chose (see docs/gateway.md)", f.from, k)
			}
		}
	}
	raw, err := single(r.Header, set.cert)
	if err != nil {
		return o, err
	}
	for _, name := range certNames {
		if name == set.cert {
			continue
		}
		if v, err := single(r.Header, name); err != nil {
			return o, err
		} else if v != "" {
			return o, refusal.New(name, "gateway.forwardAuthProxy %s passes the client certificate in %s: the proxy passed on a header the client chose", k, set.cert)
		}
	}
	if raw == "" {
		return o, nil
	}
	if k == ProxyEnvoy {
		o.certs, err = xfccCerts(raw)
	} else {
		o.certs, err = parseCertChain(raw)
	}
	if err != nil {
		return o, refusal.New(set.cert, "%v", err)
	}
	return o, nil
}

// single is the one value of a header: "" when absent, an error when sent
// more than once (two values are two opinions, and the gateway holds none).
func single(h http.Header, name string) (string, error) {
	vs := h.Values(name)
	switch len(vs) {
	case 0:
		return "", nil
	case 1:
		return vs[0], nil
	}
	return "", refusal.New(name, "sent %d times", len(vs))
}

func required(h http.Header, name string) (string, error) {
	v, err := single(h, name)
	if err == nil && v == "" {
		err = refusal.New(name, "missing")
	}
	return v, err
}

func validMethod(m string) bool {
	return m != "" && !strings.ContainsFunc(m, func(r rune) bool { return !httpguts.IsTokenRune(r) })
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// parseCertChain reads a client certificate chain, leaf first: URL-escaped
// PEM (nginx $ssl_client_escaped_cert), or base64 DER blocks separated by
// commas, URL-escaped or not, with or without PEM armour (Traefik
// passTLSClientCert, Caddy's certificate_der_base64).
func parseCertChain(v string) ([]*x509.Certificate, error) {
	s, err := url.PathUnescape(v)
	if err != nil {
		return nil, errors.New("not URL-escaped")
	}
	var chain []*x509.Certificate
	if strings.Contains(s, "-----BEGIN") {
		rest := []byte(s)
		for {
			var b *pem.Block
			if b, rest = pem.Decode(rest); b == nil {
				break
			}
			if b.Type != "CERTIFICATE" {
				return nil, fmt.Errorf("a PEM block of type %q, want CERTIFICATE", b.Type)
			}
			c, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("certificate %d: %v", len(chain)+1, err)
			}
			chain = append(chain, c)
		}
		if len(chain) == 0 || strings.TrimSpace(string(rest)) != "" {
			return nil, errors.New("not a PEM certificate chain")
		}
		return chain, nil
	}
	for i, part := range strings.Split(s, ",") {
		der, err := base64.StdEncoding.DecodeString(strings.TrimSpace(part))
		if err != nil {
			return nil, fmt.Errorf("certificate %d: not base64", i+1)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %v", i+1, err)
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// xfccCerts reads the client certificate of Envoy's X-Forwarded-Client-Cert:
// one element (Envoy's forward_client_cert_details: SANITIZE_SET) whose
// Chain (else Cert) is the URL-encoded PEM.
func xfccCerts(v string) ([]*x509.Certificate, error) {
	el, err := parseXFCC(v)
	if err != nil {
		return nil, err
	}
	pemText, ok := el["chain"]
	if !ok {
		if pemText, ok = el["cert"]; !ok {
			return nil, errors.New("no Cert or Chain (set_current_client_cert_details: {cert: true})")
		}
	}
	s, err := url.PathUnescape(pemText)
	if err != nil || !strings.Contains(s, "-----BEGIN") {
		return nil, errors.New("Cert and Chain must be URL-encoded PEM")
	}
	return parseCertChain(s)
}

// parseXFCC reads one XFCC element: key=value pairs separated by ';', values
// optionally in double quotes with '\' escapes. More than one element
// (separated by ',') is an error: which proxy saw the client would be a
// guess. Values stay URL-encoded. Keys are lower case; By, Hash, Cert, Chain, Subject may each appear
// once, URI and DNS (one per name) any number of times.
func parseXFCC(v string) (map[string]string, error) {
	el := map[string]string{}
	pairs := 0
	for i := 0; i < len(v); {
		pairs++
		eq := strings.IndexByte(v[i:], '=')
		if eq <= 0 {
			return nil, errors.New("a pair without key=value")
		}
		key := strings.ToLower(strings.TrimSpace(v[i : i+eq]))
		if key == "" || strings.ContainsAny(key, ",;\"") {
			return nil, fmt.Errorf("bad key %q", key)
		}
		i += eq + 1
		var val strings.Builder
		if i < len(v) && v[i] == '"' {
			i++
			closed := false
			for i < len(v) && !closed {
				switch c := v[i]; c {
				case '\\':
					if i+1 == len(v) {
						return nil, errors.New("an escape at the end")
					}
					val.WriteByte(v[i+1])
					i += 2
				case '"':
					closed = true
					i++
				default:
					val.WriteByte(c)
					i++
				}
			}
			if !closed {
				return nil, errors.New("an unterminated quoted value")
			}
		} else {
			end := strings.IndexAny(v[i:], ";,")
			if end < 0 {
				end = len(v) - i
			}
			if strings.ContainsAny(v[i:i+end], "\"=") {
				return nil, fmt.Errorf("%s: an unquoted value with '\"' or '='", key)
			}
			val.WriteString(v[i : i+end])
			i += end
		}
		if key != "uri" && key != "dns" {
			if _, dup := el[key]; dup {
				return nil, fmt.Errorf("%s given twice", key)
			}
			el[key] = val.String()
		}
		if i == len(v) {
			break
		}
		switch v[i] {
		case ',':
			return nil, errors.New("more than one element: set forward_client_cert_details: SANITIZE_SET")
		case ';':
			i++
		default:
			return nil, errors.New("garbage after a quoted value")
		}
	}
	if pairs == 0 {
		return nil, errors.New("empty")
	}
	return el, nil
}
