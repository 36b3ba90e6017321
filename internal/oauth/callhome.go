package oauth

import (
	"errors"
	"net/http"
	"time"

	"github.com/thingid/thingid/internal/certauth"
	"github.com/thingid/thingid/internal/problem"
	"github.com/thingid/thingid/internal/store"
)

// pathCallHome is where a thing, over mutual TLS with its certificate, learns
// how the platform sees it: whether it is paired, when to renew its
// certificate, where to get tokens.
const pathCallHome = "/api/v1/things/self"

// renewFraction of a certificate's lifetime passes before a thing should
// renew it (EST simplereenroll), as the SDK does by default.
const renewFraction = 2.0 / 3

// callHomeView is the answer of pathCallHome.
type callHomeView struct {
	ThingID      string       `json:"thing_id"`
	DisplayName  string       `json:"display_name,omitempty"`
	Manufacturer string       `json:"manufacturer,omitempty"`
	Model        string       `json:"model,omitempty"`
	SerialNumber string       `json:"serial_number,omitempty"`
	Paired       bool         `json:"paired"`
	PairedSince  *time.Time   `json:"paired_since,omitempty"`
	Certificate  callHomeCert `json:"certificate"`
	// TokenEndpoint takes client_id=<thing_id> with tls_client_auth.
	TokenEndpoint               string `json:"token_endpoint"`
	DeviceAuthorizationEndpoint string `json:"device_authorization_endpoint"`
}

// callHomeCert is the certificate of the call; a call with a session knows
// only its thumbprint.
type callHomeCert struct {
	Thumbprint string    `json:"x5t#S256"`
	NotAfter   time.Time `json:"not_after,omitzero"`
	RenewAfter time.Time `json:"renew_after,omitzero"`
}

// serveCallHome answers a thing that presents its certificate, or a
// session it opened with it (thingsession.go).
func (s *Server) serveCallHome(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	var id *certauth.Identity
	if raw := thingSessionOf(r); peerCertificates(r) == nil && raw != "" {
		var err error
		if id, err = s.thingSession(ctx, raw); err != nil {
			s.thingRefusal(w, err)
			return
		}
	} else {
		var ok bool
		if id, ok = s.thingCertificate(w, r); !ok {
			return
		}
	}
	t := id.Thing
	to := store.Ref{Kind: store.KindThing, ID: t.ID}
	rels, err := s.st.ListRelationships(ctx, store.RelFilter{Kind: store.RelOwner, To: &to})
	if err != nil {
		s.log.Error("oauth: reading a thing's owners", "thing", t.ID, "err", err)
		problem.Write(w, http.StatusInternalServerError, "", "the thing could not be read; try again later")
		return
	}
	v := callHomeView{
		ThingID: t.ID, DisplayName: t.DisplayName, Manufacturer: t.Manufacturer, Model: t.Model, SerialNumber: t.SerialNumber,
		Certificate:                 callHomeCert{Thumbprint: id.Thumbprint},
		TokenEndpoint:               s.issuer + PathToken,
		DeviceAuthorizationEndpoint: s.issuer + pathDeviceReq,
	}
	if l := id.Leaf; l != nil {
		v.Certificate.NotAfter = l.NotAfter.UTC()
		v.Certificate.RenewAfter = l.NotBefore.Add(time.Duration(float64(l.NotAfter.Sub(l.NotBefore)) * renewFraction)).UTC()
	}
	for _, rel := range rels {
		if rel.To == to && rel.From.Kind == store.KindUser {
			since := rel.Created.UTC()
			if !v.Paired || since.Before(*v.PairedSince) {
				v.PairedSince = &since
			}
			v.Paired = true
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, v)
}

// thingCertificate checks the thing's certificate on the connection; on a
// refusal it has answered w.
func (s *Server) thingCertificate(w http.ResponseWriter, r *http.Request) (*certauth.Identity, bool) {
	chain := peerCertificates(r)
	if chain == nil || s.opts.Certificates == nil {
		problem.Write(w, http.StatusUnauthorized, "", "present the thing's certificate over mutual TLS")
		return nil, false
	}
	id, err := s.opts.Certificates.Verify(r.Context(), chain)
	if err != nil {
		s.thingRefusal(w, err)
		return nil, false
	}
	return id, true
}

// thingRefusal answers a refused certificate or session with 401 and a
// failure of the server with 500.
func (s *Server) thingRefusal(w http.ResponseWriter, err error) {
	switch {
	case certauth.Refused(err):
		problem.Write(w, http.StatusUnauthorized, "", "client certificate refused: "+err.Error())
		return
	case errors.Is(err, errSessionRefused):
		problem.Write(w, http.StatusUnauthorized, "", err.Error())
		return
	}
	s.log.Error("oauth: checking a thing", "err", err)
	problem.Write(w, http.StatusInternalServerError, "", "the thing could not be checked; try again later")
}
