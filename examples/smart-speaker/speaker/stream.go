package speaker

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/thingid/thingid/examples/internal/mqttlink"
	"github.com/thingid/thingid/sdk"
)

// maxBackoff caps the wait between two connection attempts to the broker.
const maxBackoff = 30 * time.Second

// loop is the paired life of the speaker: everything happens on its one
// goroutine (commands, telemetry, API calls, token and certificate checks),
// so the player needs no lock.
type loop struct {
	s    *speaker
	ctx  context.Context
	ts   *sdk.TokenSource
	msgs chan mqttlink.Message // from the MQTT connection

	conn        *mqttlink.Conn
	backoff     time.Duration
	reconnect   *time.Timer // the next connection attempt
	apiDue      *time.Timer // the next call of the cloud API
	playlistDue *time.Timer // the next request for the shared playlist
	uma         *http.Client
	playing     string // the name of the shared playlist being played
	answer      string // the last answer to the playlist request (see report)

	player  player
	started time.Time
	seq     int64
	obeyed  int64
}

// outage follows a service that stopped answering: a service that never
// answered fails the run at once, one that did is retried for a while.
type outage struct {
	what     string
	answered bool
	since    time.Time
}

func (o *outage) ok() { o.answered, o.since = true, time.Time{} }

// failed returns the error that ends the run, or nil to retry.
func (o *outage) failed(err error, retryFor time.Duration) error {
	if !o.answered {
		return fmt.Errorf("speaker: %s: %w", o.what, err)
	}
	now := time.Now()
	if o.since.IsZero() {
		o.since = now
	}
	if now.Sub(o.since) > retryFor {
		return fmt.Errorf("speaker: %s has not answered for %s: %w", o.what, retryFor, err)
	}
	return nil
}

// stream runs the paired life until the speaker is unlinked (an
// *unlinkedError), ctx ends, or a failure it cannot get past.
func (s *speaker) stream(ctx context.Context, ts *sdk.TokenSource) error {
	ctx, cancel := context.WithCancel(ctx)
	l := &loop{s: s, ctx: ctx, ts: ts, msgs: make(chan mqttlink.Message, 64), uma: s.dev.UMAClient(ts),
		player: newPlayer(), started: time.Now(), reconnect: time.NewTimer(0), apiDue: time.NewTimer(0), playlistDue: time.NewTimer(0)}
	defer func() {
		cancel() // first: a message on its way to the loop gives up
		l.hangUp()
	}()
	defer l.reconnect.Stop()
	defer l.apiDue.Stop()
	defer l.playlistDue.Stop()
	if s.cfg.BrokerURL == "" {
		l.reconnect.Stop()
	}
	if s.cfg.GatewayURL == "" {
		l.apiDue.Stop()
	}
	if s.cfg.PlaylistURL == "" {
		l.playlistDue.Stop()
	}
	tick := time.NewTicker(s.cfg.TelemetryInterval)
	defer tick.Stop()
	for {
		var closed <-chan struct{}
		if l.conn != nil {
			closed = l.conn.Done()
		}
		var err error
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m := <-l.msgs:
			l.obey(m)
		case <-closed:
			err = l.disconnected()
		case <-l.reconnect.C:
			err = l.connect()
		case <-tick.C:
			if err = l.keepFresh(); err == nil {
				l.publish()
			}
		case <-l.apiDue.C:
			err = l.callAPI()
		case <-l.playlistDue.C:
			err = l.askPlaylist()
		}
		if err != nil {
			return err
		}
	}
}

// connect opens the MQTT connection: TLS with the device certificate, the
// thing id as client identifier, the access token (bound to that
// certificate) as credentials, subscribed to the speaker's commands.
func (l *loop) connect() error {
	s := l.s
	tctx, cancel := context.WithTimeout(l.ctx, s.cfg.Timeout)
	defer cancel()
	tok, err := l.ts.TokenContext(tctx) // renews the certificate first when due
	if err != nil {
		return l.tokenTrouble(err)
	}
	s.noticeRenewal()
	cert, err := mqttlink.LoadCertificate(s.cfg.CertFile, s.cfg.KeyFile, s.dev.Certificate())
	if err != nil {
		return l.mqttTrouble(err)
	}
	conn, err := mqttlink.Dial(l.ctx, mqttlink.Config{
		Broker: s.cfg.BrokerURL, RootCAs: s.cfg.RootCAs, Certificate: cert,
		ClientID: s.thing, Token: tok.AccessToken, Timeout: s.cfg.Timeout,
		Subscribe: []string{l.commandTopic() + "#"},
		OnMessage: func(topic string, payload []byte) {
			select {
			case l.msgs <- mqttlink.Message{Topic: topic, Payload: payload}:
			case <-l.ctx.Done():
			}
		},
	})
	if err != nil {
		return l.mqttTrouble(err)
	}
	l.conn, l.backoff = conn, 0
	s.brokerOut.ok()
	s.emit(Event{Step: StepMQTTConnected, Message: fmt.Sprintf("connected to %s as %s, subscribed to %s#", s.cfg.BrokerURL, s.thing, l.commandTopic())})
	return nil
}

