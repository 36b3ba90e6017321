package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/thingid/thingid/internal/audit"
	"github.com/thingid/thingid/internal/server"
)

// auditFilterFlags are the filters of `thingid audit`: each flag is a query
// parameter of the API (audit.Param*), so that both are read by
// audit.ParseFilter.
var auditFilterFlags = []struct{ param, flag, usage string }{
	{audit.ParamActor, "actor", "who: admin:ID, support:ID, user:ID, client:ID, cli, system:...; ending in * a prefix"},
	{audit.ParamAction, "action", "what: user.disable, thing.update, ...; ending in * a prefix (uma.*)"},
	{audit.ParamSubject, "subject", "the ID of what the records are about"},
	{audit.ParamSubjectKind, "subject-kind", "the kind of --subject: user, thing, group, grant, client, ..."},
	{audit.ParamSince, "since", "records at or after this time (RFC 3339, or a duration back from now such as 24h)"},
	{audit.ParamUntil, "until", "records before this time (RFC 3339, or a duration back from now)"},
}

func newAudit(g *globals) *cobra.Command {
	values := map[string]*string{}
	var limit int
	var asJSON, follow bool
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the audit log: who changed what, and when",
		Long: `Show the audit log of the data directory, newest record last: the last --limit
records that match the filters, or every match with --limit 0. --follow then
prints records as they are appended, until Ctrl-C.

A filter ending in * matches as a prefix (--action 'uma.*'); --since and --until
take an RFC 3339 time (2025-06-01T12:00:00Z) or a duration back from now (24h).
The same filters are the query parameters of GET /api/v1/admin/audit.`,
		Example: `  thingid audit --action 'user.*' --since 24h
  thingid audit --subject THING_ID --subject-kind thing --json
  thingid audit --actor cli --follow`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f, err := auditFilter(values, time.Now())
			if err != nil {
				return err
			}
			switch {
			case follow && !f.Until.IsZero():
				return errors.New("--follow prints records as they are appended, after any --until; leave out one of them")
			case limit < 0 || limit > audit.MaxLimit:
				return fmt.Errorf("--limit %d: want 1 to %d records, or 0 for every match", limit, audit.MaxLimit)
			case interval <= 0:
				return fmt.Errorf("--interval %s: want a positive duration such as 1s", interval)
			}
			return g.withPlatform(cmd, func(p *server.Platform) error {
				out := &auditPrinter{w: cmd.OutOrStdout(), json: asJSON}
				last, n, err := auditHistory(cmd.Context(), p.Store, f, limit, out)
				if err != nil {
					return err
				}
				if !follow {
					if n == 0 {
						fmt.Fprintln(cmd.ErrOrStderr(), "No audit record matches; thingid audit --help shows the filters.")
					} else if limit > 0 && n == limit {
						fmt.Fprintf(cmd.ErrOrStderr(), "The last %d matching records; --limit 0 shows every match.\n", n)
					}
					return nil
				}
				fmt.Fprintln(cmd.ErrOrStderr(), "Following the audit log; Ctrl-C stops.")
				return auditFollow(cmd.Context(), p.Store, f, last, interval, out)
			})
		},
	}
	fl := cmd.Flags()
	for _, f := range auditFilterFlags {
		values[f.param] = fl.String(f.flag, "", f.usage)
	}
	fl.IntVar(&limit, "limit", 50, "show the last this many matching records; 0 shows every match")
	fl.BoolVar(&asJSON, "json", false, "one JSON object per line (the records of GET /api/v1/admin/audit) instead of a table")
	fl.BoolVar(&follow, "follow", false, "then print records as they are appended, until Ctrl-C")
	fl.DurationVar(&interval, "interval", time.Second, "how often --follow looks for new records")
	return cmd
}

// auditFilter reads the flags with the API's parser; a duration in --since
// or --until counts back from now.
func auditFilter(values map[string]*string, now time.Time) (audit.Filter, error) {
	v := url.Values{}
	flagOf := map[string]string{}
	for _, fl := range auditFilterFlags {
		flagOf[fl.param] = "--" + fl.flag
		val := *values[fl.param]
		if d, err := time.ParseDuration(val); err == nil && (fl.param == audit.ParamSince || fl.param == audit.ParamUntil) {
			if d < 0 {
				return audit.Filter{}, fmt.Errorf("--%s %s: a duration counts back from now; give it without a minus", fl.flag, val)
			}
			val = now.Add(-d).UTC().Format(time.RFC3339Nano)
		}
		if val != "" {
			v.Set(fl.param, val)
		}
	}
	f, err := audit.ParseFilter(v)
	if fe := (*audit.FieldError)(nil); errors.As(err, &fe) {
		return f, fmt.Errorf("%s: %s", flagOf[fe.Field], fe.Reason())
	}
	return f, err
}

// auditHistory prints the records before following: the last limit matches,
// or every match when limit is 0, oldest first. It returns the ID of the
// newest record printed (0: none) and how many it printed.
func auditHistory(ctx context.Context, st audit.Reader, f audit.Filter, limit int, out *auditPrinter) (last int64, n int, err error) {
	if limit > 0 {
		page, err := audit.Read(ctx, st, audit.Query{Filter: f, Limit: limit})
		if err != nil {
			return 0, 0, err
		}
		slices.Reverse(page.Records)
		if len(page.Records) > 0 {
			last = page.Records[len(page.Records)-1].ID
		}
		return last, len(page.Records), out.print(page.Records)
	}
	q := audit.Query{Filter: f, OldestFirst: true, Limit: audit.MaxLimit}
	for {
		page, err := audit.Read(ctx, st, q)
		if err != nil {
			return 0, 0, err
		}
		if err := out.print(page.Records); err != nil {
			return 0, 0, err
		}
		n += len(page.Records)
		q.From = page.Next
		if !page.More {
			return q.From, n, nil
		}
	}
}

// auditFollow polls for records after the record last, printing them, until
// ctx ends (Ctrl-C), which is not an error.
func auditFollow(ctx context.Context, st audit.Reader, f audit.Filter, last int64, interval time.Duration, out *auditPrinter) error {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	q := audit.Query{Filter: f, OldestFirst: true, Limit: audit.MaxLimit, From: last}
	for {
		page, err := audit.Read(ctx, st, q)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if err := out.print(page.Records); err != nil {
			return err
		}
		q.From = page.Next
		if page.More {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// auditPrinter writes records as a table or as JSON lines, flushed after
// every batch so that a follower sees them at once.
type auditPrinter struct {
	w      io.Writer
	json   bool
	header bool
}

func (p *auditPrinter) print(recs []audit.Record) error {
	if len(recs) == 0 {
		return nil
	}
	if p.json {
		enc := json.NewEncoder(p.w)
		enc.SetEscapeHTML(false)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	tw := tabwriter.NewWriter(p.w, 0, 4, 2, ' ', 0)
	if !p.header {
		fmt.Fprintln(tw, "TIME\tACTOR\tACTION\tSUBJECT\tDETAIL")
		p.header = true
	}
	for _, r := range recs {
		subject := ""
		if r.Subject != nil {
			subject = string(r.Subject.Kind) + ":" + r.Subject.ID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Time.UTC().Format(time.RFC3339), printable(r.Actor), printable(r.Action),
			printable(subject), printable(string(r.Detail)))
	}
	return tw.Flush()
}

// printable shows s as it is when every character is visible, and quoted
// with escapes otherwise: an actor or a detail (an MQTT client id, a user
// agent) must not move the cursor, colour the terminal or hide text.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) }) < 0 {
		return s
	}
	return strconv.QuoteToGraphic(s)
}
