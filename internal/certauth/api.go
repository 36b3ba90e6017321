package certauth

import (
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/thingid/thingid/internal/pki"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/routes"
	"github.com/thingid/thingid/internal/store"
)

// Paths served by Register.
const (
	PathCRL         = "/pki/crl"    // the CRL of the device issuing CA, DER
	PathCACerts     = "/pki/ca.pem" // the platform root and the device issuing CA, PEM
	PathCAs         = "/api/v1/admin/cas"
	PathRevocations = "/api/v1/admin/revocations"
)

// crlMaxAge bounds how long HTTP caches keep the CRL: it is signed anew at
// every revocation, and a relying party refetching within a minute learns of
// it well before nextUpdate.
const crlMaxAge = time.Minute

// Register adds the public CRL and CA certificates and the administrators'
// API (protected by admin; actor names who acted) to mux.
func (c *Checker) Register(mux routes.Mux, admin func(http.Handler) http.Handler, actor func(*http.Request) string) {
	mux.HandleFunc("GET "+PathCRL, c.serveCRL)
	mux.HandleFunc("GET "+PathCACerts, c.serveCACerts)
	api := func(h func(http.ResponseWriter, *http.Request, string)) http.Handler {
		return admin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, actor(r)) }))
	}
	mux.Handle("POST "+PathCAs, api(c.apiAddCA))
	mux.Handle("GET "+PathCAs, api(c.apiListCAs))
	mux.Handle("GET "+PathCAs+"/{id}", api(c.apiGetCA))
	mux.Handle("DELETE "+PathCAs+"/{id}", api(c.apiDeleteCA))
	mux.Handle("POST "+PathRevocations, api(c.apiRevoke))
}

func (c *Checker) serveCRL(w http.ResponseWriter, r *http.Request) {
	der, next, err := c.CRL(r.Context())
	if err != nil {
		c.opts.Log.Error("certauth: CRL", "err", err)
		problem.Write(w, http.StatusServiceUnavailable, "", "the CRL cannot be signed now; the server log says why")
		return
	}
	w.Header().Set("Content-Type", "application/pkix-crl") // RFC 5280 §4.2.1.13
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(crlMaxAge.Seconds())))
	w.Header().Set("Expires", next.UTC().Format(http.TimeFormat))
	w.Write(der)
}

func (c *Checker) serveCACerts(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/pem-certificate-chain") // RFC 8555 §9.1
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(c.opts.DeviceCA.CertificatesPEM())
}

// caView is a manufacturer CA in the API.
type caView struct {
	ID                string                     `json:"id"`
	Name              string                     `json:"name"`
	Subject           string                     `json:"subject"`
	FingerprintSHA256 string                     `json:"fingerprintSha256"`
	NotAfter          time.Time                  `json:"notAfter"`
	Created           time.Time                  `json:"created"`
	Template          store.ProvisioningTemplate `json:"template"`
	Certificate       string                     `json:"certificate"`
}

func viewOf(ca *store.ManufacturerCA) caView {
	return caView{ID: ca.ID, Name: ca.Name, Subject: ca.Subject, FingerprintSHA256: ca.FingerprintSHA256,
		NotAfter: ca.NotAfter, Created: ca.Created, Template: ca.Template,
		Certificate: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate}))}
}

// maxBody bounds request bodies: a CA certificate and a template, or a
// revocation with a certificate, fit easily.
const maxBody = 64 << 10

// decodeJSON reads one JSON object into v, refusing unknown fields.
func decodeJSON(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("one JSON object expected")
	}
	return nil
}

// jsonBody decodes the request body into v or answers the problem.
func jsonBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		problem.Write(w, http.StatusUnsupportedMediaType, "", "send application/json")
		return false
	}
	if err := decodeJSON(http.MaxBytesReader(w, r.Body, maxBody), v); err != nil {
		problem.Write(w, http.StatusBadRequest, "", "the body is not what this API takes: "+err.Error())
		return false
	}
	return true
}

