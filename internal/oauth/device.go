package oauth

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// userCodeAlphabet is RFC 8628 §6.1's example: 20 consonants, no vowels (no
// words), no look-alikes. 8 characters give 20^8 ≈ 2^34.6 codes.
const (
	userCodeAlphabet = "BCDFGHJKLMNPQRSTVWXZ"
	userCodeLen      = 8
	// slowDownStep is RFC 8628 §3.5: slow_down adds 5 s to the interval.
	slowDownStep = 5 * time.Second
)

// newUserCode draws a user code uniformly (rejection sampling: 240 = 12·20).
func newUserCode() string {
	var b strings.Builder
	for b.Len() < userCodeLen {
		for _, x := range randomBytes(16) {
			if x < 240 && b.Len() < userCodeLen {
				b.WriteByte(userCodeAlphabet[x%20])
			}
		}
	}
	return b.String()
}

// formatUserCode shows a normalized code as XXXX-XXXX.
func formatUserCode(c string) string {
	if len(c) != userCodeLen {
		return c
	}
	return c[:4] + "-" + c[4:]
}

// normalizeUserCode accepts what a person types: any case, dashes and
// spaces anywhere. It returns "" for anything that cannot be a user code.
func normalizeUserCode(in string) string {
	if len(in) > 64 {
		return ""
	}
	var b strings.Builder
	for _, r := range in {
		switch {
		case r == '-' || r == ' ' || r == '\t':
			continue
		case r >= 'a' && r <= 'z':
			r -= 'a' - 'A'
		}
		if r > 127 || !strings.ContainsRune(userCodeAlphabet, r) {
			return ""
		}
		b.WriteRune(r)
	}
	if b.Len() != userCodeLen {
		return ""
	}
	return b.String()
}

func (s *Server) deviceHash(code string) []byte {
	return keyedHash(s.deviceKey, "device-code", code)
}

// deviceAuthResponse is RFC 8628 §3.2.
type deviceAuthResponse struct {
	DeviceCode              string `json:"device_code"`
	UserCode                string `json:"user_code"`
	VerificationURI         string `json:"verification_uri"`
	VerificationURIComplete string `json:"verification_uri_complete"`
	ExpiresIn               int64  `json:"expires_in"`
	Interval                int64  `json:"interval"`
}

