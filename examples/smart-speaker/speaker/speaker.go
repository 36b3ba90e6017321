// Package speaker is the smart speaker of thingid's story, a device built on
// the public sdk package: it calls home with its factory certificate, shows
// a user code on its one-line display until its owner pairs it, then calls
// the manufacturer's cloud API through the identity gateway, plays a
// playlist that someone shares with its owner (UMA 2.0, through the
// gateway), publishes telemetry and obeys commands over MQTT, keeps its
// tokens and certificate fresh, and goes back to the unpaired state when its
// owner unlinks it.
//
// It is what examples/smart-speaker runs and what `thingid demo` drives;
// like any device it knows only the platform's protocols, never its code.
package speaker

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"time"

	"github.com/thingid/thingid/sdk"
)

// Defaults of Config.
const (
	DefaultAPIPath  = "/v1/playlists"
	DefaultInterval = 10 * time.Second
	DefaultTimeout  = 30 * time.Second
	DefaultRetryFor = 2 * time.Minute
)

// Config says where the platform and its services are and who the speaker is.
type Config struct {
	// Server is the platform's base URL (its OAuth issuer), such as
	// https://localhost:8443.
	Server string
	// RootCAs verify the TLS certificates of the platform, the gateway and
	// the broker; nil uses the system's.
	RootCAs *x509.CertPool
	// CertFile and KeyFile are the factory's device.pem and device.key; a
	// certificate renewal replaces both.
	CertFile, KeyFile string
	// Scopes are asked for when pairing; empty: the platform's default for
	// things.
	Scopes []string

	// GatewayURL is the identity gateway in front of the manufacturer's
	// cloud API, such as https://localhost:9443; empty: no API calls.
	GatewayURL string
	// APIPath is the cloud API called through the gateway (GET); empty:
	// DefaultAPIPath.
	APIPath string
	// APIInterval is the time between two API calls; 0: DefaultInterval.
	APIInterval time.Duration

	// PlaylistURL is a playlist that somebody else owns and may share with
	// the speaker's owner, behind the gateway's uma route (such as
	// https://localhost:9443/music/playlists/<id>): the speaker asks for it
	// on its owner's behalf, exchanging the gateway's permission ticket for
	// an RPT with its own token as the claim token, and plays it; empty:
	// none.
	PlaylistURL string
	// PlaylistInterval is the time between two requests for the playlist,
	// which its owner may share or take back at any time (while it is not
	// shared, at least the interval the platform asks for); 0:
	// DefaultInterval.
	PlaylistInterval time.Duration

	// BrokerURL is the MQTT broker, such as mqtts://localhost:8883; empty:
	// no telemetry and no commands.
	BrokerURL string
	// TelemetryInterval is the time between two telemetry messages, and
	// between two checks of the tokens and the certificate; 0:
	// DefaultInterval.
	TelemetryInterval time.Duration

	// StateFile keeps the refresh token across restarts (mode 0600), so
	// that a paired speaker resumes without pairing again; empty: kept in
	// memory only.
	StateFile string
	// Once makes Run return nil when the speaker is unlinked, instead of
	// showing a new user code.
	Once bool
	// Timeout bounds every wait on the network; 0: DefaultTimeout.
	Timeout time.Duration
	// RetryFor is how long a broker, gateway or platform that stopped
	// answering is retried before Run gives up; 0: DefaultRetryFor. One
	// that never answered makes Run fail at once.
	RetryFor time.Duration

	// Display is the speaker's one-line display; nil prints to stdout.
	Display func(line string)
	// Events follows each step; nil: not followed. It is called on Run's
	// goroutine: it must not block for long.
	Events func(Event)
	// Logger receives the SDK's background warnings; nil: slog.Default().
	Logger *slog.Logger
}

// Step names what happened in an Event.
type Step string

