package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/thingid/thingid/internal/store"
)

// The audit table is append-only: this file only inserts and selects, and the
// schema has triggers refusing UPDATE and DELETE for anyone else.

func (t *txn) AppendAudit(ctx context.Context, recs ...store.AuditRecord) error {
	if len(recs) == 0 {
		return nil
	}
	f := t.flavor()
	if lock := f.lockAudit(); lock != "" {
		if _, err := t.q.ExecContext(ctx, lock); err != nil {
			return fmt.Errorf("append audit: lock: %w", err)
		}
	}
	stmt, err := t.q.PrepareContext(ctx, "INSERT INTO audit (time, actor, action, target_kind, target_id, detail) VALUES "+t.placeholders(1, 6, 1))
	if err != nil {
		return fmt.Errorf("append audit: %w", err)
	}
	defer stmt.Close()
	appended := now()
	for i, r := range recs {
		at := appended
		if !r.Time.IsZero() {
			at = r.Time
		}
		var detail any // NULL when empty
		if len(r.Detail) > 0 {
			if !json.Valid(r.Detail) {
				return fmt.Errorf("audit record %d (%s): detail is not valid JSON", i, r.Action)
			}
			detail = string(r.Detail)
		}
		if _, err := stmt.ExecContext(ctx, f.timeArg(at), r.Actor, r.Action, string(r.Target.Kind), r.Target.ID, detail); err != nil {
			return fmt.Errorf("append audit record %d (%s): %w", i, r.Action, err)
		}
	}
	return nil
}

func (t *txn) ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error) {
	where, args, err := t.auditWhere(q)
	if err != nil {
		return nil, err
	}
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	order := " ORDER BY seq"
	if q.Descending {
		order += " DESC"
	}
	args = append(args, limit)
	rows, err := t.q.QueryContext(ctx, "SELECT seq, time, actor, action, target_kind, target_id, detail FROM audit"+where+order+" LIMIT "+t.ph(len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("list audit: %w", err)
	}
	defer rows.Close()
	var out []store.AuditRecord
	for rows.Next() {
		var (
			r      store.AuditRecord
			detail sql.NullString
		)
		if err := rows.Scan(&r.Seq, timeCol{&r.Time}, &r.Actor, &r.Action, &r.Target.Kind, &r.Target.ID, &detail); err != nil {
			return nil, err
		}
		if detail.Valid {
			r.Detail = json.RawMessage(detail.String)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// auditWhere compiles the conditions of q to a WHERE clause (or "") and its
// arguments: every value is a bind parameter.
func (t *txn) auditWhere(q store.AuditQuery) (string, []any, error) {
	var conds []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return t.ph(len(args))
	}
	f := t.flavor()
	text := func(field, col string, m store.TextMatch) error {
		if err := checkText(field, m.Value); err != nil {
			return err
		}
		// Byte order on both databases, so that a prefix is one range of
		// the index (migration 0014) and equality uses the same index.
		c := f.binaryOrder(col)
		switch {
		case !m.Prefix && m.Value != "":
			conds = append(conds, c+" = "+arg(m.Value))
		case m.Prefix && m.Value != "":
			conds = append(conds, c+" >= "+arg(m.Value))
			if end, ok := prefixEnd(m.Value); ok {
				conds = append(conds, c+" < "+arg(end))
			}
		}
		return nil
	}
	if err := text("actor", "actor", q.Actor); err != nil {
		return "", nil, err
	}
	if err := text("action", "action", q.Action); err != nil {
		return "", nil, err
	}
	if q.Target != nil {
		if err := checkText("target.kind", string(q.Target.Kind)); err != nil {
			return "", nil, err
		}
		if err := checkText("target.id", q.Target.ID); err != nil {
			return "", nil, err
		}
		if q.Target.Kind != "" {
			conds = append(conds, "target_kind = "+arg(string(q.Target.Kind)))
		}
		conds = append(conds, "target_id = "+arg(q.Target.ID))
	}
	// Stored times are whole microseconds: a bound between two of them
	// moves up to the next, so that time >= Since and time < Until hold
	// exactly for the bound given.
	if !q.Since.IsZero() {
		conds = append(conds, "time >= "+arg(f.timeArg(ceilMicro(q.Since))))
	}
	if !q.Until.IsZero() {
		conds = append(conds, "time < "+arg(f.timeArg(ceilMicro(q.Until))))
	}
	if q.AfterSeq > 0 {
		conds = append(conds, "seq > "+arg(q.AfterSeq))
	}
	if q.BeforeSeq > 0 {
		conds = append(conds, "seq < "+arg(q.BeforeSeq))
	}
	if len(conds) == 0 {
		return "", args, nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args, nil
}

// ceilMicro rounds t up to a whole microsecond.
func ceilMicro(t time.Time) time.Time {
	if c := t.Truncate(time.Microsecond); !c.Equal(t) {
		return c.Add(time.Microsecond)
	}
	return t
}

// prefixEnd returns the least string greater than every string that starts
// with p, in code point (= UTF-8 byte) order: p with its last character
// incremented, skipping the surrogates, which valid UTF-8 never holds. ok is
// false when there is none (p is empty or only U+10FFFF).
func prefixEnd(p string) (end string, ok bool) {
	for p != "" {
		r, size := utf8.DecodeLastRuneInString(p)
		p = p[:len(p)-size]
		if r == utf8.MaxRune {
			continue
		}
		r++
		if r >= 0xD800 && r <= 0xDFFF {
			r = 0xE000
		}
		return p + string(r), true
	}
	return "", false
}
