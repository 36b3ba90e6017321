package demo

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/thingid/thingid/internal/audit"
	"github.com/thingid/thingid/internal/store"
	"github.com/thingid/thingid/sdk"
)

// The household (issue 14's story): the owner, her child and the speaker
// in the kids' room, behind a gateway route with the households' policy
// filter.
const (
	householdName = "Home"
	kidsRoomName  = "Kids' room"
	childName     = "emma"
	kidsRouteFile = "kids.yaml"
	kidsPath      = "/kids/v1/playlists"
	// bedtimeHour is the household's hour at the demo's run: the rule's
	// window (07:00–20:00) is closed then, whatever the hour on the server.
	bedtimeHour = 21
	// windowStart and windowEnd are the child's hours.
	windowStart, windowEnd = "07:00", "20:00"
)

// kidsRoute is the gateway route the kids' speaker calls: the cloud API
// again, with the households' rules asked about every request (GET is
// `use`).
func kidsRoute(upstream string) string {
	return fmt.Sprintf(`# The kids' speakers' API of thingid's demo manufacturer (written by thingid demo).
routes:
  - name: acme-kids
    match: {pathPrefix: /kids, methods: [GET]}
    upstream: {url: "%s"}
    filters:
      - oauth2:
          scopes: {"*": [device]}
      - policy:
          actions: {GET: use}
`, upstream)
}

// bedtimeZone is the fixed-offset zone (IANA's Etc/GMT±N, whose sign is
// POSIX's: Etc/GMT-3 is UTC+3) in which it is bedtimeHour when it is now
// UTC: the demo's trick to run at 21:00 on the household's clock at any
// hour of the day, since the server's clock decides and no client may send
// a time.
func bedtimeZone(now time.Time) string {
	off := (bedtimeHour - now.UTC().Hour() + 24) % 24 // hours east of UTC, 0…23
	if off > 11 {
		off -= 24 // -12…11: Etc/GMT+12 … Etc/GMT-11
	}
	switch {
	case off > 0:
		return fmt.Sprintf("Etc/GMT-%d", off)
	case off < 0:
		return fmt.Sprintf("Etc/GMT+%d", -off)
	}
	return "Etc/GMT"
}

// householdView is what GET /api/v1/households/{id} answers, in part.
type householdView struct {
	ID       string `json:"id"`
	TimeZone string `json:"timeZone"`
	Rules    []struct {
		ID   string `json:"id"`
		Text string `json:"text"`
	} `json:"rules"`
}

// householdRule is a rule of the JSON API (internal/policy.Rule).
type householdRule struct {
	ID      string         `json:"id,omitempty"`
	Effect  string         `json:"effect"`
	Who     map[string]any `json:"who"`
	Things  map[string]any `json:"things"`
	Actions []string       `json:"actions"`
	When    map[string]any `json:"when,omitempty"`
}

// household creates the owner's household on a clock past the child's
// hours, with the kids' room, and puts the kids' route behind the gateway.
func (s *story) household(ctx context.Context) (string, error) {
	tz := bedtimeZone(time.Now())
	var h householdView
	if err := s.user.sendJSON(ctx, http.MethodPost, "/api/v1/households", map[string]string{"name": householdName, "timeZone": tz}, http.StatusCreated, &h); err != nil {
		return "", err
	}
	s.home = h.ID
	var room struct {
		ID string `json:"id"`
	}
	if err := s.user.sendJSON(ctx, http.MethodPost, "/api/v1/households/"+url.PathEscape(s.home)+"/rooms", map[string]string{"name": kidsRoomName}, http.StatusCreated, &room); err != nil {
		return "", err
	}
	s.kidsRoom = room.ID
	if _, err := writeRoute(ctx, s.ep, s.platform.Config.Gateway.Routes, kidsRouteFile, kidsRoute(s.cloud.URL), kidsPath); err != nil {
		return "", err
	}
	loc, err := time.LoadLocation(tz)
	if err != nil {
		return "", fmt.Errorf("the household's time zone: %w", err)
	}
	local := time.Now().In(loc).Format("15:04")
	return fmt.Sprintf("%s created the household %q with the room %q in the time zone %s, where it is %s now: the server's clock decides and no client sends a time, so the demo picks the zone where it is past %s whenever you run it; %s%s → cloud API with filters oauth2 and policy",
		s.user.name, householdName, kidsRoomName, tz, local, windowEnd, s.ep.GatewayURL, "/kids"), nil
}

// kidsSpeaker: the owner pairs the second speaker of the batch and places
// it in the kids' room.
func (s *story) kidsSpeaker(ctx context.Context) (string, error) {
	d := s.devices[1]
	dev, err := sdk.New(sdk.Config{Server: s.ep.URL, CertFile: d.CertFile, KeyFile: d.KeyFile, RootCAs: s.ep.Roots, Timeout: stepTimeout})
	if err != nil {
		return "", err
	}
	s.kids = dev
	if _, err := s.pairFor(ctx, s.user); err != nil {
		return "", err
	}
	if err := s.user.sendJSON(ctx, http.MethodPut, "/api/v1/households/"+url.PathEscape(s.home)+"/things/"+url.PathEscape(d.Thing),
		map[string]string{"roomId": s.kidsRoom}, http.StatusOK, nil); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s paired %s at /device and placed it in %q (PUT /api/v1/households/%s/things/%s)", s.user.name, d.Serial, kidsRoomName, s.home, d.Thing), nil
}

