package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/identity"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

// cliActor is recorded in the audit log for changes made from the command line.
const cliActor = "cli"

// The commands that list what a not-found error is about.
const (
	listUsers   = "thingid users list"
	listDevices = "thingid devices list"
)

func newUsers(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "users",
		Short: "Manage users in the data directory",
		Long: `Manage users in the data directory, through the same identity service as SCIM:
every change is validated, audited and published to the running server.

USER is a user's ID or user name. A user name that is also another user's ID
is refused as ambiguous; --by id or --by name says which one is meant.`,
	}
	cmd.AddCommand(newUsersCreate(g), newUsersList(g), newUsersGet(g),
		newUsersSetStatus(g, store.StatusDisabled, "disable", "Disable a user: sessions, token refreshes, MQTT connections and admin access end"),
		newUsersSetStatus(g, store.StatusActive, "enable", "Enable a disabled user again"),
		newUsersDelete(g), newUsersResetPassword(g))
	return cmd
}

// userFinder resolves the USER argument of a command.
type userFinder func(ctx context.Context, ids *identity.Service, arg string) (*store.User, error)

// userArg gives cmd, whose argument is USER, the flag --by and returns what
// resolves its argument.
func userArg(cmd *cobra.Command) userFinder {
	by := cmd.Flags().String("by", "", "read USER only as an ID or only as a user name: id or name (default: either)")
	return func(ctx context.Context, ids *identity.Service, arg string) (*store.User, error) {
		return resolveUser(ctx, ids, arg, *by)
	}
}

