package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"

	"github.com/thingid/thingid/examples/music-service/music"
	"github.com/thingid/thingid/examples/smart-speaker/speaker"
	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/server"
)

// The owner's friend and the playlist they share (UMA 2.0): the music
// service of examples/music-service, a trusted resource server behind the
// gateway's uma route.
const (
	friendName       = "bob"
	musicServiceName = "music-service"
	musicRouteFile   = "music.yaml"
	playlistName     = "Road trip"
)

var playlistTracks = []string{"Born to Run", "Roadrunner", "Thunder Road"}

// credentials are a confidential client's.
type credentials struct{ id, secret string }

// trustMusicService registers the music service's client (client
// credentials, scope uma_protection), as `thingid clients create` does, and
// lists it in uma.trustedResourceServers: the platform reads that list when
// it starts serving, so this runs before.
func trustMusicService(ctx context.Context, p *server.Platform, log *slog.Logger) (credentials, error) {
	srv, cleanup, err := p.OAuthAdmin(ctx, log)
	if err != nil {
		return credentials{}, err
	}
	defer cleanup()
	c, secret, err := srv.CreateClient(ctx, actor, oauth.ClientSpec{Name: musicServiceName,
		GrantTypes: []string{oauth.GrantClientCredentials}, Scopes: []string{"uma_protection"}})
	if err != nil {
		return credentials{}, fmt.Errorf("registering the client %s: %w", musicServiceName, err)
	}
	p.Config.UMA.TrustedResourceServers = append(p.Config.UMA.TrustedResourceServers, c.ID)
	return credentials{id: c.ID, secret: secret}, nil
}

// musicService is the music service serving in this process on loopback.
type musicService struct {
	URL      string
	playlist *music.Playlist
	// served are the requests the gateway let through, with who asked.
	served *feed[music.Request]
	stop   context.CancelFunc
	done   chan error
}

func (m *musicService) close() {
	m.stop()
	<-m.done
}

// friend registers the owner's friend, who signs in.
func (s *story) friend(ctx context.Context) (string, error) {
	s.bob = newPerson(s.ep, friendName, rand.Text())
	if err := s.bob.register(ctx); err != nil {
		return "", err
	}
	if err := s.bob.signIn(ctx); err != nil {
		return "", fmt.Errorf("%s signing in: %w", s.bob.name, err)
	}
	return fmt.Sprintf("%s, %s's friend, registered and signed in (user %s, password %s)", s.bob.name, userName, s.bob.id, s.bob.password), nil
}

// startMusic starts the music service: its PAT, the friend's playlist
// registered for them, served on loopback behind the gateway's uma route.
func (s *story) startMusic(ctx context.Context) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("music service: %w", err)
	}
	m := &musicService{URL: "http://" + ln.Addr().String(), served: newFeed[music.Request](), done: make(chan error, 1)}
	svc, err := music.New(ctx, music.Config{Server: s.ep.URL, RootCAs: s.ep.Roots, ClientID: s.musicClient.id, ClientSecret: s.musicClient.secret,
		Timeout: stepTimeout, Served: m.served.add})
	if err == nil {
		m.playlist, err = svc.Add(ctx, friendName, playlistName, playlistTracks)
	}
	if err != nil {
		ln.Close()
		return "", err
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.stop = cancel
	go func() { m.done <- svc.Serve(sctx, ln) }()
	s.music = m
	path, err := writeRoute(ctx, s.ep, s.platform.Config.Gateway.Routes, musicRouteFile, music.RouteFile(m.URL, s.musicClient.id), s.playlistPath())
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("client %s got its PAT (client credentials, scope uma_protection, a trusted resource server) and registered %s's playlist %q as resource %s; %s%s → music service %s with filter uma (GET needs play), from %s; 401 with a permission ticket without an RPT",
		s.musicClient.id, friendName, playlistName, m.playlist.ID, s.ep.GatewayURL, s.playlistPath(), m.URL, path), nil
}

