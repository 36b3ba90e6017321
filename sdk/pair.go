package sdk

import (
	"context"
	"errors"
	"time"
)

// UserCode is what the device shows its owner to pair (RFC 8628 §3.3): go to
// VerificationURI and enter UserCode, or open VerificationURIComplete (a QR
// code, say), before ExpiresAt.
type UserCode struct {
	UserCode                string
	VerificationURI         string
	VerificationURIComplete string
	ExpiresAt               time.Time
}

// Pair links the device with its owner through the device authorization
// grant (RFC 8628): it asks for a user code, hands it to show (which puts it
// on the device's display), then polls the token endpoint at the interval the
// platform set, slowing down when told to (slow_down, §3.5), until the owner
// allows or denies. The tokens act for the owner and are refreshed with the
// refresh token; save it (TokenSource.OnRefresh) to Resume after a restart.
// A denial is ErrPairingDenied, a code nobody entered in time
// ErrPairingExpired.
func (c *Client) Pair(ctx context.Context, show func(context.Context, UserCode) error) (*TokenSource, error) {
	m, err := c.Discover(ctx)
	if err != nil {
		return nil, err
	}
	if m.DeviceAuthorizationEndpoint == "" {
		return nil, errors.New("sdk: the platform offers no device authorization endpoint")
	}
	conf := c.oauthConfig(m)
	octx := c.oauthContext(ctx)
	da, err := conf.DeviceAuth(octx)
	if err != nil {
		return nil, c.explainOAuth("starting the pairing", err)
	}
	code := UserCode{UserCode: da.UserCode, VerificationURI: da.VerificationURI,
		VerificationURIComplete: da.VerificationURIComplete, ExpiresAt: da.Expiry}
	if err := show(ctx, code); err != nil {
		return nil, err
	}
	tok, err := conf.DeviceAccessToken(octx, da)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, ErrPairingExpired // the code's own deadline, not the caller's
		}
		return nil, c.explainOAuth(pairingDecision, err)
	}
	return c.Resume(tok), nil
}
