package speaker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/thingid/thingid/examples/internal/mqttlink"
	"github.com/thingid/thingid/examples/internal/platformtest"
	"github.com/thingid/thingid/examples/music-service/music"
	"github.com/thingid/thingid/examples/smart-speaker/speaker"
	"github.com/thingid/thingid/sdk"
)

const password = "correct horse battery staple"

// upstream is the manufacturer's cloud API behind the gateway; it records
// the identity the gateway passed on.
type upstream struct {
	*httptest.Server
	mu     sync.Mutex
	things []string
}

func newUpstream(t *testing.T) *upstream {
	u := &upstream{}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.things = append(u.things, r.Header.Get("X-Thingid-Thing"))
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"playlists":["Morning","Focus"]}`)
	}))
	t.Cleanup(u.Close)
	return u
}

func (u *upstream) calls() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.things...)
}

func routes(upstreamURL, throttle string) string {
	return `routes:
  - name: speaker-api
    match: {pathPrefix: /v1}
    upstream: {url: "` + upstreamURL + `"}
    filters:
      - oauth2
` + throttle
}

// recorder keeps every event of a speaker, for the test to look for.
type recorder struct {
	mu      sync.Mutex
	events  []speaker.Event
	changed chan struct{} // closed and replaced at each event
	done    chan error    // Run's result
	stopped chan struct{} // closed when Run has returned
	cancel  context.CancelFunc
}

func (r *recorder) add(e speaker.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
	close(r.changed)
	r.changed = make(chan struct{})
}

// await returns the first event of step (since the start) that ok accepts.
func (r *recorder) await(t *testing.T, step speaker.Step, ok func(speaker.Event) bool) speaker.Event {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		r.mu.Lock()
		for _, e := range r.events {
			if e.Step == step && (ok == nil || ok(e)) {
				r.mu.Unlock()
				return e
			}
		}
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-r.stopped:
			select {
			case err := <-r.done:
				t.Fatalf("the speaker stopped (%v) before %s", err, step)
			default:
				t.Fatalf("the speaker stopped before %s", step)
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s", step)
		}
	}
}

// count is the number of events of step so far.
func (r *recorder) count(step speaker.Step) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Step == step {
			n++
		}
	}
	return n
}

// result waits for Run's result.
func (r *recorder) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the speaker did not stop")
		return nil
	}
}

// run starts the speaker; the owner allows (or denies) each user code it
// shows.
func run(t *testing.T, pl *platformtest.Platform, cfg speaker.Config, owner, decision string) *recorder {
	t.Helper()
	r := &recorder{changed: make(chan struct{}), done: make(chan error, 1), stopped: make(chan struct{})}
	cfg.Server, cfg.RootCAs = pl.URL, pl.Roots
	cfg.Display = func(line string) { t.Logf("display: %s", line) }
	cfg.Events = func(e speaker.Event) {
		if e.Step != speaker.StepTelemetry {
			t.Logf("%s: %s", e.Step, e.Message)
		}
		if e.Step == speaker.StepUserCode {
			go func() {
				p, err := pl.SignIn(owner, password)
				if err == nil {
					err = p.Decide(e.UserCode.UserCode, decision)
				}
				if err != nil {
					t.Errorf("the owner at /device: %v", err)
				}
			}()
		}
		r.add(e)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	go func() {
		defer close(r.stopped)
		r.done <- speaker.Run(ctx, cfg)
	}()
	r.cancel = cancel
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends the speaker (a power cut) and waits until it has.
func (r *recorder) stop(t *testing.T) {
	r.cancel()
	select {
	case <-r.stopped:
	case <-time.After(30 * time.Second):
		t.Error("the speaker did not stop after its context ended")
	}
}

// service is the manufacturer's cloud service on the broker: a client
// credentials token with the scopes to read every thing's telemetry and
// send commands.
func service(t *testing.T, pl *platformtest.Platform, onMessage func(topic string, payload []byte)) *mqttlink.Conn {
	t.Helper()
	scopes := []string{"mqtt:sub:things/+/telemetry", "mqtt:pub:things/+/commands/#"}
	id, secret := pl.Service(t, "fleet", scopes...)
	tok := pl.ServiceToken(t, id, secret, scopes...)
	conn, err := mqttlink.Dial(context.Background(), mqttlink.Config{Broker: pl.BrokerURL, RootCAs: pl.Roots, ClientID: id,
		Token: tok, Subscribe: []string{"things/+/telemetry"}, OnMessage: onMessage})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// The whole paired life over MQTT and the gateway: call home (renewing a
// certificate that is due), pairing, cloud API with the bound token,
// throttling, telemetry seen by a real subscriber, a command obeyed and
// echoed, and unlinking noticed from the broker's closed connection.
func TestSpeakerStory(t *testing.T) {
	up := newUpstream(t)
	pl := platformtest.Start(t, platformtest.Options{Broker: true,
		Routes: routes(up.URL, "      - throttle: {key: [thing], rate: {requests: 2, per: 1m}}\n")})
	pl.User(t, "alice", password)
	// A factory certificate of two minutes is past two thirds of its life
	// (five minutes of clock skew are behind it): the SDK renews it at once.
	thing, certFile, keyFile := pl.Device(t, "Speaker", "SPK-0001", 2*time.Minute)
	oldCert, _ := os.ReadFile(certFile)

	telemetry := make(chan map[string]any, 100)
	svc := service(t, pl, func(topic string, payload []byte) {
		var m map[string]any
		if topic == "things/"+thing+"/telemetry" && json.Unmarshal(payload, &m) == nil {
			select {
			case telemetry <- m:
			default: // the test reads the latest ones
			}
		}
	})

	state := t.TempDir() + "/speaker.json"
	sp := run(t, pl, speaker.Config{CertFile: certFile, KeyFile: keyFile, GatewayURL: pl.GatewayURL, BrokerURL: pl.BrokerURL,
		TelemetryInterval: 200 * time.Millisecond, APIInterval: 100 * time.Millisecond, StateFile: state, Once: true}, "alice", "allow")

	if e := sp.await(t, speaker.StepCertificateRenewed, nil); e.Thing != thing {
		t.Errorf("renewal event of %s, want %s", e.Thing, thing)
	}
	if newCert, _ := os.ReadFile(certFile); string(newCert) == string(oldCert) {
		t.Error("the certificate file was not replaced")
	}
	sp.await(t, speaker.StepCalledHome, nil)
	sp.await(t, speaker.StepPaired, nil)
	if b, err := os.ReadFile(state); err != nil || !strings.Contains(string(b), "refresh_token") {
		t.Errorf("state file: %s %v", b, err)
	}
	if fi, err := os.Stat(state); err == nil && fi.Mode().Perm() != 0o600 {
		t.Errorf("state file mode %v", fi.Mode().Perm())
	}
	if e := sp.await(t, speaker.StepCloudAPI, nil); e.Status != http.StatusOK || !strings.Contains(string(e.Payload), "Morning") {
		t.Errorf("cloud API: %d %s", e.Status, e.Payload)
	}
	if e := sp.await(t, speaker.StepThrottled, nil); e.Status != http.StatusTooManyRequests || e.RetryAfter <= 0 {
		t.Errorf("throttled: %d after %s", e.Status, e.RetryAfter)
	}
	if calls := up.calls(); len(calls) != 2 || calls[0] != thing {
		t.Errorf("the upstream saw %v, want two calls from %s", calls, thing)
	}

	sp.await(t, speaker.StepMQTTConnected, nil)
	waitTelemetry(t, telemetry, func(m map[string]any) bool { return m["volume"] == 30.0 })
	if err := svc.Publish(context.Background(), "things/"+thing+"/commands/volume", []byte("55")); err != nil {
		t.Fatal(err)
	}
	if err := svc.Publish(context.Background(), "things/"+thing+"/commands/play", []byte("Blue in Green")); err != nil {
		t.Fatal(err)
	}
	sp.await(t, speaker.StepCommand, func(e speaker.Event) bool { return string(e.Payload) == "Blue in Green" })
	if n := sp.count(speaker.StepCommand); n != 2 {
		t.Errorf("%d command events, want 2", n)
	}
	waitTelemetry(t, telemetry, func(m map[string]any) bool {
		return m["volume"] == 55.0 && m["state"] == "playing" && m["track"] == "Blue in Green"
	})
	// A command the speaker cannot obey is refused, not applied.
	if err := svc.Publish(context.Background(), "things/"+thing+"/commands/volume", []byte("loud")); err != nil {
		t.Fatal(err)
	}
	sp.await(t, speaker.StepCommand, func(e speaker.Event) bool { return e.Err != nil })

	person, err := pl.SignIn("alice", password)
	if err != nil {
		t.Fatal(err)
	}
	if err := person.Unlink(thing); err != nil {
		t.Fatal(err)
	}
	e := sp.await(t, speaker.StepUnlinked, nil)
	if !strings.Contains(e.Message, "broker") && !strings.Contains(e.Message, "invalid_grant") {
		t.Errorf("unlinked: %s", e.Message)
	}
	if err := sp.result(t); err != nil {
		t.Fatalf("with Once the speaker ends with nil after unlinking, got %v", err)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the state file should be gone after unlinking: %v", err)
	}
}

func waitTelemetry(t *testing.T, telemetry <-chan map[string]any, ok func(map[string]any) bool) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case m := <-telemetry:
			if ok(m) {
				return
			}
		case <-timeout:
			t.Fatal("timed out waiting for the telemetry the subscriber expects")
		}
	}
}

// Without MQTT, unlinking shows at the gateway: the token is refused, its
// refresh too; the speaker goes back to the unpaired state and shows a new
// user code.
func TestUnlinkSeenByTheGateway(t *testing.T) {
	up := newUpstream(t)
	pl := platformtest.Start(t, platformtest.Options{Routes: routes(up.URL, "")})
	pl.User(t, "bob", password)
	thing, certFile, keyFile := pl.Device(t, "Speaker", "SPK-0002", 0)
	sp := run(t, pl, speaker.Config{CertFile: certFile, KeyFile: keyFile, GatewayURL: pl.GatewayURL,
		TelemetryInterval: time.Hour, APIInterval: 50 * time.Millisecond}, "bob", "allow")
	first := sp.await(t, speaker.StepUserCode, nil)
	sp.await(t, speaker.StepPaired, nil)
	sp.await(t, speaker.StepCloudAPI, nil)
	person, err := pl.SignIn("bob", password)
	if err != nil {
		t.Fatal(err)
	}
	if err := person.Unlink(thing); err != nil {
		t.Fatal(err)
	}
	unlinked := sp.await(t, speaker.StepUnlinked, nil)
	if !strings.Contains(unlinked.Message, "gateway") {
		t.Errorf("unlinked: %s", unlinked.Message)
	}
	sp.await(t, speaker.StepCalledHome, after(unlinked))
	if again := sp.await(t, speaker.StepUserCode, after(unlinked)); again.UserCode.UserCode == first.UserCode.UserCode {
		t.Error("pairing again needs a new user code")
	}
	// The owner pairs it again, and the cloud API answers again.
	sp.await(t, speaker.StepCloudAPI, after(sp.await(t, speaker.StepPaired, after(unlinked))))
}

// after accepts the events that came after e.
func after(e speaker.Event) func(speaker.Event) bool {
	return func(x speaker.Event) bool { return x.Time.After(e.Time) }
}

// A denied pairing ends Run with ErrPairingDenied.
func TestPairingDenied(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{})
	pl.User(t, "carol", password)
	_, certFile, keyFile := pl.Device(t, "Speaker", "SPK-0003", 0)
	sp := run(t, pl, speaker.Config{CertFile: certFile, KeyFile: keyFile}, "carol", "deny")
	sp.await(t, speaker.StepUserCode, nil)
	if err := sp.result(t); !errors.Is(err, speaker.ErrPairingDenied) {
		t.Fatalf("denied pairing: %v", err)
	}
}

// What a speaker cannot get past fails at once with a message naming it.
func TestStartupFailures(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{})
	_, certFile, keyFile := pl.Device(t, "Speaker", "SPK-0004", 0)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	for _, tc := range []struct {
		name string
		cfg  speaker.Config
		want string
	}{
		{"missing certificate", speaker.Config{Server: pl.URL, CertFile: certFile + ".missing", KeyFile: keyFile}, "factory identity is missing"},
		{"no certificate", speaker.Config{Server: pl.URL}, "factory certificate and key are required"},
		{"platform unreachable", speaker.Config{Server: "https://" + strings.TrimPrefix(closed.URL, "http://"), CertFile: certFile, KeyFile: keyFile}, "calling home"},
		{"platform not trusted", speaker.Config{Server: pl.URL, CertFile: certFile, KeyFile: keyFile, RootCAs: nil}, "not trusted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			tc.cfg.Display = func(string) {}
			tc.cfg.Timeout = 5 * time.Second
			err := speaker.Run(ctx, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
}

// A paired speaker that restarts resumes with its saved refresh token: no
// new user code; one whose grant was revoked meanwhile pairs again.
func TestResumeAfterRestart(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{})
	pl.User(t, "dave", password)
	thing, certFile, keyFile := pl.Device(t, "Speaker", "SPK-0005", 0)
	state := t.TempDir() + "/speaker.json"
	cfg := speaker.Config{CertFile: certFile, KeyFile: keyFile, StateFile: state, TelemetryInterval: time.Hour}
	first := run(t, pl, cfg, "dave", "allow")
	first.await(t, speaker.StepPaired, nil)
	saved, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}

	first.stop(t)

	again := run(t, pl, cfg, "dave", "deny")
	if e := again.await(t, speaker.StepPaired, nil); !strings.Contains(e.Message, "resumed") {
		t.Errorf("paired: %s", e.Message)
	}
	if n := again.count(speaker.StepUserCode); n != 0 {
		t.Errorf("%d user codes shown after a restart", n)
	}
	if now, _ := os.ReadFile(state); string(now) == string(saved) {
		t.Error("the rotated refresh token was not saved")
	}
	again.stop(t)

	// While it is off, the owner revokes its access but keeps it linked:
	// the saved refresh token is refused (invalid_grant) and the speaker
	// asks to be paired again.
	person, err := pl.SignIn("dave", password)
	if err != nil {
		t.Fatal(err)
	}
	if err := person.RevokeGrants(thing); err != nil {
		t.Fatal(err)
	}
	third := run(t, pl, cfg, "dave", "allow")
	if e := third.await(t, speaker.StepCalledHome, nil); !strings.Contains(e.Message, ", paired") {
		t.Errorf("called home: %s", e.Message)
	}
	third.await(t, speaker.StepUserCode, nil)
	if e := third.await(t, speaker.StepPaired, nil); strings.Contains(e.Message, "resumed") {
		t.Errorf("paired: %s", e.Message)
	}
}

// musicWorld is a platform with the story's music service behind its
// gateway, holding bob's playlist.
func musicWorld(t *testing.T) (*platformtest.Platform, *music.Playlist) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	upstream := "http://" + ln.Addr().String()
	pl := platformtest.Start(t, platformtest.Options{UMARoutes: func(rs string) string { return music.RouteFile(upstream, rs) }})
	pl.User(t, "alice", password)
	pl.User(t, "bob", password)
	ctx, stop := context.WithCancel(context.Background())
	svc, err := music.New(ctx, music.Config{Server: pl.URL, RootCAs: pl.Roots, ClientID: pl.ResourceServer.ID, ClientSecret: pl.ResourceServer.Secret})
	if err != nil {
		t.Fatal(err)
	}
	p, err := svc.Add(ctx, "bob", "Road trip", []string{"Born to Run", "Roadrunner"})
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx, ln) }()
	t.Cleanup(func() { stop(); <-served })
	return pl, p
}

// pending is bob's one pending request, from alice, for the playlist.
func pending(t *testing.T, bob *platformtest.Person, playlist string) platformtest.Request {
	t.Helper()
	reqs, err := bob.Requests()
	if err != nil {
		t.Fatal(err)
	}
	if len(reqs) != 1 || reqs[0].ResourceID != playlist || reqs[0].RequesterName != "alice" || strings.Join(reqs[0].Scopes, " ") != "play" {
		t.Fatalf("bob's pending requests: %+v, want alice's for play on %s", reqs, playlist)
	}
	return reqs[0]
}

// The owner's friend bob owns a playlist at the music service behind the
// gateway: alice's speaker asks for it and bob is asked; bob approves and
// the speaker plays it with an RPT its token got for alice; bob takes it
// back and the speaker stops at its next request; bob denies the request
// that follows, and the speaker is told no.
func TestSharedPlaylist(t *testing.T) {
	pl, playlist := musicWorld(t)
	thing, certFile, keyFile := pl.Device(t, "Speaker", "SPK-0006", 0)
	sp := run(t, pl, speaker.Config{CertFile: certFile, KeyFile: keyFile, TelemetryInterval: time.Hour,
		PlaylistURL: pl.GatewayURL + music.PathPrefix + playlist.ID, PlaylistInterval: 100 * time.Millisecond}, "alice", "allow")
	waiting := sp.await(t, speaker.StepPlaylistWaiting, nil)
	if !errors.Is(waiting.Err, sdk.ErrAccessRequested) || strings.Contains(waiting.Message, "stopped") {
		t.Errorf("before bob shares: %s (%v)", waiting.Message, waiting.Err)
	}
	bob, err := pl.SignIn("bob", password)
	if err != nil {
		t.Fatal(err)
	}
	req := pending(t, bob, playlist.ID)
	if req.ClientID != thing {
		t.Errorf("the request names client %s, want the speaker %s", req.ClientID, thing)
	}
	share, err := bob.Approve(req.ID)
	if err != nil {
		t.Fatal(err)
	}
	playing := sp.await(t, speaker.StepPlaylist, after(waiting))
	if playing.Status != http.StatusOK || !strings.Contains(playing.Message, `"Road trip" of bob`) || !strings.Contains(string(playing.Payload), "Born to Run") {
		t.Errorf("playing: %d %s %s", playing.Status, playing.Message, playing.Payload)
	}

	if err := bob.RevokeShare(share); err != nil {
		t.Fatal(err)
	}
	stopped := sp.await(t, speaker.StepPlaylistWaiting, after(playing))
	if !strings.HasPrefix(stopped.Message, "stopped playing it") {
		t.Errorf("after the revocation: %s", stopped.Message)
	}
	if n := sp.count(speaker.StepPlaylist); n != 1 {
		t.Errorf("%d playlist events, want 1: the speaker reports what changes, not every answer", n)
	}

	if err := bob.Deny(pending(t, bob, playlist.ID).ID); err != nil {
		t.Fatal(err)
	}
	if e := sp.await(t, speaker.StepPlaylistRefused, after(stopped)); !errors.Is(e.Err, sdk.ErrAccessDenied) {
		t.Errorf("after bob denied: %s (%v)", e.Message, e.Err)
	}
}

// A playlist URL that is not an https URL is refused at start.
func TestPlaylistURLRefused(t *testing.T) {
	pl := platformtest.Start(t, platformtest.Options{})
	_, certFile, keyFile := pl.Device(t, "Speaker", "SPK-0007", 0)
	err := speaker.Run(context.Background(), speaker.Config{Server: pl.URL, RootCAs: pl.Roots, CertFile: certFile, KeyFile: keyFile,
		PlaylistURL: "http://localhost:9443/music/playlists/x", Display: func(string) {}})
	if err == nil || !strings.Contains(err.Error(), "--playlist") {
		t.Fatalf("an http playlist URL: %v", err)
	}
}
