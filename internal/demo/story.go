package demo

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/thingid/thingid/examples/smart-speaker/speaker"
	"github.com/thingid/thingid/internal/factory"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/sdk"
)

// The story's cast and pace.
const (
	// stepTimeout bounds every wait of a step (the device flow's polling
	// interval is 5 s, so pairing takes a few seconds).
	stepTimeout = 30 * time.Second
	// lockoutTimeout bounds the wait for the speaker to be locked out
	// after unlinking; the platform does it within a second.
	lockoutTimeout = 10 * time.Second

	manufacturer = "Acme"
	model        = "Speaker-1"
	batchSize    = 3
	userName     = "alice"
	// serviceName is the manufacturer's cloud service on the broker.
	serviceName       = "acme-telemetry"
	telemetryTopic    = "things/+/telemetry"
	telemetryInterval = time.Second
	// actor is who the audit log says made the batch and the client.
	actor = "cli:demo"
)

// device is one speaker of the factory batch.
type device struct {
	Thing, Serial     string
	CertFile, KeyFile string
}

// story is one run of the smart-speaker story against a platform: the
// participants, and what each reported.
type story struct {
	con *console
	log *slog.Logger
	ep  endpoints
	// platform makes the factory batch and the cloud service's client, as
	// the command line does on the data directory.
	platform *server.Platform
	// decision is the user's answer on the consent page.
	decision string
	// musicClient is the music service's client, trusted by the platform.
	musicClient credentials

	cloud   *cloudAPI
	user    *person
	bob     *person // the user's friend, who owns a playlist
	music   *musicService
	service *subscriber
	devices []device
	request umaRequest // the speaker's request for the playlist
	share   string     // the share that approving it made

	// The household: its id, the kids' room, the child, the kids' speaker
	// (the batch's second) and its stream for the child.
	home, kidsRoom string
	emma           *person
	kids           *sdk.Client
	kidsTokens     *sdk.TokenSource
	kidsStream     *subscriber

	events       *feed[speaker.Event]
	stopSpeaker  context.CancelFunc
	speakerDone  chan struct{}
	paired       int // index of the paired event
	revokedMark  int // speaker events before the share's revocation
	unlinkedMark int // speaker events before the unlinking
}

// step is one line of the story.
type step struct {
	name string
	run  func(context.Context) (string, error)
}

// StepError is the step the story stopped at.
type StepError struct {
	Step string
	Err  error
}

func (e *StepError) Error() string { return fmt.Sprintf("step %q failed: %v", e.Step, e.Err) }
func (e *StepError) Unwrap() error { return e.Err }

// walk runs the steps in order, one line each, and stops at the first
// that fails.
func (s *story) walk(ctx context.Context, steps []step) error {
	for _, st := range steps {
		msg, err := st.run(ctx)
		if err != nil {
			s.con.step(false, st.name, err.Error())
			return &StepError{Step: st.name, Err: err}
		}
		s.con.step(true, st.name, msg)
	}
	return nil
}

// steps is the whole story, in order.
func (s *story) steps() []step {
	return []step{
		{"gateway route", s.routeCloudAPI},
		{"factory", s.factory},
		{"registration", s.registration},
		{"friend", s.friend},
		{"music service", s.startMusic},
		{"cloud service", s.cloudService},
		{"call home", s.callHome},
		{"pairing", s.pairing},
		{"owner", s.owner},
		{"cloud API", s.cloudAPICall},
		{"telemetry", s.telemetry},
		{"CoAP", s.coapThermostat},
		{"throttling", s.throttling},
		{"playlist asked", s.playlistAsked},
		{"shared", s.shared},
		{"playing", s.playing},
		{"revoked", s.revoked},
		{"refused", s.refused},
		{"unlink", s.unlink},
		{"disconnected", s.disconnected},
		{"token refused", s.tokenRefused},
		{"unpaired", s.unpaired},
		{"household", s.household},
		{"kids' speaker", s.kidsSpeaker},
		{"child", s.child},
		{"child pairs", s.childPairs},
		{"bedtime", s.bedtime},
		{"kids refused", s.kidsRefused},
		{"why", s.why},
	}
}