// pairFor runs the device flow of the kids' speaker, p entering its code
// and allowing; the tokens act for p.
func (s *story) pairFor(ctx context.Context, p *person) (*sdk.TokenSource, error) {
	pctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	decided := make(chan error, 1)
	ts, err := s.kids.Pair(pctx, func(_ context.Context, code sdk.UserCode) error {
		go func() {
			c, err := p.decide(pctx, code.UserCode, "allow")
			if err == nil && c.Serial != s.devices[1].Serial {
				err = fmt.Errorf("the consent page names %s, not the kids' speaker %s", c.Serial, s.devices[1].Serial)
			}
			decided <- err
		}()
		return nil
	})
	select {
	case derr := <-decided:
		if derr != nil {
			return nil, fmt.Errorf("%s at /device: %w", p.name, derr)
		}
	default:
	}
	if err != nil {
		return nil, fmt.Errorf("pairing %s for %s: %w", s.devices[1].Serial, p.name, err)
	}
	return ts, nil
}

// child registers the owner's child, whom the owner invites as a
// dependant; the child accepts.
func (s *story) child(ctx context.Context) (string, error) {
	s.emma = newPerson(s.ep, childName, rand.Text())
	if err := s.emma.register(ctx); err != nil {
		return "", err
	}
	if err := s.emma.signIn(ctx); err != nil {
		return "", fmt.Errorf("%s signing in: %w", s.emma.name, err)
	}
	if err := s.user.sendJSON(ctx, http.MethodPost, "/api/v1/households/"+url.PathEscape(s.home)+"/invitations",
		map[string]string{"userName": childName, "role": "dependant"}, http.StatusCreated, nil); err != nil {
		return "", err
	}
	var invs struct {
		Invitations []struct {
			ID        string `json:"id"`
			Household string `json:"household"`
			InvitedBy string `json:"invitedBy"`
			Role      string `json:"role"`
		} `json:"invitations"`
	}
	if err := s.emma.sendJSON(ctx, http.MethodGet, "/api/v1/households/invitations", nil, http.StatusOK, &invs); err != nil {
		return "", err
	}
	if len(invs.Invitations) != 1 {
		return "", fmt.Errorf("%s sees %d invitations, want the one from %s", childName, len(invs.Invitations), s.user.name)
	}
	inv := invs.Invitations[0]
	if err := s.emma.sendJSON(ctx, http.MethodPost, "/api/v1/households/invitations/"+url.PathEscape(inv.ID)+"/accept", nil, http.StatusNoContent, nil); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s registered (user %s, password %s), was invited by %s to %q as a %s and accepted", s.emma.name, s.emma.id, s.emma.password, inv.InvitedBy, inv.Household, inv.Role), nil
}

// setRules replaces the household's rules; it returns the text of each as
// a guardian reads it.
func (s *story) setRules(ctx context.Context, rules ...householdRule) ([]string, error) {
	var h householdView
	if err := s.user.sendJSON(ctx, http.MethodPut, "/api/v1/households/"+url.PathEscape(s.home)+"/rules", map[string]any{"rules": rules}, http.StatusOK, &h); err != nil {
		return nil, err
	}
	var out []string
	for _, r := range h.Rules {
		out = append(out, r.Text)
	}
	return out, nil
}

// childPairs: the owner lets the child pair and use the kids' speaker at
// any time for now; the child pairs it, it streams for her and calls the
// API through the gateway.
func (s *story) childPairs(ctx context.Context) (string, error) {
	texts, err := s.setRules(ctx, householdRule{ID: "kids-speaker", Effect: "allow",
		Who: map[string]any{"kind": "member", "member": s.emma.id}, Things: map[string]any{"kind": "room", "id": s.kidsRoom},
		Actions: []string{"pair", "use"}})
	if err != nil {
		return "", err
	}
	ts, err := s.pairFor(ctx, s.emma)
	if err != nil {
		return "", err
	}
	s.kidsTokens = ts
	tctx, cancel := context.WithTimeout(ctx, stepTimeout)
	defer cancel()
	tok, err := ts.TokenContext(tctx)
	if err != nil {
		return "", err
	}
	d := s.devices[1]
	cert, err := tls.LoadX509KeyPair(d.CertFile, d.KeyFile)
	if err != nil {
		return "", fmt.Errorf("the kids' speaker's certificate: %w", err)
	}
	topic := "things/" + d.Thing + "/commands/#"
	if s.kidsStream, err = connectMQTT(ctx, s.ep, d.Thing, tok.AccessToken, topic, &cert); err != nil {
		return "", err
	}
	status, body, err := s.kidsCall(ctx)
	if err != nil {
		return "", err
	}
	if status != http.StatusOK {
		return "", fmt.Errorf("GET %s%s for %s answered %d: %s", s.ep.GatewayURL, kidsPath, s.emma.name, status, body)
	}
	return fmt.Sprintf("%s's rule: %s; %s paired %s at /device (it now acts for her, %s stays its owner), streams on %s (subscribed to %s) and its GET %s%s answered 200",
		s.user.name, strings.Join(texts, "; "), s.emma.name, d.Serial, s.user.name, s.ep.BrokerURL, topic, s.ep.GatewayURL, kidsPath), nil
}

