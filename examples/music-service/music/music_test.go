package music_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/thingid/thingid/examples/internal/platformtest"
	"github.com/thingid/thingid/examples/music-service/music"
	"github.com/thingid/thingid/sdk"
)

const password = "correct horse battery staple"

var roadTrip = []string{"Born to Run", "Roadrunner", "Thunder Road"}

// world is the platform with the music service behind its gateway.
type world struct {
	pl       *platformtest.Platform
	upstream string // where the service listens, for the gateway alone
	served   chan music.Request
}

// start runs the platform with the service's route, registers bob and the
// service's client, and returns a config for the service.
func start(t *testing.T) (*world, music.Config) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &world{upstream: "http://" + ln.Addr().String(), served: make(chan music.Request, 16)}
	w.pl = platformtest.Start(t, platformtest.Options{UMARoutes: func(rs string) string { return music.RouteFile(w.upstream, rs) }})
	w.pl.User(t, "bob", password)
	cfg := music.Config{Server: w.pl.URL, RootCAs: w.pl.Roots, ClientID: w.pl.ResourceServer.ID, ClientSecret: w.pl.ResourceServer.Secret,
		Timeout: 10 * time.Second, Served: func(r music.Request) { w.served <- r }}
	svc, err := music.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- svc.Serve(ctx, ln) }()
	t.Cleanup(func() {
		stop()
		if err := <-served; err != context.Canceled {
			t.Errorf("the service stopped with %v", err)
		}
	})
	if _, err := svc.Add(context.Background(), "bob", "Road trip", roadTrip); err != nil {
		t.Fatal(err)
	}
	return w, cfg
}

// The service registers bob's playlist for him with its PAT, serves it
// through the gateway's uma route only, and bob's own speaker, whose token
// acts for him, gets it with an RPT; a restarted service finds the
// playlist it registered.
func TestPlaylistBehindTheGateway(t *testing.T) {
	w, cfg := start(t)
	ctx := context.Background()

	// A restart registers nothing new: the id, and so the shares, stay.
	again, err := music.New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	first, err := again.Add(ctx, "bob", "Road trip", roadTrip)
	if err != nil {
		t.Fatal(err)
	}
	other, err := again.Add(ctx, "bob", "Rainy day", []string{"Riders on the Storm"})
	if err != nil || other.ID == first.ID {
		t.Fatalf("another playlist of bob: %+v %v, want an id of its own (not %s)", other, err, first.ID)
	}
	if second, err := again.Add(ctx, "bob", "Road trip", roadTrip); err != nil || second.ID != first.ID {
		t.Fatalf("the same playlist again: %+v %v, want id %s", second, err, first.ID)
	}
	if _, err := again.Add(ctx, "nobody", "Road trip", roadTrip); err == nil || !strings.Contains(err.Error(), "owner") {
		t.Errorf("a playlist of an unknown user: %v, want the platform's refusal naming the owner", err)
	}

	// Without the gateway, the service serves nothing.
	resp, err := http.Get(w.upstream + "/playlists/" + first.ID)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "identity gateway") {
		t.Errorf("straight to the service: %s %s", resp.Status, body)
	}

	// Through the gateway without an RPT: a permission ticket.
	anon := w.pl.Client()
	resp, err = anon.Get(w.pl.GatewayURL + music.PathPrefix + first.ID)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if ch := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(ch, `UMA realm="thingid", as_uri="`+w.pl.URL+`", ticket="`) {
		t.Errorf("without an RPT: %s %q, want 401 with a UMA challenge", resp.Status, ch)
	}
	resp, err = anon.Get(w.pl.GatewayURL + music.PathPrefix + "no-such-playlist")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("a playlist that is not registered: %s, want 404", resp.Status)
	}

	// Bob's own speaker: the owner needs no share.
	thing, certFile, keyFile := w.pl.Device(t, "Speaker", "SPK-MUSIC-1", 0)
	dev, err := sdk.New(sdk.Config{Server: w.pl.URL, CertFile: certFile, KeyFile: keyFile, RootCAs: w.pl.Roots, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ts, err := dev.Pair(ctx, func(_ context.Context, code sdk.UserCode) error {
		p, err := w.pl.SignIn("bob", password)
		if err == nil {
			err = p.Decide(code.UserCode, "allow")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	resp, err = dev.UMAClient(ts).Get(w.pl.GatewayURL + music.PathPrefix + first.ID)
	if err != nil {
		t.Fatal(err)
	}
	var got music.Playlist
	err = json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || got.Name != "Road trip" || got.Owner != "bob" || !slices.Equal(got.Tracks, roadTrip) {
		t.Fatalf("bob's speaker: %s %+v %v", resp.Status, got, err)
	}
	select {
	case r := <-w.served:
		if r.Playlist.ID != first.ID || r.Thing != thing || r.Client != thing || r.Subject == "" {
			t.Errorf("the gateway told the service %+v, want bob through speaker %s", r, thing)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the service served nothing")
	}
}

// A service the platform does not let in says so at once.
func TestWrongSecret(t *testing.T) {
	w, cfg := start(t)
	cfg.ClientSecret = "wrong"
	_, err := music.New(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "getting the PAT") || !strings.Contains(err.Error(), "invalid_client") {
		t.Fatalf("a wrong secret: %v", err)
	}
	// An untrusted client's client_credentials PAT registers nothing.
	id, secret := w.pl.Service(t, "untrusted", "uma_protection")
	cfg.ClientID, cfg.ClientSecret = id, secret
	svc, err := music.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Add(context.Background(), "bob", "Road trip", roadTrip); err == nil || !strings.Contains(err.Error(), "unauthorized_client") {
		t.Errorf("an untrusted resource server registering: %v", err)
	}
}