// serveDeviceAuthorization is the device authorization endpoint (RFC 8628
// §3.1): the client authenticates as at the token endpoint (public clients
// send client_id).
func (s *Server) serveDeviceAuthorization(w http.ResponseWriter, r *http.Request) {
	form, c, ok := s.clientRequest(w, r)
	if !ok {
		return
	}
	resp, err := s.deviceAuthorization(r.Context(), c, form)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// deviceAuthorization starts the device flow of the authenticated client c.
func (s *Server) deviceAuthorization(ctx context.Context, c *store.Client, form url.Values) (*deviceAuthResponse, error) {
	if !slices.Contains(c.GrantTypes, GrantDeviceCode) {
		return nil, ErrUnauthorizedClient.WithDescription("the client may not use the device authorization grant")
	}
	scopes, err := requestedScopes(form, c.Scopes)
	if err != nil {
		return nil, err
	}
	// RFC 8707 §2 (the device authorization request is an authorization
	// request): the resources the tokens are for, checked like the token
	// endpoint's; the token request may narrow them (§2.2).
	resources, rerr := s.requestedResources(c, form[paramResource])
	if rerr != nil {
		return nil, rerr
	}
	if c.ThingID != "" {
		if err := s.activeSubjects(ctx, "", c.ThingID); err != nil {
			return nil, thingRefusal(err)
		}
	}
	deviceCode := base64.RawURLEncoding.EncodeToString(randomBytes(32))
	now := s.now()
	d := &store.DeviceCode{
		Hash: s.deviceHash(deviceCode), ClientID: c.ID, Scopes: nonNil(scopes), Resources: resources,
		Created: now.UTC(), ExpiresAt: now.Add(s.opts.DeviceCodeLifetime).UTC(),
		Interval: s.opts.DeviceInterval, Status: store.DevicePending,
	}
	for attempt := 0; ; attempt++ {
		d.UserCode = newUserCode()
		err = s.st.CreateDeviceCode(ctx, d)
		if !errors.Is(err, store.ErrConflict) || attempt == 4 {
			break
		}
	}
	if err != nil {
		return nil, serverError(err)
	}
	uc := formatUserCode(d.UserCode)
	return &deviceAuthResponse{
		DeviceCode: deviceCode, UserCode: uc,
		VerificationURI:         s.issuer + pathDevice,
		VerificationURIComplete: s.issuer + pathDevice + "?user_code=" + url.QueryEscape(uc),
		ExpiresIn:               int64(s.opts.DeviceCodeLifetime / time.Second),
		Interval:                int64(s.opts.DeviceInterval / time.Second),
	}, nil
}

// deviceCodeGrant is the token request of RFC 8628 §3.4–3.5.
func (s *Server) deviceCodeGrant(ctx context.Context, c *store.Client, form url.Values) (*tokenResponse, error) {
	code := form.Get("device_code")
	if code == "" {
		return nil, ErrInvalidRequest.WithDescription("device_code is required")
	}
	if err := s.pairingAllowed(ctx, c, code); err != nil {
		return nil, err
	}
	var outcome *Error
	errOtherClient := errors.New("other client")
	d, err := s.st.UpdateDeviceCode(ctx, s.deviceHash(code), func(d *store.DeviceCode) error {
		outcome = nil
		if d.ClientID != c.ID {
			// Bound to the client that asked for it (RFC 8628 §3.4);
			// another client's poll changes nothing.
			return errOtherClient
		}
		now := s.now()
		last := d.LastPolled
		d.LastPolled = now.UTC()
		switch d.Status {
		case store.DevicePending:
			// A tenth of the interval of tolerance: clients polling on a
			// ticker arrive a few milliseconds early now and then.
			if !last.IsZero() && now.Sub(last) < d.Interval-d.Interval/10 {
				// RFC 8628 §3.5: slow_down, and the interval grows by 5 s
				// for this and every later request.
				d.Interval += slowDownStep
				outcome = ErrSlowDown.WithDescription("poll at most every %d s", int(d.Interval/time.Second))
				return nil
			}
			outcome = ErrAuthorizationPending
		case store.DeviceDenied:
			outcome = ErrAccessDenied.WithDescription("the user denied the request")
		case store.DeviceUsed:
			outcome = ErrInvalidGrant.WithDescription("device code was used before")
		case store.DeviceApproved:
			// RFC 8707 §2.2, checked before the code is used up: a request
			// that widens the resources is refused and may be corrected.
			if _, err := withinGrant(ctx, d.Resources, "device authorization request"); err != nil {
				errors.As(err, &outcome)
				return nil
			}
			d.Status = store.DeviceUsed // single use: a second exchange fails
		}
		return nil
	})
	switch {
	case errors.Is(err, errOtherClient):
		return nil, ErrInvalidGrant.WithDescription("device code was not issued to this client")
	case errors.Is(err, store.ErrNotFound):
		// Expired codes are gone from the store, indistinguishable from
		// unknown ones; either way the device must start over.
		return nil, ErrExpiredToken.WithDescription("device code expired or unknown; start again")
	case err != nil:
		return nil, serverError(err)
	case outcome != nil:
		return nil, outcome
	}
	g, err := s.st.GetGrant(ctx, d.GrantID)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return nil, serverError(err)
	}
	if err != nil || !g.RevokedAt.IsZero() {
		return nil, ErrInvalidGrant.WithDescription("the grant was revoked")
	}
	if err := s.activeSubjects(ctx, g.UserID, g.ThingID); err != nil {
		return nil, err
	}
	if ctx, err = withinGrant(ctx, d.Resources, "device authorization request"); err != nil {
		return nil, err
	}
	return s.issue(ctx, c, g, g.UserID, g.Scopes, nonNil(g.Scopes))
}

// pairingAllowed asks the households about an approved device code before
// it is used up: a refusal (the window closed since the approval) leaves it
// to be exchanged once the rules allow, until it expires.
func (s *Server) pairingAllowed(ctx context.Context, c *store.Client, code string) error {
	d, err := s.st.GetDeviceCode(ctx, s.deviceHash(code))
	if errors.Is(err, store.ErrNotFound) || (err == nil && (d.ClientID != c.ID || d.Status != store.DeviceApproved)) {
		return nil // the exchange answers these
	}
	if err != nil {
		return serverError(err)
	}
	g, err := s.st.GetGrant(ctx, d.GrantID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return serverError(err)
	}
	return s.householdsAllow(ctx, g, true)
}
