// Package music is the music service of thingid's story: a UMA 2.0
// resource server that keeps its users' playlists and serves them behind
// the identity gateway, whose uma filter enforces what each playlist's owner
// shares. The service is a first-party resource server of the platform
// (uma.trustedResourceServers): it gets its PAT with client credentials and
// registers every playlist for its owner through the protection API; the
// gateway asks the permission tickets, checks the RPTs and tells the
// service, in X-Thingid-* headers, who asks and what they may do.
//
// It is what examples/music-service runs and what `thingid demo` drives;
// like any resource server it knows only the platform's protocols.
package music

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// What the service registers: playlists, which their owners can share for
// playing them.
const (
	// PlaylistType is the type of every resource the service registers.
	PlaylistType = "urn:thingid:example:music:playlist"
	// ScopePlay is the one resource scope of a playlist.
	ScopePlay = "play"
	// patScope is the scope of a PAT (UMA 2.0 Federated Authorization §1.3).
	patScope = "uma_protection"
)

// Bounds of a playlist, checked before anything is registered.
const (
	maxName   = 200
	maxTracks = 100
)

// Identity headers the gateway's uma filter sets (docs/gateway.md); it
// removes any a client sends.
const (
	headerSubject        = "X-Thingid-Subject"
	headerClient         = "X-Thingid-Client"
	headerThing          = "X-Thingid-Thing"
	headerResource       = "X-Thingid-Resource"
	headerResourceScopes = "X-Thingid-Resource-Scopes"
)

// Config says where the platform is and who the service is there.
type Config struct {
	// Server is the platform's base URL, its UMA authorization server.
	Server string
	// RootCAs verify the platform's TLS certificate; nil uses the system's.
	RootCAs *x509.CertPool
	// ClientID and ClientSecret are the service's confidential client, with
	// the client credentials grant and the scope uma_protection, listed in
	// the platform's uma.trustedResourceServers.
	ClientID, ClientSecret string
	// Timeout bounds every call to the platform; 0: 30 s.
	Timeout time.Duration
	// Served follows every playlist served; nil: not followed. It is
	// called on the request's goroutine.
	Served func(Request)
}

// Playlist is a playlist the service keeps, as it serves it.
type Playlist struct {
	// ID is the playlist's resource id at the platform: what the gateway
	// route maps its path to.
	ID string `json:"id"`
	// Name names the playlist, unique per owner.
	Name string `json:"name"`
	// Owner is the user name of the owner.
	Owner  string   `json:"owner"`
	Tracks []string `json:"tracks"`
}

// Request is a playlist served, with whom to, as the gateway said.
type Request struct {
	Playlist Playlist
	// Subject is the requesting party (a user id); Client the client that
	// asked for them; Thing the thing that client is, if it is one.
	Subject, Client, Thing string
}

// Service keeps the playlists and serves them.
type Service struct {
	cfg      Config
	platform *http.Client // protection API calls; adds the PAT and renews it

	mu        sync.RWMutex
	playlists map[string]*Playlist // by id
}

// New gets the service's PAT (client credentials, scope uma_protection):
// a service the platform does not know or does not let in fails here.
func New(ctx context.Context, cfg Config) (*Service, error) {
	switch {
	case cfg.Server == "":
		return nil, errors.New("music: the platform's URL is required")
	case cfg.ClientID == "" || cfg.ClientSecret == "":
		return nil, errors.New("music: the service's client id and secret are required (thingid clients create --grant-type client_credentials --scope uma_protection)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 30 * time.Second
	}
	cfg.Server = strings.TrimSuffix(cfg.Server, "/")
	base := &http.Client{Timeout: cfg.Timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: cfg.RootCAs, MinVersion: tls.VersionTLS12}}}
	cc := clientcredentials.Config{ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, TokenURL: cfg.Server + "/oauth2/token", Scopes: []string{patScope}}
	// The PAT is renewed as it expires, for as long as the service runs.
	pats := cc.TokenSource(context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, base))
	tctx, cancel := context.WithTimeout(context.WithValue(ctx, oauth2.HTTPClient, base), cfg.Timeout)
	defer cancel()
	first, err := cc.Token(tctx)
	if err != nil {
		return nil, fmt.Errorf("music: getting the PAT from %s (client %s): %w", cc.TokenURL, cfg.ClientID, err)
	}
	platform := oauth2.NewClient(context.WithValue(context.WithoutCancel(ctx), oauth2.HTTPClient, base), oauth2.ReuseTokenSource(first, pats))
	platform.Timeout = cfg.Timeout
	return &Service{cfg: cfg, platform: platform, playlists: map[string]*Playlist{}}, nil
}

