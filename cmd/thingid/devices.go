package main

import (
	"encoding/json"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/server"
	"github.com/thingid/thingid/internal/store"
)

func newDevices(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "devices", Short: "Manage things (devices, services, gateways) in the data directory"}
	cmd.AddCommand(newDevicesList(g), newDevicesGet(g),
		newDevicesSetStatus(g, store.StatusDisabled, "disable", "Disable a thing: it can no longer authenticate, and its MQTT connections end"),
		newDevicesSetStatus(g, store.StatusActive, "enable", "Enable a disabled thing again"),
		newDevicesDelete(g), newDevicesImport(g), newDevicesEnrollToken(g))
	return cmd
}

func newDevicesList(g *globals) *cobra.Command {
	var model, manufacturer, status string
	var limit, offset int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List things, optionally by model, manufacturer or status",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				var filter store.Expr
				for field, v := range map[string]string{"model": model, "manufacturer": manufacturer, "status": status} {
					if v == "" {
						continue
					}
					c := store.Compare{Field: field, Op: store.OpEq, Value: v}
					if filter == nil {
						filter = c
					} else {
						filter = store.And{Left: filter, Right: c}
					}
				}
				things, total, err := p.Identity.ListThings(cmd.Context(), store.Query{
					Filter: filter, SortBy: "serialNumber", Offset: offset, Limit: limit,
				})
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tSERIAL\tMANUFACTURER\tMODEL\tMAC\tSTATUS")
				for _, t := range things {
					mac := ""
					if len(t.MACAddresses) > 0 {
						mac = t.MACAddresses[0]
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.SerialNumber, t.Manufacturer, t.Model, mac, t.Status)
				}
				if err := w.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "%d of %d shown (use --offset and --limit to page)\n", len(things), total)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&model, "model", "", "only this model")
	f.StringVar(&manufacturer, "manufacturer", "", "only this manufacturer")
	f.StringVar(&status, "status", "", "active or disabled")
	f.IntVar(&limit, "limit", 100, "at most this many")
	f.IntVar(&offset, "offset", 0, "skip this many")
	return cmd
}

func newDevicesGet(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "get ID",
		Short: "Show one thing as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				t, err := p.Identity.GetThing(cmd.Context(), args[0])
				if err != nil {
					return explainStoreErr(err, "thing "+args[0], listDevices)
				}
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(t)
			})
		},
	}
}

// newDevicesSetStatus is `devices disable` and `devices enable`: the status
// change SCIM makes, with its audit record and event (the running server
// ends a disabled thing's MQTT connections; certificates and tokens check
// the status at every use).
func newDevicesSetStatus(g *globals, status store.Status, verb, short string) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				ctx := cmd.Context()
				t, err := p.Identity.GetThing(ctx, args[0])
				if err != nil {
					return explainStoreErr(err, "thing "+args[0], listDevices)
				}
				if t.Status == status {
					fmt.Fprintf(cmd.OutOrStdout(), "thing %s (serial %s) is %s already\n", t.ID, t.SerialNumber, status)
					return nil
				}
				t, err = p.Identity.UpdateThing(ctx, cliActor, args[0], 0, func(t *store.Thing) error {
					t.Status = status
					return nil
				})
				if err != nil {
					return explainStoreErr(err, "thing "+args[0], listDevices)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%sd %s (serial %s)\n", verb, t.ID, t.SerialNumber)
				return nil
			})
		},
	}
}

func newDevicesDelete(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a thing and its relationships (owners, groups); its certificates stop authenticating it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return g.withPlatform(cmd, func(p *server.Platform) error {
				ctx := cmd.Context()
				t, err := p.Identity.GetThing(ctx, args[0])
				if err != nil {
					return explainStoreErr(err, "thing "+args[0], listDevices)
				}
				if err := p.Identity.DeleteThing(ctx, cliActor, t.ID, 0); err != nil {
					return explainStoreErr(err, "thing "+args[0], listDevices)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted %s (serial %s)\n", t.ID, t.SerialNumber)
				return nil
			})
		},
	}
}
