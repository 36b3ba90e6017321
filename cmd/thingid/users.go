package main

import (
	"bufio"
	"crypto/rand"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

// cliActor is recorded in the audit log for changes made from the command line.
const cliActor = "cli"

func newUsers(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "users", Short: "Manage users in the data directory"}
	var email, displayName string
	var passwordStdin bool
	create := &cobra.Command{
		Use:   "create USERNAME",
		Short: "Create a user; prints a generated password unless --password-stdin is given",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				pw := rand.Text()
				if passwordStdin {
					line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
					if err != nil && line == "" {
						return fmt.Errorf("--password-stdin: read the password from standard input: %w", err)
					}
					pw = strings.TrimRight(line, "\r\n")
				}
				u := &store.User{UserName: args[0], DisplayName: displayName}
				if email != "" {
					u.Emails = []store.MultiValue{{Value: email, Primary: true}}
				}
				u, err := p.Identity.CreateUser(cmd.Context(), cliActor, u, pw)
				if err != nil {
					return explainStoreErr(err, "user name "+args[0])
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created user %s (id %s)\n", u.UserName, u.ID)
				if !passwordStdin {
					fmt.Fprintf(cmd.OutOrStdout(), "password: %s\n", pw)
				}
				return nil
			})
		},
	}
	create.Flags().StringVar(&email, "email", "", "primary e-mail address")
	create.Flags().StringVar(&displayName, "display-name", "", "name shown to people")
	create.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the password from the first line of standard input")
	cmd.AddCommand(create)
	return cmd
}