// Add registers the playlist name of owner (a user name) with its tracks,
// or finds the one the service registered before under that name (a
// restart keeps its id, and so its shares), and serves it.
func (s *Service) Add(ctx context.Context, owner, name string, tracks []string) (*Playlist, error) {
	if err := CheckPlaylist(owner, name, tracks); err != nil {
		return nil, err
	}
	id, err := s.registered(ctx, owner, name)
	if err == nil && id == "" {
		id, err = s.register(ctx, owner, name)
	}
	if err != nil {
		return nil, fmt.Errorf("music: the playlist %q of %s: %w", name, owner, err)
	}
	p := &Playlist{ID: id, Name: name, Owner: owner, Tracks: slices.Clone(tracks)}
	s.mu.Lock()
	s.playlists[id] = p
	s.mu.Unlock()
	return p, nil
}

// CheckPlaylist refuses a playlist the service cannot keep: an owner or a
// name that is empty, too long or not printable, no tracks or too many.
func CheckPlaylist(owner, name string, tracks []string) error {
	switch {
	case !printable(owner):
		return fmt.Errorf("music: owner %q: want a user name of 1 to %d printable characters", owner, maxName)
	case !printable(name):
		return fmt.Errorf("music: playlist name %q: want 1 to %d printable characters", name, maxName)
	case len(tracks) == 0 || len(tracks) > maxTracks:
		return fmt.Errorf("music: the playlist %q has %d tracks: want 1 to %d", name, len(tracks), maxTracks)
	}
	for _, t := range tracks {
		if !printable(t) {
			return fmt.Errorf("music: track %q of %q: want 1 to %d printable characters", t, name, maxName)
		}
	}
	return nil
}

func printable(s string) bool {
	return s != "" && len(s) <= maxName && utf8.ValidString(s) && strings.TrimSpace(s) == s &&
		!strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) })
}

// description is a resource description (UMA 2.0 Federated Authorization
// §3.1) with thingid's owner, which a trusted resource server names.
type description struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Scopes []string `json:"resource_scopes"`
	Owner  string   `json:"owner,omitempty"`
}

// registered is the id of owner's playlist name that the service
// registered before, "" if none.
func (s *Service) registered(ctx context.Context, owner, name string) (string, error) {
	var ids []string
	if err := s.call(ctx, http.MethodGet, "/uma/resource_set?owner="+url.QueryEscape(owner), nil, http.StatusOK, &ids); err != nil {
		return "", err
	}
	for _, id := range ids {
		var d description
		if err := s.call(ctx, http.MethodGet, "/uma/resource_set/"+url.PathEscape(id), nil, http.StatusOK, &d); err != nil {
			return "", err
		}
		if d.Name == name && d.Type == PlaylistType {
			return id, nil
		}
	}
	return "", nil
}

// register registers a new playlist for owner (§3.2.1).
func (s *Service) register(ctx context.Context, owner, name string) (string, error) {
	var out struct {
		ID string `json:"_id"`
	}
	d := description{Name: name, Type: PlaylistType, Scopes: []string{ScopePlay}, Owner: owner}
	if err := s.call(ctx, http.MethodPost, "/uma/resource_set", d, http.StatusCreated, &out); err != nil {
		return "", err
	}
	if out.ID == "" {
		return "", errors.New("the platform registered it without an _id")
	}
	return out.ID, nil
}