// The steps of the speaker's life, in the order they usually come.
const (
	StepCalledHome         Step = "called-home"         // the platform accepted the factory certificate
	StepUserCode           Step = "user-code"           // a user code is on the display (Event.UserCode)
	StepPaired             Step = "paired"              // the owner allowed the pairing
	StepCloudAPI           Step = "cloud-api"           // the cloud API answered through the gateway (Event.Status)
	StepThrottled          Step = "throttled"           // the gateway answered 429 (Event.RetryAfter)
	StepPlaylist           Step = "playlist"            // the shared playlist came; the speaker plays it (Event.Status, Event.Payload)
	StepPlaylistWaiting    Step = "playlist-waiting"    // the playlist is not shared with the owner (any more): its owner has been asked (Event.Err)
	StepPlaylistRefused    Step = "playlist-refused"    // the playlist's owner denied the request, or the gateway or the service refused it (Event.Status, Event.Err)
	StepMQTTConnected      Step = "mqtt-connected"      // connected to the broker and subscribed to commands
	StepTelemetry          Step = "telemetry"           // a telemetry message was published (Event.Topic, Event.Payload)
	StepCommand            Step = "command"             // a command arrived (Event.Topic, Event.Payload; Event.Err if refused)
	StepTokenRefreshed     Step = "token-refreshed"     // a new access token, from the refresh token
	StepReauthenticated    Step = "reauthenticated"     // the MQTT connection took the new token (MQTT 5 AUTH)
	StepCertificateRenewed Step = "certificate-renewed" // a new device certificate over EST
	StepMQTTDisconnected   Step = "mqtt-disconnected"   // the broker closed the connection (Event.Err says why)
	StepUnlinked           Step = "unlinked"            // the owner unlinked the speaker; it is unpaired again
	StepTrouble            Step = "trouble"             // a service did not answer; the speaker retries (Event.Err)
)

// Event is one step of the speaker, for a demo or a test to follow.
type Event struct {
	Step    Step
	Time    time.Time
	Thing   string // the speaker's thing id
	Message string // what happened, in words

	UserCode   *sdk.UserCode // StepUserCode
	Status     int           // StepCloudAPI, StepThrottled, StepPlaylist, StepPlaylistRefused: the HTTP status
	RetryAfter time.Duration // StepThrottled
	Topic      string        // StepTelemetry, StepCommand
	Payload    []byte        // StepTelemetry, StepCommand; StepCloudAPI, StepPlaylist: the start of the body
	Err        error         // StepCommand (refused), StepMQTTDisconnected, StepUnlinked, StepTrouble, StepPlaylistWaiting, StepPlaylistRefused
}

// ErrPairingDenied and ErrPairingExpired are the SDK's: the owner refused
// the speaker, or nobody entered the user code in time. ErrAccessRequested
// and ErrAccessDenied are too, in the Err of playlist events: the
// playlist's owner has been asked to share it, or refused.
var (
	ErrPairingDenied   = sdk.ErrPairingDenied
	ErrPairingExpired  = sdk.ErrPairingExpired
	ErrAccessRequested = sdk.ErrAccessRequested
	ErrAccessDenied    = sdk.ErrAccessDenied
)

// Run is the speaker's life until ctx ends (it returns ctx's error), a
// failure it cannot get past (a platform that does not answer, a
// certificate the platform refuses, a denied or expired pairing), or, with
// Once, its unlinking (it returns nil).
func Run(ctx context.Context, cfg Config) error {
	s, err := newSpeaker(cfg)
	if err != nil {
		return err
	}
	for {
		ts, err := s.pairOrResume(ctx)
		if err != nil {
			return err
		}
		err = s.stream(ctx, ts)
		var u *unlinkedError
		if !errors.As(err, &u) {
			return err
		}
		s.forget()
		s.display("Unlinked from its owner")
		s.emit(Event{Step: StepUnlinked, Message: u.why, Err: u.err})
		if cfg.Once {
			return nil
		}
	}
}

