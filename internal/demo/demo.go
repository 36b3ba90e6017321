// Package demo plays thingid's smart-speaker story end to end on a fresh
// platform it runs in-process (`thingid demo`): factory, registration, call
// home, pairing, cloud API through the gateway, MQTT telemetry, a CoAP
// thermostat's telemetry (pre-shared key) reaching the cloud service, throttling,
// a friend's playlist shared with the owner and taken back (UMA 2.0),
// unlinking and the speaker locked out. The participants (the speaker of
// examples/smart-speaker, the user and the friend, the cloud API and
// service, the music service of examples/music-service) talk to the
// platform over its public protocols only; the factory batch and the
// services' clients are made on the data directory as the command line
// does.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/server"
)

// Options of a demo run.
type Options struct {
	// Home is the data directory; it must not exist or be empty. Empty: a
	// new temporary directory, removed when the demo succeeded.
	Home string
	// HTTPAddress, GatewayAddress and BrokerAddress are where the platform,
	// its gateway and its MQTT broker (TLS) listen: a port of 0, or a port
	// that is taken, is replaced by a free one.
	HTTPAddress, GatewayAddress, BrokerAddress string
	// CoAPAddress is where the CoAP gateway listens for DTLS (UDP); a port
	// of 0, or one that is taken, is replaced by a free one.
	CoAPAddress string
	// Log configures the platform's log, written to thingid.log in Home.
	Log config.Log
	// Exit returns after the story; otherwise the platform keeps serving
	// until ctx ends.
	Exit bool
	// Out receives the story, one line per step.
	Out io.Writer
}

// logFile is the platform's log in the data directory.
const logFile = "thingid.log"

// Run plays the story. It returns a *StepError naming the step that
// failed, or an error from starting the platform.
func Run(ctx context.Context, opts Options) error {
	con := &console{w: opts.Out}
	home, temporary, err := freshHome(opts.Home)
	if err != nil {
		return err
	}
	opts.Home = home
	lf, err := os.OpenFile(filepath.Join(home, logFile), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer lf.Close()
	log := newLogger(opts.Log, lf)

	con.printf("thingid demo: the smart-speaker story on a fresh platform in %s\n\n", home)
	var musicClient credentials
	pl, err := startPlatform(ctx, opts, log, func(p *server.Platform) (err error) {
		musicClient, err = trustMusicService(ctx, p, log)
		return err
	})
	if err != nil {
		con.step(false, "platform", err.Error())
		con.printf("\nThe platform's log is %s.\n", lf.Name())
		return &StepError{Step: "platform", Err: err}
	}
	for _, m := range pl.moved {
		con.printf("  %s\n", m)
	}
	con.step(true, "platform", fmt.Sprintf("%s, gateway %s, MQTT broker %s, CoAP gateway %s; TLS from the platform CA %s", pl.URL, pl.GatewayURL, pl.BrokerURL, pl.CoAPURL, pl.CAFile))

	s := &story{con: con, log: log, ep: pl.endpoints, platform: pl.Platform, decision: "allow", musicClient: musicClient}
	if err := s.walk(ctx, s.steps()); err != nil {
		s.close()
		pl.stop()
		con.printf("\nThe demo stopped at a step that failed. The platform's log is %s; the data directory %s is kept.\n", lf.Name(), home)
		return err
	}
	con.printf("\nEvery step succeeded.\n")
	if !opts.Exit {
		s.explore(pl, lf.Name(), temporary)
		<-ctx.Done()
		con.printf("\nStopping the platform.\n")
	}
	s.close()
	if err := pl.stop(); err != nil {
		return fmt.Errorf("stopping the platform: %w", err)
	}
	if temporary {
		lf.Close()
		return os.RemoveAll(home)
	}
	return nil
}

// freshHome returns the data directory, created if needed; temporary says
// the demo made it up and may remove it.
func freshHome(home string) (dir string, temporary bool, err error) {
	if home == "" {
		dir, err := os.MkdirTemp("", "thingid-demo-")
		return dir, true, err
	}
	ents, err := os.ReadDir(home)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return home, false, os.MkdirAll(home, 0o700)
	case err != nil:
		return "", false, fmt.Errorf("data directory --home %s: %w", home, err)
	case len(ents) > 0:
		return "", false, fmt.Errorf("data directory --home %s is not empty: the demo starts from a fresh one (remove it, choose another, or leave --home out for a temporary one)", home)
	}
	return home, false, nil
}

func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// explore says what to look at while the platform keeps running.
func (s *story) explore(pl *platform, logPath string, temporary bool) {
	next := s.devices[min(1, len(s.devices)-1)]
	c := s.con
	c.printf("\nThe platform keeps running until Ctrl-C. Explore it in a browser (it does not know the platform CA %s: import it, or accept the warning):\n", pl.CAFile)
	for _, l := range [][2]string{
		{"sign in", fmt.Sprintf("%s/signin as %s, password %s", pl.URL, s.user.name, s.user.password)},
		{"my devices", pl.URL + "/account/devices"},
		{"shared with me", pl.URL + "/account/shared"},
		{"the friend", fmt.Sprintf("%s/signin as %s, password %s; what they share: %s/account/sharing", pl.URL, s.bob.name, s.bob.password, pl.URL)},
		{"apps and devices", pl.URL + "/account/grants"},
		{"register", pl.URL + "/register"},
		{"metrics", pl.URL + "/metrics"},
		{"administrator", fmt.Sprintf("admin, one-time password in %s", filepath.Join(pl.Config.Home, "admin-password.txt"))},
		{"cloud API", fmt.Sprintf("curl --cacert %s %s%s  (401 without a token)", pl.CAFile, pl.GatewayURL, apiPath)},
		{"playlist", fmt.Sprintf("curl -i --cacert %s %s%s  (401 with a UMA permission ticket)", pl.CAFile, pl.GatewayURL, s.playlistPath())},
		{"platform log", logPath},
	} {
		c.printf("  %-18s %s\n", l[0], l[1])
	}
	c.printf("\nPair the next speaker of the batch yourself (from a checkout of thingid); it asks for %s's playlist, which %s may share on /account/sharing:\n\n"+
		"  go run ./examples/smart-speaker --server %s --ca %s \\\n      --cert %s --key %s \\\n      --gateway %s --broker %s \\\n      --playlist %s%s\n",
		friendName, friendName, pl.URL, pl.CAFile, next.CertFile, next.KeyFile, pl.GatewayURL, pl.BrokerURL, pl.GatewayURL, s.playlistPath())
	if temporary {
		c.printf("\nThe data directory %s is removed when the demo ends; run with --home DIR to keep one.\n", pl.Config.Home)
	}
}

// console prints the story; the speaker's display writes to it from its
// own goroutine.
type console struct {
	mu sync.Mutex
	w  io.Writer
}

func (c *console) printf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fmt.Fprintf(c.w, format, args...)
}

// step prints one step's line: ✓ or ✗, its name, what happened.
func (c *console) step(ok bool, name, msg string) {
	mark := "✓"
	if !ok {
		mark = "✗"
	}
	c.printf("%s %-14s %s\n", mark, name, strings.ReplaceAll(msg, "\n", " "))
}

// display shows a line of the speaker's one-line display.
func (c *console) display(line string) { c.printf("  ┃ %s\n", line) }
