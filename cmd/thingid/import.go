package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/devimport"
	"github.com/thingid/thingid/internal/server"
)

func newDevicesImport(g *globals) *cobra.Command {
	var manufacturer, model, format, rejectsFile string
	var batch int
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Create devices from a CSV or JSON lines file; re-running the same file resumes it",
		Long: `Create devices from FILE (.csv with a header row, or .jsonl/.ndjson, one object per line).
Columns: serialNumber, mac (several separated by ';'), model, manufacturer, displayName,
thingType, firmwareVersion, location, and attr.<name> for free attributes.
Rows already imported are skipped, so an interrupted import is resumed by running it again.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return fmt.Errorf("open the device file: %w", err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			opts := devimport.Options{
				Manufacturer: manufacturer, Model: model, Actor: cliActor,
				BatchSize: batch, KeepRejects: rejectsFile != "",
			}
			if format != "" {
				args[0] = "file." + format
			}
			if opts.Format, err = devimport.FormatOf(args[0]); err != nil {
				return fmt.Errorf("%w (use --format csv or --format jsonl)", err)
			}
			return g.withPlatform(cmd, func(p *server.Platform) error {

				bar := progressbar.NewOptions64(fi.Size(),
					progressbar.OptionSetWriter(cmd.ErrOrStderr()),
					progressbar.OptionSetDescription("importing"),
					progressbar.OptionShowBytes(true),
					progressbar.OptionShowCount(),
					progressbar.OptionSetPredictTime(true),
					progressbar.OptionThrottle(100_000_000),
					progressbar.OptionClearOnFinish(),
				)
				opts.Progress = func(_, bytes int64) { bar.Set64(bytes) }
				sum, err := devimport.Import(cmd.Context(), p.Identity, f, opts)
				bar.Finish()
				defer sum.Close()
				if he := (*devimport.HeaderError)(nil); errors.As(err, &he) {
					return fmt.Errorf("%s: %w; nothing was imported: fix the header row (or the format, --format) and run the command again", args[0], err)
				}
				out := cmd.OutOrStdout()
				fmt.Fprintf(out, "%d rows in %s (%.0f rows/s): %d created, %d already imported, %d rejected\n",
					sum.Rows, sum.Elapsed.Round(1e7), sum.RowsPerSecond(), sum.Created, sum.Skipped, sum.Rejected)
				for _, r := range sum.Rejects {
					fmt.Fprintf(out, "  rejected %v\n", r)
				}
				if n := sum.Rejected - int64(len(sum.Rejects)); n > 0 {
					fmt.Fprintf(out, "  ... and %d more (use --rejects FILE to get them all)\n", n)
				}
				if rejectsFile != "" && sum.Rejected > 0 {
					rf, ferr := os.Create(rejectsFile)
					if ferr != nil {
						return ferr
					}
					if werr := sum.WriteRejects(rf); werr != nil {
						rf.Close()
						return werr
					}
					if cerr := rf.Close(); cerr != nil {
						return cerr
					}
					fmt.Fprintf(out, "rejected rows (line and reason) written to %s; fix those lines in %s and run the same import again: rows already imported are skipped\n", rejectsFile, args[0])
				}
				if err != nil {
					return fmt.Errorf("import stopped at line %d (everything before it is saved; run the same command again to resume): %w", sum.LastLine, err)
				}
				if sum.Rejected > 0 {
					return errors.New("some rows were rejected; see above")
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&manufacturer, "manufacturer", "", "manufacturer for rows that leave it empty")
	f.StringVar(&model, "model", "", "model for rows that leave it empty")
	f.StringVar(&format, "format", "", "csv or jsonl (default: from the file name)")
	f.StringVar(&rejectsFile, "rejects", "", "write every rejected row with its reason to this CSV file")
	f.IntVar(&batch, "batch", 0, "rows per transaction (default 2000)")
	return cmd
}