// resolveUser finds the user arg names: by ID or by user name, or only one
// of them when by says so. A name that is another user's ID is ambiguous: a
// self-registered user may choose a name that looks like someone's ID.
func resolveUser(ctx context.Context, ids *identity.Service, arg, by string) (*store.User, error) {
	var byID, byName *store.User
	var err error
	switch by {
	case "", "id", "name":
	default:
		return nil, fmt.Errorf("--by %q: want id or name", by)
	}
	if by != "name" {
		if byID, err = ids.GetUser(ctx, arg); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	if by != "id" {
		if byName, err = ids.GetUserByName(ctx, arg); err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	switch {
	case byID != nil && byName != nil && byID.ID != byName.ID:
		return nil, fmt.Errorf("%q is the ID of user %q and the user name of user %s; say which with --by id or --by name", arg, byID.UserName, byName.ID)
	case byID != nil:
		return byID, nil
	case byName != nil:
		return byName, nil
	}
	what := "no user has the ID or user name"
	if by != "" {
		what = "no user has the " + map[string]string{"id": "ID", "name": "user name"}[by]
	}
	return nil, fmt.Errorf("%s %q (`%s` shows who exists): %w", what, arg, listUsers, store.ErrNotFound)
}

// readPassword reads the first line of r.
func readPassword(r io.Reader) (string, error) {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && line == "" {
		return "", fmt.Errorf("--password-stdin: read the password from standard input: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func newUsersCreate(g *globals) *cobra.Command {
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
					var err error
					if pw, err = readPassword(cmd.InOrStdin()); err != nil {
						return err
					}
				}
				u := &store.User{UserName: args[0], DisplayName: displayName}
				if email != "" {
					u.Emails = []store.MultiValue{{Value: email, Primary: true}}
				}
				u, err := p.Identity.CreateUser(cmd.Context(), cliActor, u, pw)
				if err != nil {
					return explainStoreErr(err, "user name "+args[0], listUsers)
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
	return create
}

func newUsersList(g *globals) *cobra.Command {
	var status string
	var limit, offset int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List users, optionally by status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			q := store.Query{SortBy: "userName", Offset: offset, Limit: limit}
			switch store.Status(status) {
			case "":
			case store.StatusActive, store.StatusDisabled:
				q.Filter = store.Compare{Field: "status", Op: store.OpEq, Value: status}
			default:
				return fmt.Errorf("--status %q: want active or disabled", status)
			}
			if limit < 1 || offset < 0 {
				return fmt.Errorf("--limit %d --offset %d: want a limit of 1 or more and an offset of 0 or more", limit, offset)
			}
			return g.withPlatform(cmd, func(p *server.Platform) error {
				users, total, err := p.Identity.ListUsers(cmd.Context(), q)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tUSERNAME\tDISPLAY NAME\tE-MAIL\tSTATUS")
				for _, u := range users {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", u.ID, printable(u.UserName), printable(u.DisplayName), printable(u.PrimaryEmail()), u.Status)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d shown (use --offset and --limit to page)\n", len(users), total)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "active or disabled")
	f.IntVar(&limit, "limit", 100, "at most this many")
	f.IntVar(&offset, "offset", 0, "skip this many")
	return cmd
}

// userView is a user as `thingid users get` shows it: everything but the
// password hash, and the groups the user is a direct member of.
type userView struct {
	ID                 string             `json:"id"`
	UserName           string             `json:"userName"`
	DisplayName        string             `json:"displayName,omitempty"`
	ExternalID         string             `json:"externalId,omitempty"`
	Name               store.Name         `json:"name,omitzero"`
	Emails             []store.MultiValue `json:"emails,omitempty"`
	EmailVerified      bool               `json:"emailVerified"`
	PhoneNumbers       []store.MultiValue `json:"phoneNumbers,omitempty"`
	Locale             string             `json:"locale,omitempty"`
	Timezone           string             `json:"timezone,omitempty"`
	Status             store.Status       `json:"status"`
	HasPassword        bool               `json:"hasPassword"`
	MustChangePassword bool               `json:"mustChangePassword"`
	Groups             []string           `json:"groups"`
	Created            time.Time          `json:"created"`
	Modified           time.Time          `json:"modified"`
	Revision           int64              `json:"revision"`
}

// userCommand is a command on one user, its argument USER (see userArg):
// run is called with the data directory open and the user found.
func userCommand(g *globals, use, short string, run func(cmd *cobra.Command, p *server.Platform, u *store.User, arg string) error) *cobra.Command {
	var find userFinder
	cmd := &cobra.Command{
		Use:   use + " USER",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				u, err := find(cmd.Context(), p.Identity, args[0])
				if err != nil {
					return err
				}
				return run(cmd, p, u, args[0])
			})
		},
	}
	find = userArg(cmd)
	return cmd
}

func newUsersGet(g *globals) *cobra.Command {
	return userCommand(g, "get", "Show one user as JSON (without the password hash), with the groups it is a member of",
		func(cmd *cobra.Command, p *server.Platform, u *store.User, _ string) error {
			groups, _, err := p.Identity.ListGroups(cmd.Context(), store.Query{SortBy: "displayName", Limit: -1,
				Filter: store.Any{Field: "members", Where: store.And{
					Left:  store.Compare{Field: "value", Op: store.OpEq, Value: u.ID},
					Right: store.Compare{Field: "type", Op: store.OpEq, Value: string(store.KindUser)},
				}}})
			if err != nil {
				return err
			}
			v := userView{ID: u.ID, UserName: u.UserName, DisplayName: u.DisplayName, ExternalID: u.ExternalID, Name: u.Name,
				Emails: u.Emails, EmailVerified: u.EmailVerified, PhoneNumbers: u.PhoneNumbers, Locale: u.Locale, Timezone: u.Timezone,
				Status: u.Status, HasPassword: u.PasswordHash != "", MustChangePassword: u.MustChangePassword, Groups: []string{},
				Created: u.Created, Modified: u.Modified, Revision: u.Revision}
			for _, gr := range groups {
				v.Groups = append(v.Groups, gr.DisplayName)
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			return enc.Encode(v)
		})
}

// newUsersSetStatus is `users disable` and `users enable`: the status
// change SCIM makes, with its audit record and event (the running server
// ends a disabled user's MQTT connections; sessions, refresh tokens and
// admin credentials check the status at every use).
func newUsersSetStatus(g *globals, status store.Status, verb, short string) *cobra.Command {
	return userCommand(g, verb, short, func(cmd *cobra.Command, p *server.Platform, u *store.User, arg string) error {
		if u.Status == status {
			fmt.Fprintf(cmd.OutOrStdout(), "user %s (id %s) is %s already\n", u.UserName, u.ID, status)
			return nil
		}
		if _, err := p.Identity.UpdateUser(cmd.Context(), cliActor, u.ID, u.Revision, func(u *store.User) error {
			u.Status = status
			return nil
		}); err != nil {
			if errors.Is(err, store.ErrStale) {
				return fmt.Errorf("user %s changed while this command ran; run it again: %w", u.UserName, err)
			}
			return explainStoreErr(err, "user "+arg, listUsers)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "%sd user %s (id %s)\n", verb, u.UserName, u.ID)
		return nil
	})
}

func newUsersDelete(g *globals) *cobra.Command {
	return userCommand(g, "delete", "Delete a user and every relationship it has (the things it owned stay, unowned)",
		func(cmd *cobra.Command, p *server.Platform, u *store.User, arg string) error {
			if err := p.Identity.DeleteUser(cmd.Context(), cliActor, u.ID, 0); err != nil {
				return explainStoreErr(err, "user "+arg, listUsers)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted user %s (id %s)\n", u.UserName, u.ID)
			return nil
		})
}

func newUsersResetPassword(g *globals) *cobra.Command {
	var passwordStdin bool
	cmd := userCommand(g, "reset-password", "Give a user a one-time password (printed) and end the user's sessions; signing in with it asks for a new one",
		func(cmd *cobra.Command, p *server.Platform, u *store.User, arg string) error {
			pw := rand.Text()
			if passwordStdin {
				var err error
				if pw, err = readPassword(cmd.InOrStdin()); err != nil {
					return err
				}
			}
			if _, err := p.Identity.ResetPassword(cmd.Context(), cliActor, u.ID, pw); err != nil {
				return explainStoreErr(err, "user "+arg, listUsers)
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "reset the password of user %s (id %s) and ended the user's sessions\n", u.UserName, u.ID)
			if !passwordStdin {
				fmt.Fprintf(out, "one-time password: %s\n", pw)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Hand it over safely: signing in with it at %s/signin opens only the page that sets a new password.\n", p.Config.HTTP.PublicURL)
			return nil
		})
	cmd.Flags().BoolVar(&passwordStdin, "password-stdin", false, "read the one-time password from the first line of standard input")
	return cmd
}
