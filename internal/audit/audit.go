// Package audit reads the audit log for people: the query they write
// (filters by actor, action, subject and time; order; an opaque keyset
// cursor), GET /api/v1/admin/audit for administrators and support staff, and
// the record of support staff's own reads. It appends no other record and
// never changes one: writing the log belongs to whoever makes a change.
package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/thingid/thingid/internal/store"
)

// MaxLimit bounds the records of one page.
const MaxLimit = 1000

// DefaultLimit is the size of a page whose query names none.
const DefaultLimit = 100

// Filter selects audit records; the zero Filter selects every record.
type Filter struct {
	Actor  store.TextMatch // who did it: "admin:<id>", "user:<id>", "cli", ...
	Action store.TextMatch // what: "user.disable", or a prefix such as "uma."
	// Subject is the id of what the record is about; SubjectKind ("user",
	// "thing", "grant", ...) narrows it to one kind. Both "": any subject.
	Subject     string
	SubjectKind store.Kind
	Since       time.Time // at or after; zero: no bound
	Until       time.Time // before; zero: no bound
}

// Query asks for one page of the records Filter selects.
type Query struct {
	Filter
	// OldestFirst reads in the order records were appended, which a
	// follower polls in; newest first otherwise.
	OldestFirst bool
	Limit       int // 1..MaxLimit
	// From is the ID of the last record of the previous page: the page
	// continues after it in the query's order. 0: from the start.
	From int64
}

// Record is one audit record as readers see it (the API's JSON and
// `thingid audit --json`).
type Record struct {
	// ID is the record's place in the log: records appended later have
	// greater IDs.
	ID      int64           `json:"id"`
	Time    time.Time       `json:"time"`
	Actor   string          `json:"actor"`
	Action  string          `json:"action"`
	Subject *store.Ref      `json:"subject,omitempty"`
	Detail  json.RawMessage `json:"detail,omitempty"`
}

// Page is what Read returns.
type Page struct {
	Records []Record
	// More: records after this page may match already. Oldest first, a
	// follower polls again from Next even when More is false.
	More bool
	// Next is where the next page starts (Query.From): the last record's
	// ID, or the query's own From when the page is empty.
	Next int64
}

// Reader reads the audit log (store.Store).
type Reader interface {
	ListAudit(ctx context.Context, q store.AuditQuery) ([]store.AuditRecord, error)
}

// Read returns one page of q, paging by the records' IDs (a keyset, so that
// records appended meanwhile never shift a page).
func Read(ctx context.Context, st Reader, q Query) (Page, error) {
	if q.Limit < 1 || q.Limit > MaxLimit {
		return Page{}, fmt.Errorf("audit: limit %d: want 1 to %d", q.Limit, MaxLimit)
	}
	sq := store.AuditQuery{Actor: q.Actor, Action: q.Action, Since: q.Since, Until: q.Until,
		Descending: !q.OldestFirst, Limit: q.Limit + 1}
	if q.Subject != "" {
		sq.Target = &store.Ref{Kind: q.SubjectKind, ID: q.Subject}
	}
	if q.OldestFirst {
		sq.AfterSeq = q.From
	} else {
		sq.BeforeSeq = q.From
	}
	recs, err := st.ListAudit(ctx, sq)
	if err != nil {
		return Page{}, err
	}
	p := Page{More: len(recs) > q.Limit, Next: q.From}
	recs = recs[:min(len(recs), q.Limit)]
	p.Records = make([]Record, len(recs))
	for i, r := range recs {
		p.Records[i] = recordOf(r)
	}
	if len(recs) > 0 {
		p.Next = recs[len(recs)-1].Seq
	}
	return p, nil
}

func recordOf(r store.AuditRecord) Record {
	out := Record{ID: r.Seq, Time: r.Time.UTC(), Actor: r.Actor, Action: r.Action, Detail: r.Detail}
	if r.Target != (store.Ref{}) {
		t := r.Target
		out.Subject = &t
	}
	return out
}
