package speaker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/oauth2"

	"github.com/thingid/thingid/sdk"
)

// self is what the platform says of the speaker at /api/v1/things/self.
type self struct {
	ThingID      string `json:"thingId"`
	Model        string `json:"model"`
	SerialNumber string `json:"serialNumber"`
	Paired       bool   `json:"paired"`
}

// pairOrResume calls home and gets tokens that act for the owner: from the
// saved refresh token when the platform still sees the speaker paired, else
// by pairing, the user code on the display.
func (s *speaker) pairOrResume(ctx context.Context) (*sdk.TokenSource, error) {
	s.display("Calling home…")
	me, err := s.callHome(ctx)
	if err != nil {
		s.display("Call home failed")
		return nil, err
	}
	if me.Paired {
		if saved := s.load(); saved != "" {
			ts := s.dev.Resume(&oauth2.Token{RefreshToken: saved})
			ts.OnRefresh(s.refreshed)
			tctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
			_, err := ts.TokenContext(tctx)
			cancel()
			if err == nil {
				s.display("Welcome back")
				s.emit(Event{Step: StepPaired, Message: "resumed with the saved refresh token"})
				return ts, nil
			}
			if !invalidGrant(err) {
				return nil, err
			}
			s.forget() // the owner revoked it meanwhile: pair again
		}
	} else {
		s.forget()
	}
	return s.pair(ctx)
}

// callHome authenticates with the factory certificate: a token of the
// thing itself over mutual TLS (RFC 8705), then the platform's view of it.
func (s *speaker) callHome(ctx context.Context) (*self, error) {
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	if _, err := s.dev.CallHome(tctx); err != nil {
		return nil, fmt.Errorf("speaker: calling home to %s: %w", s.cfg.Server, err)
	}
	s.noticeRenewal()
	me, err := s.whoAmI(tctx)
	if err != nil {
		return nil, err
	}
	state := "not paired"
	if me.Paired {
		state = "paired"
	}
	s.emit(Event{Step: StepCalledHome, Message: fmt.Sprintf("called home as thing %s (model %s, serial %s): certificate accepted, token issued, %s",
		me.ThingID, me.Model, me.SerialNumber, state)})
	return me, nil
}

// whoAmI asks the platform how it sees the speaker (GET
// /api/v1/things/self over mutual TLS).
func (s *speaker) whoAmI(ctx context.Context) (*self, error) {
	u := strings.TrimSuffix(s.cfg.Server, "/") + "/api/v1/things/self"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.dev.PlatformClient().Do(req)
	if err != nil {
		return nil, fmt.Errorf("speaker: asking the platform whether the speaker is paired: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("speaker: %s answered %s: %s", u, resp.Status, problemDetail(body))
	}
	var me self
	if err := json.Unmarshal(body, &me); err != nil {
		return nil, fmt.Errorf("speaker: %s: %w", u, err)
	}
	if me.ThingID != s.thing {
		return nil, fmt.Errorf("speaker: %s says the speaker is thing %q, its certificate says %q", u, me.ThingID, s.thing)
	}
	return &me, nil
}

// pair runs the device flow with the user code on the display, waiting
// until the owner decides or the code expires.
func (s *speaker) pair(ctx context.Context) (*sdk.TokenSource, error) {
	ts, err := s.dev.Pair(ctx, func(_ context.Context, code sdk.UserCode) error {
		s.display("Go to " + code.VerificationURI + " and enter " + code.UserCode)
		s.emit(Event{Step: StepUserCode, UserCode: &code, Message: fmt.Sprintf("waiting until %s for the owner to enter %s at %s",
			code.ExpiresAt.Format(time.TimeOnly), code.UserCode, code.VerificationURI)})
		return nil
	})
	switch {
	case errors.Is(err, sdk.ErrPairingDenied):
		s.display("Pairing refused")
		return nil, fmt.Errorf("speaker: waiting for the owner to allow the pairing: %w", err)
	case errors.Is(err, sdk.ErrPairingExpired):
		s.display("Code expired")
		return nil, fmt.Errorf("speaker: waiting for the owner to enter the user code: %w", err)
	case err != nil:
		return nil, fmt.Errorf("speaker: pairing: %w", err)
	}
	ts.OnRefresh(s.refreshed)
	tctx, cancel := context.WithTimeout(ctx, s.cfg.Timeout)
	defer cancel()
	tok, err := ts.TokenContext(tctx)
	if err != nil {
		return nil, err
	}
	s.save(tok.RefreshToken)
	s.display("Paired")
	s.emit(Event{Step: StepPaired, Message: "the owner allowed the pairing; tokens issued for the owner, bound to the certificate"})
	return ts, nil
}

// refreshed keeps the rotated refresh token (the previous one no longer works).
func (s *speaker) refreshed(tok *oauth2.Token) {
	s.save(tok.RefreshToken)
	s.emit(Event{Step: StepTokenRefreshed, Message: fmt.Sprintf("new access token, valid until %s", tok.Expiry.Format(time.TimeOnly))})
}

// state is the content of Config.StateFile.
type state struct {
	Thing        string `json:"thing_id"`
	RefreshToken string `json:"refresh_token"`
}

func (s *speaker) load() string {
	if s.cfg.StateFile == "" {
		return ""
	}
	b, err := os.ReadFile(s.cfg.StateFile)
	if err != nil {
		return ""
	}
	var st state
	if json.Unmarshal(b, &st) != nil || st.Thing != s.thing {
		return "" // another device's file, or damaged: pair again
	}
	return st.RefreshToken
}

// save writes the state file atomically, readable by the owner only.
func (s *speaker) save(refreshToken string) {
	if s.cfg.StateFile == "" || refreshToken == "" {
		return
	}
	b, _ := json.Marshal(state{Thing: s.thing, RefreshToken: refreshToken})
	tmp, err := os.CreateTemp(filepath.Dir(s.cfg.StateFile), ".speaker-state-*")
	if err == nil {
		_, err = tmp.Write(b)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Rename(tmp.Name(), s.cfg.StateFile)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		s.emit(Event{Step: StepTrouble, Message: "the refresh token could not be saved: a restart will need pairing again", Err: err})
	}
}

func (s *speaker) forget() {
	if s.cfg.StateFile != "" {
		os.Remove(s.cfg.StateFile)
	}
}

// invalidGrant: the platform refused the refresh token (RFC 6749 §5.2): the
// grant was revoked, typically by unlinking.
func invalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}

// problemDetail is the detail of an RFC 9457 problem, or the body itself.
func problemDetail(body []byte) string {
	var p struct {
		Detail string `json:"detail"`
		Title  string `json:"title"`
	}
	if json.Unmarshal(body, &p) == nil && (p.Detail != "" || p.Title != "") {
		if p.Detail == "" {
			return p.Title
		}
		return p.Detail
	}
	return strings.TrimSpace(string(body))
}
