package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

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
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	query := "SELECT seq, time, actor, action, target_kind, target_id, detail FROM audit WHERE seq > " + t.ph(1)
	args := []any{q.AfterSeq}
	if q.Target != nil {
		query += " AND target_kind = " + t.ph(2) + " AND target_id = " + t.ph(3)
		args = append(args, string(q.Target.Kind), q.Target.ID)
	}
	args = append(args, limit)
	rows, err := t.q.QueryContext(ctx, query+" ORDER BY seq LIMIT "+t.ph(len(args)), args...)
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
