package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/server"
)

// newBackup is `thingid backup`: a consistent copy of a single node's data
// directory, taken while it serves.
func newBackup(g *globals) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Copy a SQLite node's database, master key and PKI into a new directory while it serves",
		Long: `Write a consistent copy of the data directory into the new directory --out,
laid out as a data directory: a snapshot of the SQLite database (taken while the
server writes), master.key (unless masterKey comes from the configuration), the
platform's CAs and server certificate (pki/), and the broker's retained messages and
persistent sessions (mqtt/mqtt-sessions.db) if no running server holds them.
To restore, stop the server, use the copy as its data directory, and start it.
On PostgreSQL it refuses: back the database up with pg_dump (docs/deployment.md).`,
		Example: `  thingid --home thingid-data backup --out thingid-backup`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out: name the new directory to write the backup into")
			}
			return g.withPlatform(cmd, func(p *server.Platform) error {
				items, err := p.Backup(cmd.Context(), out)
				if err != nil {
					return err
				}
				for _, it := range items {
					fmt.Fprintf(cmd.OutOrStdout(), "%s: %s\n", it.Name, it.Note)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "backup written to %s; keep the configuration file with it\n", out)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "new directory to write the backup into (required)")
	return cmd
}
