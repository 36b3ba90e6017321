// Package est is certificate enrollment for things over EST (RFC 7030) under
// /.well-known/est, and the one-time enrollment tokens that authenticate a
// first enrollment. It issues through the device CA of internal/pki and
// records certificates through internal/identity; it never decides whether a
// client certificate is good (internal/certauth does).
package est

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/refusal"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
)

// Prefix is where EST lives (RFC 7030 §3.2.2). Optional CA labels are not
// served: there is one device CA.
const Prefix = "/.well-known/est/"

// Certificates decides whether a client certificate identifies an active
// thing (*certauth.Checker).
type Certificates interface {
	Verify(ctx context.Context, chain []*x509.Certificate) (*certauth.Identity, error)
}

// Options configures a Server.
type Options struct {
	CA       *pki.DeviceCA
	Identity *identity.Service
	// Audit receives the record of each token created.
	Audit store.Audit
	// Certificates checks the client certificates of mutual-TLS enrollment; nil
	// accepts none (a Server that only creates tokens from the command line).
	Certificates Certificates
	// TokenKey keys the enrollment tokens' MAC and their replay records; every
	// node must have the same (derive it from the master key).
	TokenKey []byte
	// Actor names the administrator of an admin API request (authn.Actor).
	Actor func(*http.Request) string
	// Registerer registers thingid_est_enrollments_total and
	// thingid_certificates_total (certauth.CertificateEvents); nil: not
	// registered.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Server serves EST and the enrollment-token admin API.
type Server struct {
	opts Options
	log  *slog.Logger
	// enrollments is thingid_est_enrollments_total{operation, result},
	// certificates thingid_certificates_total{event}.
	enrollments, certificates *prometheus.CounterVec
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	switch {
	case opts.CA == nil:
		return nil, errors.New("est: the device CA is required")
	case opts.Identity == nil || opts.Audit == nil:
		return nil, errors.New("est: the identity service and the audit log are required")
	case len(opts.TokenKey) < 32:
		return nil, errors.New("est: the token key must have at least 32 bytes")
	}
	if opts.Actor == nil {
		opts.Actor = func(*http.Request) string { return "" }
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	certificates, err := certauth.CertificateEvents(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("est: register metrics: %w", err)
	}
	enrollments := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "thingid_est_enrollments_total",
		Help: "EST enrollments by operation (simpleenroll, simplereenroll) and result (ok, refused, error).",
	}, []string{"operation", "result"})
	for _, op := range []string{opEnroll, opReenroll} {
		for _, result := range []string{"ok", "refused", "error"} {
			enrollments.WithLabelValues(op, result) // from zero, so that rate() sees the first
		}
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(enrollments); err != nil {
			return nil, fmt.Errorf("est: register metrics: %w", err)
		}
	}
	return &Server{opts: opts, log: log, enrollments: enrollments, certificates: certificates}, nil
}

// Register adds the EST endpoints and, wrapped in admin, the token API.
func (s *Server) Register(mux routes.Mux, admin func(http.Handler) http.Handler) {
	mux.HandleFunc("GET "+Prefix+"cacerts", s.serveCACerts)
	mux.HandleFunc("GET "+Prefix+"csrattrs", s.serveCSRAttrs)
	mux.Handle("POST "+Prefix+opEnroll, s.answer(opEnroll, s.enroll))
	mux.Handle("POST "+Prefix+opReenroll, s.answer(opReenroll, s.reenroll))
	mux.Handle("POST /api/v1/things/{id}/enrollment-tokens", admin(http.HandlerFunc(s.apiCreateToken)))
}

// serveCACerts answers GET cacerts (RFC 7030 §4.1): the device issuing CA and
// the platform root, without authentication (§4.1.1), so that a device can
// bootstrap its trust (it must check them out of band, §4.1.1 "explicit TA").
func (s *Server) serveCACerts(w http.ResponseWriter, r *http.Request) {
	der, err := certsOnly([][]byte{s.opts.CA.Cert.Raw, s.opts.CA.Root.Raw})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeBase64(w, certsOnlyType, der)
}

// certsOnlyType is the media type of a certs-only answer (RFC 7030 §4.1.3, §4.2.3; RFC 8551 §3.2.2).
const certsOnlyType = "application/pkcs7-mime; smime-type=certs-only"

// failure is an EST error: RFC 7030 §4.2.3 lets the body be plain text for a
// person to read; it names the problem and what to do.
type failure struct {
	status int
	msg    string
	// challenge: a 401 that lists the HTTP authentication schemes accepted.
	challenge bool
}

func (e *failure) Error() string { return e.msg }

func refuse(status int, format string, args ...any) *failure {
	return &failure{status: status, msg: fmt.Sprintf(format, args...)}
}

// unauthorized is a 401 asking for HTTP credentials (RFC 7030 §3.2.3).
func unauthorized(format string, args ...any) *failure {
	e := refuse(http.StatusUnauthorized, format, args...)
	e.challenge = true
	return e
}

// fail answers an error: a failure as it says, a certificate refusal of
// certauth as 401 (403 for a disabled thing), anything else as a 500 that is
// logged and not explained. It returns the status answered.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) int {
	var rf *failure
	var re *refusal.FieldError
	switch {
	case errors.As(err, &rf):
	case errors.As(err, &re):
		rf = refuse(http.StatusBadRequest, "%s", re)
	case errors.Is(err, certauth.ErrThingDisabled):
		rf = refuse(http.StatusForbidden, "%v", err)
	case certauth.Refused(err):
		rf = refuse(http.StatusUnauthorized, "client certificate refused: %v", err)
	default:
		s.log.Error("est: request failed", "path", r.URL.Path, "err", err)
		rf = refuse(http.StatusInternalServerError, "internal error; the server logged it")
	}
	h := w.Header()
	if rf.challenge {
		h.Add("WWW-Authenticate", `Basic realm="thingid EST", charset="UTF-8"`)
		h.Add("WWW-Authenticate", `Bearer realm="thingid EST"`)
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(rf.status)
	fmt.Fprintln(w, rf.msg)
	return rf.status
}
