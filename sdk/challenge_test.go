package sdk

import (
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

func TestUMAChallenge(t *testing.T) {
	for _, c := range []struct {
		values      []string
		asURI, tick string
		ok          bool
	}{
		{[]string{`UMA realm="music", as_uri="https://id.example.com", ticket="umt_1"`}, "https://id.example.com", "umt_1", true},
		{[]string{`Bearer realm="x", error="invalid_token"`, `UMA as_uri="https://a", ticket=umt_2`}, "https://a", "umt_2", true},
		{[]string{`Bearer realm="x", UMA realm="y", as_uri="https://a", ticket="t\"3"`}, "https://a", `t"3`, true},
		{[]string{`uma AS_URI="https://a" , TICKET="t4"`}, "https://a", "t4", true},
		{[]string{`Basic abc==, UMA as_uri="https://a", ticket="t5"`}, "https://a", "t5", true},
		// The first value of a parameter counts, not a later repetition.
		{[]string{`UMA as_uri="https://a", ticket="t6", as_uri="https://evil"`}, "https://a", "t6", true},
		{[]string{`UMA realm="music", as_uri="https://a"`}, "", "", false},
		{[]string{`Bearer as_uri="https://a", ticket="t"`}, "", "", false},
		{[]string{`UMA as_uri="https://a", ticket="unterminated`}, "", "", false},
		{nil, "", "", false},
	} {
		as, tk, ok := umaChallenge(c.values)
		if as != c.asURI || tk != c.tick || ok != c.ok {
			t.Errorf("%q: %q %q %v, want %q %q %v", c.values, as, tk, ok, c.asURI, c.tick, c.ok)
		}
	}
}

func FuzzParseChallenges(f *testing.F) {
	for _, s := range []string{`UMA realm="m", as_uri="https://a", ticket="t"`, `Basic abc==`, `a=b, c`, `x="\`, `,,, =`, `DPoP algs="ES256", error="use_dpop_nonce"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		for _, ch := range parseChallenges(v) {
			if ch.scheme == "" || !strings.Contains(v, ch.scheme) {
				t.Fatalf("%q: scheme %q", v, ch.scheme)
			}
			for k, val := range ch.params {
				if k == "" || val == "" {
					t.Fatalf("%q: empty parameter %q=%q", v, k, val)
				}
			}
		}
	})
}

func TestParseRPTAnswer(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok, err := parseRPTAnswer(http.StatusOK, []byte(`{"access_token":"rpt","token_type":"DPoP","expires_in":300}`), now)
	if err != nil || tok.AccessToken != "rpt" || tok.TokenType != "DPoP" || !tok.Expiry.Equal(now.Add(5*time.Minute)) {
		t.Fatalf("RPT: %+v %v", tok, err)
	}
	_, err = parseRPTAnswer(http.StatusForbidden, []byte(`{"error":"request_submitted","ticket":"t2","interval":5}`), now)
	var ue *UMAError
	if !errors.Is(err, ErrAccessRequested) || !errors.As(err, &ue) || ue.Ticket != "t2" || ue.Interval != 5*time.Second {
		t.Fatalf("request_submitted: %v %+v", err, ue)
	}
	if _, err := parseRPTAnswer(http.StatusForbidden, []byte(`{"error":"request_denied"}`), now); !errors.Is(err, ErrAccessDenied) {
		t.Fatalf("request_denied: %v", err)
	}
	_, err = parseRPTAnswer(http.StatusForbidden, []byte(`{"error":"need_info","ticket":"t3","redirect_user":true}`), now)
	if !errors.As(err, &ue) || !ue.RedirectUser || errors.Is(err, ErrAccessRequested) || !strings.Contains(err.Error(), "Pair") {
		t.Fatalf("need_info: %v", err)
	}
	for _, bad := range []struct {
		status int
		body   string
	}{
		{http.StatusOK, `{}`},
		{http.StatusOK, `not json`},
		{http.StatusBadGateway, `<html>`},
		{http.StatusForbidden, `{"error":"request_submitted","interval":"soon"}`},
	} {
		if _, err := parseRPTAnswer(bad.status, []byte(bad.body), now); err == nil {
			t.Errorf("%d %s: accepted", bad.status, bad.body)
		}
	}
}

// access_denied is the owner's no only while the device waits for the
// owner; on a refresh it is the platform's rules refusing for now.
func TestAccessDeniedMeaning(t *testing.T) {
	c := &Client{cfg: Config{ClientID: "speaker"}}
	denied := &oauth2.RetrieveError{ErrorCode: "access_denied", ErrorDescription: "outside the allowed times"}
	if err := c.explainOAuth(pairingDecision, denied); !errors.Is(err, ErrPairingDenied) {
		t.Errorf("pairing: %v", err)
	}
	err := c.explainOAuth("refreshing the token", denied)
	if !errors.Is(err, ErrNotAllowedNow) || errors.Is(err, ErrPairingDenied) || !strings.Contains(err.Error(), "outside the allowed times") {
		t.Errorf("refresh: %v", err)
	}
}
