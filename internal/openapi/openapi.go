// Package openapi is the OpenAPI 3.1 description of thingid's JSON APIs:
// the document (openapi.yaml, the one file a person edits, embedded and
// served as JSON at Path) and the rule of which routes it must describe
// (Covers). It must not know how any route is served.
package openapi

import (
	_ "embed"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/thingid/thingid/internal/routes"
)

// Path is where the document is served.
const Path = "/api/v1/openapi.json"

//go:embed openapi.yaml
var source []byte

// Document returns the document as JSON.
func Document() ([]byte, error) {
	b, err := yaml.YAMLToJSON(source)
	if err != nil {
		return nil, fmt.Errorf("openapi: openapi.yaml: %w", err)
	}
	return b, nil
}

// Register mounts GET Path on mux: the document, to anyone (it says what
// the APIs are, not what they hold). The YAML is converted once, here, so
// that a broken document stops the server at start.
func Register(mux routes.Mux) error {
	doc, err := Document()
	if err != nil {
		return err
	}
	mux.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		w.Write(doc)
	})
	return nil
}

// The JSON APIs the document describes, by the path of a route:
//   - every path under /api/v1/ (thingid's own APIs),
//   - the UMA 2.0 protection API under /uma/, but for the claims
//     interaction endpoint (/uma/claims: pages a browser is redirected to,
//     UMA Grant §3.3.2),
//   - the AuthZEN Authorization API under /access/v1/,
//   - ACE's token and device authorization endpoints under /ace/ (CBOR,
//     RFC 9200; described so that their bodies and errors are on record),
//   - the metadata of those two: /.well-known/uma2-configuration and
//     /.well-known/authzen-configuration.
//
// Not described: SCIM (/scim/v2/, which describes itself in
// /ServiceProviderConfig, /Schemas and /ResourceTypes), the OAuth endpoints
// (/oauth2/, form-encoded, described by the RFC 8414 metadata), EST, pages.
var (
	prefixes = []string{"/api/v1/", "/uma/", "/access/v1/", "/ace/"}
	exact    = []string{"/.well-known/uma2-configuration", "/.well-known/authzen-configuration"}
	browser  = []string{"/uma/claims"}
)

// Covers reports whether the document must describe the route at path (a
// route pattern's path, "{name}" wildcards and all).
func Covers(path string) bool {
	if slices.Contains(browser, path) {
		return false
	}
	if slices.Contains(exact, path) {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(path, p) {
			return true
		}
	}
	return false
}