// playlistPath is the friend's playlist at the gateway.
func (s *story) playlistPath() string { return music.PathPrefix + s.music.playlist.ID }

// playlistAsked waits for the speaker to ask for the playlist, and for the
// friend to see the request.
func (s *story) playlistAsked(ctx context.Context) (string, error) {
	if _, _, err := await(ctx, s.events, "the speaker", s.paired, stepTimeout, "it to ask for the playlist", is(speaker.StepPlaylistWaiting)); err != nil {
		return "", err
	}
	reqs, err := s.bob.requests(ctx)
	if err != nil {
		return "", err
	}
	i := slices.IndexFunc(reqs, func(r umaRequest) bool {
		return r.ResourceID == s.music.playlist.ID && r.RequesterName == userName && r.ClientID == s.devices[0].Thing
	})
	if i < 0 {
		return "", fmt.Errorf("%s's requests do not list %s's through the speaker %s for %s: %+v", friendName, userName, s.devices[0].Thing, s.music.playlist.ID, reqs)
	}
	s.request = reqs[i]
	return fmt.Sprintf("the speaker's GET %s%s: 401 and a permission ticket; at the token endpoint, the ticket with the speaker's token (acting for %s) as claim token: no share yet, %s was asked (request_submitted); %s sees the request for %s (GET /api/v1/uma/requests)",
		s.ep.GatewayURL, s.playlistPath(), userName, friendName, friendName, strings.Join(s.request.Scopes, " ")), nil
}

// shared: the friend approves the request.
func (s *story) shared(ctx context.Context) (string, error) {
	id, err := s.bob.approve(ctx, s.request.ID)
	if err != nil {
		return "", err
	}
	s.share = id
	return fmt.Sprintf("%s approved the request (POST /api/v1/uma/requests/%s/approve): %q is shared with %s for %s (share %s)",
		friendName, s.request.ID, playlistName, userName, strings.Join(s.request.Scopes, " "), id), nil
}

// playing waits for the speaker to play the playlist, and for the music
// service to see who asked.
func (s *story) playing(ctx context.Context) (string, error) {
	e, _, err := await(ctx, s.events, "the speaker", s.paired, stepTimeout, "it to play the playlist", is(speaker.StepPlaylist))
	if err != nil {
		return "", err
	}
	r, _, err := await(ctx, s.music.served, "the music service", 0, stepTimeout, "a request of the speaker", func(r music.Request) bool { return r.Thing == s.devices[0].Thing })
	if err != nil {
		return "", err
	}
	if r.Subject != s.user.id {
		return "", fmt.Errorf("the gateway told the music service the requesting party is %q, not %s (%s)", r.Subject, userName, s.user.id)
	}
	return fmt.Sprintf("the speaker got an RPT (permission play on %s, bound to its certificate) and is %s; the gateway told the music service: requesting party %s (%s), thing %s",
		s.music.playlist.ID, e.Message, r.Subject, userName, r.Thing), nil
}

// revoked: the friend takes the playlist back.
func (s *story) revoked(ctx context.Context) (string, error) {
	s.revokedMark = s.events.len()
	if err := s.bob.revokeShare(ctx, s.share); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s revoked the share (DELETE /api/v1/uma/shares/%s): the RPTs it produced are revoked", friendName, s.share), nil
}

// refused waits for the speaker's next request for the playlist to be
// refused.
func (s *story) refused(ctx context.Context) (string, error) {
	e, _, err := await(ctx, s.events, "the speaker", s.revokedMark, lockoutTimeout, "its next request for the playlist to be refused", is(speaker.StepPlaylistWaiting))
	if err != nil {
		return "", err
	}
	if !errors.Is(e.Err, speaker.ErrAccessRequested) {
		return "", fmt.Errorf("the speaker reports %s (%v), not that %s was asked again", e.Message, e.Err, friendName)
	}
	return "the speaker's next request for the playlist was refused; the speaker reports: " + e.Message, nil
}
