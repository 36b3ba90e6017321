package tokens

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"time"
)

// jwksMaxAge is how long clients may cache the JWKS. Short, so that a key added
// by a rotation is seen soon; clients that meet an unknown kid refetch anyway
// (OIDC Core §10.1.1).
const jwksMaxAge = "max-age=60"

// JWKS serves the published public keys (the signing key and the retired keys
// whose tokens may still be live) as an RFC 7517 §5 JWK Set, each with kid,
// alg and use "sig".
func (k *Keys) JWKS() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		body := k.current().jwks
		sum := sha256.Sum256(body)
		h := w.Header()
		h.Set("Content-Type", "application/jwk-set+json") // RFC 7517 §8.5.1
		h.Set("Cache-Control", "public, "+jwksMaxAge)
		h.Set("ETag", `"`+base64.RawURLEncoding.EncodeToString(sum[:16])+`"`)
		// ServeContent answers If-None-Match with 304 and HEAD without a body.
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
	})
}
