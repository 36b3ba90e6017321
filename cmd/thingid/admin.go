package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

func newAdmin(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Administrator credentials"}
	var name, user string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "token",
		Short: "Create an admin API token (shown once) for the SCIM and admin APIs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				if user == "" {
					user = p.Config.Admin.UserName
				}
				u, err := p.Identity.GetUserByName(cmd.Context(), user)
				if err != nil {
					return explainStoreErr(err, "user "+user)
				}
				token, hash := authn.NewToken(p.TokenKey())
				t := &store.APIToken{Name: name, Hash: hash, UserID: u.ID}
				if ttl > 0 {
					t.ExpiresAt = time.Now().Add(ttl).UTC()
				}
				ctx := cmd.Context()
				if err := p.Store.WithTx(ctx, func(tx store.Tx) error {
					if err := tx.CreateAPIToken(ctx, t); err != nil {
						return err
					}
					return tx.AppendAudit(ctx, store.AuditRecord{
						Time: time.Now().UTC(), Actor: cliActor, Action: "admin-token.create",
						Target: store.Ref{Kind: store.KindUser, ID: u.ID},
					})
				}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), token)
				fmt.Fprintf(cmd.ErrOrStderr(), "Admin API token %q for %s (use as \"Authorization: Bearer <token>\"); it is shown only now.\n", name, u.UserName)
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "cli", "a name to recognise the token by")
	create.Flags().StringVar(&user, "user", "", "administrator the token acts for (default: admin.userName)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime such as 720h (default: no expiry)")
	cmd.AddCommand(create)
	return cmd
}