func (c *Checker) apiAddCA(w http.ResponseWriter, r *http.Request, actor string) {
	var spec CASpec
	if !jsonBody(w, r, &spec) {
		return
	}
	ca, err := c.AddCA(r.Context(), actor, spec)
	if err != nil {
		c.apiError(w, r, err)
		return
	}
	w.Header().Set("Location", PathCAs+"/"+url.PathEscape(ca.ID))
	writeJSON(w, http.StatusCreated, viewOf(ca))
}

func (c *Checker) apiListCAs(w http.ResponseWriter, r *http.Request, _ string) {
	list, err := c.ListCAs(r.Context())
	if err != nil {
		c.apiError(w, r, err)
		return
	}
	out := struct {
		CAs []caView `json:"cas"`
	}{CAs: make([]caView, 0, len(list))}
	for _, ca := range list {
		out.CAs = append(out.CAs, viewOf(ca))
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Checker) apiGetCA(w http.ResponseWriter, r *http.Request, _ string) {
	ca, err := c.GetCA(r.Context(), r.PathValue("id"))
	if err != nil {
		c.apiError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewOf(ca))
}

func (c *Checker) apiDeleteCA(w http.ResponseWriter, r *http.Request, actor string) {
	if err := c.DeleteCA(r.Context(), actor, r.PathValue("id")); err != nil {
		c.apiError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// revocationRequest is the body of POST /api/v1/admin/revocations.
type revocationRequest struct {
	ThingID     string `json:"thingId"`
	Fingerprint string `json:"fingerprintSha256"`
	Certificate string `json:"certificate"` // PEM; of a bundle, the first
	Reason      Reason `json:"reason"`
}

// revocation turns the request into a Revocation.
func (q *revocationRequest) revocation() (Revocation, error) {
	rv := Revocation{ThingID: q.ThingID, Fingerprint: q.Fingerprint, Reason: q.Reason}
	if q.Certificate != "" {
		cert, err := pki.ParseLeafPEM([]byte(q.Certificate))
		if err != nil {
			return rv, invalidRevocation("certificate", "%v", err)
		}
		rv.Certificate = cert
	}
	return rv, nil
}

func (c *Checker) apiRevoke(w http.ResponseWriter, r *http.Request, actor string) {
	var q revocationRequest
	if !jsonBody(w, r, &q) {
		return
	}
	rv, err := q.revocation()
	if err == nil {
		var done []*store.RevokedCert
		if done, err = c.Revoke(r.Context(), actor, rv); err == nil {
			writeJSON(w, http.StatusOK, revokedView(done))
			return
		}
	}
	c.apiError(w, r, err)
}

type revokedCert struct {
	FingerprintSHA256 string    `json:"fingerprintSha256"`
	SerialNumber      string    `json:"serialNumber,omitempty"`
	ThingID           string    `json:"thingId,omitempty"`
	Reason            Reason    `json:"reason"`
	RevokedAt         time.Time `json:"revokedAt"`
	InCRL             bool      `json:"inCrl"`
}

func revokedView(done []*store.RevokedCert) any {
	out := struct {
		Revoked []revokedCert `json:"revoked"`
	}{Revoked: make([]revokedCert, 0, len(done))}
	for _, x := range done {
		out.Revoked = append(out.Revoked, revokedCert{FingerprintSHA256: x.FingerprintSHA256, SerialNumber: x.SerialNumber,
			ThingID: x.ThingID, Reason: Reason(x.Reason), RevokedAt: x.RevokedAt,
			InCRL: x.Authority == AuthorityPlatform && x.SerialNumber != ""})
	}
	return out
}

func (c *Checker) apiError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		ce *CAError
		re *RevocationError
	)
	switch {
	case errors.As(err, &ce):
		problem.Write(w, http.StatusBadRequest, ce.Field, ce.Error())
	case errors.As(err, &re):
		problem.Write(w, http.StatusBadRequest, re.Field, re.Error())
	case errors.Is(err, store.ErrNotFound):
		problem.Write(w, http.StatusNotFound, "", fmt.Sprintf("not found: %v", err))
	case errors.Is(err, store.ErrConflict):
		problem.Write(w, http.StatusConflict, "certificate", "this CA certificate is registered already")
	default:
		c.opts.Log.Error("certauth: admin API", "path", r.URL.Path, "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "internal error")
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
