package main

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/est"
	"github.com/thingid/thingid/internal/server"
)

func newDevicesEnrollToken(g *globals) *cobra.Command {
	var ttl time.Duration
	cmd := &cobra.Command{
		Use:   "enroll-token ID",
		Short: "Create a one-time EST enrollment token for a thing; it is shown only now",
		Long: `Create a one-time token with which the thing gets its first certificate over EST
(POST /.well-known/est/simpleenroll, RFC 7030): HTTP Basic with the thing id as user
name and the token as password, or "Authorization: Bearer TOKEN". The token works once,
until it expires; only a keyed hash of a used token is stored. The thing must be
active and have a serial number, which its certificate carries.`,
		Example: `  thingid devices enroll-token 0190f1c2-7d4e-7a6b-9c1d-2e3f4a5b6c7d --expires-in 2h`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				srv, err := p.EnrollmentTokens(slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					return err
				}
				tok, err := srv.CreateToken(cmd.Context(), cliActor, args[0], ttl)
				if err != nil {
					return explainStoreErr(err, "thing "+args[0], listDevices)
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "token: %s\n", tok.Secret)
				fmt.Fprintf(out, "thing: %s\n", tok.ThingID)
				fmt.Fprintf(out, "expires: %s\n", tok.ExpiresAt.Format(time.RFC3339))
				fmt.Fprintln(cmd.ErrOrStderr(), "The token is shown only now and enrolls once.")
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&ttl, "expires-in", est.DefaultTokenLifetime, "how long the token is valid (1m to 2160h)")
	return cmd
}