func (l *loop) commandTopic() string { return "things/" + l.s.thing + "/commands/" }

// disconnected handles the end of the MQTT connection: unlinked, or retried.
func (l *loop) disconnected() error {
	err := l.conn.Err()
	l.conn = nil
	l.s.emit(Event{Step: StepMQTTDisconnected, Message: "MQTT connection ended: " + errText(err), Err: err})
	if u := l.unlinked("the broker closed the connection", err); u != nil {
		return u
	}
	l.retry()
	return nil
}

// mqttTrouble handles a connection attempt that failed.
func (l *loop) mqttTrouble(err error) error {
	if mqttlink.Revoked(err) {
		if u := l.unlinked("the broker refused the speaker", err); u != nil {
			return u
		}
	}
	var refused *mqttlink.RefusedError
	if errors.As(err, &refused) && !mqttlink.Revoked(err) {
		// Not a matter of time: a client identifier or a method refused.
		return fmt.Errorf("speaker: connecting to the MQTT broker at %s: %w", l.s.cfg.BrokerURL, err)
	}
	if ferr := l.s.brokerOut.failed(err, l.s.cfg.RetryFor); ferr != nil {
		return ferr
	}
	l.retry()
	l.s.emit(Event{Step: StepTrouble, Message: fmt.Sprintf("MQTT: %v; trying again in %s", err, l.backoff), Err: err})
	return nil
}

// retry schedules the next connection attempt, waiting longer each time.
func (l *loop) retry() {
	l.backoff = min(max(2*l.backoff, time.Second), maxBackoff)
	l.reconnect.Reset(l.backoff)
}

// unlinked asks the platform whether the speaker is still paired after
// what happened; an *unlinkedError if it is not, nil if it is or the
// platform cannot tell now.
func (l *loop) unlinked(what string, cause error) error {
	tctx, cancel := context.WithTimeout(l.ctx, l.s.cfg.Timeout)
	defer cancel()
	me, err := l.s.whoAmI(tctx)
	if err != nil || me.Paired {
		return nil
	}
	return &unlinkedError{why: what + " and the platform says the speaker is no longer paired", err: cause}
}

// keepFresh renews the certificate when due and the access token before it
// expires; the MQTT connection takes the new token (re-authentication) or,
// after a renewal, reconnects with the new certificate.
func (l *loop) keepFresh() error {
	s := l.s
	tctx, cancel := context.WithTimeout(l.ctx, s.cfg.Timeout)
	defer cancel()
	if _, err := s.dev.RenewIfDue(tctx); err != nil {
		s.emit(Event{Step: StepTrouble, Message: "certificate renewal failed; the current one is still valid, trying again later", Err: err})
	}
	s.noticeRenewal()
	tok, err := l.ts.TokenContext(tctx)
	if err != nil {
		return l.tokenTrouble(err)
	}
	s.platformOut.ok()
	s.noticeRenewal()
	if l.conn == nil {
		return nil
	}
	reauthenticated, err := l.conn.Renew(tctx, tok.AccessToken, s.dev.Certificate())
	switch {
	case errors.Is(err, mqttlink.ErrNewCertificate):
		// The token is bound to the renewed certificate: a new handshake.
		l.hangUp()
		l.backoff = 0
		l.reconnect.Reset(0)
	case err != nil:
		s.emit(Event{Step: StepTrouble, Message: fmt.Sprintf("MQTT re-authentication failed (%v); reconnecting", err), Err: err})
		l.hangUp()
		l.backoff = 0
		l.reconnect.Reset(0)
	case reauthenticated:
		s.emit(Event{Step: StepReauthenticated, Message: "the MQTT connection now runs on the new token (MQTT 5 AUTH)"})
	}
	return nil
}

// tokenTrouble handles a token the SDK could not get.
func (l *loop) tokenTrouble(err error) error {
	switch {
	case invalidGrant(err):
		return &unlinkedError{why: "the platform refused the refresh token (invalid_grant)", err: err}
	case errors.Is(err, sdk.ErrCertificateExpired), l.ctx.Err() != nil:
		return err
	}
	if ferr := l.s.platformOut.failed(err, l.s.cfg.RetryFor); ferr != nil {
		return ferr
	}
	l.s.emit(Event{Step: StepTrouble, Message: fmt.Sprintf("getting a fresh token failed (%v); trying again", err), Err: err})
	return nil
}

