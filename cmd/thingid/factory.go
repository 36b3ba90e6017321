package main

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/factory"
	"github.com/thingid/thingid/internal/server"
)

func newFactory(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "factory", Short: "Device identities for the production line"}
	var opts factory.Options
	issue := &cobra.Command{
		Use:   "issue",
		Short: "Create N things with keys and certificates (or sign N CSRs); re-running the same --out resumes",
		Long: `Create --count things of --model (serials <model>-<index zero-padded to 6 digits>, one
random locally administered MAC each), an ECDSA P-256 key and a certificate from the
device issuing CA per device, and write DIR/<serial>/device.pem (certificate and
issuing CA), DIR/<serial>/device.key (PKCS#8, 0600), DIR/manifest.csv (thing id,
serial, MAC, certificate SHA-256) and DIR/batches.csv (the factory batch of each model
made there, recorded with its things). With --csr-dir, sign one CSR per file instead:
<serial>.csr or <serial>.pem, the file name being the serial number; no key is written.
With --psk, every device also gets a DTLS pre-shared key for the CoAP gateway:
DIR/<serial>/psk.identity and DIR/<serial>/psk.key (0600) are the only place the key
is shown; the platform keeps it sealed. Devices in the manifest are done: running the
same command again continues.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if opts.Out == "" {
				return errors.New("--out is required")
			}
			if opts.Model == "" {
				return errors.New("--model is required")
			}
			if opts.CSRDir == "" && opts.Count <= 0 {
				return fmt.Errorf("--count must be at least 1 (got %d)", opts.Count)
			}
			return g.withPlatform(cmd, func(p *server.Platform) error {
				_, ca, err := p.PKI()
				if err != nil {
					return err
				}
				var bar *progressbar.ProgressBar
				opts.Actor = cliActor
				opts.MasterKey = p.Key
				opts.Progress = func(done, total int) {
					if bar == nil {
						bar = progressbar.NewOptions(total,
							progressbar.OptionSetWriter(cmd.ErrOrStderr()),
							progressbar.OptionSetDescription("issuing"),
							progressbar.OptionShowCount(),
							progressbar.OptionSetPredictTime(true),
							progressbar.OptionThrottle(100_000_000),
							progressbar.OptionClearOnFinish(),
						)
					}
					bar.Set(done)
				}
				sum, err := factory.Issue(cmd.Context(), p.Identity, ca, opts)
				if bar != nil {
					bar.Finish()
				}
				if err != nil && sum.Issued+sum.Recovered+sum.Skipped == 0 {
					return err
				}
				out := cmd.OutOrStdout()
				rate := 0.0
				if s := sum.Elapsed.Seconds(); s > 0 {
					rate = float64(sum.Issued+sum.Recovered) / s
				}
				fmt.Fprintf(out, "%d devices in %s (%.0f/s): %d issued, %d already done, %d recovered, %d failed\n",
					sum.Total, sum.Elapsed.Round(1e7), rate, sum.Issued, sum.Skipped, sum.Recovered, len(sum.Failed))
				fmt.Fprintf(out, "factory batch %s (the admin console's /admin/batches)\n", sum.Batch)
				for i, f := range sum.Failed {
					if i == 20 {
						fmt.Fprintf(out, "  ... and %d more\n", len(sum.Failed)-20)
						break
					}
					fmt.Fprintf(out, "  failed %v\n", f)
				}
				if err != nil {
					return fmt.Errorf("factory batch stopped (finished devices are in %s; run the same command again to continue): %w",
						filepath.Join(opts.Out, factory.ManifestFile), err)
				}
				if len(sum.Failed) > 0 {
					return errors.New("some devices failed; see above")
				}
				return nil
			})
		},
	}
	f := issue.Flags()
	f.StringVar(&opts.Model, "model", "", "device model (required); starts the generated serial numbers")
	f.StringVar(&opts.Manufacturer, "manufacturer", "", "manufacturer recorded on every thing")
	f.IntVar(&opts.Count, "count", 0, "number of devices (required unless --csr-dir; then it must match the CSR files)")
	f.StringVar(&opts.Out, "out", "", "output directory (required); the same directory resumes a run")
	f.StringVar(&opts.CSRDir, "csr-dir", "", "sign the CSRs in this directory (<serial>.csr or <serial>.pem) instead of generating keys")
	f.DurationVar(&opts.Lifetime, "lifetime", 0, "certificate lifetime (default 5 years: 43800h)")
	f.IntVar(&opts.BatchSize, "batch", 0, "things per transaction (default 1000)")
	f.BoolVar(&opts.PSK, "psk", false, "also give every device a DTLS pre-shared key (DIR/<serial>/psk.identity, psk.key)")
	cmd.AddCommand(issue, newFactoryPSK(g))
	return cmd
}

// newFactoryPSK is `thingid factory psk`: a new pre-shared key for one
// thing, printed once.
func newFactoryPSK(g *globals) *cobra.Command {
	var thing string
	cmd := &cobra.Command{
		Use:   "psk",
		Short: "Give one thing a new DTLS pre-shared key, replacing its key (whose sessions end); printed once",
		Long: `Issue a new DTLS pre-shared key for the thing --thing names and print its PSK identity
and key on two lines ("identity ..." and "key ..."). The key is shown only now: the
platform keeps it sealed. A key the thing had is replaced: its identity is refused from
now on and the CoAP sessions it holds end.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if thing == "" {
				return errors.New("--thing is required")
			}
			return g.withPlatform(cmd, func(p *server.Platform) error {
				in, err := factory.IssuePSK(cmd.Context(), p.Identity, p.Key, cliActor, thing)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "identity %s\nkey %s\n", in.Identity, in.Key)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&thing, "thing", "", "the thing's id (required)")
	return cmd
}