// speaker is one run of the device.
type speaker struct {
	cfg   Config
	dev   *sdk.Client
	thing string
	cert  *x509.Certificate // the certificate last seen, to notice renewals

	// Services that stop answering, across pairings.
	platformOut, brokerOut, apiOut, playlistOut outage
}

func newSpeaker(cfg Config) (*speaker, error) {
	if cfg.Server == "" {
		return nil, errors.New("speaker: the platform's URL is required (Config.Server, --server)")
	}
	if cfg.CertFile == "" || cfg.KeyFile == "" {
		return nil, errors.New("speaker: the factory certificate and key are required (Config.CertFile and KeyFile, --cert and --key)")
	}
	for _, f := range []string{cfg.CertFile, cfg.KeyFile} {
		if _, err := os.Stat(f); err != nil {
			return nil, fmt.Errorf("speaker: the factory identity is missing: %w (thingid factory issue writes device.pem and device.key per device)", err)
		}
	}
	if cfg.APIPath == "" {
		cfg.APIPath = DefaultAPIPath
	}
	if cfg.APIInterval <= 0 {
		cfg.APIInterval = DefaultInterval
	}
	if cfg.PlaylistInterval <= 0 {
		cfg.PlaylistInterval = DefaultInterval
	}
	if u, err := url.Parse(cfg.PlaylistURL); cfg.PlaylistURL != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
		return nil, fmt.Errorf("speaker: the playlist %q (Config.PlaylistURL, --playlist): want the https URL of a playlist behind the gateway", cfg.PlaylistURL)
	}
	if cfg.TelemetryInterval <= 0 {
		cfg.TelemetryInterval = DefaultInterval
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RetryFor <= 0 {
		cfg.RetryFor = DefaultRetryFor
	}
	if cfg.Display == nil {
		cfg.Display = func(line string) { fmt.Println(line) }
	}
	dev, err := sdk.New(sdk.Config{Server: cfg.Server, CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, RootCAs: cfg.RootCAs,
		Scopes: cfg.Scopes, Timeout: cfg.Timeout, Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	if dev.ThingID() == "" {
		return nil, fmt.Errorf("speaker: %s names no thing (no URI SAN %s…): it is not a certificate from the platform's device CA", cfg.CertFile, sdk.ThingURIPrefix)
	}
	return &speaker{cfg: cfg, dev: dev, thing: dev.ThingID(), cert: dev.Certificate(),
		platformOut: outage{what: "the platform at " + cfg.Server, answered: true}, // it answered the call home
		brokerOut:   outage{what: "the MQTT broker at " + cfg.BrokerURL},
		apiOut:      outage{what: "the cloud API at " + cfg.GatewayURL + cfg.APIPath},
		playlistOut: outage{what: "the playlist at " + cfg.PlaylistURL},
	}, nil
}

func (s *speaker) display(line string) { s.cfg.Display(line) }

func (s *speaker) emit(e Event) {
	if s.cfg.Events == nil {
		return
	}
	e.Time, e.Thing = time.Now(), s.thing
	s.cfg.Events(e)
}

// noticeRenewal reports a certificate the SDK renewed since last seen (it
// renews before fetching a token when the certificate is due) and tells
// whether there was one.
func (s *speaker) noticeRenewal() bool {
	cur := s.dev.Certificate()
	if cur.Equal(s.cert) {
		return false
	}
	s.cert = cur
	s.emit(Event{Step: StepCertificateRenewed, Message: fmt.Sprintf("certificate renewed over EST, valid until %s", cur.NotAfter.UTC().Format(time.RFC3339))})
	return true
}

// unlinkedError ends a paired session: the owner unlinked the speaker (or
// revoked what it was allowed to do).
type unlinkedError struct {
	why string
	err error
}

func (e *unlinkedError) Error() string { return "speaker: unlinked: " + e.why }
func (e *unlinkedError) Unwrap() error { return e.err }
