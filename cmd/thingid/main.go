// Command thingid is the identity platform for people and things: `thingid serve`
// runs it; the other commands work on its data directory. This file only parses
// flags and calls internal packages.
package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	_ "time/tzdata" // time zones of users validate on machines without tzdata

	"github.com/thingid/thingid/internal/config"
	"github.com/thingid/thingid/internal/server"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "thingid:", err)
		os.Exit(1)
	}
}

// globals are the flags every command shares.
type globals struct {
	configFile string
	home       string
	init       bool
	logLevel   string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "thingid",
		Short:         "Identity platform for people and things",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringVar(&g.configFile, "config", os.Getenv("THINGID_CONFIG"), "YAML configuration file (env THINGID_CONFIG)")
	f.StringVar(&g.home, "home", "", "data directory (overrides home / THINGID_HOME)")
	f.BoolVar(&g.init, "init", false, "create a new platform in the --home directory if it does not exist")
	f.StringVar(&g.logLevel, "log-level", "", "debug, info, warn or error (overrides log.level)")
	root.AddCommand(newServe(g), newConfigCmd(g), newUsers(g), newDevices(g), newAdmin(g), newClients(g), newFactory(g), newCAs(g), newCerts(g), newAudit(g), newBackup(g), newBench(g), newDemo(g), newVersion())
	root.Version = version()
	root.SetVersionTemplate("thingid {{.Version}}\n")
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command that only groups others
// (`thingid users`) fail on an argument that is none of them, as the root
// does, instead of printing its help and exiting 0.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if cmd == cmd.Root() || !cmd.HasSubCommands() || cmd.Runnable() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return cmd.Help()
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += fmt.Sprintf("; did you mean %q?", s[0])
		}
		return fmt.Errorf("%s (run '%s --help' for its commands)", msg, cmd.CommandPath())
	}
}

// version is the module version this binary was built from, with its VCS
// revision when the build recorded one.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+modified"
			}
		}
	}
	if rev != "" && (v == "" || v == "(devel)") {
		v = "(devel) " + rev[:min(12, len(rev))] + modified
	}
	return v + " " + bi.GoVersion
}

func newVersion() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print thingid's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "thingid %s\n", version())
			return err
		},
	}
}

// load returns the effective, validated configuration: file, then environment,
// then flags.
func (g *globals) load(cmd *cobra.Command, flags map[string]string) (config.Config, error) {
	var environ []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "THINGID_CONFIG=") {
			environ = append(environ, kv)
		}
	}
	cfg, err := config.Load(g.configFile, environ)
	if err != nil {
		return cfg, err
	}
	set := map[string]string{"home": g.home, "log.level": g.logLevel}
	for k, v := range flags {
		set[k] = v
	}
	for path, v := range set {
		if v != "" {
			if err := config.Set(&cfg, path, v); err != nil {
				return cfg, err
			}
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("configuration: %w", err)
	}
	return cfg, nil
}

func newLogger(c config.Config) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Log.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func newServe(g *globals) *cobra.Command {
	var address string
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the platform (HTTPS on 127.0.0.1:8443 by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := g.checkHome(cmd); err != nil {
				return err
			}
			cfg, err := g.load(cmd, map[string]string{"http.address": address})
			if err != nil {
				return err
			}
			return server.Run(cmd.Context(), cfg, newLogger(cfg), cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&address, "http-address", "", "host:port of the HTTPS listener (overrides http.address)")
	return cmd
}

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Inspect the configuration"}
	cmd.AddCommand(&cobra.Command{
		Use:   "print",
		Short: "Print the effective configuration with secrets masked",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load(cmd, nil)
			if err != nil {
				return err
			}
			b, err := cfg.Masked()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	})
	return cmd
}

// withPlatform loads the configuration, opens the data directory for a CLI
// command, runs fn on it and closes it.
func (g *globals) withPlatform(cmd *cobra.Command, fn func(p *server.Platform) error) error {
	if err := g.checkHome(cmd); err != nil {
		return err
	}
	cfg, err := g.load(cmd, nil)
	if err != nil {
		return err
	}
	p, err := server.Open(cmd.Context(), cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	return fn(p)
}

// checkHome refuses a --home naming a directory that does not exist, unless
// --init asks for a new platform there or the user agrees when asked on a
// terminal: a mistyped path must not quietly start an empty platform. (The
// default home, and one set in the configuration or THINGID_HOME, are
// created as before.)
func (g *globals) checkHome(cmd *cobra.Command) error {
	if g.home == "" || g.init {
		return nil
	}
	if _, err := os.Stat(g.home); !errors.Is(err, fs.ErrNotExist) {
		return nil // there, or an error that opening it reports better
	}
	if in, ok := cmd.InOrStdin().(*os.File); ok && term.IsTerminal(int(in.Fd())) {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s does not exist. Create a new thingid platform there? [y/N] ", g.home)
		answer, _ := bufio.NewReader(in).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a == "y" || a == "yes" {
			return nil
		}
	}
	return fmt.Errorf("--home %s: no such directory; check the path, or add --init to create a new platform there", g.home)
}
