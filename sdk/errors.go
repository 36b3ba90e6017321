package sdk

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/oauth2"
)

// Errors a device maker may want to tell apart; test with errors.Is.
var (
	// ErrPairingDenied: the user refused the device (RFC 8628 access_denied).
	ErrPairingDenied = errors.New("sdk: the user denied the pairing")
	// ErrPairingExpired: nobody entered the user code in time (RFC 8628 expired_token).
	ErrPairingExpired = errors.New("sdk: the user code expired before anyone entered it; pair again")
	// ErrCertificateExpired: the device certificate has expired, so the
	// device can neither call home nor renew it; it needs a new enrollment
	// (an enrollment token from an administrator, see Enroll).
	ErrCertificateExpired = errors.New("sdk: the device certificate has expired; enroll the device again (Enroll with a new enrollment token)")
	// ErrNotAllowedNow: the platform refused a token for the owner under
	// its rules (access_denied outside the pairing), such as a household's
	// hours for a child's speaker; the grant stands, so try again later.
	ErrNotAllowedNow = errors.New("sdk: the platform's rules refuse this now (the owner's household rules, say); the pairing stands: try again later")
)

// explainTransport adds what to do to the TLS failures a device meets.
func explainTransport(err error) error {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var alert tls.AlertError
	switch {
	case errors.As(err, &unknown):
		return fmt.Errorf("%w (the platform's TLS certificate is not trusted: set Config.RootCAs to the CA that issued it)", err)
	case errors.As(err, &hostname):
		return fmt.Errorf("%w (Config.Server must use a host name the platform's TLS certificate names)", err)
	case errors.As(err, &alert), strings.Contains(err.Error(), "tls: bad certificate"), strings.Contains(err.Error(), "certificate required"):
		return fmt.Errorf("%w (the platform refused the device certificate during the TLS handshake)", err)
	}
	return err
}

// pairingDecision is what explainOAuth is told while the device waits for
// its owner: only there is access_denied the owner's no.
const pairingDecision = "waiting for the owner"

// explainOAuth turns the platform's OAuth error answers into advice.
func (c *Client) explainOAuth(what string, err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return fmt.Errorf("sdk: %s: %w", what, explainTransport(err))
	}
	desc := re.ErrorDescription
	if desc == "" {
		desc = re.Error()
	}
	switch re.ErrorCode {
	case "access_denied":
		if what != pairingDecision {
			return fmt.Errorf("%w: %s", ErrNotAllowedNow, desc)
		}
		return fmt.Errorf("%w: %s", ErrPairingDenied, desc)
	case "expired_token":
		return fmt.Errorf("%w: %s", ErrPairingExpired, desc)
	case "invalid_client":
		hint := "is Config.ClientID a client registered on the platform?"
		if c.currentCert() != nil {
			hint = "is the thing active, and was its certificate issued by this platform or a registered manufacturer CA?"
		}
		return fmt.Errorf("sdk: %s: the platform did not accept the device as client %q: %s (%s): %w", what, c.cfg.ClientID, desc, hint, err)
	case "invalid_grant":
		return fmt.Errorf("sdk: %s: the grant is no longer valid: %s (the owner may have unlinked the device: pair again): %w", what, desc, err)
	case "invalid_scope":
		return fmt.Errorf("sdk: %s: %s (ask only for scopes the device's client may have: Config.Scopes): %w", what, desc, err)
	case "unauthorized_client":
		return fmt.Errorf("sdk: %s: %s (the client may not use this grant; check its registration): %w", what, desc, err)
	}
	return fmt.Errorf("sdk: %s: %s: %w", what, desc, err)
}
