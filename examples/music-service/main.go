// Command music-service is the music service of thingid's story: a UMA 2.0
// resource server behind the identity gateway. It gets its PAT with client
// credentials (a trusted first-party resource server), registers each
// playlist of --playlist for its owner, and serves GET /playlists/<id> to
// the gateway's uma route, which lets a request through only with an RPT
// that the playlist's owner's share allows. Ctrl-C stops it.
//
//	thingid clients create --name music-service --grant-type client_credentials --scope uma_protection
//	# add the client id to uma.trustedResourceServers and restart thingid serve, then:
//	THINGID_CLIENT_SECRET=... go run ./examples/music-service --ca $THINGID_HOME/pki/ca.crt \
//	    --client-id CLIENT_ID --playlist 'bob:Road trip:Born to Run,Roadrunner,Thunder Road'
//
// See docs/examples.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/thingid/thingid/examples/internal/cli"
	"github.com/thingid/thingid/examples/music-service/music"
)

// playlistFlag is one --playlist: OWNER:NAME:TRACK,TRACK,...
type playlistFlag struct {
	owner, name string
	tracks      []string
}

func main() {
	var cfg music.Config
	var caFile, secretFile, listen string
	var playlists []playlistFlag
	flag.StringVar(&cfg.Server, "server", "https://localhost:8443", "the platform's base URL (its UMA authorization server)")
	flag.StringVar(&caFile, "ca", "", "PEM file of the CA of the platform's TLS certificates (thingid's home/pki/ca.crt); empty: the system's")
	flag.StringVar(&cfg.ClientID, "client-id", "", "the service's client id (client credentials, scope uma_protection, in uma.trustedResourceServers)")
	flag.StringVar(&secretFile, "client-secret-file", "", "file holding the client secret; empty: $THINGID_CLIENT_SECRET")
	flag.StringVar(&listen, "listen", "127.0.0.1:9100", "where the gateway reaches the service; only the gateway may (the service trusts its X-Thingid-* headers)")
	flag.Func("playlist", "OWNER:NAME:TRACK,TRACK,...: a playlist of a user, by user name (repeatable)", func(v string) error {
		p, err := parsePlaylist(v)
		if err == nil {
			playlists = append(playlists, p)
		}
		return err
	})
	flag.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "how long to wait for the platform")
	flag.Parse()
	cli.Main("music-service", func(ctx context.Context) error {
		if len(playlists) == 0 {
			return errors.New("no playlist: give at least one --playlist OWNER:NAME:TRACK,TRACK")
		}
		secret, err := cli.ClientSecret(secretFile)
		if err != nil {
			return err
		}
		cfg.ClientSecret = secret
		if cfg.RootCAs, err = cli.Roots(caFile); err != nil {
			return err
		}
		return run(ctx, cfg, listen, playlists, os.Stdout)
	})
}

// parsePlaylist reads OWNER:NAME:TRACK,TRACK,...
func parsePlaylist(v string) (playlistFlag, error) {
	owner, rest, ok1 := strings.Cut(v, ":")
	name, list, ok2 := strings.Cut(rest, ":")
	if !ok1 || !ok2 {
		return playlistFlag{}, fmt.Errorf("%q: want OWNER:NAME:TRACK,TRACK,..., such as 'bob:Road trip:Born to Run,Roadrunner'", v)
	}
	p := playlistFlag{owner: owner, name: name, tracks: strings.Split(list, ",")}
	if err := music.CheckPlaylist(p.owner, p.name, p.tracks); err != nil {
		return playlistFlag{}, err
	}
	return p, nil
}

// run registers the playlists and serves them on listen until ctx ends.
func run(ctx context.Context, cfg music.Config, listen string, playlists []playlistFlag, out io.Writer) error {
	cfg.Served = func(r music.Request) {
		thing := ""
		if r.Thing != "" {
			thing = ", thing " + r.Thing
		}
		fmt.Fprintf(out, "served %q of %s to %s (client %s%s)\n", r.Playlist.Name, r.Playlist.Owner, r.Subject, r.Client, thing)
	}
	svc, err := music.New(ctx, cfg)
	if err != nil {
		return err
	}
	for _, p := range playlists {
		pl, err := svc.Add(ctx, p.owner, p.name, p.tracks)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "playlist %q of %s is resource %s: GET /playlists/%s\n", pl.Name, pl.Owner, pl.ID, pl.ID)
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	fmt.Fprintf(out, "serving %d playlists on http://%s for the gateway's uma route\n", len(playlists), ln.Addr())
	return svc.Serve(ctx, ln)
}