// kidsCall calls the kids' route as the kids' speaker, with its
// certificate and the child's token.
func (s *story) kidsCall(ctx context.Context) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.ep.GatewayURL+kidsPath, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := s.kids.HTTPClient(s.kidsTokens).Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("GET %s%s: %w", s.ep.GatewayURL, kidsPath, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var p struct {
		Error string `json:"error"`
	}
	msg := problemDetail(b)
	if json.Unmarshal(b, &p) == nil && p.Error != "" {
		msg = p.Error + ": " + msg
	}
	return resp.StatusCode, msg, nil
}

// bedtime: the owner limits the child to 07:00–20:00; on the household's
// clock that window is closed, so the broker ends the kids' speaker's
// stream at once.
func (s *story) bedtime(ctx context.Context) (string, error) {
	texts, err := s.setRules(ctx, householdRule{ID: "kids-speaker", Effect: "allow",
		Who: map[string]any{"kind": "member", "member": s.emma.id}, Things: map[string]any{"kind": "room", "id": s.kidsRoom},
		Actions: []string{"use"}, When: map[string]any{"start": windowStart, "end": windowEnd}})
	if err != nil {
		return "", err
	}
	_, _, err = await(ctx, s.kidsStream.msgs, "the kids' speaker's MQTT connection", 0, lockoutTimeout, "the broker to end it", func(message) bool { return false })
	var ended *streamEnded
	if !errors.As(err, &ended) {
		return "", fmt.Errorf("the rule is %s; the broker did not end the stream: %w", strings.Join(texts, "; "), err)
	}
	return fmt.Sprintf("%s's rule now: %s. It is past %s in the household: the broker ended the kids' speaker's stream (MQTT 5 DISCONNECT 0x%02X: %s)",
		s.user.name, strings.Join(texts, "; "), windowEnd, ended.code, ended.reason), nil
}

// kidsRefused: the kids' speaker's call for the child is refused at the
// gateway, with the reason.
func (s *story) kidsRefused(ctx context.Context) (string, error) {
	status, body, err := s.kidsCall(ctx)
	if err != nil {
		return "", err
	}
	if status != http.StatusForbidden || !strings.HasPrefix(body, "policy_denied: ") {
		return "", fmt.Errorf("GET %s%s for %s after %s answered %d, want 403: %s", s.ep.GatewayURL, kidsPath, s.emma.name, windowEnd, status, body)
	}
	return fmt.Sprintf("the kids' speaker's GET %s%s for %s: 403 %s", s.ep.GatewayURL, kidsPath, s.emma.name, body), nil
}

// why: the guardian asks the household's preview why.
func (s *story) why(ctx context.Context) (string, error) {
	var d struct {
		Allowed bool   `json:"allowed"`
		Rule    string `json:"rule"`
		Reason  string `json:"reason"`
		Local   string `json:"localTime"`
	}
	if err := s.user.sendJSON(ctx, http.MethodPost, "/api/v1/households/"+url.PathEscape(s.home)+"/decisions",
		map[string]string{"userId": s.emma.id, "thingId": s.devices[1].Thing, "action": "use"}, http.StatusOK, &d); err != nil {
		return "", err
	}
	if d.Allowed {
		return "", fmt.Errorf("the preview says %s may use the kids' speaker now (%s, %s)", s.emma.name, d.Reason, d.Local)
	}
	// The refusals of the doors, as `thingid audit --action policy.deny`
	// reads them.
	page, err := audit.Read(ctx, s.platform.Store, audit.Query{Filter: audit.Filter{Actor: store.TextMatch{Value: "user:" + s.emma.id},
		Action: store.TextMatch{Value: "policy.deny"}}, OldestFirst: true, Limit: audit.MaxLimit})
	if err != nil {
		return "", err
	}
	var doors []string
	for _, r := range page.Records {
		var det struct {
			Door string `json:"door"`
			Rule string `json:"rule"`
		}
		if json.Unmarshal(r.Detail, &det) == nil && det.Rule == d.Rule && !slices.Contains(doors, det.Door) {
			doors = append(doors, det.Door)
		}
	}
	if !slices.Contains(doors, "gateway") || !slices.Contains(doors, "broker") {
		return "", fmt.Errorf("the audit log's policy.deny records of %s name the rule %s at the doors %v, want the gateway and the broker", s.emma.name, d.Rule, doors)
	}
	return fmt.Sprintf("%s asks the household (POST /api/v1/households/%s/decisions): not allowed at %s, rule %s: %s; the audit log holds the refusals (policy.deny, rule %s) at the doors %s",
		s.user.name, s.home, d.Local, d.Rule, d.Reason, d.Rule, strings.Join(doors, ", ")), nil
}