// call sends a protection API request with the PAT and decodes the answer
// into out; an answer other than want is an error with the platform's
// OAuth error.
func (s *Service) call(ctx context.Context, method, path string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, s.cfg.Server+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.platform.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, s.cfg.Server+path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, s.cfg.Server+path, err)
	}
	if resp.StatusCode != want {
		var e struct {
			Code        string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(b, &e) != nil || e.Code == "" {
			return fmt.Errorf("%s %s answered %s", method, s.cfg.Server+path, resp.Status)
		}
		return fmt.Errorf("%s %s answered %s: %s: %s", method, s.cfg.Server+path, resp.Status, e.Code, e.Description)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("%s %s: the answer is not the JSON expected: %w", method, s.cfg.Server+path, err)
	}
	return nil
}

// Serve serves the playlists on ln until ctx ends, then lets the requests
// in flight finish for up to five seconds. ln must be where only the
// gateway reaches the service (loopback, when both run on one host): the
// service believes the X-Thingid-* headers it receives.
func (s *Service) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-served
		return ctx.Err()
	}
}

// handler serves GET /playlists/{id} to the gateway's uma route (see
// RouteFile), and nothing to anyone else: a request must carry the
// permission the gateway checked, for this playlist, with the scope play.
func (s *Service) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /playlists/{id}", s.servePlaylist)
	return mux
}

func (s *Service) servePlaylist(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	resource := r.Header.Get(headerResource)
	switch {
	case resource == "":
		// The gateway sets the header on every request it lets through
		// its uma filter, and removes any a client sent.
		refuse(w, http.StatusForbidden, "call this service through the identity gateway, which checks what the playlist's owner shares")
		return
	case resource != id || !slices.Contains(strings.Fields(r.Header.Get(headerResourceScopes)), ScopePlay):
		// The route maps another resource or scope: it is wrong.
		refuse(w, http.StatusForbidden, "the gateway's permission is not play on this playlist: check the route's uma filter (resource \"{playlist}\", GET: [play])")
		return
	}
	s.mu.RLock()
	p, ok := s.playlists[id]
	s.mu.RUnlock()
	if !ok {
		refuse(w, http.StatusNotFound, "no such playlist")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store") // shared with some, and not for long perhaps
	json.NewEncoder(w).Encode(p)
	if s.cfg.Served != nil {
		s.cfg.Served(Request{Playlist: *p, Subject: r.Header.Get(headerSubject), Client: r.Header.Get(headerClient), Thing: r.Header.Get(headerThing)})
	}
}

// refuse answers an RFC 9457 problem.
func refuse(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"title": http.StatusText(status), "status": status, "detail": detail})
}

// PathPrefix is where the gateway route puts the playlists: a playlist is
// GET <gateway>/music/playlists/<id>.
const PathPrefix = "/music/playlists/"

// RouteFile is the gateway routes file (docs/gateway.md) that puts the
// service listening at upstream behind the uma filter, for the resource
// server resourceServer (the service's client id): GET
// /music/playlists/{playlist} needs an RPT with play on the resource
// {playlist}. Requests are throttled per client address first, which bounds
// the permission tickets anyone can make.
func RouteFile(upstream, resourceServer string) string {
	return fmt.Sprintf(`# The music service, a UMA resource server (examples/music-service).
routes:
  - name: music
    match: {pathPattern: "%s{playlist}", methods: [GET]}
    upstream: {url: %q, rewrite: "/playlists/{playlist}"}
    filters:
      - throttle: {key: [ip], rate: {requests: 600, per: 1m}}
      - uma:
          resourceServer: %q
          resource: "{playlist}"
          scopes: {GET: [%s]}
`, PathPrefix, upstream, resourceServer, ScopePlay)
}
