package ace

import (
	"context"
	"io"
	"mime"
	"net/http"

	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/routes"
)

// HTTPS paths of the ACE endpoints.
const (
	PathToken               = "/ace/token"
	PathDeviceAuthorization = "/ace/device_authorization"
	PathRevoke              = "/ace/revoke"
	PathIntrospect          = "/ace/introspect"
)

// Register mounts the token, device authorization, revocation and
// introspection endpoints on HTTPS; the
// client's identity is the certificate chain of its mutual TLS connection.
func (s *Server) Register(mux routes.Mux) {
	mux.Handle("POST "+PathToken, s.endpoint(s.Token))
	mux.Handle("POST "+PathDeviceAuthorization, s.endpoint(s.DeviceAuthorization))
	mux.Handle("POST "+PathRevoke, s.endpoint(s.Revoke))
	mux.Handle("POST "+PathIntrospect, s.endpoint(s.Introspect))
}

// endpoint serves one ACE function over HTTPS. What is not an ACE request
// at all (another content type, a body too large to read) is a problem
// document; everything else the CBOR the function answers.
func (s *Server) endpoint(f func(context.Context, []byte, Identity) ([]byte, int)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != MediaType {
			problem.Write(w, http.StatusUnsupportedMediaType, "Content-Type", "send the request as "+MediaType+" (RFC 9200 §5.8.1)")
			return
		}
		if r.URL.RawQuery != "" {
			problem.Write(w, http.StatusBadRequest, "query", "send the parameters in the body, not the query")
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxMessage+1))
		if err != nil {
			problem.Write(w, http.StatusBadRequest, "body", "the request body could not be read")
			return
		}
		var id Identity
		if r.TLS != nil {
			id.Chain = r.TLS.PeerCertificates
		}
		resp, status := f(r.Context(), body, id)
		h := w.Header()
		h.Set("Content-Type", MediaType)
		h.Set("Cache-Control", "no-store") // RFC 6749 §5.1
		w.WriteHeader(status)
		_, _ = w.Write(resp)
	})
}
