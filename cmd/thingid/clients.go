package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/oauth"
	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

func newClients(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "clients", Short: "Manage OAuth 2.0 clients in the data directory"}
	cmd.AddCommand(newClientsCreate(g), newClientsList(g), newClientsDelete(g), newClientsResources(g))
	return cmd
}

// withOAuth opens the data directory and the authorization server's client registry.
func (g *globals) withOAuth(cmd *cobra.Command, fn func(*oauth.Server) error) error {
	return g.withPlatform(cmd, func(p *server.Platform) error {
		srv, cleanup, err := p.OAuthAdmin(cmd.Context(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			return err
		}
		defer cleanup()
		return fn(srv)
	})
}

func newClientsCreate(g *globals) *cobra.Command {
	var spec oauth.ClientSpec
	var clientType, jwksFile string
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Register a client; a confidential client's secret is shown only now",
		Example: `  thingid clients create --name billing --grant-type client_credentials --scope read
  thingid clients create --name telemetry --grant-type client_credentials --scope mqtt:pub:things/# --resource urn:thingid:mqtt
  thingid clients create --name speaker-1 --type public --grant-type urn:ietf:params:oauth:grant-type:device_code \
      --grant-type refresh_token --thing THING_ID`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			spec.Type = store.ClientType(clientType)
			if jwksFile != "" {
				b, err := os.ReadFile(jwksFile)
				if err != nil {
					return fmt.Errorf("--jwks-file: %w", err)
				}
				spec.JWKS = b
			}
			return g.withOAuth(cmd, func(srv *oauth.Server) error {
				c, secret, err := srv.CreateClient(cmd.Context(), cliActor, spec)
				if err != nil {
					return err
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "client_id: %s\n", c.ID)
				if secret != "" {
					fmt.Fprintf(out, "client_secret: %s\n", secret)
					fmt.Fprintln(cmd.ErrOrStderr(), "The client secret is shown only now; only a keyed hash of it is stored.")
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&spec.Name, "name", "", "a name people recognise the client by")
	f.StringVar(&clientType, "type", "confidential", "confidential or public (RFC 6749 §2.1)")
	f.StringVar(&spec.TokenEndpointAuthMethod, "auth-method", "", "client_secret_basic (default for confidential), client_secret_post, private_key_jwt or none")
	f.StringArrayVar(&spec.GrantTypes, "grant-type", nil, "a grant type the client may use (repeat the flag)")
	f.StringArrayVar(&spec.RedirectURIs, "redirect-uri", nil, "an exact redirect URI (repeat the flag)")
	f.StringArrayVar(&spec.Scopes, "scope", nil, "a scope the client may ask for (repeat the flag)")
	f.StringArrayVar(&spec.Resources, "resource", nil, "a resource (RFC 8707: the platform's public URL, mqtt.audience or gateway.audience) the client may ask tokens for (repeat the flag; default: every resource on request)")
	f.StringArrayVar(&spec.DefaultResources, "default-resource", nil, "a resource of tokens whose request names none (repeat the flag; default: every --resource, or without --resource those the scopes need)")
	f.StringVar(&spec.ThingID, "thing", "", "the thing this client stands for (device pairing links it to its owner)")
	f.StringVar(&jwksFile, "jwks-file", "", "public keys (JWK Set) for private_key_jwt")
	return cmd
}

func newClientsList(g *globals) *cobra.Command {
	var limit, offset int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List clients",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withOAuth(cmd, func(srv *oauth.Server) error {
				cs, total, err := srv.ListClients(cmd.Context(), offset, limit)
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "CLIENT_ID\tNAME\tTYPE\tAUTH\tGRANT TYPES\tRESOURCES (DEFAULT)\tTHING")
				for _, c := range cs {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s (%s)\t%s\n", c.ID, c.Name, c.Type, c.TokenEndpointAuthMethod, strings.Join(c.GrantTypes, " "),
						orAll(c.Resources), defaultsOf(c.Resources, c.DefaultResources), c.ThingID)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d shown (use --offset and --limit to page)\n", len(cs), total)
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many")
	cmd.Flags().IntVar(&offset, "offset", 0, "skip this many")
	return cmd
}

func newClientsResources(g *globals) *cobra.Command {
	var resources, defaults []string
	cmd := &cobra.Command{
		Use:   "resources CLIENT_ID",
		Short: "Set the resources (RFC 8707 audiences) a client may ask tokens for, and its defaults",
		Example: `  thingid clients resources CLIENT_ID --resource urn:thingid:gateway
  thingid clients resources CLIENT_ID --resource https://id.example.com --resource urn:thingid:mqtt --default-resource urn:thingid:mqtt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withOAuth(cmd, func(srv *oauth.Server) error {
				c, err := srv.SetClientResources(cmd.Context(), cliActor, args[0], resources, defaults)
				if err != nil {
					return explainStoreErr(err, "client "+args[0], "thingid clients list")
				}
				fmt.Fprintf(cmd.OutOrStdout(), "client %s: resources %s, default %s\n", c.ID, orAll(c.Resources), defaultsOf(c.Resources, c.DefaultResources))
				return nil
			})
		},
	}
	cmd.Flags().StringArrayVar(&resources, "resource", nil, "a resource the client may ask for (repeat the flag; none: every resource of the platform)")
	cmd.Flags().StringArrayVar(&defaults, "default-resource", nil, "a resource of tokens whose request names none (repeat the flag; none: every --resource, or without --resource those the scopes need)")
	return cmd
}

// orAll shows a client's resources; none registered means all of the
// platform's.
func orAll(resources []string) string {
	if len(resources) == 0 {
		return "all"
	}
	return strings.Join(resources, " ")
}

// defaultsOf shows a client's default resources: its registered defaults,
// else all its registered resources, else those its scopes need
// (docs/oauth.md, "Defaults of a client registered without resources").
func defaultsOf(resources, defaults []string) string {
	switch {
	case len(defaults) > 0:
		return strings.Join(defaults, " ")
	case len(resources) > 0:
		return "all"
	}
	return "by scope"
}

func newClientsDelete(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete CLIENT_ID",
		Short: "Delete a client and revoke every grant it holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withOAuth(cmd, func(srv *oauth.Server) error {
				if err := srv.DeleteClient(cmd.Context(), cliActor, args[0]); err != nil {
					return explainStoreErr(err, "client "+args[0], "thingid clients list")
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted client %s and revoked its grants\n", args[0])
				return nil
			})
		},
	}
}
