package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/authn"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

func newAdmin(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "admin", Short: "Administrator credentials"}
	cmd.AddCommand(newAdminToken(g))
	return cmd
}

// newAdminToken is `admin token`, which creates a token, with `list` and
// `revoke` below it.
func newAdminToken(g *globals) *cobra.Command {
	var name, user string
	var ttl time.Duration
	create := &cobra.Command{
		Use:   "token",
		Short: "Create an admin API token (shown once) for the SCIM and admin APIs; list and revoke them",
		Example: `  TOKEN=$(thingid admin token --name laptop --ttl 720h)
  thingid admin token list
  thingid admin token revoke TOKEN_ID`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				if user == "" {
					user = p.Config.Admin.UserName
				}
				u, err := p.Identity.GetUserByName(cmd.Context(), user)
				if err != nil {
					return explainStoreErr(err, "user "+user, listUsers)
				}
				if u.MustChangePassword {
					return fmt.Errorf("%s still has a one-time password, and the admin APIs refuse every credential of %s until it is changed: sign in at %s/signin and choose a new password, then create the token", u.UserName, u.UserName, p.Config.HTTP.PublicURL)
				}
				token, hash := authn.NewToken(p.TokenKey())
				t := &store.APIToken{Name: name, Hash: hash, UserID: u.ID}
				if ttl > 0 {
					t.ExpiresAt = time.Now().Add(ttl).UTC()
				}
				if err := tokenChange(cmd.Context(), p.Store, "admin-token.create", t, func(tx store.Tx) error {
					return tx.CreateAPIToken(cmd.Context(), t)
				}); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), token)
				fmt.Fprintf(cmd.ErrOrStderr(), "Admin API token %q (id %s) for %s (use as \"Authorization: Bearer <token>\"); it is shown only now.\n", name, t.ID, u.UserName)
				return nil
			})
		},
	}
	create.Flags().StringVar(&name, "name", "cli", "a name to recognise the token by")
	create.Flags().StringVar(&user, "user", "", "administrator (or support user) the token acts for (default: admin.userName)")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime such as 720h (default: no expiry)")
	create.AddCommand(newAdminTokenList(g), newAdminTokenRevoke(g))
	return create
}

// tokenChange runs change on token t and appends its audit record (action,
// about the token's user, naming the token) in one transaction.
func tokenChange(ctx context.Context, st store.Store, action string, t *store.APIToken, change func(store.Tx) error) error {
	return st.WithTx(ctx, func(tx store.Tx) error {
		if err := change(tx); err != nil {
			return err
		}
		detail, err := json.Marshal(map[string]string{"token": t.ID, "name": t.Name})
		if err != nil {
			return err
		}
		return tx.AppendAudit(ctx, store.AuditRecord{
			Time: time.Now().UTC(), Actor: cliActor, Action: action,
			Target: store.Ref{Kind: store.KindUser, ID: t.UserID}, Detail: detail,
		})
	})
}

func newAdminTokenList(g *globals) *cobra.Command {
	var user string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List admin API tokens (never the secrets, which are not stored)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				ctx := cmd.Context()
				var userID string
				if user != "" {
					u, err := p.Identity.GetUserByName(ctx, user)
					if err != nil {
						return explainStoreErr(err, "user "+user, listUsers)
					}
					userID = u.ID
				}
				list, err := p.Store.ListAPITokens(ctx, userID)
				if err != nil {
					return err
				}
				names := map[string]string{}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tNAME\tUSER\tCREATED\tEXPIRES")
				now := time.Now()
				for _, t := range list {
					if _, ok := names[t.UserID]; !ok {
						names[t.UserID] = "(deleted user " + t.UserID + ")"
						if u, err := p.Identity.GetUser(ctx, t.UserID); err == nil {
							names[t.UserID] = u.UserName
						} else if !errors.Is(err, store.ErrNotFound) {
							return err
						}
					}
					expires := "never"
					if !t.ExpiresAt.IsZero() {
						expires = t.ExpiresAt.UTC().Format(time.RFC3339)
						if now.After(t.ExpiresAt) {
							expires += " (expired)"
						}
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.ID, printable(t.Name), printable(names[t.UserID]), t.Created.UTC().Format(time.RFC3339), expires)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d tokens; `thingid admin token revoke ID` revokes one.\n", len(list))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&user, "user", "", "only the tokens of this user")
	return cmd
}

func newAdminTokenRevoke(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke an admin API token: the next request with it is refused",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				ctx := cmd.Context()
				list, err := p.Store.ListAPITokens(ctx, "")
				if err != nil {
					return err
				}
				i := slices.IndexFunc(list, func(t *store.APIToken) bool { return t.ID == args[0] })
				if i < 0 {
					return fmt.Errorf("no admin API token has the ID %q (`thingid admin token list` shows them): %w", args[0], store.ErrNotFound)
				}
				t := list[i]
				if err := tokenChange(ctx, p.Store, "admin-token.revoke", t, func(tx store.Tx) error {
					return tx.DeleteAPIToken(ctx, t.ID)
				}); err != nil {
					return explainStoreErr(err, "admin API token "+t.ID, "thingid admin token list")
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked admin API token %s (%s)\n", t.ID, printable(t.Name))
				return nil
			})
		},
	}
}