// publish sends the telemetry message, when connected.
func (l *loop) publish() {
	if l.conn == nil {
		return
	}
	l.seq++
	t := telemetry{Seq: l.seq, UptimeS: int64(time.Since(l.started).Seconds()), Commands: l.obeyed, player: l.player}
	topic := "things/" + l.s.thing + "/telemetry"
	if err := l.conn.Publish(l.ctx, topic, t.payload()); err != nil {
		l.s.emit(Event{Step: StepTrouble, Message: "telemetry not delivered", Topic: topic, Err: err})
		return
	}
	l.s.emit(Event{Step: StepTelemetry, Message: "published " + string(t.payload()), Topic: topic, Payload: t.payload()})
}

// obey carries out a command from the broker and shows the result.
func (l *loop) obey(m mqttlink.Message) {
	name, ok := strings.CutPrefix(m.Topic, l.commandTopic())
	if !ok {
		return // not for this speaker: the broker never sends those
	}
	c, err := parseCommand(name, m.Payload)
	if err != nil {
		l.s.emit(Event{Step: StepCommand, Message: "ignored a command: " + err.Error(), Topic: m.Topic, Payload: m.Payload, Err: err})
		return
	}
	l.obeyed++
	line := l.player.apply(c)
	l.s.display(line)
	l.s.emit(Event{Step: StepCommand, Message: fmt.Sprintf("%s %s: now %s", c.name, strings.TrimSpace(string(m.Payload)), line), Topic: m.Topic, Payload: m.Payload})
}

// callAPI calls the cloud API and schedules the next call.
func (l *loop) callAPI() error {
	s := l.s
	next := s.cfg.APIInterval
	defer func() { l.apiDue.Reset(next) }()
	tctx, cancel := context.WithTimeout(l.ctx, s.cfg.Timeout)
	tok, err := l.ts.TokenContext(tctx)
	cancel()
	if err != nil {
		return l.tokenTrouble(err)
	}
	r, err := s.callAPI(l.ctx, tok)
	if err != nil {
		if l.ctx.Err() != nil {
			return l.ctx.Err()
		}
		if ferr := s.apiOut.failed(err, s.cfg.RetryFor); ferr != nil {
			return ferr
		}
		s.emit(Event{Step: StepTrouble, Message: fmt.Sprintf("the cloud API did not answer (%v); trying again", err), Err: err})
		return nil
	}
	switch {
	case r.status >= 200 && r.status < 300:
		s.apiOut.ok()
		s.emit(Event{Step: StepCloudAPI, Status: r.status, Payload: r.body,
			Message: fmt.Sprintf("cloud API %s%s answered %d through the gateway", s.cfg.GatewayURL, s.cfg.APIPath, r.status)})
	case r.status == http.StatusTooManyRequests:
		s.apiOut.ok()
		next = max(next, r.retryAfter)
		s.emit(Event{Step: StepThrottled, Status: r.status, RetryAfter: r.retryAfter,
			Message: fmt.Sprintf("the gateway throttled the speaker (429); next call in %s", next)})
	case r.status == http.StatusUnauthorized:
		if u := l.unlinked("the gateway refused the token", fmt.Errorf("401: %s", r.challenge)); u != nil {
			return u
		}
		return fmt.Errorf("speaker: the gateway at %s refused the speaker's token (%s) while the platform says it is paired: its grant may have been revoked (pair it again), or the route expects an audience the platform's tokens lack", s.cfg.GatewayURL, r.challenge)
	case r.status == http.StatusForbidden:
		return fmt.Errorf("speaker: the gateway at %s refused the speaker (%s): %s", s.cfg.GatewayURL, r.challenge, problemDetail(r.body))
	case r.status < 500:
		return fmt.Errorf("speaker: the cloud API at %s%s answered %d: %s (is this the gateway's URL and the API's path?)", s.cfg.GatewayURL, s.cfg.APIPath, r.status, problemDetail(r.body))
	default:
		err := fmt.Errorf("the cloud API answered %d: %s", r.status, problemDetail(r.body))
		if ferr := s.apiOut.failed(err, s.cfg.RetryFor); ferr != nil {
			return ferr
		}
		s.emit(Event{Step: StepTrouble, Status: r.status, Message: err.Error() + "; trying again", Err: err})
	}
	return nil
}

// hangUp closes the MQTT connection, if any.
func (l *loop) hangUp() {
	if l.conn != nil {
		l.conn.Close()
		l.conn = nil
	}
}

func errText(err error) string {
	if err == nil {
		return "closed"
	}
	return err.Error()
}