// close stops the participants the story started.
func (s *story) close() {
	if s.stopSpeaker != nil {
		s.stopSpeaker()
		<-s.speakerDone
	}
	if s.kidsStream != nil {
		s.kidsStream.close()
	}
	if s.service != nil {
		s.service.close()
	}
	if s.music != nil {
		s.music.close()
	}
	if s.cloud != nil {
		s.cloud.close()
	}
}

// routeCloudAPI starts the manufacturer's cloud API and puts it behind
// the gateway.
func (s *story) routeCloudAPI(ctx context.Context) (string, error) {
	c, err := startCloudAPI()
	if err != nil {
		return "", err
	}
	s.cloud = c
	path, err := c.register(ctx, s.ep, s.platform.Config.Gateway.Routes)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s%s → cloud API %s with filters oauth2 (scope device) and throttle (%d calls a minute per speaker), from %s; 401 without a token",
		s.ep.GatewayURL, apiPath, c.URL, apiRate, path), nil
}

// factory issues the batch of speakers, as `thingid factory issue` does.
func (s *story) factory(ctx context.Context) (string, error) {
	_, ca, err := s.platform.PKI()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(s.platform.Config.Home, "factory")
	sum, err := factory.Issue(ctx, s.platform.Identity, ca, factory.Options{Model: model, Manufacturer: manufacturer,
		Count: batchSize, Out: dir, Actor: actor})
	if err == nil && len(sum.Failed) > 0 {
		err = sum.Failed[0]
	}
	if err != nil {
		return "", fmt.Errorf("issuing %d speakers: %w", batchSize, err)
	}
	if s.devices, err = readBatch(dir); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d %s %s speakers with keys and certificates from the device CA in %s (%s)",
		len(s.devices), manufacturer, model, dir, factory.ManifestFile), nil
}

