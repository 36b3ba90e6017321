package ace

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"

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
// introspection endpoints on HTTPS; the client's identity is the
// certificate chain of its mutual TLS connection (and, at introspection, a
// resource server's Basic credentials).
func (s *Server) Register(mux routes.Mux) {
	mux.Handle("POST "+PathToken, s.endpoint(s.Token))
	mux.Handle("POST "+PathDeviceAuthorization, s.endpoint(s.DeviceAuthorization))
	mux.Handle("POST "+PathRevoke, s.endpoint(s.Revoke))
	cborIntrospect := s.endpoint(s.Introspect)
	mux.Handle("POST "+PathIntrospect, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt == formType {
			s.serveIntrospectJSON(w, r)
			return
		}
		cborIntrospect.ServeHTTP(w, r)
	}))
}

// formType is the content type of RFC 7662's introspection request.
const formType = "application/x-www-form-urlencoded"

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
		resp, status := f(r.Context(), body, identityOf(r))
		h := w.Header()
		h.Set("Content-Type", MediaType)
		h.Set("Cache-Control", "no-store") // RFC 6749 §5.1
		w.WriteHeader(status)
		_, _ = w.Write(resp)
	})
}

// identityOf is what an HTTPS request proved: its mutual TLS chain, and its
// Authorization header for a resource server's credentials.
func identityOf(r *http.Request) Identity {
	id := Identity{Authorization: r.Header.Get("Authorization")}
	if r.TLS != nil {
		id.Chain = r.TLS.PeerCertificates
	}
	return id
}

// serveIntrospectJSON is introspection as RFC 7662 asks it: a form with
// the CWT as token (base64url, RFC 9200 §5.9.1's text form of a byte
// string) and the client's credentials, answered in JSON (introspectionJSON);
// a refusal is RFC 6749 §5.2's JSON error.
func (s *Server) serveIntrospectJSON(w http.ResponseWriter, r *http.Request) {
	c, err := s.introspectForm(w, r)
	s.metrics.count(endpointIntrospect, err)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	if err != nil {
		var e *Error
		if !errors.As(err, &e) || e.Status >= http.StatusInternalServerError {
			s.log.Error("ace: request failed", "endpoint", endpointIntrospect, "err", err)
			e = &Error{Code: "server_error", Description: "internal error", Status: http.StatusInternalServerError}
		}
		if e.Status == http.StatusUnauthorized {
			h.Set("WWW-Authenticate", `Basic realm="thingid"`)
		}
		w.WriteHeader(e.Status)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": e.Code, "error_description": e.Description})
		return
	}
	w.WriteHeader(http.StatusOK)
	_ = json.NewEncoder(w).Encode(c.json())
}

func (s *Server) introspectForm(w http.ResponseWriter, r *http.Request) (*claims, error) {
	if r.URL.RawQuery != "" {
		return nil, invalidRequest("send the parameters in the body, not the query")
	}
	// The CWT in base64url is a third larger than in CBOR.
	r.Body = http.MaxBytesReader(w, r.Body, 2*maxMessage)
	if err := r.ParseForm(); err != nil {
		return nil, invalidRequest("the body is not a form of at most %d bytes", 2*maxMessage)
	}
	for name, vs := range r.PostForm {
		if len(vs) > 1 {
			return nil, invalidRequest("%s appears more than once (RFC 6749 §3.2)", name)
		}
	}
	tok, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(r.PostForm.Get("token"), "="))
	if err != nil || len(tok) == 0 {
		return nil, invalidRequest("token is required: the CWT in base64url")
	}
	return s.introspect(r.Context(), tok, r.PostForm, identityOf(r))
}