// readBatch reads the factory's manifest in dir.
func readBatch(dir string) ([]device, error) {
	f, err := os.Open(filepath.Join(dir, factory.ManifestFile))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ds, err := parseManifest(f, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return ds, nil
}

// parseManifest reads the thing id and serial of each device of a
// manifest (after its header); their files are in dir/<serial>.
func parseManifest(r io.Reader, dir string) ([]device, error) {
	rows, err := csv.NewReader(r).ReadAll()
	if err != nil {
		return nil, err
	}
	var out []device
	for _, row := range rows[min(1, len(rows)):] {
		if len(row) < 2 || row[0] == "" || row[1] == "" || row[1] != filepath.Base(row[1]) || row[1] == "." || row[1] == ".." {
			return nil, fmt.Errorf("a row without a thing id and a serial number usable as a file name: %q", row)
		}
		d := filepath.Join(dir, row[1])
		out = append(out, device{Thing: row[0], Serial: row[1], CertFile: filepath.Join(d, "device.pem"), KeyFile: filepath.Join(d, "device.key")})
	}
	if len(out) == 0 {
		return nil, errors.New("no device listed")
	}
	return out, nil
}

// registration self-registers the buyer through the public API.
func (s *story) registration(ctx context.Context) (string, error) {
	s.user = newPerson(s.ep, userName, rand.Text())
	if err := s.user.register(ctx); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s registered at %s/api/v1/register (user %s, password %s)", s.user.name, s.ep.URL, s.user.id, s.user.password), nil
}

// cloudService registers the manufacturer's service, gets it a token by
// client credentials and subscribes it to every speaker's telemetry.
func (s *story) cloudService(ctx context.Context) (string, error) {
	srv, cleanup, err := s.platform.OAuthAdmin(ctx, s.log)
	if err != nil {
		return "", err
	}
	c, secret, err := srv.CreateClient(ctx, actor, oauth.ClientSpec{Name: serviceName,
		GrantTypes: []string{"client_credentials"}, Scopes: []string{"mqtt:sub:" + telemetryTopic}})
	cleanup()
	if err != nil {
		return "", fmt.Errorf("registering the client %s: %w", serviceName, err)
	}
	cc := clientcredentials.Config{ClientID: c.ID, ClientSecret: secret, TokenURL: s.ep.URL + "/oauth2/token",
		Scopes: []string{"mqtt:sub:" + telemetryTopic}}
	tok, err := cc.Token(context.WithValue(ctx, oauth2.HTTPClient, s.ep.client()))
	if err != nil {
		return "", fmt.Errorf("client credentials token for %s: %w", serviceName, err)
	}
	if s.service, err = subscribe(ctx, s.ep, c.ID, tok.AccessToken, telemetryTopic); err != nil {
		return "", err
	}
	return fmt.Sprintf("client %s (client credentials, scope mqtt:sub:%s) subscribed to %s on %s", c.ID, telemetryTopic, telemetryTopic, s.ep.BrokerURL), nil
}

// callHome powers the first speaker on: it presents its factory
// certificate over mutual TLS.
func (s *story) callHome(ctx context.Context) (string, error) {
	d := s.devices[0]
	s.events = newFeed[speaker.Event]()
	sctx, cancel := context.WithCancel(ctx)
	s.stopSpeaker, s.speakerDone = cancel, make(chan struct{})
	cfg := speaker.Config{
		Server: s.ep.URL, RootCAs: s.ep.Roots, CertFile: d.CertFile, KeyFile: d.KeyFile,
		GatewayURL: s.ep.GatewayURL, APIPath: apiPath, APIInterval: apiInterval,
		BrokerURL: s.ep.BrokerURL, TelemetryInterval: telemetryInterval,
		Once: true, Timeout: stepTimeout, RetryFor: stepTimeout,
		Display: func(line string) { s.con.display(line) },
		Events:  s.events.add,
		Logger:  s.log.With("component", "speaker"),
	}
	if s.music != nil {
		cfg.PlaylistURL, cfg.PlaylistInterval = s.ep.GatewayURL+s.playlistPath(), apiInterval
	}
	go func() {
		defer close(s.speakerDone)
		s.events.end(speaker.Run(sctx, cfg))
	}()
	e, _, err := await(ctx, s.events, "the speaker", 0, stepTimeout, "it called home", is(speaker.StepCalledHome))
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s %s", d.Serial, e.Message), nil
}

// pairing: the user signs in on the laptop, enters the code the speaker
// shows at /device and answers the consent page.
func (s *story) pairing(ctx context.Context) (string, error) {
	e, _, err := await(ctx, s.events, "the speaker", 0, stepTimeout, "a user code on its display", is(speaker.StepUserCode))
	if err != nil {
		return "", err
	}
	code := e.UserCode.UserCode
	if err := s.user.signIn(ctx); err != nil {
		return "", fmt.Errorf("%s signing in: %w", s.user.name, err)
	}
	c, err := s.user.decide(ctx, code, s.decision)
	if err != nil {
		return "", fmt.Errorf("%s at /device: %w", s.user.name, err)
	}
	_, i, err := await(ctx, s.events, "the speaker", 0, stepTimeout, "its tokens", is(speaker.StepPaired))
	if err != nil {
		return "", fmt.Errorf("%s entered %s at %s/device, saw %s %s and chose %s (%q); %w", s.user.name, code, s.ep.URL, c.Model, c.Serial, s.decision, c.Outcome, err)
	}
	s.paired = i
	return fmt.Sprintf("%s signed in, entered %s at %s/device, saw %s %s on the consent page and allowed; the speaker got tokens acting for %s, bound to its certificate",
		s.user.name, code, s.ep.URL, c.Model, c.Serial, s.user.name), nil
}

// owner checks the owner relationship through the user's "my devices".
func (s *story) owner(ctx context.Context) (string, error) {
	ds, err := s.user.devices(ctx)
	if err != nil {
		return "", err
	}
	for _, d := range ds {
		if d.ID == s.devices[0].Thing {
			return fmt.Sprintf("%s owns %s %s (GET /api/v1/devices: linked since %s)", s.user.name, d.Model, d.SerialNumber, d.LinkedSince.Local().Format(time.TimeOnly)), nil
		}
	}
	return "", fmt.Errorf("GET /api/v1/devices of %s does not list the speaker %s: %+v", s.user.name, s.devices[0].Thing, ds)
}

// cloudAPICall waits for the speaker's call of the cloud API through the
// gateway, and for the cloud API to see who called.
func (s *story) cloudAPICall(ctx context.Context) (string, error) {
	e, _, err := await(ctx, s.events, "the speaker", s.paired, stepTimeout, "a cloud API call through the gateway", is(speaker.StepCloudAPI))
	if err != nil {
		return "", err
	}
	call, _, err := await(ctx, s.cloud.calls, "the cloud API", 0, stepTimeout, "a call from the speaker", func(c apiCall) bool { return c.Thing == s.devices[0].Thing })
	if err != nil {
		return "", err
	}
	if call.Subject != s.user.id {
		return "", fmt.Errorf("the gateway told the cloud API the caller is %q, not %s (%s)", call.Subject, s.user.name, s.user.id)
	}
	return fmt.Sprintf("the speaker's GET %s%s answered %d; the gateway told the cloud API the caller: subject %s (%s), thing %s",
		s.ep.GatewayURL, apiPath, e.Status, call.Subject, s.user.name, call.Thing), nil
}

// telemetry waits for the cloud service to receive the speaker's telemetry.
func (s *story) telemetry(ctx context.Context) (string, error) {
	topic := "things/" + s.devices[0].Thing + "/telemetry"
	m, _, err := await(ctx, s.service.msgs, "the cloud service's MQTT connection", 0, stepTimeout, "telemetry on "+topic, func(m message) bool { return m.Topic == topic })
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("the cloud service received %s %s", m.Topic, m.Payload), nil
}

// throttling waits for the gateway to refuse a call over the rate.
func (s *story) throttling(ctx context.Context) (string, error) {
	e, i, err := await(ctx, s.events, "the speaker", s.paired, stepTimeout, "the gateway to throttle it (429)", is(speaker.StepThrottled))
	if err != nil {
		return "", err
	}
	passed := 0
	for _, x := range s.events.snapshot(s.paired)[:i-s.paired] {
		if x.Step == speaker.StepCloudAPI {
			passed++
		}
	}
	return fmt.Sprintf("after %d calls the gateway answered 429 Too Many Requests, Retry-After %s (%d a minute per speaker)", passed, e.RetryAfter, apiRate), nil
}

// unlink: the user removes the speaker from "my devices".
func (s *story) unlink(ctx context.Context) (string, error) {
	s.unlinkedMark = s.events.len()
	if err := s.user.unlink(ctx, s.devices[0].Thing); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s unlinked %s (DELETE /api/v1/devices/%s): owner relationship removed, its grants revoked", s.user.name, s.devices[0].Serial, s.devices[0].Thing), nil
}

// disconnected waits for the broker to close the speaker's connection.
func (s *story) disconnected(ctx context.Context) (string, error) {
	e, _, err := await(ctx, s.events, "the speaker", s.unlinkedMark, lockoutTimeout, "the broker to close its MQTT connection", is(speaker.StepMQTTDisconnected))
	if err != nil {
		return "", err
	}
	return "the speaker reports: " + e.Message, nil
}

// tokenRefused presents the speaker's last access token, with its
// certificate, to the gateway: it must be refused now.
func (s *story) tokenRefused(ctx context.Context) (string, error) {
	calls := s.cloud.calls.snapshot(0)
	var token string
	for _, c := range calls {
		if c.Thing == s.devices[0].Thing && c.Token != "" {
			token = c.Token
		}
	}
	if token == "" {
		return "", errors.New("the cloud API saw no token of the speaker")
	}
	cert, err := tls.LoadX509KeyPair(s.devices[0].CertFile, s.devices[0].KeyFile)
	if err != nil {
		return "", fmt.Errorf("the speaker's certificate: %w", err)
	}
	hc := s.ep.client()
	hc.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{cert}
	var challenge string
	err = poll(ctx, lockoutTimeout, "the gateway to refuse the speaker's last token", func(ctx context.Context) (bool, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.ep.GatewayURL+apiPath, nil)
		if err != nil {
			return false, err
		}
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(req)
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		challenge = resp.Header.Get("WWW-Authenticate")
		return resp.StatusCode == http.StatusUnauthorized, fmt.Errorf("it still answers %s", resp.Status)
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("the speaker's last access token, with its certificate: 401 from the gateway (%s)", challenge), nil
}

// unpaired waits for the speaker to notice it was unlinked.
func (s *story) unpaired(ctx context.Context) (string, error) {
	e, _, err := await(ctx, s.events, "the speaker", s.unlinkedMark, lockoutTimeout, "it to notice the unlinking", is(speaker.StepUnlinked))
	if err != nil {
		return "", err
	}
	return "the speaker noticed and is unpaired again: " + e.Message, nil
}

// is matches speaker events of one step.
func is(step speaker.Step) func(speaker.Event) bool {
	return func(e speaker.Event) bool { return e.Step == step }
}
